"""The README's client quick start exactly as a newcomer does it: ``make run`` in one terminal,
the quick-start block in another (at the top of the repository, only the printed broker URL
filled in), the device login approved by typing ``alice`` at ``make run``'s console after
checking that it asks about the code the client showed; acme-lib 1.1.0 installs, and Ctrl-C
ends ``make run`` with 0."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from contextlib import suppress
from pathlib import Path

from tests.support.newcomer import assert_acme_lib_installed, newcomer_env
from tests.support.terminal import ROOT, make_run_in_a_terminal
from tests.test_docs import quickstart

PLACEHOLDER_URL = "http://127.0.0.1:PORT"
PLACEHOLDER_VENV = "/tmp/cabroker-try"
LOGIN_TIMEOUT = 120  # from starting the block to the client's code and the console's prompt
INSTALL_TIMEOUT = 300  # from the approval to the end of pip install (a loaded 2-core machine)
# devstack/device.py's ConsoleApprover, and cabroker/device.py's block for the person
PROMPT = re.compile(
    r"(\w+): device login requested, code ([A-Z]{4}-[A-Z]{4})\. Approve as which user\?"
)
CLIENT_CODE = re.compile(r"the code ([A-Z]{4}-[A-Z]{4})")


def redacted(text: str) -> str:
    """``text`` without CodeArtifact tokens (``aws:<token>@`` in index URLs) or ID tokens."""
    text = re.sub(r"aws:[^@]+@", "aws:****@", text)
    return re.sub(r"eyJ[\w.-]*", "eyJ****", text)


def test_the_readme_quick_start_with_the_device_login_approved_at_the_console(
    tmp_path: Path,
) -> None:
    block = quickstart()
    for part in (PLACEHOLDER_URL, PLACEHOLDER_VENV, "login --identity device"):
        assert part in block
    with make_run_in_a_terminal(tmp_path / "state.json") as terminal:
        state = terminal.started()
        printed = re.search(r"^ *broker +(\S+)", terminal.output, re.M)
        assert printed is not None, redacted(terminal.output[-2000:])
        assert printed.group(1) == state["broker_url"]
        venv = tmp_path / "try"
        script = block.replace(PLACEHOLDER_URL, printed.group(1)).replace(
            PLACEHOLDER_VENV, shlex.quote(str(venv))
        )
        stdout, stderr = tmp_path / "quickstart.out", tmp_path / "quickstart.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            newcomer = subprocess.Popen(
                ["/bin/bash", "-euo", "pipefail", "-c", script],
                cwd=ROOT,
                # BROWSER: should the client try a browser after all, it starts `true`.
                env={**newcomer_env(tmp_path / "home"), "BROWSER": "true"},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own group: pip and the client end with it
            )
        try:

            def what_happened() -> str:
                return redacted(
                    f"make run's console:\n{terminal.output[-3000:]}\n"
                    f"quick start's output:\n{stdout.read_text(errors='replace')[-3000:]}\n"
                    f"{stderr.read_text(errors='replace')[-3000:]}"
                )

            def both_codes_shown() -> bool:
                asked = PROMPT.search(terminal.output)
                shown = CLIENT_CODE.search(stderr.read_text(errors="replace"))
                return bool(asked and shown) or newcomer.poll() is not None

            terminal.read_until(both_codes_shown, LOGIN_TIMEOUT)
            asked = PROMPT.search(terminal.output)
            shown = CLIENT_CODE.search(stderr.read_text(errors="replace"))
            assert asked is not None, what_happened()
            assert shown is not None, what_happened()
            assert asked.group(2) == shown.group(1), what_happened()
            terminal.type(b"alice\n")  # as the newcomer types it at make run's console
            # the terminal is read meanwhile: a console nobody reads stops the devstack
            terminal.read_until(lambda: newcomer.poll() is not None, INSTALL_TIMEOUT)
            assert newcomer.returncode == 0, what_happened()
            approved = f"{asked.group(1)}: approved {asked.group(2)} as alice"
            assert terminal.read_until(lambda: approved in terminal.output, 30), what_happened()
        finally:
            if newcomer.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(newcomer.pid, signal.SIGKILL)
                newcomer.wait()
        assert_acme_lib_installed(venv)
        terminal.ctrl_c_ends_make_run_with_0()

"""Someone new to the project, at a shell: an environment with nothing of the test runner's
but PATH, and a home of their own; and what they should end up with, acme-lib installed.  The
README quick-start tests share it (tests/e2e/test_run.py, tests/e2e/test_quickstart.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def newcomer_env(home: Path) -> dict[str, str]:
    """PATH, a home at ``home`` (no pip or cabroker configuration, kept logins in a file there
    rather than the keyring), and pip that never prompts."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "CABROKER_TOKEN_STORE": "file",
        "PIP_NO_INPUT": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


def assert_acme_lib_installed(venv: Path) -> None:
    """The newest acme-lib, from the private repository, is what ``venv`` imports."""
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import acme_lib as m; print(m.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.stdout.strip() == "1.1.0", installed.stderr

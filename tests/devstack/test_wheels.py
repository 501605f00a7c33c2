"""devstack.wheels: the wheels it writes are valid for pkginfo, twine, uv and pip."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pkginfo
import pytest
from packaging.utils import InvalidName
from packaging.version import InvalidVersion

from devstack.wheels import build_wheel, import_name, wheel_filename

VENV_BIN = Path(sys.executable).parent
# Only what a tool needs to run: no proxies, no index or config settings from the caller.
KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def tool_env(home: Path) -> dict[str, str]:
    """An environment in which pip, uv and twine read no user config, keyring or cache."""
    env = {name: os.environ[name] for name in KEPT_ENVIRONMENT if name in os.environ}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        UV_NO_CONFIG="1",
        UV_CACHE_DIR=str(home / "uv-cache"),
        UV_KEYRING_PROVIDER="disabled",
        UV_PYTHON_DOWNLOADS="never",
        TWINE_NON_INTERACTIVE="1",
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
        NO_COLOR="1",
    )
    return env


@dataclass(frozen=True)
class ToolRun:
    """A finished tool: its exit code and output, with the secret it was given blanked out.

    Neither the argv (which may hold a password) nor the secret is kept, so a failing
    assertion can show this object or its output without leaking anything.
    """

    returncode: int
    stdout: str
    stderr: str
    leaked: bool  # the secret appeared in the output (before it was blanked out)

    def __repr__(self) -> str:
        return f"<tool run: exit {self.returncode}>"


def run_tool(args: list[str], home: Path, secret: str = "") -> ToolRun:
    """Run a tool in ``tool_env(home)``; the caller asserts on the result."""
    ran = subprocess.run(
        args, env=tool_env(home), capture_output=True, text=True, timeout=60, check=False
    )
    leaked = bool(secret) and secret in ran.stdout + ran.stderr
    stdout, stderr = ran.stdout, ran.stderr
    if secret:
        stdout, stderr = stdout.replace(secret, "<secret>"), stderr.replace(secret, "<secret>")
    return ToolRun(ran.returncode, stdout, stderr, leaked)


def output(result: ToolRun) -> str:
    """What a tool said, for an assertion message."""
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return build_wheel(
        tmp_path / "dist",
        "Leftpad.Py",
        "0.1",
        summary="Left-pads strings",
        requires_python=">=3.8",
        dependencies=["tinyjson>=1.0", 'colorama; sys_platform == "win32"'],
        body="def leftpad(s, n):\n    return s.rjust(n)\n",
    )


def test_filename_is_normalized_and_tagged(wheel: Path) -> None:
    assert wheel.name == "leftpad_py-0.1-py3-none-any.whl"
    assert wheel_filename("Acme_Lib", "01.0") == "acme_lib-1.0-py3-none-any.whl"
    assert import_name("acme.Lib") == "acme_lib"


def test_layout(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        assert archive.namelist() == [
            "leftpad_py/__init__.py",
            "leftpad_py-0.1.dist-info/METADATA",
            "leftpad_py-0.1.dist-info/WHEEL",
            "leftpad_py-0.1.dist-info/RECORD",
        ]
        wheel_file = archive.read("leftpad_py-0.1.dist-info/WHEEL").decode()
    assert wheel_file.splitlines() == [
        "Wheel-Version: 1.0",
        "Generator: cabroker-devstack",
        "Root-Is-Purelib: true",
        "Tag: py3-none-any",
    ]


def test_metadata_read_by_pkginfo(wheel: Path) -> None:
    meta = pkginfo.Wheel(str(wheel))
    assert meta.metadata_version == "2.1"
    assert meta.name == "Leftpad.Py"
    assert meta.version == "0.1"
    assert meta.summary == "Left-pads strings"
    assert meta.requires_python == ">=3.8"
    assert list(meta.requires_dist) == ["tinyjson>=1.0", 'colorama; sys_platform == "win32"']
    assert meta.description_content_type == "text/plain"
    assert meta.purelib is True


def test_record_lists_every_file_with_its_hash_and_size(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        record_path = "leftpad_py-0.1.dist-info/RECORD"
        rows = list(csv.reader(io.StringIO(archive.read(record_path).decode())))
        assert sorted(row[0] for row in rows) == sorted(archive.namelist())
        for path, hash_value, size in rows:
            if path == record_path:
                assert (hash_value, size) == ("", "")
                continue
            data = archive.read(path)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert hash_value == "sha256=" + digest.decode()
            assert int(size) == len(data)


def test_module_sets_version_distribution_and_body(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        source = archive.read("leftpad_py/__init__.py").decode()
    namespace: dict[str, object] = {}
    exec(compile(source, "__init__.py", "exec"), namespace)  # noqa: S102 - our own test wheel
    assert namespace["__version__"] == "0.1"
    assert namespace["DISTRIBUTION"] == "Leftpad.Py"
    leftpad = namespace["leftpad"]
    assert callable(leftpad)
    assert leftpad("x", 3) == "  x"


def test_bytes_are_reproducible(tmp_path: Path, wheel: Path) -> None:
    again = build_wheel(
        tmp_path / "again",
        "Leftpad.Py",
        "0.1",
        summary="Left-pads strings",
        requires_python=">=3.8",
        dependencies=["tinyjson>=1.0", 'colorama; sys_platform == "win32"'],
        body="def leftpad(s, n):\n    return s.rjust(n)\n",
    )
    assert again.read_bytes() == wheel.read_bytes()
    other = build_wheel(tmp_path / "other", "Leftpad.Py", "0.1")
    assert other.read_bytes() != wheel.read_bytes()


@pytest.mark.parametrize(
    ("name", "version", "error"),
    [
        ("not a name!", "1.0", InvalidName),
        ("-leading", "1.0", InvalidName),
        ("fine", "not-a-version", InvalidVersion),
    ],
)
def test_refuses_what_a_wheel_cannot_carry(
    tmp_path: Path, name: str, version: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        build_wheel(tmp_path, name, version)
    assert list(tmp_path.iterdir()) == []


def test_refuses_multi_line_and_invalid_metadata(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one line"):
        build_wheel(tmp_path, "fine", "1.0", summary="two\nlines")
    with pytest.raises(ExceptionGroup):
        build_wheel(tmp_path, "fine", "1.0", requires_python=">>3")
    with pytest.raises(ExceptionGroup):
        build_wheel(tmp_path, "fine", "1.0", dependencies=["not a requirement !"])


def test_twine_check_passes(tmp_path: Path, wheel: Path) -> None:
    result = run_tool([str(VENV_BIN / "twine"), "check", "--strict", str(wheel)], tmp_path)
    assert result.returncode == 0, output(result)
    assert "PASSED" in result.stdout, output(result)


def test_uv_installs_and_the_module_imports(tmp_path: Path, wheel: Path) -> None:
    target = tmp_path / "target"
    install = [
        str(VENV_BIN / "uv"),
        "pip",
        "install",
        "--python",
        sys.executable,
        "--target",
        str(target),
        "--no-index",
        "--find-links",
        str(wheel.parent),
        "--no-deps",
        "leftpad-py==0.1",
    ]
    result = run_tool(install, tmp_path)
    assert result.returncode == 0, output(result)
    check = "import leftpad_py as m; print(m.__version__, m.DISTRIBUTION, m.leftpad('a', 2))"
    env = tool_env(tmp_path) | {"PYTHONPATH": str(target)}
    ran = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, check=False
    )
    assert ran.stdout.split() == ["0.1", "Leftpad.Py", "a"], ran.stderr
    assert (target / "leftpad_py-0.1.dist-info" / "RECORD").is_file()

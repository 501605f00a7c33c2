"""Mutants of the client's output writers and of the GitHub Action's install (``make mutants``):
each removes one check that keeps a value from being misread, or unpinned code from running."""

from __future__ import annotations

from tests.mutants import Mutant, mutant

OUTPUTS = "client/src/cabroker/outputs.py"
TESTS = ("tests/client/test_outputs.py",)
ACTION_TESTS = ("tests/client/test_action.py",)

MUTANTS: list[Mutant] = [
    mutant(
        "GITHUB_ENV and GITHUB_OUTPUT written as NAME=value lines",
        OUTPUTS,
        'blocks.append(f"{name}<<{delimiter}\\n{value}\\n{delimiter}\\n")',
        'blocks.append(f"{name}={value}\\n")',
        TESTS,
    ),
    mutant(
        "heredoc delimiter not checked against the value",
        OUTPUTS,
        "while delimiter in value or delimiter in name:",
        "while False:",
        TESTS,
    ),
    mutant(
        "GitHub files: a trailing CR written (a Windows runner drops it)",
        OUTPUTS,
        'if reason is None and value.endswith("\\r"):',
        "if False:",
        TESTS,
    ),
    mutant(
        "dotenv: ${ written (python-dotenv expands it in any quoting)",
        OUTPUTS,
        'if "${" in value:',
        "if False:",
        TESTS,
    ),
    mutant(
        "dotenv: $ written inside double quotes (docker compose expands it)",
        OUTPUTS,
        '    if "$" in value:\n        raise _refused(',
        "    if False:\n        raise _refused(",
        TESTS,
    ),
    mutant(
        "dotenv: a backslash written inside single quotes",
        OUTPUTS,
        'if not any(c in value for c in "\'\\\\\\n\\r"):',
        'if not any(c in value for c in "\'\\n\\r"):',
        TESTS,
    ),
    mutant(
        "dotenv: a double quote not escaped inside double quotes",
        OUTPUTS,
        """escaped = value.replace("\\\\", "\\\\\\\\").replace('"', '\\\\"')""",
        """escaped = value.replace("\\\\", "\\\\\\\\")""",
        TESTS,
    ),
    mutant(
        "sh: a single quote not escaped",
        OUTPUTS,
        """return "'" + value.replace("'", "'\\\\''") + "'\"""",
        """return "'" + value + "'\"""",
        TESTS,
    ),
    mutant(
        "fish: a backslash not escaped",
        OUTPUTS,
        """value.replace("\\\\", "\\\\\\\\").replace("'", "\\\\'")""",
        """value.replace("'", "\\\\'")""",
        TESTS,
    ),
    mutant(
        "powershell: typographic single quotes not doubled",
        OUTPUTS,
        '_POWERSHELL_QUOTES = "\'\\u2018\\u2019\\u201a\\u201b"',
        '_POWERSHELL_QUOTES = "\'"',
        TESTS,
    ),
    mutant(
        "a NUL printed for a shell or a dotenv file",
        OUTPUTS,
        '    if "\\0" in value:\n        return "it contains a NUL',
        '    if False:\n        return "it contains a NUL',
        TESTS,
    ),
    mutant(
        "action: pip install without --require-hashes",
        "action.yml",
        "--require-hashes --no-deps --only-binary=:all:",
        "--no-deps --only-binary=:all:",
        ACTION_TESTS,
    ),
    mutant(
        "action: sdists may be built (a build backend fetched unpinned)",
        "action.yml",
        "--no-deps --only-binary=:all: -r",
        "--no-deps -r",
        ACTION_TESTS,
    ),
    mutant(
        "action: the client runs with the workspace on sys.path",
        "action.yml",
        '"$py" -I -m cabroker.cli',
        '"$py" -m cabroker.cli',
        ACTION_TESTS,
    ),
    mutant(
        "login writes GITHUB_OUTPUT as name=value lines",
        "client/src/cabroker/commands/login.py",
        "outputs.github_outputs(outputs.step_outputs(grant), Path(path))",
        "Path(path).write_text("
        "''.join(f'{k}={v}\\n' for k, v in outputs.step_outputs(grant).items()))",
        ("tests/client/test_outputs.py",),
    ),
]

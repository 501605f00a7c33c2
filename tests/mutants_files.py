"""The client's file targets: each security check of where and how ``login`` writes a token,
and of ``logout`` taking every entry out, removed one at a time (see tests/mutants.py)."""

from __future__ import annotations

from tests.mutants import Edit, Mutant, mutant

FILES = "tests/client/test_files.py"
LEDGER = "tests/client/test_ledger.py"
SAFETY = "tests/client/test_file_safety.py"
CLI = "tests/client/test_login_targets.py"
TESTS = (FILES, LEDGER, SAFETY)

PLACEMENT = "client/src/cabroker/placement.py"
SAFEIO = "client/src/cabroker/safeio.py"
LEDGER_PY = "client/src/cabroker/ledger.py"

MUTANTS: list[Mutant] = [
    mutant(
        "project and build-context markers ignored",
        PLACEMENT,
        "if lower in _NAMES or any(fnmatchcase(lower, pattern) for pattern in _PATTERNS):",
        "if False:",
        TESTS,
    ),
    mutant(
        "git work trees ignored",
        PLACEMENT,
        'if os.path.lexists(directory / ".git"):',
        "if False:",
        TESTS,
    ),
    mutant(
        "a dotfile git tracks in a home work tree is written",
        PLACEMENT,
        "if tracked is False:",
        "if True:",
        TESTS,
    ),
    mutant(
        "login passes the override without --allow-project-dir",
        "client/src/cabroker/commands/login.py",
        "allow_project_dir=args.allow_project_dir,",
        "allow_project_dir=True,",
        (CLI,),
    ),
    Mutant(
        "a symbolic link as the file is followed (login and logout)",
        (
            Edit(
                SAFEIO,
                "return os.stat(name, dir_fd=self.fd, follow_symlinks=False)",
                "return os.stat(name, dir_fd=self.fd, follow_symlinks=True)",
            ),
            Edit(
                SAFEIO,
                "flags |= os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC",
                "flags |= os.O_NONBLOCK | os.O_CLOEXEC",
            ),
        ),
        (*TESTS, CLI),
    ),
    mutant(
        "a directory others can write is accepted",
        SAFEIO,
        "why = others_can_write(st)",
        "why = None",
        TESTS,
    ),
    mutant(
        "a link someone else could have planted is followed",
        SAFEIO,
        "return others_can_write(directory) is None or link.st_uid in (os.geteuid(), 0)",
        "return True",
        TESTS,
    ),
    mutant(
        "logout takes out only the last login's entry",
        LEDGER_PY,
        "for entry in reversed(record.entries):",
        "for entry in reversed(record.entries[-1:]):",
        TESTS,
    ),
    mutant(
        "logout follows a link planted in the file's path",
        LEDGER_PY,
        "if where.path != path.parent:",
        "if False:",
        TESTS,
    ),
    mutant(
        "the ledger keeps a replaced CodeArtifact token",
        "client/src/cabroker/entries.py",
        "if holds_credential(entry.kind, replaced, entry.user):",
        "if False:",
        TESTS,
    ),
]

"""Proof that the security tests guard their checks: remove each check, the tests must fail.

Each mutant edits one security check out of a scratch copy of the repository and runs the
tests that guard it; a mutant that survives (tests still green) is a check nothing protects.
Run: ``make mutants`` (a few minutes; not part of ``make test``, which checks only that each
mutant's text is found once, ``tests/test_mutants.py``).

The broker's mutants are listed here; each other area lists its own in ``tests/mutants_*.py``
(a module-level ``MUTANTS`` built with :func:`mutant`), gathered by :func:`all_mutants`.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = "tests/unit/broker/test_app.py"
SHARED = "tests/unit/broker/test_sharedcache.py"
REPLAY = "tests/unit/broker/test_replay.py"


@dataclass(frozen=True)
class Edit:
    file: str
    original: str
    replacement: str


@dataclass(frozen=True)
class Mutant:
    name: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]


def mutant(name: str, file: str, original: str, replacement: str, tests: tuple[str, ...]) -> Mutant:
    return Mutant(name, (Edit(file, original, replacement),), tests)


MUTANTS = [
    mutant(
        "rules may grant a repository the deployment does not serve",
        "functions/broker/rules.py",
        "        if rule.grant.repository not in allowed:",
        "        if False:",
        ("tests/unit/broker/test_acceptance.py",),
    ),
    mutant(
        "the broker loads rules without the acceptance check",
        "functions/broker/service.py",
        "source = RulesSource(loader, description, check=acceptable)",
        "source = RulesSource(loader, description, check=None)",
        ("tests/unit/broker/test_acceptance.py",),
    ),
    mutant(
        "accept any algorithm",
        "functions/broker/identity.py",
        "if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:",
        "if not isinstance(algorithm, str):",
        (APP,),
    ),
    mutant(
        "allow jwk/jku/x5u headers",
        "functions/broker/identity.py",
        "smuggled = sorted(FORBIDDEN_HEADERS & header.keys())",
        "smuggled: list[str] = []",
        (APP,),
    ),
    mutant(
        "skip audience check",
        "functions/broker/identity.py",
        '"verify_aud": True,',
        '"verify_aud": False,',
        (APP,),
    ),
    mutant(
        "skip expiry check",
        "functions/broker/identity.py",
        '"verify_exp": True,',
        '"verify_exp": False,',
        (APP,),
    ),
    mutant(
        "skip not-before check",
        "functions/broker/identity.py",
        '"verify_nbf": True,',
        '"verify_nbf": False,',
        (APP,),
    ),
    mutant(
        "exp not required",
        "functions/broker/identity.py",
        'REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]',
        'REQUIRED_CLAIMS = ["iss", "aud", "sub"]',
        (APP,),
    ),
    Mutant(
        "no token size limit (both layers)",
        (
            Edit("functions/broker/identity.py", "if len(token) > self._max_bytes:", "if False:"),
            Edit("functions/broker/web.py", "if len(value) > max_bytes + 16:", "if False:"),
        ),
        (APP, "tests/unit/broker/test_web.py"),
    ),
    mutant(
        "trust any issuer",
        "functions/broker/rules.py",
        "            if issuer.url == url:\n                return issuer",
        "            return issuer",
        (APP,),
    ),
    mutant(
        "any key for any algorithm",
        "functions/broker/identity.py",
        "if key.jwk.key_type != key_type or (curve is not None and key.curve != curve):",
        "if False:",
        ("tests/unit/broker/test_identity.py",),
    ),
    mutant(
        "unknown kid refreshes every time",
        "functions/broker/identity.py",
        "and now - state.last_forced_refresh >= self._min_refresh",
        "and True",
        (APP, "tests/unit/broker/test_identity.py"),
    ),
    mutant(
        "claims match as prefixes",
        "functions/broker/rules.py",
        "return value in self.exact or any(p.fullmatch(value) for p in self.patterns)",
        "return any(value.startswith(e) for e in self.exact) or any("
        "p.match(value) for p in self.patterns)",
        (APP, "tests/unit/broker/test_rules.py"),
    ),
    mutant(
        "claims compared after stripping",
        "functions/broker/rules.py",
        "return value in self.exact or any",
        "return value.strip() in self.exact or any",
        (APP, "tests/unit/broker/test_rules.py"),
    ),
    mutant(
        "case-insensitive claims",
        "functions/broker/rules.py",
        "return value in self.exact or any",
        "return value.lower() in {e.lower() for e in self.exact} or any",
        (APP, "tests/unit/broker/test_rules.py"),
    ),
    mutant(
        "non-string claims coerced",
        "functions/broker/rules.py",
        "if isinstance(value, str):\n            return self._matches_string(value)",
        "if not isinstance(value, list):\n            return self._matches_string(str(value))",
        ("tests/unit/broker/test_rules.py",),
    ),
    mutant(
        "rules without claims accepted",
        "functions/broker/rules.py",
        "if not isinstance(raw, dict) or not raw:",
        "if not isinstance(raw, dict):",
        ("tests/unit/broker/test_rules.py",),
    ),
    mutant(
        "requested packages not checked against the grant",
        "functions/broker/names.py",
        "return requested.startswith(granted[:-1])",
        "return True",
        (APP, "tests/unit/broker/test_names.py"),
    ),
    mutant(
        "duration cap not enforced",
        "functions/broker/grants.py",
        "    if duration > grant.max_duration:\n        return None",
        "",
        (APP,),
    ),
    mutant(
        "publish allowed on a read grant",
        "functions/broker/grants.py",
        '    if access == "publish" and grant.access != "publish":\n        return None',
        "",
        (APP,),
    ),
    mutant(
        "package patterns not validated",
        "functions/broker/names.py",
        "    if _NAME.fullmatch(pattern):\n        return None",
        "    return None",
        (APP, "tests/unit/broker/test_names.py"),
    ),
    mutant(
        "session policy size unchecked",
        "functions/broker/scope.py",
        "    if len(policy) > MAX_POLICY_CHARS:",
        "    if False:",
        ("tests/unit/broker/test_scope.py",),
    ),
    mutant(
        "token written to the audit log",
        "functions/broker/service.py",
        '"session": minted.session,',
        '"session": minted.session + minted.token,',
        ("tests/unit/broker/test_service.py",),
    ),
    mutant(
        "ID token written to the auth-failure log",
        "functions/broker/service.py",
        '"reason": exc.detail,',
        '"reason": exc.detail + token,',
        ("tests/unit/broker/test_service.py",),
    ),
    mutant(
        "content type not checked",
        "functions/broker/web.py",
        '    if media_type != "application/json":',
        "    if False:",
        (APP, "tests/unit/broker/test_web.py"),
    ),
    mutant(
        "an invalid rules update keeps the old rules",
        "functions/broker/rulesource.py",
        "self._digest, self._rules = digest, None",
        "self._digest = digest",
        ("tests/unit/broker/test_rulesource.py",),
    ),
    mutant(
        "loopback http JWKS for any issuer",
        "functions/broker/identity.py",
        "    return urlsplit(issuer_url).hostname in LOOPBACK_HOSTS",
        "    return True",
        ("tests/unit/broker/test_identity.py",),
    ),
    mutant(
        "a late key prefetch restores keys the issuer has removed",
        "functions/broker/identity.py",
        "if state.keyset is None or state.keyset.fetched_at < started:",
        "if True:",
        ("tests/unit/broker/test_prefetch.py",),
    ),
    mutant(
        "non-ASCII tokens parsed",
        "functions/broker/identity.py",
        "if not token.isascii() or token.count",
        "if token.count",
        (APP,),
    ),
    mutant(
        "a shared token's ciphertext not bound to its item",
        "functions/broker/sharedcache.py",
        '"item": f"token#{key}"}',
        '"item": "token"}',
        (SHARED,),
    ),
    Mutant(
        "an expired shared token handed out",
        (
            Edit(
                "functions/broker/sharedcache.py",
                'if float(item["expires_at"]["N"]) <= self._clock():',
                "if False:",
            ),
            Edit(
                "functions/broker/sharedcache.py",
                "if minted.expires_at.timestamp() <= self._clock():",
                "if False:",
            ),
        ),
        (SHARED,),
    ),
    mutant(
        "the replay guard accepts a used jti",
        "functions/broker/replay.py",
        'ConditionExpression="attribute_not_exists(pk) OR #mark = :mine",',
        'ConditionExpression="attribute_not_exists(pk) OR #mark <> :mine",',
        (REPLAY,),
    ),
    mutant(
        "the replay guard accepts ID tokens without jti",
        "functions/broker/replay.py",
        "if jti is None:\n            raise InvalidToken(",
        "if False:\n            raise InvalidToken(",
        (REPLAY,),
    ),
]


def all_mutants(area: str | None = None) -> list[Mutant]:
    """The mutants above and those of every ``tests/mutants_*.py`` (or only of
    ``tests/mutants_<area>.py``; ``broker`` for those above), names unique."""
    if str(ROOT) not in sys.path:  # run as a script: the area modules import tests.mutants
        sys.path.insert(0, str(ROOT))
    found = list(MUTANTS) if area in (None, "broker") else []
    for path in sorted(Path(__file__).parent.glob("mutants_*.py")):
        if area is not None and path.stem != f"mutants_{area}":
            continue
        spec = importlib.util.spec_from_file_location(f"_mutants_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise SystemExit(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found.extend(module.MUTANTS)
    names = [candidate.name for candidate in found]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise SystemExit(f"mutant names used twice: {', '.join(duplicated)}")
    return found


def run(candidate: Mutant, scratch: Path) -> bool:
    """Apply one mutant to the scratch copy; True when the guarding tests caught it."""
    for edit in candidate.edits:  # edits to one file apply one after the other
        current = (scratch / edit.file).read_text()
        if current.count(edit.original) != 1:
            raise SystemExit(f"{candidate.name!r}: its text is not found once in {edit.file}")
        (scratch / edit.file).write_text(current.replace(edit.original, edit.replacement))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", *candidate.tests],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        for edit in candidate.edits:
            shutil.copy(ROOT / edit.file, scratch / edit.file)
    return done.returncode != 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="remove each security check; the tests must fail")
    parser.add_argument("-k", metavar="TEXT", help="only the mutants whose name contains TEXT")
    parser.add_argument("--area", metavar="NAME", help="only tests/mutants_NAME.py's mutants")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "repo"
        shutil.copytree(
            ROOT,
            scratch,
            ignore=shutil.ignore_patterns(".venv*", ".git", ".aws-sam", "*_cache", "__pycache__"),
        )
        survivors = []
        mutants = [
            candidate
            for candidate in all_mutants(args.area)
            if args.k is None or args.k in candidate.name
        ]
        for candidate in mutants:
            caught = run(candidate, scratch)
            print(f"{'caught  ' if caught else 'SURVIVED'}  {candidate.name}", flush=True)
            if not caught:
                survivors.append(candidate.name)
    print(f"{len(mutants) - len(survivors)} caught, {len(survivors)} survived")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())

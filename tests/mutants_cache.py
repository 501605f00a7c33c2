"""Mutants of the client's token cache, keyring store and keyring backend: a cached token is
bound to its identity, served only for its exact endpoint, and never written where it does not
fit (``make mutants``, see tests/mutants.py)."""

from __future__ import annotations

from tests.mutants import Mutant, mutant

CACHE = "tests/client/test_cache.py"
API = "tests/client/test_api.py"
CLI = "tests/client/test_cli.py"
BACKEND = "tests/client/test_keyring_backend.py"
LOGINS = "tests/client/test_logins.py"
IDENTITY = "tests/client/test_identity.py"

MUTANTS: list[Mutant] = [
    mutant(
        "cache keys ignore the identity",
        "client/src/cabroker/cache.py",
        '    identity: str = ""\n',
        '    identity: str = field(default="", compare=False)\n',
        (CACHE, CLI, API),
    ),
    mutant(
        "the identity binding ignores all claims but the issuer",
        "client/src/cabroker/identity.py",
        "if name not in PER_TOKEN_CLAIMS}",
        'if name == "iss"}',
        (CLI, API),
    ),
    mutant(
        "a remembered grant serves any identity",
        "client/src/cabroker/api.py",
        "if current is not None and key.identity == current.binding:",
        "if True:",
        (API, BACKEND),
    ),
    mutant(
        "an ID token file is not read again for its identity",
        "client/src/cabroker/api.py",
        "if found is not None and found.binding == key.identity:",
        "if True:",
        (API,),
    ),
    mutant(
        "an interactive login's grant serves another identity",
        "client/src/cabroker/api.py",
        'elif current is None and kind == "device" and issuer in (None, where):',
        'elif kind == "device":',
        (API,),
    ),
    mutant(
        "the keyring backend answers URLs outside every grant",
        "client/src/cabroker/keyring_backend.py",
        "if url is None or not _cache.serves(self._scopes(), url):",
        "if url is None:",
        (BACKEND,),
    ),
    mutant(
        "the keyring backend hands out a grant for another endpoint",
        "client/src/cabroker/keyring_backend.py",
        "if not _cache.serves(_cache.grant_scopes(grant), url):",
        "if False:",
        (BACKEND,),
    ),
    mutant(
        "the keyring backend answers cleartext http",
        "client/src/cabroker/keyring_backend.py",
        "return url if unsafe_url(url) is None else None",
        "return url",
        (BACKEND,),
    ),
    mutant(
        "a grant's scope ignores the port",
        "client/src/cabroker/cache.py",
        "return f\"{parts.scheme}://{host}:{port}{path.removesuffix('simple/')}\"",
        "return f\"{parts.scheme}://{host}{path.removesuffix('simple/')}\"",
        (CACHE, BACKEND),
    ),
    mutant(
        "a grant's scope ignores the repository path",
        "client/src/cabroker/cache.py",
        'path = parts.path[: parts.path.rfind("/") + 1] or "/"',
        'path = "/"',
        (CACHE, BACKEND),
    ),
    mutant(
        "a grant's scope lets a dot segment climb out",
        "client/src/cabroker/cache.py",
        "return None  # a dot segment could climb out of the repository's path",
        "pass",
        (CACHE, BACKEND),
    ),
    mutant(
        "a token too big for the keyring is written to it",
        "client/src/cabroker/cache.py",
        "if not (self.fits(text) and self.fits(index)) or not self._set(key, text):",
        "if not self._set(key, text):",
        (CACHE,),
    ),
    mutant(
        "a token the keyring refused is lost",
        "client/src/cabroker/cache.py",
        "            return False\n        return True",
        "            return True\n        return True",
        (CACHE,),
    ),
    mutant(
        "the Windows keyring's limit is not known",
        "client/src/cabroker/cache.py",
        'return WINDOWS_BLOB_LIMIT if module.startswith("keyring.backends.Windows") else None',
        "return None",
        (CACHE,),
    ),
    mutant(
        "a kept login serves any broker",
        "client/src/cabroker/logins.py",
        'and _broker_of(key) == broker_url.rstrip("/")',
        "and True",
        (LOGINS,),
    ),
    mutant(
        "an expired kept login is returned",
        "client/src/cabroker/logins.py",
        'and float(entry["expires"]) > now',
        "and True",
        (LOGINS, IDENTITY),
    ),
    mutant(
        "a kept login serves a CI job whose own identity failed",
        "client/src/cabroker/identity.py",
        "            raise IdentityError(ambient_problem)\n        return self.kept_login()",
        "            pass\n        return self.kept_login()",
        (IDENTITY,),
    ),
]

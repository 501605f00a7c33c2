"""The client's mutants: each removes one check of which token the client asks a CI for, which
it sends, and where it may send one (``make mutants`` applies each to a scratch copy and runs
the tests named; they must fail)."""

from __future__ import annotations

from tests.mutants import Mutant, mutant

IDENTITY = "tests/client/test_identity.py"
CONFIG = "tests/client/test_config.py"
CLIENT_CONFIG = "client/src/cabroker/config.py"
CLIENT_IDENTITY = "client/src/cabroker/identity.py"
CLIENT_BROKER = "client/src/cabroker/broker.py"

MUTANTS: list[Mutant] = [
    mutant(
        "client: any ID-token audience accepted",
        CLIENT_CONFIG,
        "        return bool(values) and all(\n"
        "            isinstance(value, str) and value in self.accepted for value in values\n"
        "        )",
        "        return True",
        (IDENTITY, CONFIG),
    ),
    mutant(
        "client: a list audience accepted when it holds one of ours",
        CLIENT_CONFIG,
        "return bool(values) and all(",
        "return bool(values) and any(",
        (IDENTITY, CONFIG),
    ),
    mutant(
        "client: a CI asked for the audience /v1/config names",
        CLIENT_IDENTITY,
        "        audience = self.audiences.request\n        try:",
        "        audience = next(\n"
        "            (i.audience for i in self.config().issuers), self.audiences.request\n"
        "        )\n"
        "        try:",
        (IDENTITY,),
    ),
    mutant(
        "client: saved audiences used for any broker",
        CLIENT_CONFIG,
        "if same_broker and isinstance(saved, list):",
        "if isinstance(saved, list):",
        (IDENTITY, CONFIG),
    ),
    mutant(
        "client: a device issuer for any audience",
        CLIENT_IDENTITY,
        "if chosen.audience not in self.audiences.accepted:",
        "if False:",
        (IDENTITY,),
    ),
    mutant(
        "client: a device issuer over cleartext http",
        CLIENT_IDENTITY,
        "why = unsafe_url(chosen.url)",
        "why = None",
        (IDENTITY,),
    ),
    mutant(
        "client: a device token from another issuer",
        CLIENT_IDENTITY,
        "if found.iss != chosen.url:",
        "if False:",
        (IDENTITY,),
    ),
    mutant(
        "client: http to any host",
        CLIENT_CONFIG,
        'if parts.scheme == "http" and not is_loopback(parts.hostname):',
        "if False:",
        (CONFIG,),
    ),
    mutant(
        "client: any host starting with localhost is loopback",
        CLIENT_CONFIG,
        'if host.lower() == "localhost":',
        'if host.lower().startswith("localhost"):',
        (CONFIG,),
    ),
    mutant(
        "client: user and password in URLs",
        CLIENT_CONFIG,
        'if parts.username is not None or parts.password is not None or "@" in parts.netloc:',
        "if False:",
        (CONFIG,),
    ),
    mutant(
        "client: control characters in URLs",
        CLIENT_CONFIG,
        "if not url.isprintable() or any(ch.isspace() for ch in url):",
        "if False:",
        (CONFIG,),
    ),
    mutant(
        "client: a broker URL with a query or fragment",
        CLIENT_CONFIG,
        '        if parts.query or parts.fragment or "?" in url or "#" in url:',
        "        if False:",
        (CONFIG,),
    ),
    mutant(
        "client: BrokerClient takes any URL",
        CLIENT_BROKER,
        'self.url = check_broker_url(url, "the caller")',
        'self.url = url.rstrip("/")',
        (CONFIG,),
    ),
    mutant(
        "client: the grant's URLs not checked",
        CLIENT_BROKER,
        "    why = unsafe_url(value)\n    if why is not None:",
        "    why = None\n    if why is not None:",
        (CONFIG,),
    ),
    mutant(
        "client: the grant's token not checked",
        CLIENT_BROKER,
        'token=Secret(_valid(body, "token", _TOKEN)),',
        'token=Secret(str(body["token"])),',
        (CONFIG,),
    ),
    mutant(
        "client: a bad grant's value in the error",
        CLIENT_BROKER,
        'raise ValueError(f"the broker\'s answer has an unusable {what or name!r}")',
        'raise ValueError(f"the broker\'s answer has an unusable {what or name!r}: {value!r}")',
        (CONFIG,),
    ),
    mutant(
        "client: /v1/config's issuer names are not checked",
        "client/src/cabroker/broker.py",
        '_valid(i, "name", _ISSUER_NAME, what="issuers.name"),',
        'str(i["name"]),',
        (CONFIG,),
    ),
]

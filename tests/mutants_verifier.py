"""The ID-token verifier's shape checks (tests/unit/broker/test_token_shape.py guards them):
signing keys of the right kind and strength, ``exp``/``nbf``/``iat`` as JSON numbers, ``typ``
and ``azp``.  Each mutant removes one check; the guarding tests must then fail."""

from __future__ import annotations

from tests.mutants import Mutant, mutant

TESTS = ("tests/unit/broker/test_token_shape.py",)
IDENTITY = "functions/broker/identity.py"
SHAPE = "functions/broker/tokenshape.py"
DATES = 'NUMERIC_DATES = ("exp", "nbf", "iat")'

MUTANTS: list[Mutant] = [
    # 9: signing keys
    mutant(
        "accept short RSA keys",
        IDENTITY,
        "if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:",
        "if False:",
        TESTS,
    ),
    mutant(
        "accept JWKs that publish their private key",
        IDENTITY,
        "if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):",
        "if False:",
        TESTS,
    ),
    mutant(
        "use a key refused at load anyway",
        IDENTITY,
        "if key.weakness is not None:",
        "if False:",
        TESTS,
    ),
    mutant(
        "EC keys on any curve for any ES algorithm",
        IDENTITY,
        "(curve is not None and key.curve != curve)",
        "False",
        TESTS,
    ),
    # 10: NumericDates
    mutant("exp may be a string or a bool", SHAPE, DATES, 'NUMERIC_DATES = ("nbf", "iat")', TESTS),
    mutant("nbf may be a string or a bool", SHAPE, DATES, 'NUMERIC_DATES = ("exp", "iat")', TESTS),
    mutant("iat may be a string or a bool", SHAPE, DATES, 'NUMERIC_DATES = ("exp", "nbf")', TESTS),
    mutant(
        "booleans pass as NumericDates",
        SHAPE,
        "if isinstance(value, bool) or not isinstance(value, int | float):",
        "if not isinstance(value, int | float):",
        TESTS,
    ),
    mutant(
        "NaN, infinite and huge NumericDates accepted",
        SHAPE,
        "if not 0 <= value <= MAX_NUMERIC_DATE:",
        "if False:",
        TESTS,
    ),
    # 11: typ and azp
    mutant(
        "access tokens accepted (typ unchecked)",
        SHAPE,
        "if not isinstance(typ, str) or typ.lower() not in ID_TOKEN_TYPES:",
        "if False:",
        TESTS,
    ),
    mutant(
        "typ compared case-sensitively",
        SHAPE,
        "typ.lower() not in ID_TOKEN_TYPES",
        "typ not in ID_TOKEN_TYPES",
        TESTS,
    ),
    mutant(
        "any azp accepted with several audiences",
        SHAPE,
        "if not isinstance(party, str) or party != issuer.audience:",
        "if False:",
        TESTS,
    ),
    mutant(
        "several audiences accepted without azp",
        SHAPE,
        'if "azp" not in claims:',
        'if "azp" not in claims:\n        return\n    if False:',
        TESTS,
    ),
    mutant(
        "azp demanded of single-audience tokens too",
        SHAPE,
        "if len(audiences_of(claims)) <= 1:",
        "if False:",
        TESTS,
    ),
]

"""Malformed ID tokens are refused through the Lambda handler: weak or misfit signing keys even
from the trusted issuer's own JWKS, ``exp``/``nbf``/``iat`` that are not JSON numbers, a ``typ``
that is not JWT, and an ``azp`` that is not this broker when there are several audiences.

Every token here is really signed (keys generated in the test), served through the local
issuer's JWKS and sent as an HTTP API v2 event. A refusal is a 401 ``invalid-token`` problem
with no AWS call; each table has success cases beside its refusals, so no check can pass by
refusing everything. Tokens are signed here byte for byte (PyJWT's ``encode`` would warn about
short keys and refuse misfit curves), and none is ever printed: they are :class:`Secret`.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import GITHUB_CLAIMS, Answer, StsRecorder
from tests.support.codeartifact import FakeCodeArtifact
from tests.support.oidc import LocalIssuer, Secret, SigningKey, b64url, private_key, public_jwk

Call = Callable[..., Answer]
ABSENT = "<absent>"  # a header or claim value that means: leave it out
MAX_DATE = 253_402_300_799  # 9999-12-31T23:59:59Z


# --------------------------------------------------------------------------- keys and signing


@functools.cache
def key(name: str) -> SigningKey:
    """Test keys by kind, made once per session (RSA 1024 and the curves are quick)."""
    if name == "rsa2048":
        return private_key("shape-rsa2048")
    if name == "rsa1024":
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    curves: dict[str, ec.EllipticCurve] = {
        "P-256": ec.SECP256R1(),
        "P-384": ec.SECP384R1(),
        "P-521": ec.SECP521R1(),
        "secp256k1": ec.SECP256K1(),
    }
    return ec.generate_private_key(curves[name])


def private_jwk(signing_key: SigningKey, kid: str) -> dict[str, Any]:
    """A JWK that gives away its private part, as a careless issuer might publish it."""
    algorithm = "RS256" if isinstance(signing_key, rsa.RSAPrivateKey) else "ES256"
    jwk: dict[str, Any] = json.loads(jwt.get_algorithm_by_name(algorithm).to_jwk(signing_key))
    jwk.update({"kid": kid, "use": "sig"})
    return jwk


def sign(
    header: Mapping[str, Any], claims: Mapping[str, Any], signing_key: SigningKey, algorithm: str
) -> Secret:
    """A compact JWS over exactly these header and claims (``ABSENT`` values left out), signed
    with ``algorithm`` whatever the key's size or curve: no length check, no curve check, no
    warning.  A key of the other family (an EC key for RS256) signs with its own family's
    algorithm: the header still says ``algorithm``, and the broker must refuse it unverified."""
    header = {k: v for k, v in header.items() if v != ABSENT}
    claims = {k: v for k, v in claims.items() if v != ABSENT}
    text = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    is_rsa = isinstance(signing_key, rsa.RSAPrivateKey)
    if algorithm.startswith(("RS", "PS")) != is_rsa:
        algorithm = "RS256" if is_rsa else "ES256"
    signature = jwt.get_algorithm_by_name(algorithm).sign(text.encode(), signing_key)
    return Secret(f"{text}.{b64url(signature)}")


def github_token(
    issuer: LocalIssuer,
    *,
    header: Mapping[str, Any] | None = None,
    claims: Mapping[str, Any] | None = None,
    signing_key: SigningKey | None = None,
    kid: str = "gh-1",
    algorithm: str = "RS256",
) -> Secret:
    """A token of the github issuer that its release rule grants, with these changes."""
    base_header = {"alg": algorithm, "typ": "JWT", "kid": kid, **(header or {})}
    base_claims = {**issuer.claims(**GITHUB_CLAIMS), **(claims or {})}
    return sign(base_header, base_claims, signing_key or issuer.keys[kid], algorithm)


# --------------------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    """What the handler answered, and what the broker printed or logged meanwhile."""

    answer: Answer
    output: str
    records: list[logging.LogRecord]
    warned: list[warnings.WarningMessage]


@pytest.fixture
def send(
    call: Call, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Callable[..., Outcome]:
    caplog.set_level(logging.DEBUG)

    def _send(token: str, body: dict[str, Any] | None = None) -> Outcome:
        capfd.readouterr()
        caplog.clear()
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            answer = call("POST", "/v1/token", token=token, body=body if body is not None else {})
        captured = capfd.readouterr()
        output = captured.out + captured.err + caplog.text
        output += "".join(json.dumps(r.__dict__, default=str) for r in caplog.records)
        outcome = Outcome(answer, output, list(caplog.records), list(warned))
        # Never the ID token, nor any of its segments, in the logs or the answer.
        for part in token.split("."):
            assert part[:32] not in output
            assert part[:32] not in json.dumps(answer.raw)
        return outcome

    return _send


def assert_granted(outcome: Outcome, sts_calls: StsRecorder) -> None:
    assert outcome.answer.status == 200, outcome.answer.body
    assert len(sts_calls.calls) == 1  # minted: the check under test really let it through


def assert_refused(
    outcome: Outcome, reason: str, sts_calls: StsRecorder, codeartifact: FakeCodeArtifact
) -> None:
    answer = outcome.answer
    assert answer.status == 401, answer.body
    assert answer.problem_type == "invalid-token"
    assert answer.body["type"] == "urn:cabroker:problem:invalid-token"
    assert reason in answer.body["detail"], answer.body["detail"]
    assert answer.headers["WWW-Authenticate"].startswith("Bearer ")
    assert sts_calls.calls == []
    assert codeartifact.calls == []


def assert_no_key_length_warning(outcome: Outcome) -> None:
    assert not [w for w in outcome.warned if issubclass(w.category, jwt.InsecureKeyLengthWarning)]
    assert "InsecureKeyLength" not in outcome.output
    assert "recommended size" not in outcome.output


# =========================================================================== 9: signing keys

NOT_AMONG = "is not among"
DOES_NOT_FIT = "does not fit its signing key"
SHORT = "RSA key of 1024 bits; at least 2048 are required"
PRIVATE = "gives away the private key"


@dataclass(frozen=True)
class KeyCase:
    published: tuple[tuple[str, str, bool], ...]  # (kid, key name, private part too)
    signer: str  # the key name that signs
    kid: str | None
    algorithm: str
    refused: str | None  # a fragment of the detail; None: granted


SOUND = ("gh-1", "rsa2048", False)
KEY_CASES: dict[str, KeyCase] = {
    "RSA 2048 from the trusted JWKS ok": KeyCase((SOUND,), "rsa2048", "gh-1", "RS256", None),
    "RSA 2048 as PS512 ok": KeyCase((SOUND,), "rsa2048", "gh-1", "PS512", None),
    "RSA 1024 from the trusted JWKS": KeyCase(
        (SOUND, ("weak", "rsa1024", False)), "rsa1024", "weak", "RS256", SHORT
    ),
    "RSA 1024 as PS256": KeyCase(
        (SOUND, ("weak", "rsa1024", False)), "rsa1024", "weak", "PS256", SHORT
    ),
    "RSA 1024 as RS512": KeyCase(
        (SOUND, ("weak", "rsa1024", False)), "rsa1024", "weak", "RS512", SHORT
    ),
    "RSA 1024 the only key in the JWKS (401, not 503)": KeyCase(
        (("weak", "rsa1024", False),), "rsa1024", "weak", "RS256", SHORT
    ),
    "RSA 1024 without kid, the only key": KeyCase(
        (("weak", "rsa1024", False),), "rsa1024", None, "RS256", SHORT
    ),
    "RSA 2048 without kid, the only key ok": KeyCase((SOUND,), "rsa2048", None, "RS256", None),
    "private RSA key published in the JWKS": KeyCase(
        (("leaked", "rsa2048", True),), "rsa2048", "leaked", "RS256", PRIVATE
    ),
    "private P-256 key published in the JWKS": KeyCase(
        (SOUND, ("leaked", "P-256", True)), "P-256", "leaked", "ES256", PRIVATE
    ),
    "ES256 with a secp256k1 key": KeyCase(
        (SOUND, ("k1", "secp256k1", False)), "secp256k1", "k1", "ES256", DOES_NOT_FIT
    ),
    "RS256 with an EC key": KeyCase(
        (SOUND, ("ec", "P-256", False)), "P-256", "ec", "RS256", DOES_NOT_FIT
    ),
    "ES256 with an RSA key": KeyCase((SOUND,), "rsa2048", "gh-1", "ES256", DOES_NOT_FIT),
    "unknown kid": KeyCase((SOUND,), "rsa2048", "gh-9", "RS256", NOT_AMONG),
}
CURVE_OF = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
for _algorithm, _own in CURVE_OF.items():  # every ES algorithm with every curve it may meet
    for _curve in CURVE_OF.values():
        _ok = _curve == _own
        KEY_CASES[f"{_algorithm} with a {_curve} key{' ok' if _ok else ''}"] = KeyCase(
            (SOUND, ("ec", _curve, False)), _curve, "ec", _algorithm, None if _ok else DOES_NOT_FIT
        )


@pytest.mark.parametrize("case", list(KEY_CASES.values()), ids=list(KEY_CASES))
def test_each_algorithm_verifies_only_with_a_sound_key_of_its_own_kind(
    send: Callable[..., Outcome],
    github: LocalIssuer,
    monkeypatch: pytest.MonkeyPatch,
    sts_calls: StsRecorder,
    codeartifact: FakeCodeArtifact,
    case: KeyCase,
) -> None:
    jwks = [
        private_jwk(key(name), kid) if private else public_jwk(key(name), kid)
        for kid, name, private in case.published
    ]
    monkeypatch.setattr(github, "jwks", lambda: {"keys": jwks})
    token = github_token(
        github,
        header={"kid": ABSENT if case.kid is None else case.kid},
        signing_key=key(case.signer),
        algorithm=case.algorithm,
    )
    outcome = send(token)
    if case.refused is None:
        assert_granted(outcome, sts_calls)
    else:
        assert_refused(outcome, case.refused, sts_calls, codeartifact)
    assert_no_key_length_warning(outcome)


def test_a_refused_key_is_logged_once_per_load_without_its_material(
    send: Callable[..., Outcome],
    github: LocalIssuer,
    monkeypatch: pytest.MonkeyPatch,
    sts_calls: StsRecorder,
) -> None:
    weak = public_jwk(key("rsa1024"), "weak")
    monkeypatch.setattr(
        github, "jwks", lambda: {"keys": [public_jwk(key("rsa2048"), "gh-1"), weak]}
    )
    outcome = send(github_token(github, signing_key=key("rsa2048")))
    assert_granted(outcome, sts_calls)  # the issuer's sound key still serves
    (logged,) = [r for r in outcome.records if r.getMessage() == "issuer key refused"]
    assert logged.__dict__["issuer"] == "github"
    assert logged.__dict__["kid"] == "weak"
    assert "1024 bits" in logged.__dict__["reason"]
    assert weak["n"][:32] not in outcome.output
    assert_no_key_length_warning(outcome)


# =========================================================================== 10: NumericDates

NOT_A_NUMBER = "claim must be a JSON number"
OUT_OF_RANGE = "claim is out of range"
DateClaims = Callable[[int], dict[str, Any]]
DATE_CASES: list[tuple[str, DateClaims, str | None]] = [
    ("exp, nbf, iat integers ok", lambda now: {}, None),
    ("exp as float ok", lambda now: {"exp": now + 300.5}, None),
    ("iat and nbf as floats ok", lambda now: {"iat": now - 0.25, "nbf": now - 0.5}, None),
    ("nbf and iat absent ok", lambda now: {"nbf": ABSENT, "iat": ABSENT}, None),
    ("nbf and iat 0 ok", lambda now: {"nbf": 0, "iat": 0}, None),
    ("exp at 9999-12-31T23:59:59Z ok", lambda now: {"exp": MAX_DATE}, None),
    ("exp as numeric string", lambda now: {"exp": str(now + 300)}, "exp " + NOT_A_NUMBER),
    ("nbf as numeric string", lambda now: {"nbf": str(now)}, "nbf " + NOT_A_NUMBER),
    ("iat as numeric string", lambda now: {"iat": str(now)}, "iat " + NOT_A_NUMBER),
    ("exp as float string", lambda now: {"exp": f"{now + 300}.0"}, "exp " + NOT_A_NUMBER),
    ("exp true", lambda now: {"exp": True}, "exp " + NOT_A_NUMBER),
    ("nbf true", lambda now: {"nbf": True}, "nbf " + NOT_A_NUMBER),
    ("iat true", lambda now: {"iat": True}, "iat " + NOT_A_NUMBER),
    ("nbf false", lambda now: {"nbf": False}, "nbf " + NOT_A_NUMBER),
    ("iat false", lambda now: {"iat": False}, "iat " + NOT_A_NUMBER),
    ("exp null", lambda now: {"exp": None}, "exp " + NOT_A_NUMBER),
    ("nbf null", lambda now: {"nbf": None}, "nbf " + NOT_A_NUMBER),
    ("exp as a list", lambda now: {"exp": [now + 300]}, "exp " + NOT_A_NUMBER),
    ("iat as an object", lambda now: {"iat": {"n": now}}, "iat " + NOT_A_NUMBER),
    ("exp NaN", lambda now: {"exp": float("nan")}, "exp " + OUT_OF_RANGE),
    ("iat NaN", lambda now: {"iat": float("nan")}, "iat " + OUT_OF_RANGE),
    ("exp Infinity", lambda now: {"exp": float("inf")}, "exp " + OUT_OF_RANGE),
    ("nbf -Infinity", lambda now: {"nbf": float("-inf")}, "nbf " + OUT_OF_RANGE),
    ("exp 10**30", lambda now: {"exp": 10**30}, "exp " + OUT_OF_RANGE),
    ("exp 1e300", lambda now: {"exp": 1e300}, "exp " + OUT_OF_RANGE),
    ("exp one second past 9999", lambda now: {"exp": MAX_DATE + 1}, "exp " + OUT_OF_RANGE),
    ("nbf negative", lambda now: {"nbf": -1}, "nbf " + OUT_OF_RANGE),
    ("iat negative", lambda now: {"iat": -1}, "iat " + OUT_OF_RANGE),
]


@pytest.mark.parametrize(
    ("claims", "refused"),
    [pytest.param(claims, refused, id=name) for name, claims, refused in DATE_CASES],
)
def test_exp_nbf_and_iat_must_be_json_numbers_in_range(
    send: Callable[..., Outcome],
    github: LocalIssuer,
    sts_calls: StsRecorder,
    codeartifact: FakeCodeArtifact,
    claims: DateClaims,
    refused: str | None,
) -> None:
    outcome = send(github_token(github, claims=claims(int(time.time()))))
    if refused is None:
        assert_granted(outcome, sts_calls)
    else:
        assert_refused(outcome, refused, sts_calls, codeartifact)


# =========================================================================== 11: typ

NOT_AN_ID_TOKEN = "typ header says it is not an ID token"
TYP_CASES: list[tuple[str, Any, str | None]] = [
    ("typ JWT ok", "JWT", None),
    ("typ missing ok", ABSENT, None),
    ("typ jwt lower-case ok", "jwt", None),
    ("typ application/jwt ok", "application/jwt", None),
    ("typ Application/JWT ok", "Application/JWT", None),
    ("typ at+jwt", "at+jwt", NOT_AN_ID_TOKEN),
    ("typ AT+JWT", "AT+JWT", NOT_AN_ID_TOKEN),
    ("typ application/at+jwt", "application/at+jwt", NOT_AN_ID_TOKEN),
    ("typ logout+jwt", "logout+jwt", NOT_AN_ID_TOKEN),
    ("typ secevent+jwt", "secevent+jwt", NOT_AN_ID_TOKEN),
    ("typ JOSE", "JOSE", NOT_AN_ID_TOKEN),
    ("typ JWT with a trailing space", "JWT ", NOT_AN_ID_TOKEN),
    ("typ application/jwt with a parameter", "application/jwt; charset=utf-8", NOT_AN_ID_TOKEN),
    ("typ empty", "", NOT_AN_ID_TOKEN),
    ("typ null", None, NOT_AN_ID_TOKEN),
    ("typ a number", 1, NOT_AN_ID_TOKEN),
    ("typ a list", ["JWT"], NOT_AN_ID_TOKEN),
]


@pytest.mark.parametrize(
    ("typ", "refused"), [pytest.param(typ, refused, id=name) for name, typ, refused in TYP_CASES]
)
def test_a_typ_other_than_jwt_is_not_an_id_token(
    send: Callable[..., Outcome],
    github: LocalIssuer,
    sts_calls: StsRecorder,
    codeartifact: FakeCodeArtifact,
    typ: Any,
    refused: str | None,
) -> None:
    outcome = send(github_token(github, header={"typ": typ}))
    if refused is None:
        assert_granted(outcome, sts_calls)
    else:
        assert_refused(outcome, refused, sts_calls, codeartifact)


# =========================================================================== 11: azp

GITHUB_AUD = "codeartifact-broker"  # tests/conftest.py RULES: github's audience
CORP_AUD, CORP_CLIENT = "cabroker", "cabroker-cli"  # corp's audience and client_id
NO_AZP = "several audiences but no azp"
WRONG_AZP = "its azp is not this broker"
AZP_CASES: list[tuple[str, str, dict[str, Any], str | None]] = [
    ("one audience, no azp ok", "github", {}, None),
    ("one audience, azp of another party ok", "github", {"azp": "1234567890"}, None),
    ("aud list of one, azp of another party ok", "github", {"aud": [GITHUB_AUD], "azp": "x"}, None),
    ("the same audience twice, no azp ok", "github", {"aud": [GITHUB_AUD, GITHUB_AUD]}, None),
    (
        "two audiences, azp is the audience ok",
        "github",
        {"aud": ["other", GITHUB_AUD], "azp": GITHUB_AUD},
        None,
    ),
    (
        "azp wrong with two audiences",
        "github",
        {"aud": [GITHUB_AUD, "other"], "azp": "other"},
        WRONG_AZP,
    ),
    ("two audiences, no azp", "github", {"aud": [GITHUB_AUD, "other"]}, NO_AZP),
    ("two audiences, azp null", "github", {"aud": [GITHUB_AUD, "x"], "azp": None}, WRONG_AZP),
    (
        "two audiences, azp a list holding the audience",
        "github",
        {"aud": [GITHUB_AUD, "x"], "azp": [GITHUB_AUD]},
        WRONG_AZP,
    ),
    (
        "two audiences, azp the audience in upper case",
        "github",
        {"aud": [GITHUB_AUD, "x"], "azp": GITHUB_AUD.upper()},
        WRONG_AZP,
    ),
    (
        "two audiences at corp, azp is corp's audience ok",
        "corp",
        {"aud": [CORP_CLIENT, CORP_AUD], "azp": CORP_AUD},
        None,
    ),
    (
        "two audiences at corp, azp is corp's client_id, not its audience",
        "corp",
        {"aud": [CORP_CLIENT, CORP_AUD], "azp": CORP_CLIENT},
        WRONG_AZP,
    ),
    (
        "two audiences, azp is another issuer's audience",
        "corp",
        {"aud": [CORP_AUD, GITHUB_AUD], "azp": GITHUB_AUD},
        WRONG_AZP,
    ),
    (
        "two audiences, azp is the other audience",
        "github",
        {"aud": [GITHUB_AUD, CORP_AUD], "azp": CORP_AUD},
        WRONG_AZP,
    ),
]


@pytest.mark.parametrize(
    ("issuer", "claims", "refused"),
    [pytest.param(issuer, claims, refused, id=name) for name, issuer, claims, refused in AZP_CASES],
)
def test_with_several_audiences_azp_must_name_this_broker(
    send: Callable[..., Outcome],
    github: LocalIssuer,
    corp: LocalIssuer,
    sts_calls: StsRecorder,
    codeartifact: FakeCodeArtifact,
    issuer: str,
    claims: dict[str, Any],
    refused: str | None,
) -> None:
    if issuer == "github":
        outcome = send(github_token(github, claims=claims))
    else:
        token = corp.mint(sub="alice@example.com", groups=["engineering"], **claims)
        outcome = send(token, {"access": "read"})
    if refused is None:
        assert_granted(outcome, sts_calls)
    else:
        assert_refused(outcome, refused, sts_calls, codeartifact)

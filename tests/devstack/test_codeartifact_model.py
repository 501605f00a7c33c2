"""devstack.codeartifact.model: package groups, upstream listings, external fetches, publishing,
tokens and errors, on the in-memory state (no HTTP)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from devstack.codeartifact import model
from devstack.codeartifact.model import (
    Asset,
    CodeArtifact,
    CodeArtifactError,
    Domain,
    ExternalFile,
    ExternalProject,
    Repository,
    conflict,
    invalid,
    not_found,
)
from tests.devstack.conftest import ACCOUNT, READER, REGION
from tests.support.oidc import Secret

NOW_SLACK = timedelta(seconds=5)


def asset(filename: str, content: bytes, requires_python: str | None = None) -> Asset:
    return Asset(
        filename, content, hashlib.sha256(content).hexdigest(), requires_python, model.now()
    )


def wheel(name: str, version: str) -> str:
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


@dataclass
class FakePublicIndex:
    """The external connection: projects by normalized name; records what was asked."""

    projects: dict[str, dict[str, bytes]] = field(default_factory=dict)  # name → {file: bytes}
    asked: list[str] = field(default_factory=list)
    downloads: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, version: str, content: bytes) -> str:
        filename = wheel(name, version)
        self.projects.setdefault(name, {})[filename] = content
        return filename

    def external(self, name: str) -> ExternalProject | None:
        self.asked.append(name)
        files = self.projects.get(name)
        if files is None:
            return None
        project: ExternalProject = {}
        for filename, content in files.items():
            version = filename.split("-")[1]
            project.setdefault(version, []).append(
                ExternalFile(
                    filename,
                    f"http://public.invalid/files/{filename}",
                    hashlib.sha256(content).hexdigest(),
                    ">=3.8",
                    len(content),
                )
            )
        return project

    def download(self, url: str, sha256: str) -> bytes:
        self.downloads.append((url, sha256))
        filename = url.rsplit("/", 1)[1]
        for files in self.projects.values():
            if filename in files:
                return files[filename]
        raise AssertionError(f"no such file {url}")


@pytest.fixture
def state() -> CodeArtifact:
    return CodeArtifact(REGION)


@pytest.fixture
def domain(state: CodeArtifact) -> Domain:
    return state.create_domain("acme", ACCOUNT, None)


@pytest.fixture
def store(state: CodeArtifact, domain: Domain) -> Repository:
    """The repository holding the external connection (as infra/codeartifact.yaml)."""
    repository = state.create_repository(domain, "pypi-store", "public cache", [])
    state.associate_external_connection(repository, model.PYPI_CONNECTION)
    return repository


@pytest.fixture
def internal(state: CodeArtifact, domain: Domain, store: Repository) -> Repository:
    return state.create_repository(domain, "internal", "private", [store.name])


@pytest.fixture
def public() -> FakePublicIndex:
    index = FakePublicIndex()
    index.add("tinyjson", "1.0.0", b"public tinyjson 1.0.0")
    index.add("tinyjson", "1.1.0", b"public tinyjson 1.1.0")
    index.add("acme-secrets", "9.9.9", b"planted")
    return index


def set_modes(
    state: CodeArtifact,
    domain: Domain,
    pattern: str,
    allow: list[tuple[str, str]] | None = None,
    **modes: str,
) -> None:
    group = domain.groups.get(pattern) or state.create_package_group(domain, pattern, "", "")
    state.update_origin_configuration(group, modes, allow or [], [])


# --- package groups ---------------------------------------------------------------------------


def test_new_domain_has_only_the_root_group_which_allows_everything(domain: Domain) -> None:
    assert list(domain.groups) == ["/*"]
    assert domain.group_for("requests").pattern == "/*"
    for restriction in model.RESTRICTIONS:
        assert domain.restriction("requests", restriction, "internal")


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("acme-lib", "/pypi//acme-lib$"),  # exact beats every prefix
        ("acme-lib-extra", "/pypi//acme-lib~"),  # the longer prefix wins
        ("acme-tools", "/pypi//acme~"),
        ("acmelib", "/pypi//acme~"),  # a prefix of the name, not of a component
        ("requests", "/pypi/*"),
    ],
)
def test_the_most_specific_group_matches(
    state: CodeArtifact, domain: Domain, name: str, pattern: str
) -> None:
    # Created least specific last, so that creation order cannot decide.
    for each in ("/pypi//acme-lib$", "/pypi//acme~", "/pypi//acme-lib~", "/pypi/*"):
        state.create_package_group(domain, each, "", "")
    assert domain.group_for(name).pattern == pattern


def test_without_a_format_group_the_root_matches(state: CodeArtifact, domain: Domain) -> None:
    state.create_package_group(domain, "/pypi//acme~", "", "")
    assert domain.group_for("requests").pattern == "/*"
    assert domain.group_for("acme-lib").pattern == "/pypi//acme~"


def test_most_specific_mode_decides_and_inherit_goes_up(
    state: CodeArtifact, domain: Domain
) -> None:
    set_modes(state, domain, "/pypi/*", EXTERNAL_UPSTREAM="BLOCK")
    set_modes(state, domain, "/pypi//acme~", EXTERNAL_UPSTREAM="ALLOW")
    set_modes(state, domain, "/pypi//acme-lib$", PUBLISH="BLOCK")  # EXTERNAL_UPSTREAM: INHERIT

    def allowed(name: str, restriction: str) -> bool:
        return domain.restriction(name, restriction, "internal")

    assert not allowed("acme-lib", "PUBLISH")  # the exact group's own mode
    assert allowed("acme-lib", "EXTERNAL_UPSTREAM")  # inherited from /pypi//acme~
    assert allowed("acme-tools", "EXTERNAL_UPSTREAM")
    assert not allowed("requests", "EXTERNAL_UPSTREAM")  # /pypi/*
    assert allowed("acme-tools", "PUBLISH")  # INHERIT, INHERIT, then the root's ALLOW
    assert allowed("requests", "INTERNAL_UPSTREAM")


def test_longer_prefix_overrides_a_shorter_one(state: CodeArtifact, domain: Domain) -> None:
    set_modes(state, domain, "/pypi//acme~", EXTERNAL_UPSTREAM="BLOCK")
    set_modes(state, domain, "/pypi//acme-open~", EXTERNAL_UPSTREAM="ALLOW")
    assert domain.restriction("acme-open-json", "EXTERNAL_UPSTREAM", "internal")
    assert not domain.restriction("acme-json", "EXTERNAL_UPSTREAM", "internal")


def test_allow_specific_repositories_honours_the_list(
    state: CodeArtifact, domain: Domain, internal: Repository
) -> None:
    set_modes(
        state,
        domain,
        "/pypi//acme~",
        allow=[("internal", "PUBLISH")],
        PUBLISH="ALLOW_SPECIFIC_REPOSITORIES",
    )
    assert domain.restriction("acme-lib", "PUBLISH", "internal")
    assert not domain.restriction("acme-lib", "PUBLISH", "pypi-store")
    assert domain.restriction("requests", "PUBLISH", "pypi-store")  # other groups unaffected

    group = domain.groups["/pypi//acme~"]
    state.update_origin_configuration(group, {}, [], [("internal", "PUBLISH")])
    assert not domain.restriction("acme-lib", "PUBLISH", "internal")  # an empty list: nobody


def test_origin_configuration_errors(state: CodeArtifact, domain: Domain) -> None:
    group = state.create_package_group(domain, "/pypi//acme~", "", "")
    with pytest.raises(CodeArtifactError) as bad_mode:
        state.update_origin_configuration(group, {"PUBLISH": "MAYBE"}, [], [])
    assert (bad_mode.value.code, bad_mode.value.status) == ("ValidationException", 400)
    with pytest.raises(CodeArtifactError) as bad_restriction:
        state.update_origin_configuration(group, {"DOWNLOAD": "ALLOW"}, [], [])
    assert bad_restriction.value.code == "ValidationException"
    with pytest.raises(CodeArtifactError) as unknown:
        state.update_origin_configuration(group, {}, [("nowhere", "PUBLISH")], [])
    assert (unknown.value.code, unknown.value.status) == ("ResourceNotFoundException", 404)


def test_unknown_restriction_type_in_allowed_repositories_is_a_validation_error(
    state: CodeArtifact, domain: Domain, internal: Repository
) -> None:
    group = state.create_package_group(domain, "/pypi//acme~", "", "")
    with pytest.raises(CodeArtifactError) as error:
        state.update_origin_configuration(group, {}, [("internal", "DOWNLOAD")], [])
    assert error.value.code == "ValidationException"


def test_a_refused_origin_update_changes_nothing(state: CodeArtifact, domain: Domain) -> None:
    group = state.create_package_group(domain, "/pypi//acme~", "", "")
    with pytest.raises(CodeArtifactError):
        state.update_origin_configuration(
            group, {"EXTERNAL_UPSTREAM": "BLOCK", "PUBLISH": "SOMETIMES"}, [], []
        )
    assert group.modes["EXTERNAL_UPSTREAM"] == "INHERIT"


@pytest.mark.parametrize(
    ("pattern", "code"),
    [
        ("/pypi//Acme~", "ValidationException"),  # not normalized
        ("pypi//acme~", "ValidationException"),
        ("/npm//react$", "ValidationException"),  # valid, but the stand-in is PyPI only
        ("/*", "ConflictException"),  # the root exists from the start
    ],
)
def test_package_group_creation_errors(
    state: CodeArtifact, domain: Domain, pattern: str, code: str
) -> None:
    with pytest.raises(CodeArtifactError) as error:
        state.create_package_group(domain, pattern, "", "")
    assert error.value.code == code


def test_control_plane_lookup_and_creation_errors(
    state: CodeArtifact, domain: Domain, store: Repository
) -> None:
    cases: list[tuple[Callable[[], object], str, int]] = [
        (lambda: state.create_domain("acme", ACCOUNT, None), "ConflictException", 409),
        (lambda: state.domain("acme", "111122223333"), "ResourceNotFoundException", 404),
        (lambda: state.repository(domain, "nope"), "ResourceNotFoundException", 404),
        (
            lambda: state.create_repository(domain, "x", "", ["nope"]),
            "ResourceNotFoundException",
            404,
        ),
        (lambda: state.create_repository(domain, "pypi-store", "", []), "ConflictException", 409),
        (
            lambda: state.associate_external_connection(store, "public:npmjs"),
            "ValidationException",
            400,
        ),
        (
            lambda: state.associate_external_connection(store, model.PYPI_CONNECTION),
            "ValidationException",
            400,
        ),  # a second connection
        (lambda: state.package_group(domain, "/pypi//x$"), "ResourceNotFoundException", 404),
    ]
    for call, code, status in cases:
        with pytest.raises(CodeArtifactError) as error:
            call()
        assert (error.value.code, error.value.status) == (code, status)
    assert "x" not in domain.repositories  # a failed creation leaves nothing behind


def test_error_helpers() -> None:
    for error, code, status in [
        (not_found("repository x"), "ResourceNotFoundException", 404),
        (conflict("repository x"), "ConflictException", 409),
        (invalid("bad"), "ValidationException", 400),
    ]:
        assert (error.code, error.status) == (code, status)
        assert str(error) == error.message
    assert not_found("repository x").message == "repository x not found"
    assert conflict("repository x").message == "repository x already exists"


def test_arns(domain: Domain, internal: Repository) -> None:
    prefix = f"arn:aws:codeartifact:{REGION}:{ACCOUNT}"
    assert domain.arn == f"{prefix}:domain/acme"
    assert internal.arn == f"{prefix}:repository/acme/internal"
    # infra/iam.yaml grants PublishPackageVersion on package/<domain>/<repo>/pypi//*
    assert internal.package_arn("acme-lib") == f"{prefix}:package/acme/internal/pypi//acme-lib"
    assert domain.groups["/*"].arn == f"{prefix}:package-group/acme/*"


# --- listings over the upstream chain ----------------------------------------------------------


def test_listing_own_versions_then_upstream_then_external(
    state: CodeArtifact, internal: Repository, store: Repository, public: FakePublicIndex
) -> None:
    own = asset(wheel("tinyjson", "1.0.0"), b"our own tinyjson 1.0.0", ">=3.11")
    state.publish(internal, "tinyjson", "1.0.0", own)
    mirrored = asset(wheel("tinyjson", "0.9.0"), b"tinyjson 0.9.0 in the store")
    state.publish(store, "tinyjson", "0.9.0", mirrored)

    listing = state.listing(internal, "tinyjson", public.external)

    assert listing.name == "tinyjson"
    files = listing.files
    assert set(files) == {wheel("tinyjson", v) for v in ("0.9.0", "1.0.0", "1.1.0")}
    first = files[wheel("tinyjson", "1.0.0")]  # the public index has this file too: ours wins
    assert (first.version, first.sha256, first.local) == ("1.0.0", own.sha256, True)
    assert (first.requires_python, first.size) == (">=3.11", len(own.content))
    upstream = files[wheel("tinyjson", "0.9.0")]
    assert (upstream.sha256, upstream.local) == (mirrored.sha256, True)
    external = files[wheel("tinyjson", "1.1.0")]
    assert external.local is False
    assert external.version == "1.1.0"
    assert external.sha256 == hashlib.sha256(b"public tinyjson 1.1.0").hexdigest()
    assert (external.requires_python, external.size) == (">=3.8", len(b"public tinyjson 1.1.0"))
    assert public.asked == ["tinyjson"]


def test_listing_of_an_unknown_package_is_empty(
    state: CodeArtifact, internal: Repository, public: FakePublicIndex
) -> None:
    assert state.listing(internal, "nothing-here", public.external).files == {}
    assert public.asked == ["nothing-here"]


def test_external_upstream_block_hides_public_files_without_asking(
    state: CodeArtifact, domain: Domain, internal: Repository, public: FakePublicIndex
) -> None:
    set_modes(state, domain, "/pypi//acme~", EXTERNAL_UPSTREAM="BLOCK")
    assert state.listing(internal, "acme-secrets", public.external).files == {}
    store = domain.repositories["pypi-store"]
    assert state.listing(store, "acme-secrets", public.external).files == {}
    assert public.asked == []  # an internal name never reaches the public index
    assert state.listing(internal, "tinyjson", public.external).files  # others still come


def test_external_upstream_block_keeps_published_versions(
    state: CodeArtifact, domain: Domain, internal: Repository, public: FakePublicIndex
) -> None:
    set_modes(state, domain, "/pypi//acme~", EXTERNAL_UPSTREAM="BLOCK")
    ours = asset(wheel("acme-secrets", "1.0.0"), b"the real one")
    state.publish(internal, "acme-secrets", "1.0.0", ours)
    files = state.listing(internal, "acme-secrets", public.external).files
    assert list(files) == [ours.filename]


def test_external_upstream_allow_specific_repositories(
    state: CodeArtifact, domain: Domain, internal: Repository, public: FakePublicIndex
) -> None:
    set_modes(state, domain, "/pypi//tinyjson$", EXTERNAL_UPSTREAM="ALLOW_SPECIFIC_REPOSITORIES")
    assert state.listing(internal, "tinyjson", public.external).files == {}
    group = domain.groups["/pypi//tinyjson$"]
    state.update_origin_configuration(group, {}, [("pypi-store", "EXTERNAL_UPSTREAM")], [])
    assert len(state.listing(internal, "tinyjson", public.external).files) == 2


def test_internal_upstream_block_stops_the_upstream_walk(
    state: CodeArtifact,
    domain: Domain,
    internal: Repository,
    store: Repository,
    public: FakePublicIndex,
) -> None:
    own = asset(wheel("tinyjson", "2.0.0"), b"ours")
    state.publish(internal, "tinyjson", "2.0.0", own)
    state.publish(store, "tinyjson", "0.9.0", asset(wheel("tinyjson", "0.9.0"), b"stored"))
    set_modes(state, domain, "/pypi//tinyjson$", INTERNAL_UPSTREAM="BLOCK")

    files = state.listing(internal, "tinyjson", public.external).files

    assert list(files) == [own.filename]
    assert public.asked == []
    assert len(state.listing(internal, "leftpad", public.external).files) == 0  # unrelated
    set_modes(
        state,
        domain,
        "/pypi//tinyjson$",
        allow=[("internal", "INTERNAL_UPSTREAM")],
        INTERNAL_UPSTREAM="ALLOW_SPECIFIC_REPOSITORIES",
    )
    assert len(state.listing(internal, "tinyjson", public.external).files) == 4


def test_internal_upstream_block_leaves_a_direct_external_connection(
    state: CodeArtifact, domain: Domain, store: Repository, public: FakePublicIndex
) -> None:
    set_modes(state, domain, "/pypi//tinyjson$", INTERNAL_UPSTREAM="BLOCK")
    assert len(state.listing(store, "tinyjson", public.external).files) == 2


# --- fetching through the external connection ---------------------------------------------------


def test_fetch_external_keeps_the_asset_in_the_connected_repository(
    state: CodeArtifact, internal: Repository, store: Repository, public: FakePublicIndex
) -> None:
    filename = wheel("tinyjson", "1.1.0")
    fetched = state.fetch_external(
        internal, "tinyjson", "1.1.0", filename, public.external, public.download
    )
    assert fetched is not None
    assert fetched.content == b"public tinyjson 1.1.0"
    assert fetched.sha256 == hashlib.sha256(fetched.content).hexdigest()
    assert fetched.requires_python == ">=3.8"
    expected_url = f"http://public.invalid/files/{filename}"
    assert public.downloads == [(expected_url, fetched.sha256)]  # the hash is checked there

    kept = store.packages["tinyjson"]["1.1.0"]
    assert kept.origin == "EXTERNAL"
    assert kept.assets[filename] is fetched
    assert "tinyjson" not in internal.packages  # kept where the connection is, not downstream

    listed = state.listing(internal, "tinyjson", public.external).files[filename]
    assert listed.local is True  # now held in the chain


def test_fetch_external_refuses_what_it_cannot_serve(
    state: CodeArtifact,
    domain: Domain,
    internal: Repository,
    store: Repository,
    public: FakePublicIndex,
) -> None:
    def fetch(repository: Repository, name: str, version: str, filename: str) -> Asset | None:
        return state.fetch_external(
            repository, name, version, filename, public.external, public.download
        )

    assert fetch(internal, "tinyjson", "1.1.0", wheel("tinyjson", "9.9.9")) is None
    assert fetch(internal, "tinyjson", "9.9.9", wheel("tinyjson", "1.1.0")) is None
    assert fetch(internal, "nothing", "1.0", wheel("nothing", "1.0")) is None
    lonely = state.create_repository(domain, "lonely", "", [])  # no connection anywhere
    assert fetch(lonely, "tinyjson", "1.1.0", wheel("tinyjson", "1.1.0")) is None

    set_modes(state, domain, "/pypi//acme~", EXTERNAL_UPSTREAM="BLOCK")
    assert fetch(internal, "acme-secrets", "9.9.9", wheel("acme-secrets", "9.9.9")) is None
    assert fetch(store, "acme-secrets", "9.9.9", wheel("acme-secrets", "9.9.9")) is None
    set_modes(state, domain, "/pypi//tinyjson$", INTERNAL_UPSTREAM="BLOCK")
    assert fetch(internal, "tinyjson", "1.1.0", wheel("tinyjson", "1.1.0")) is None
    assert public.downloads == []
    assert store.packages == {}


def test_fetch_external_goes_on_to_the_allowed_connection(
    state: CodeArtifact, domain: Domain, public: FakePublicIndex
) -> None:
    first = state.create_repository(domain, "mirror-a", "", [])
    state.associate_external_connection(first, model.PYPI_CONNECTION)
    second = state.create_repository(domain, "mirror-b", "", [])
    state.associate_external_connection(second, model.PYPI_CONNECTION)
    top = state.create_repository(domain, "top", "", ["mirror-a", "mirror-b"])
    set_modes(
        state,
        domain,
        "/pypi//tinyjson$",
        allow=[("mirror-b", "EXTERNAL_UPSTREAM")],
        EXTERNAL_UPSTREAM="ALLOW_SPECIFIC_REPOSITORIES",
    )
    filename = wheel("tinyjson", "1.1.0")
    assert filename in state.listing(top, "tinyjson", public.external).files
    fetched = state.fetch_external(
        top, "tinyjson", "1.1.0", filename, public.external, public.download
    )
    assert fetched is not None
    assert filename in second.packages["tinyjson"]["1.1.0"].assets
    assert first.packages == {}  # not allowed to take it from the public index


# --- publishing --------------------------------------------------------------------------------


def test_publish_stores_and_accepts_the_same_bytes_again(
    state: CodeArtifact, internal: Repository
) -> None:
    first = asset(wheel("acme-lib", "1.0.0"), b"acme-lib 1.0.0")
    package = state.publish(internal, "acme-lib", "1.0.0", first)
    assert (package.name, package.version, package.origin) == ("acme-lib", "1.0.0", "INTERNAL")
    again = asset(first.filename, b"acme-lib 1.0.0")
    assert state.publish(internal, "acme-lib", "1.0.0", again) is package
    assert package.assets == {first.filename: first}  # the first upload is kept


def test_publish_different_bytes_is_a_conflict(state: CodeArtifact, internal: Repository) -> None:
    state.publish(internal, "acme-lib", "1.0.0", asset(wheel("acme-lib", "1.0.0"), b"one"))
    with pytest.raises(CodeArtifactError) as error:
        state.publish(internal, "acme-lib", "1.0.0", asset(wheel("acme-lib", "1.0.0"), b"two"))
    assert (error.value.code, error.value.status) == ("ConflictException", 409)
    kept = internal.packages["acme-lib"]["1.0.0"].assets[wheel("acme-lib", "1.0.0")]
    assert kept.content == b"one"
    # Another file of the same version is fine (a wheel next to an sdist).
    sdist = asset("acme_lib-1.0.0.tar.gz", b"sdist")
    assert sdist.filename in state.publish(internal, "acme-lib", "1.0.0", sdist).assets


def test_publish_over_a_fetched_version_is_a_conflict(
    state: CodeArtifact, internal: Repository, store: Repository, public: FakePublicIndex
) -> None:
    filename = wheel("tinyjson", "1.1.0")
    state.fetch_external(internal, "tinyjson", "1.1.0", filename, public.external, public.download)
    with pytest.raises(CodeArtifactError) as error:
        state.publish(store, "tinyjson", "1.1.0", asset("tinyjson-1.1.0.tar.gz", b"mine"))
    assert error.value.code == "ConflictException"


def test_publish_restriction_is_access_denied(
    state: CodeArtifact, domain: Domain, internal: Repository, store: Repository
) -> None:
    set_modes(
        state,
        domain,
        "/pypi//acme~",
        allow=[("internal", "PUBLISH")],
        PUBLISH="ALLOW_SPECIFIC_REPOSITORIES",
    )
    with pytest.raises(CodeArtifactError) as error:
        state.publish(store, "acme-lib", "1.0.0", asset(wheel("acme-lib", "1.0.0"), b"x"))
    assert (error.value.code, error.value.status) == ("AccessDeniedException", 403)
    assert "/pypi//acme~" in error.value.message
    assert store.packages == {}
    state.publish(internal, "acme-lib", "1.0.0", asset(wheel("acme-lib", "1.0.0"), b"x"))
    set_modes(state, domain, "/pypi//acme-lib$", PUBLISH="BLOCK")
    with pytest.raises(CodeArtifactError):
        state.publish(internal, "acme-lib", "2.0.0", asset(wheel("acme-lib", "2.0.0"), b"y"))


# --- tokens ------------------------------------------------------------------------------------


@pytest.mark.parametrize("duration", [900, 3600, 43200])
def test_issue_token_lives_for_its_duration(
    state: CodeArtifact, domain: Domain, duration: int
) -> None:
    before = model.now()
    token, expires = state.issue_token(domain, READER, duration, None)
    secret = Secret(token)
    assert (
        before + timedelta(seconds=duration) <= expires <= model.now() + timedelta(seconds=duration)
    )
    record = state.token(secret)
    assert record is not None
    assert (record.domain, record.owner, record.principal, record.expires) == (
        "acme",
        ACCOUNT,
        READER,
        expires,
    )


@pytest.mark.parametrize("duration", [-1, 1, 899, 43201])
def test_issue_token_refuses_other_durations(
    state: CodeArtifact, domain: Domain, duration: int
) -> None:
    session = model.now() + timedelta(hours=1)
    with pytest.raises(CodeArtifactError) as error:
        state.issue_token(domain, READER, duration, session)
    assert (error.value.code, error.value.status) == ("ValidationException", 400)
    assert "900" in error.value.message
    assert "43200" in error.value.message


def test_duration_zero_takes_the_session_expiry(state: CodeArtifact, domain: Domain) -> None:
    session = datetime(2100, 1, 1, tzinfo=UTC)
    _, expires = state.issue_token(domain, READER, 0, session)
    assert expires == session


def test_duration_zero_without_a_session_is_refused(state: CodeArtifact, domain: Domain) -> None:
    # The account's root has no session to take an expiry from.
    with pytest.raises(CodeArtifactError) as error:
        state.issue_token(domain, READER, 0, None)
    assert error.value.code == "ValidationException"


def test_tokens_are_found_by_value_only(state: CodeArtifact, domain: Domain) -> None:
    first, _ = state.issue_token(domain, READER, 900, None)
    second, _ = state.issue_token(domain, READER, 900, None)
    one, two = Secret(first), Secret(second)
    assert one != two
    assert len(one) >= 64
    longer, shorter = Secret(one + "x"), Secret(one[:-1])
    assert state.token(one) is not None
    assert state.token(longer) is None
    assert state.token(shorter) is None
    assert state.token("") is None


def test_expire_makes_a_token_expired_now(state: CodeArtifact, domain: Domain) -> None:
    issued, _ = state.issue_token(domain, READER, 43200, None)
    token = Secret(issued)
    assert state.expire(token) is True
    record = state.token(token)
    assert record is not None  # kept, so the data plane can say "expired"
    assert record.expires <= model.now()
    assert record.expires > model.now() - NOW_SLACK
    assert state.expire(Secret("not-a-token")) is False


def test_long_expired_tokens_are_forgotten(
    state: CodeArtifact, domain: Domain, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued, _ = state.issue_token(domain, READER, 900, None)
    old = Secret(issued)
    state.expire(old)
    later = model.now() + timedelta(hours=2)
    monkeypatch.setattr(model, "now", lambda: later)
    state.issue_token(domain, READER, 900, None)
    assert state.token(old) is None

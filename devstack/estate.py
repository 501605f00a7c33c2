"""A team's CodeArtifact estate that exists before the broker: what ``DEVSTACK_ENV=existing``
starts from.

A stack deployed with ``Estate=Existing`` creates no CodeArtifact resource, so the devstack
first makes what a well-kept estate already has, outside any stack, through the CodeArtifact
API as an admin would: the domain, a store repository holding the ``public:pypi`` connection,
the private repositories, each with the store as its upstream, and a package group per
internal prefix that blocks public packages with internal names (docs/admin.md asks teams
that attach to check they have one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_codeartifact import CodeArtifactClient

STORE = "pypi-store"


def create_estate(
    ca: CodeArtifactClient, domain: str, private: Sequence[str], prefixes: Sequence[str]
) -> None:
    """The domain, ``pypi-store``, each of ``private`` and a guard group per prefix; what
    exists already is kept (two devstacks in one process share the stand-in's domains)."""
    _exists_ok(lambda: ca.create_domain(domain=domain))
    _exists_ok(lambda: ca.create_repository(domain=domain, repository=STORE))
    _exists_ok(
        lambda: ca.associate_external_connection(
            domain=domain, repository=STORE, externalConnection="public:pypi"
        )
    )
    for name in private:

        def create(name: str = name) -> object:
            return ca.create_repository(
                domain=domain, repository=name, upstreams=[{"repositoryName": STORE}]
            )

        _exists_ok(create)
    for prefix in prefixes:
        group = f"/pypi//{prefix}~"

        def create_group(group: str = group) -> object:
            return ca.create_package_group(domain=domain, packageGroup=group)

        _exists_ok(create_group)
        ca.update_package_group_origin_configuration(
            domain=domain,
            packageGroup=group,
            restrictions={
                "PUBLISH": "ALLOW_SPECIFIC_REPOSITORIES",
                "EXTERNAL_UPSTREAM": "BLOCK",
                "INTERNAL_UPSTREAM": "ALLOW",
            },
            addAllowedRepositories=[
                {"repositoryName": name, "originRestrictionType": "PUBLISH"} for name in private
            ],
        )


def _exists_ok(call: Callable[[], object]) -> None:
    try:
        call()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConflictException":
            raise

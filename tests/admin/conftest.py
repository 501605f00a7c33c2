"""moto's SSM for the admin tools, a parameter name, and what documents are checked against."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from moto import mock_aws

from broker.scope import Domain

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

PARAMETER = "/cabroker/cabroker/rules"
DOMAIN = Domain(partition="aws", region="us-east-1", owner="123456789012", name="acme")
SERVED = ("internal",)
# The flags that stand for a stack's outputs with --parameter.
FLAGS = [
    "--parameter",
    PARAMETER,
    "--domain",
    "acme",
    "--domain-owner",
    "123456789012",
    "--repositories",
    "internal",
]

NOTHING = "version: 1\nissuers: {}\nrules: []\n"
ENGINEERS = """\
version: 1
issuers:
  corp: {url: https://login.example.com, audience: cabroker, client_id: cabroker}
rules:
  - name: engineers-read
    issuer: corp
    claims: {groups: engineering}
    grant: {repository: internal, access: read, max_duration: 43200}
"""
RELEASES = (
    ENGINEERS
    + """\
  - name: release-from-main
    issuer: corp
    claims: {groups: release}
    grant: {repository: internal, access: publish, packages: ["acme-*"]}
"""
)
# Parses, but grants a repository the deployment does not serve.
ELSEWHERE = ENGINEERS.replace("repository: internal", "repository: elsewhere")
BROKEN = "version: 1\nrules: [\n"


@pytest.fixture
def ssm() -> Iterator[SSMClient]:
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")


def value(ssm: SSMClient, version: int | None = None) -> str:
    name = PARAMETER if version is None else f"{PARAMETER}:{version}"
    return ssm.get_parameter(Name=name)["Parameter"]["Value"]


def current_version(ssm: SSMClient) -> int:
    return ssm.get_parameter(Name=PARAMETER)["Parameter"]["Version"]


def labelled(ssm: SSMClient, label: str = "live") -> list[int]:
    pages = ssm.get_paginator("get_parameter_history").paginate(Name=PARAMETER)
    return [
        item["Version"]
        for page in pages
        for item in page["Parameters"]
        if label in item.get("Labels", [])
    ]

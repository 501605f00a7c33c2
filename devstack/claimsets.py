"""The claim sets the devstack's stand-ins issue: GitHub Actions, GitLab CI and AWS STS.

Each builder returns the claims a real issuer puts in its ID token for one job or principal,
with the names, shapes and value types of its documentation (the standard ``iss``, ``aud``,
``iat``, ``nbf``, ``exp`` and ``jti`` are the issuer's: :meth:`devstack.idp.Issuer.claims`
fills them in). docs/admin.md, "Claims" and "AWS workloads as callers", says what rules should
match in each, and why; the sources are cited there and below.

- **GitHub Actions** (https://docs.github.com/en/actions/reference/security/oidc): ids and
  flags are strings (``"repository_id": "2001"``, ``"ref_protected": "true"``); the default
  ``sub`` has two formats, the legacy one with names only (``repo:acme/app:ref:refs/heads/main``)
  and the immutable one, the default for repositories created (or renamed or transferred) on or
  after 2026-07-15, with each name followed by ``@`` and its id
  (``repo:acme@1001/app@2001:ref:refs/heads/main``); its context is
  ``environment:NAME`` when the job names an environment, ``pull_request`` for pull-request
  events, else ``ref:REF``. Repository custom properties selected by the organization arrive
  as ``repo_property_<name>`` strings (multi-select values comma-joined, booleans as
  ``"true"``/``"false"``).
- **GitLab CI** (https://docs.gitlab.com/ci/secrets/id_token_authentication/): ids and flags
  are strings too, ``runner_id`` is a number, ``user_identities`` a list of objects. In a
  merge-request pipeline, ``project_*``, ``namespace_*``, ``ref`` and ``sub`` describe the
  merge request's *source* project and branch (a fork's, for a merge request from a fork),
  while ``job_project_*`` and ``job_namespace_*`` (GitLab 18.4) name the project whose pipeline
  runs the job (https://gitlab.com/gitlab-org/gitlab/-/issues/563038, and GitLab's spec
  https://gitlab.com/gitlab-org/gitlab/-/blob/master/spec/lib/gitlab/ci/jwt_v2_spec.rb,
  "when the pipeline is for a merge request from a forked project").
- **AWS STS** ``GetWebIdentityToken`` (https://docs.aws.amazon.com/IAM/latest/UserGuide/
  id_roles_providers_outbound_token_claims.html): ``sub`` is the calling role's ARN; everything
  AWS-specific is nested in one object under the claim ``https://sts.amazonaws.com/``
  (account, region, organization, principal tags, session context, request tags); no ``nbf``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

SubjectFormat = Literal["ids", "names"]

# The devstack's GitHub organization and repositories (devstack/rules.yaml matches the ids).
GITHUB_OWNER = "acme"
GITHUB_OWNER_ID = "1001"
GITHUB_REPOSITORY_IDS = {"app": "2001", "vault": "2002"}
SHA = "714a629c0b401fdce83e847fc9589983fc6f46bc"

# The namespace of every AWS-specific claim in an STS web identity token.
AWS_NAMESPACE = "https://sts.amazonaws.com/"


def github_subject(
    owner: str,
    owner_id: str,
    repository: str,
    repository_id: str,
    context: str,
    sub_format: SubjectFormat = "ids",
) -> str:
    """GitHub's default ``sub``: ``repo:OWNER/REPO:CONTEXT`` (names) or
    ``repo:OWNER@OWNER-ID/REPO@REPO-ID:CONTEXT`` (ids). ``:`` in a value is written ``%3A``."""
    context = ":".join(part.replace(":", "%3A") for part in context.split(":", 1))
    if sub_format == "ids":
        return f"repo:{owner}@{owner_id}/{repository}@{repository_id}:{context}"
    return f"repo:{owner}/{repository}:{context}"


def github_claims(
    repository: str = "app",
    *,
    ref: str = "refs/heads/main",
    sub_format: SubjectFormat = "ids",
    environment: str | None = None,
    event_name: str = "push",
    owner: str = GITHUB_OWNER,
    owner_id: str = GITHUB_OWNER_ID,
    repository_id: str | None = None,
    properties: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The claims of a GitHub Actions job in ``owner/repository`` on ``ref``: the documented
    set, with ``sub`` in the legacy (``names``) or immutable (``ids``) format."""
    repository_id = repository_id or GITHUB_REPOSITORY_IDS.get(repository, "2999")
    full_name = f"{owner}/{repository}"
    is_tag = ref.startswith("refs/tags/")
    if environment is not None:
        context = f"environment:{environment}"
    elif event_name in ("pull_request", "pull_request_target"):
        context = "pull_request"
    else:
        context = f"ref:{ref}"
    workflow_ref = f"{full_name}/.github/workflows/release.yml@{ref}"
    claims: dict[str, Any] = {
        "sub": github_subject(owner, owner_id, repository, repository_id, context, sub_format),
        "actor": "octo-alice",
        "actor_id": "5001",
        "base_ref": "",
        "check_run_id": "7001",
        "enterprise": "acme-corp",
        "enterprise_id": "9001",
        "event_name": event_name,
        "head_ref": "",
        "job_workflow_ref": workflow_ref,
        "job_workflow_sha": SHA,
        "ref": ref,
        "ref_protected": "true" if ref == "refs/heads/main" else "false",
        "ref_type": "tag" if is_tag else "branch",
        "repository": full_name,
        "repository_id": repository_id,
        "repository_owner": owner,
        "repository_owner_id": owner_id,
        "repository_visibility": "private",
        "run_attempt": "1",
        "run_id": "6001",
        "run_number": "42",
        "runner_environment": "github-hosted",
        "sha": SHA,
        "workflow": "release",
        "workflow_ref": workflow_ref,
        "workflow_sha": SHA,
    }
    if environment is not None:
        claims["environment"] = environment
    for name, value in (properties or {}).items():
        claims[f"repo_property_{name}"] = value
    return claims


@dataclass(frozen=True)
class GitLabProject:
    """A GitLab project: its path and id, and its namespace's (group or user) path and id."""

    path: str
    id: str
    namespace_id: str

    @property
    def namespace_path(self) -> str:
        return self.path.rsplit("/", 1)[0]


# The devstack's GitLab project (devstack/rules.yaml matches its job_project_id), and a fork
# of it in another user's namespace.
ACME_DATA = GitLabProject(path="acme/data", id="4001", namespace_id="3001")
MALLORY_FORK = GitLabProject(path="mallory/data", id="4666", namespace_id="3666")


def gitlab_claims(
    project: GitLabProject = ACME_DATA,
    *,
    ref: str = "main",
    ref_type: str = "branch",
    protected: bool = True,
    environment: str | None = None,
    environment_protected: bool = True,
    source: GitLabProject | None = None,
) -> dict[str, Any]:
    """The claims of a GitLab CI job of a pipeline of ``project`` on ``ref``. With ``source``,
    a merge-request pipeline run in ``project`` for a merge request from ``source`` (a fork):
    ``project_*``, ``namespace_*``, ``ref`` and ``sub`` then name the source, ``job_project_*``
    and ``job_namespace_*`` the project whose pipeline runs the job."""
    named = source or project
    ref_path = f"refs/{'tags' if ref_type == 'tag' else 'heads'}/{ref}"
    claims: dict[str, Any] = {
        "sub": f"project_path:{named.path}:ref_type:{ref_type}:ref:{ref}",
        "namespace_id": named.namespace_id,
        "namespace_path": named.namespace_path,
        "project_id": named.id,
        "project_path": named.path,
        "job_project_id": project.id,
        "job_project_path": project.path,
        "job_namespace_id": project.namespace_id,
        "job_namespace_path": project.namespace_path,
        "user_id": "8001",
        "user_login": "alice",
        "user_email": "alice@acme.example",
        "user_access_level": "maintainer",
        "user_identities": [{"provider": "github", "extern_uid": "5001"}],
        "groups_direct": ["acme", "acme/data-team"],
        "pipeline_id": "574",
        "pipeline_source": "merge_request_event" if source else "push",
        "job_id": "302",
        "job_source": "merge_request_event" if source else "push",
        "ref": ref,
        "ref_type": ref_type,
        "ref_path": ref_path,
        "ref_protected": "true" if protected else "false",
        "runner_id": 1,
        "runner_environment": "gitlab-hosted",
        "sha": SHA,
        "project_visibility": "private",
        "ci_config_ref_uri": f"gitlab.example.com/{project.path}//.gitlab-ci.yml@{ref_path}",
        "ci_config_sha": SHA,
    }
    if environment is not None:
        claims["environment"] = environment
        claims["environment_protected"] = "true" if environment_protected else "false"
        claims["deployment_tier"] = "production"
        claims["environment_action"] = "start"
    return claims


def gitlab_fork_merge_request_claims(
    project: GitLabProject = ACME_DATA, fork: GitLabProject = MALLORY_FORK
) -> dict[str, Any]:
    """A merge-request pipeline run in ``project`` for a merge request from ``fork``'s branch
    ``feature`` (not protected)."""
    return gitlab_claims(project, ref="feature", protected=False, source=fork)


# The devstack's AWS workload: a Lambda function's execution role in another account.
AWS_ACCOUNT = "210987654321"
AWS_ROLE = "cabroker-reader"


def aws_role_arn(account: str = AWS_ACCOUNT, role: str = AWS_ROLE) -> str:
    return f"arn:aws:iam::{account}:role/{role}"


def aws_claims(
    account: str = AWS_ACCOUNT,
    role: str = AWS_ROLE,
    *,
    region: str = "eu-west-1",
    request_tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The claims of an STS ``GetWebIdentityToken`` token for a Lambda function whose execution
    role is ``role`` in ``account``: ``sub`` is the role's ARN, the rest is nested under
    ``https://sts.amazonaws.com/`` (the AWS issuer of :mod:`devstack.idp` adds no ``nbf``)."""
    nested: dict[str, Any] = {
        "aws_account": account,
        "source_region": region,
        "principal_id": aws_role_arn(account, role),
        "org_id": "o-a1b2c3d4e5",
        "ou_path": "o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/",
        "principal_tags": {"team": "data-engineering", "environment": "production"},
        "lambda_source_function_arn": f"arn:aws:lambda:{region}:{account}:function:nightly",
    }
    if request_tags:
        nested["request_tags"] = dict(request_tags)
    return {"sub": aws_role_arn(account, role), AWS_NAMESPACE: nested}

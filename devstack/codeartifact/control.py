"""The stand-in's control plane: CodeArtifact's REST-JSON API, as botocore speaks it.

Paths, query parameters, bodies, responses and errors follow the service model (botocore's
``codeartifact`` JSON), so boto3 and the AWS CLI work unchanged against it with
``AWS_ENDPOINT_URL_CODEARTIFACT``.  Only the operations this project uses are implemented;
any other is answered with a clear ``ValidationException`` naming it.

Who calls is read from the SigV4 ``Authorization`` header (see :mod:`.principals`).
``GetAuthorizationToken`` and ``GetRepositoryEndpoint`` are authorized as AWS would; the
administrative calls are not (the devstack's provisioner is the account's administrator).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from .model import (
    CodeArtifact,
    CodeArtifactError,
    Domain,
    PackageGroup,
    Repository,
    invalid,
)
from .principals import Caller, access_key_of, caller

Handler = Callable[["ControlPlane", Request, Caller], dict[str, Any]]
DEFAULT_TOKEN_SECONDS = 43200


def _time(value: datetime) -> float:
    return value.timestamp()


def domain_json(domain: Domain) -> dict[str, Any]:
    return {
        "name": domain.name,
        "owner": domain.owner,
        "arn": domain.arn,
        "status": "Active",
        "createdTime": _time(domain.created),
        "encryptionKey": domain.encryption_key
        or f"arn:aws:kms:{domain.region}:{domain.owner}:key/aws-managed-codeartifact",
        "repositoryCount": len(domain.repositories),
        "assetSizeBytes": 0,
    }


def repository_json(repository: Repository) -> dict[str, Any]:
    return {
        "name": repository.name,
        "administratorAccount": repository.domain.owner,
        "domainName": repository.domain.name,
        "domainOwner": repository.domain.owner,
        "arn": repository.arn,
        "description": repository.description,
        "upstreams": [{"repositoryName": name} for name in repository.upstreams],
        "externalConnections": [
            {"externalConnectionName": name, "packageFormat": "pypi", "status": "Available"}
            for name in repository.external_connections
        ],
        "createdTime": _time(repository.created),
    }


def group_json(group: PackageGroup) -> dict[str, Any]:
    return {
        "arn": group.arn,
        "pattern": group.pattern,
        "domainName": group.domain.name,
        "domainOwner": group.domain.owner,
        "createdTime": _time(group.created),
        "contactInfo": group.contact_info,
        "description": group.description,
        "originConfiguration": {
            "restrictions": {
                name: {"mode": mode, "effectiveMode": mode, "repositoriesCount": len(allowed)}
                for (name, mode), allowed in zip(
                    group.modes.items(), group.allowed.values(), strict=True
                )
            }
        },
    }


class ControlPlane:
    """A WSGI application: CodeArtifact's control-plane operations over :class:`CodeArtifact`."""

    def __init__(self, state: CodeArtifact, account: str, data_plane_url: str) -> None:
        self.state = state
        self.account = account
        self.data_plane_url = data_plane_url.rstrip("/")

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self.respond(request)
        return response(environ, start_response)

    def respond(self, request: Request) -> Response:
        who = caller(access_key_of(request.headers.get("Authorization")), self.account)
        handler = ROUTES.get((request.method, request.path))
        try:
            if handler is None:
                raise invalid(f"the stand-in does not implement {request.method} {request.path}")
            body = handler(self, request, who)
        except CodeArtifactError as error:
            return Response(
                json.dumps({"message": error.message}),
                status=error.status,
                content_type="application/json",
                headers={"x-amzn-ErrorType": error.code},
            )
        return Response(json.dumps(body), content_type="application/json")

    # --- helpers ------------------------------------------------------------------------

    def _domain(self, request: Request, who: Caller, body: dict[str, Any] | None = None) -> Domain:
        source = {**(body or {}), **request.args}
        name = source.get("domain")
        if not name:
            raise invalid("domain is required")
        owner = source.get("domain-owner") or source.get("domainOwner") or who.account
        return self.state.domain(str(name), str(owner))

    def _repository(self, request: Request, who: Caller) -> Repository:
        name = request.args.get("repository")
        if not name:
            raise invalid("repository is required")
        return self.state.repository(self._domain(request, who), name)

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        if not request.data:
            return {}
        try:
            body = json.loads(request.data)
        except ValueError:
            raise invalid("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise invalid("the request body is not a JSON object")
        return body

    @staticmethod
    def _authorize(who: Caller, action: str, resource: str, context: dict[str, str]) -> None:
        if not who.allows(action, resource, context):
            raise CodeArtifactError(
                "AccessDeniedException",
                403,
                f"User: {who.arn} is not authorized to perform: {action} on resource: {resource}",
            )

    # --- operations ---------------------------------------------------------------------

    def create_domain(self, request: Request, who: Caller) -> dict[str, Any]:
        name = request.args.get("domain", "")
        body = self._body(request)
        domain = self.state.create_domain(name, who.account, body.get("encryptionKey"))
        return {"domain": domain_json(domain)}

    def describe_domain(self, request: Request, who: Caller) -> dict[str, Any]:
        return {"domain": domain_json(self._domain(request, who))}

    def put_domain_policy(self, request: Request, who: Caller) -> dict[str, Any]:
        body = self._body(request)
        domain = self._domain(request, who, body)
        domain.policy = str(body.get("policyDocument", ""))
        return {"policy": {"resourceArn": domain.arn, "document": domain.policy}}

    def create_repository(self, request: Request, who: Caller) -> dict[str, Any]:
        domain = self._domain(request, who)
        body = self._body(request)
        upstreams = [str(u.get("repositoryName")) for u in body.get("upstreams", [])]
        repository = self.state.create_repository(
            domain, request.args.get("repository", ""), str(body.get("description", "")), upstreams
        )
        return {"repository": repository_json(repository)}

    def describe_repository(self, request: Request, who: Caller) -> dict[str, Any]:
        return {"repository": repository_json(self._repository(request, who))}

    def associate_external_connection(self, request: Request, who: Caller) -> dict[str, Any]:
        repository = self._repository(request, who)
        self.state.associate_external_connection(
            repository, request.args.get("external-connection", "")
        )
        return {"repository": repository_json(repository)}

    def put_repository_policy(self, request: Request, who: Caller) -> dict[str, Any]:
        repository = self._repository(request, who)
        repository.policy = str(self._body(request).get("policyDocument", ""))
        return {"policy": {"resourceArn": repository.arn, "document": repository.policy}}

    def list_repositories_in_domain(self, request: Request, who: Caller) -> dict[str, Any]:
        domain = self._domain(request, who)
        return {
            "repositories": [
                {
                    "name": r.name,
                    "administratorAccount": domain.owner,
                    "domainName": domain.name,
                    "domainOwner": domain.owner,
                    "arn": r.arn,
                    "description": r.description,
                    "createdTime": _time(r.created),
                }
                for r in domain.repositories.values()
            ]
        }

    def create_package_group(self, request: Request, who: Caller) -> dict[str, Any]:
        domain = self._domain(request, who)
        body = self._body(request)
        group = self.state.create_package_group(
            domain,
            str(body.get("packageGroup", "")),
            str(body.get("description", "")),
            str(body.get("contactInfo", "")),
        )
        return {"packageGroup": group_json(group)}

    def describe_package_group(self, request: Request, who: Caller) -> dict[str, Any]:
        domain = self._domain(request, who)
        group = self.state.package_group(domain, request.args.get("package-group", ""))
        return {"packageGroup": group_json(group)}

    def list_package_groups(self, request: Request, who: Caller) -> dict[str, Any]:
        domain = self._domain(request, who)
        return {"packageGroups": [group_json(g) for g in domain.groups.values()]}

    def update_origin_configuration(self, request: Request, who: Caller) -> dict[str, Any]:
        domain = self._domain(request, who)
        group = self.state.package_group(domain, request.args.get("package-group", ""))
        body = self._body(request)

        def pairs(key: str) -> list[tuple[str, str]]:
            return [
                (str(item.get("repositoryName")), str(item.get("originRestrictionType")))
                for item in body.get(key, [])
            ]

        self.state.update_origin_configuration(
            group,
            {str(k): str(v) for k, v in body.get("restrictions", {}).items()},
            pairs("addAllowedRepositories"),
            pairs("removeAllowedRepositories"),
        )
        return {"packageGroup": group_json(group), "allowedRepositoryUpdates": {}}

    def get_authorization_token(self, request: Request, who: Caller) -> dict[str, Any]:
        domain = self._domain(request, who)
        raw = request.args.get("duration")
        try:
            duration = DEFAULT_TOKEN_SECONDS if raw is None else int(raw)
        except ValueError:
            raise invalid(f"duration {raw!r} is not a number of seconds") from None
        context = {
            "sts:AWSServiceName": "codeartifact.amazonaws.com",
            "sts:DurationSeconds": str(duration),
        }
        self._authorize(who, "codeartifact:GetAuthorizationToken", domain.arn, {})
        self._authorize(who, "sts:GetServiceBearerToken", "*", context)
        session_expiry = getattr(who, "expires", None)
        token, expires = self.state.issue_token(domain, who, duration, session_expiry)
        return {"authorizationToken": token, "expiration": _time(expires)}

    def get_repository_endpoint(self, request: Request, who: Caller) -> dict[str, Any]:
        repository = self._repository(request, who)
        if request.args.get("format") != "pypi":
            raise invalid("the stand-in serves the pypi format only")
        self._authorize(who, "codeartifact:GetRepositoryEndpoint", repository.arn, {})
        return {"repositoryEndpoint": f"{self.data_plane_url}/pypi/{repository.name}/"}


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/domain"): ControlPlane.create_domain,
    ("GET", "/v1/domain"): ControlPlane.describe_domain,
    ("PUT", "/v1/domain/permissions/policy"): ControlPlane.put_domain_policy,
    ("POST", "/v1/repository"): ControlPlane.create_repository,
    ("GET", "/v1/repository"): ControlPlane.describe_repository,
    ("POST", "/v1/repository/external-connection"): ControlPlane.associate_external_connection,
    ("PUT", "/v1/repository/permissions/policy"): ControlPlane.put_repository_policy,
    ("POST", "/v1/domain/repositories"): ControlPlane.list_repositories_in_domain,
    ("POST", "/v1/package-group"): ControlPlane.create_package_group,
    ("GET", "/v1/package-group"): ControlPlane.describe_package_group,
    ("POST", "/v1/package-groups"): ControlPlane.list_package_groups,
    (
        "PUT",
        "/v1/package-group-origin-configuration",
    ): ControlPlane.update_origin_configuration,
    ("POST", "/v1/authorization-token"): ControlPlane.get_authorization_token,
    ("GET", "/v1/repository/endpoint"): ControlPlane.get_repository_endpoint,
}

"""The devstack: every component started, provisioned from the templates, and described in
the state file (devstack/README.md), then stopped cleanly.

Start order: the local "public" index, the identity provider, the AWS stand-in (moto and the
CodeArtifact stand-in), provisioning of ``template.yaml`` and its nested stacks, the broker's
warm instances, the gateway.  The state file is written last, once everything answers, and
removed on stop.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any, TextIO

from devstack.device import ConsoleApprover
from devstack.environments import SamconfigError, parameter_overrides
from devstack.estate import STORE, create_estate
from devstack.idp import IdentityProvider
from devstack.provision import Clients, Deployment, Provisioner, admin_session
from devstack.public import PublicIndex, build_public_index

if TYPE_CHECKING:
    from devstack.aws import AwsStandIn
    from devstack.gateway import Gateway, Pool

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
REGION = "us-east-1"
STACK_NAME = "cabroker"
RULES_FILE = Path(__file__).with_name("rules.yaml")
# Shadow rules for `make run`, when the file exists (docs/admin.md, "Shadow rules").
SHADOW_RULES_FILE = Path(__file__).with_name("shadow-rules.yaml")
# The people who can log in interactively at the corp issuer (device flow), and their claims.
CORP_USERS: dict[str, dict[str, Any]] = {
    "alice": {"email": "alice@acme.example", "groups": ["engineering"]},
    "mallory": {"email": "mallory@contractor.example", "groups": ["contractors"]},
}
log = logging.getLogger("devstack")


@dataclass
class Options:
    """How to run the devstack; every field has a sane default for ``make run``."""

    state_file: Path = field(
        default_factory=lambda: Path(
            os.environ.get("DEVSTACK_STATE") or ROOT / ".devstack" / "state.json"
        )
    )
    work_dir: Path = field(default_factory=lambda: ROOT / ".devstack")
    rules_file: Path = RULES_FILE
    # A second rules document (same placeholders), deployed with ShadowRules=Enabled and pushed
    # to the stack's shadow-rules parameter: decided after every live decision, never changing
    # it. None: no shadow rules.
    shadow_rules_file: Path | None = None
    port_base: int = 0  # 0: ephemeral ports; else broker, aws, idp, public = base .. base+3
    instances: int = 2  # warm Lambda instances of the broker
    rules_cache_seconds: int = 5  # how soon the broker sees rule edits (SSM cache)
    # The broker's JSON log lines and the API's access log; None: this process's stdout (the
    # broker's) and nowhere (the access log). The console has one short line per request.
    broker_log: Path | None = None
    device_interval: int = 5
    watch_rules: bool = True
    throttle: bool = True  # the template's API throttling (off only to measure capacity)
    # The samconfig.toml environment whose parameter overrides are deployed (DEVSTACK_ENV).
    environment: str = field(default_factory=lambda: os.environ.get("DEVSTACK_ENV") or "default")
    # template.yaml parameters beyond the environment's (e.g. {"ReplayGuard": "Enabled"})
    parameters: dict[str, str] = field(default_factory=dict)


def expand_rules(path: Path, idp_url: str, repositories: list[str]) -> str:
    """The rules document with its placeholders filled in: ``${idp}``, and ``${repo1}``,
    ``${repo2}``, … for the deployment's private repositories (the default first). Any other
    ``$`` placeholder is an error."""
    names = {f"repo{number}": name for number, name in enumerate(repositories, start=1)}
    try:
        return Template(path.read_text(encoding="utf-8")).substitute(idp=idp_url, **names)
    except (KeyError, ValueError) as error:
        allowed = ", ".join("${" + name + "}" for name in ["idp", *names])
        raise SystemExit(f"{path}: only {allowed} may be used as placeholders ({error})") from None


def check_rules(text: str, path: Path) -> None:
    """Refuse to start with rules the broker would refuse (its own loader says why)."""
    sys.path.insert(0, str(FUNCTIONS))
    from broker.rules import RulesError, parse

    try:
        parse(text)
    except RulesError as error:
        raise SystemExit(f"{path}: {error}") from None


class Devstack:
    # moto's state is per process: a second devstack in one process (the tests start several)
    # deploys under another stack name, so its rules parameter and roles do not replace ours.
    _instances = itertools.count()

    def __init__(self, options: Options) -> None:
        self.options = options
        number = next(self._instances)
        self.stack_name = STACK_NAME if number == 0 else f"{STACK_NAME}-{number + 1}"
        self.public: PublicIndex | None = None
        self.idp: IdentityProvider | None = None
        self.aws: AwsStandIn | None = None
        self.pool: Pool | None = None
        self.gateway: Gateway | None = None
        self.deployment: Deployment | None = None
        self.state: dict[str, Any] = {}
        self._stop = threading.Event()
        self._approver: ConsoleApprover | None = None

    def _port(self, offset: int) -> int:
        return self.options.port_base + offset if self.options.port_base else 0

    def start(self) -> dict[str, Any]:
        from devstack.aws import ACCOUNT, AwsStandIn

        work = self.options.work_dir
        work.mkdir(parents=True, exist_ok=True)
        public_dir = work / "public"
        public_dir.mkdir(exist_ok=True)
        build_public_index(public_dir)
        self.public = PublicIndex(public_dir)
        self.public.start(port=self._port(3))

        self.idp = IdentityProvider(
            port=self._port(2), device_interval=self.options.device_interval
        )
        parameters = self._parameters()
        repositories = [name.strip() for name in parameters["Repositories"].split(",")]
        rules_text = expand_rules(self.options.rules_file, self.idp.base_url, repositories)
        check_rules(rules_text, self.options.rules_file)
        shadow = self.options.shadow_rules_file
        if shadow is not None:
            check_rules(expand_rules(shadow, self.idp.base_url, repositories), shadow)
        issuers = _issuers(rules_text)
        for name, issuer in issuers.items():
            users = CORP_USERS if issuer.get("client_id") else None
            self.idp.add(name, issuer["audience"], client_id=issuer.get("client_id"), users=users)
        self.idp.start()

        self.aws = AwsStandIn(REGION, self.public.simple_url, port=self._port(1))
        self.aws.start()
        # moto loads AWS managed policies (the template attaches two) only when asked, as its
        # IAM backend is made; asked for the provisioning only, not for the whole process.
        if parameters.get("Estate") == "Existing":
            # The team's estate exists before the broker (devstack/estate.py).
            ca = admin_session(REGION).client("codeartifact", endpoint_url=self.aws.url)
            prefixes = parameters.get("InternalPrefixes") or _template_default("InternalPrefixes")
            create_estate(ca, parameters["DomainName"], repositories, prefixes.split(","))
        with _environment(MOTO_IAM_LOAD_MANAGED_POLICIES="true"):
            self.deployment = self._provision(parameters)
        outputs = self.deployment.outputs
        private = str(outputs["PrivateRepositoryNames"]).split(",")
        self.state = {
            "aws_endpoint_url": self.aws.url,
            "region": REGION,
            "environment": self.options.environment,
            "domain": outputs["DomainName"],
            "domain_owner": outputs["DomainOwner"],
            "repositories": {"private": outputs["PrivateRepositoryName"], "store": STORE},
            "private_repositories": private,
            "rules_parameter": outputs["RulesParameterName"],
        }
        shadow_parameter = self.deployment.functions["BrokerFunction"].environment.get(
            "BROKER_SHADOW_RULES_PARAMETER"
        )
        if shadow_parameter:
            self.state["shadow_rules_parameter"] = shadow_parameter
        # The stack writes no rules: they are pushed, checked, as an admin pushes them.
        self.update_rules()
        if shadow is not None:
            self.update_rules(shadow=True)
        self._start_broker(ACCOUNT)
        assert self.gateway is not None  # noqa: S101 - set by _start_broker
        self.state = {
            "broker_url": self.gateway.url,
            **self.state,
            "public_index_url": self.public.simple_url,
            "issuers": {
                name: {
                    "url": f"{self.idp.base_url}/{name}",
                    "audience": issuer["audience"],
                    "mint_url": f"{self.idp.base_url}/{name}/mint",
                    **({"client_id": issuer["client_id"]} if issuer.get("client_id") else {}),
                }
                for name, issuer in issuers.items()
            },
            "token_issuer_role_arn": outputs["TokenIssuerRoleArn"],
            "pid": os.getpid(),
        }
        if self.options.broker_log is not None:
            self.state["broker_log"] = str(self.options.broker_log)
        self._write_state()
        if self.options.watch_rules:
            threading.Thread(target=self._watch_rules, name="rules-watch", daemon=True).start()
        return self.state

    def _parameters(self) -> dict[str, str]:
        """The template's parameters: the samconfig.toml environment's overrides, then the
        options' own; Repositories as the template's default when neither names them."""
        try:
            parameters = parameter_overrides(self.options.environment)
        except SamconfigError as error:
            raise SystemExit(str(error)) from None
        parameters.update(self.options.parameters)
        parameters.setdefault("Repositories", _template_default("Repositories"))
        if self.options.shadow_rules_file is not None:
            parameters["ShadowRules"] = "Enabled"
        return parameters

    def _provision(self, parameters: dict[str, str]) -> Deployment:
        from devstack.aws import ACCOUNT

        assert self.aws is not None  # noqa: S101
        pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }
        provisioner = Provisioner(Clients.for_endpoint(self.aws.url, REGION), pseudo, ROOT)
        # Tracing=PassThrough: there is no X-Ray daemon here.
        return provisioner.deploy(ROOT / "template.yaml", {**parameters, "Tracing": "PassThrough"})

    def _start_broker(self, account: str) -> None:
        from devstack.gateway import FunctionSpec, Gateway, Pool, TokenBucket

        if self.aws is None or self.deployment is None:
            raise RuntimeError("provision before starting the broker")
        function = self.deployment.functions["BrokerFunction"]
        api = self.deployment.apis["BrokerApi"]
        sts = admin_session(REGION).client("sts", endpoint_url=self.aws.url)
        credentials = sts.assume_role(
            RoleArn=function.role_arn, RoleSessionName="BrokerFunction", DurationSeconds=3600
        )["Credentials"]
        environment = {
            **function.environment,
            "AWS_ENDPOINT_URL": self.aws.url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": credentials["SessionToken"],
            "AWS_LAMBDA_FUNCTION_NAME": "BrokerFunction",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory),
            "BROKER_RULES_CACHE_SECONDS": str(self.options.rules_cache_seconds),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        log_path = str(self.options.broker_log) if self.options.broker_log else None
        spec = FunctionSpec(
            name="BrokerFunction",
            handler=function.handler,
            code_dir=str(FUNCTIONS),
            environment=environment,
            timeout=function.timeout,
            memory=function.memory,
            region=REGION,
            account=account,
            log_path=log_path,
        )
        self.pool = Pool(spec, self.options.instances)
        self.gateway = Gateway(
            self.pool,
            TokenBucket(api.rate_limit, api.burst_limit) if self.options.throttle else None,
            self.deployment.routes,
            port=self._port(0),
            access_log=self.options.broker_log,
        )
        if self.options.throttle:
            self.gateway.route_buckets = {
                route: TokenBucket(rate, burst) for route, (rate, burst) in api.routes.items()
            }
        self.gateway.start()

    def approve_from_console(self, stdin: TextIO, stdout: TextIO) -> None:
        """Ask at this terminal to approve each interactive (device) login at the IdP."""
        if self.idp is None:
            raise RuntimeError("the devstack is not running")
        self._approver = ConsoleApprover(self.idp, stdin, stdout)
        self._approver.start()

    def _write_state(self) -> None:
        path = self.options.state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.state, indent=2) + "\n", encoding="utf-8")
        temporary.replace(path)

    def update_rules(self, *, shadow: bool = False) -> None:
        """Push the rules file (``shadow``: the shadow rules file, into the shadow rules
        parameter) into the broker's SSM parameter as `cabroker-admin rules push` does
        (cabroker_admin.rulesstore.push): checked by the broker's own acceptance first, a
        new version labelled live, nothing written when unchanged. A refused document, or a
        failed AWS call, raises SystemExit naming the file and why; the parameter is left as
        it was."""
        from broker.scope import Domain
        from cabroker_admin.errors import AdminError
        from cabroker_admin.rulesstore import push

        if self.aws is None or self.idp is None:
            raise RuntimeError("the devstack is not running")
        path = self.options.shadow_rules_file if shadow else self.options.rules_file
        parameter = self.state.get("shadow_rules_parameter" if shadow else "rules_parameter")
        if path is None or parameter is None:
            raise RuntimeError("the devstack runs without shadow rules")
        served = self.state.get("private_repositories") or [self.state["repositories"]["private"]]
        text = expand_rules(path, self.idp.base_url, served)
        domain = Domain(
            partition="aws",
            region=REGION,
            owner=self.state["domain_owner"],
            name=self.state["domain"],
        )
        ssm = admin_session(REGION).client("ssm", endpoint_url=self.aws.url)
        try:
            push(ssm, parameter, text, domain, served, origin=str(path))
        except AdminError as error:
            raise SystemExit(str(error)) from None

    def _watch_rules(self) -> None:
        watched = {False: self.options.rules_file, True: self.options.shadow_rules_file}
        files = {shadow: path for shadow, path in watched.items() if path is not None}
        last = {shadow: _mtime(path) for shadow, path in files.items()}
        while not self._stop.wait(1.0):
            for shadow, path in files.items():
                try:
                    mtime = path.stat().st_mtime
                    if mtime != last[shadow]:
                        last[shadow] = mtime
                        self.update_rules(shadow=shadow)
                        log.info("%srules updated from %s", "shadow " if shadow else "", path)
                except (OSError, SystemExit) as error:
                    log.error("%srules not updated: %s", "shadow " if shadow else "", error)

    def stop(self) -> None:
        self._stop.set()
        if self._approver is not None:
            self._approver.stop()
        for component in (self.gateway, self.pool, self.aws, self.idp, self.public):
            if component is not None:
                try:
                    component.stop()
                except Exception:
                    log.exception("stopping %s failed", type(component).__name__)
        if self.state:
            self.options.state_file.unlink(missing_ok=True)


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _template_default(parameter: str) -> str:
    from devstack import cfn_yaml

    return str(cfn_yaml.load(ROOT / "template.yaml")["Parameters"][parameter]["Default"])


def _issuers(rules_text: str) -> dict[str, dict[str, str]]:
    import yaml

    document = yaml.safe_load(rules_text)
    return {
        str(name): {str(k): str(v) for k, v in fields.items()}
        for name, fields in document["issuers"].items()
    }

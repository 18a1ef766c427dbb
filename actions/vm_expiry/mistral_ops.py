"""Talking to Mistral from outside it: deploy the pack, run its workflows and wait for them."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import yaml
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session
from mistralclient.api import base as mistral_base
from mistralclient.api import client as mistral_client

from vm_expiry.cloud import describe
from vm_expiry.config import Config
from vm_expiry.errors import VmExpiryError

SWEEP = "vm_expiry.sweep"
PROLONG = "vm_expiry.prolong"
EXEMPT = "vm_expiry.exempt"
ENVIRONMENT = "vm_expiry"
CRON_TRIGGER = "vm_expiry.sweep.scheduled"
DEFAULT_CRON = "0 * * * *"
# The sweep is for admins; everyone may prolong their own servers.
SCOPES = {"vm_expiry_sweep.yaml": "private", "vm_expiry_prolong.yaml": "public",
          "vm_expiry_exempt.yaml": "private"}
TERMINAL = {"SUCCESS", "ERROR", "CANCELLED"}


class MistralError(VmExpiryError):
    """Mistral refused or could not be reached; the message says which call."""


def connect(sess: ks_session.Session, region_name: str | None = None) -> Any:
    """A python-mistralclient client on the workflowv2 endpoint of the session's catalog."""
    try:
        url = sess.get_endpoint(service_type="workflowv2", interface="public",
                                region_name=region_name)
    except ks_exceptions.ConnectionError as error:
        raise MistralError(f"authenticating: Keystone is unreachable ({describe(error)})") \
            from None
    except ks_exceptions.Unauthorized:
        raise MistralError("authenticating: Keystone refused the credentials") from None
    except ks_exceptions.ClientException as error:
        raise MistralError(f"finding Mistral in the catalog: {describe(error)}") from None
    if not url:
        raise MistralError("no workflowv2 (Mistral) endpoint in the service catalog")
    return mistral_client.client(session=sess, mistral_url=url)


def call(what: str, work: Callable[[], Any]) -> Any:
    """Run a client call; Mistral's and the network's errors become one line naming ``what``."""
    try:
        return work()
    except mistral_base.APIException as error:
        raise MistralError(f"{what}: Mistral says {error.error_message} "
                           f"(HTTP {error.error_code})") from None
    except ks_exceptions.ConnectFailure:
        raise MistralError(f"{what}: Mistral is unreachable") from None
    except ks_exceptions.ClientException as error:
        raise MistralError(f"{what}: {describe(error)}") from None


def packaged_definitions() -> dict[str, str]:
    """The pack's workflow files by file name."""
    folder = files("vm_expiry.workflows")
    return {name: folder.joinpath(name).read_text(encoding="utf-8") for name in SCOPES}


@dataclass(frozen=True)
class Change:
    """One thing deploy creates, updates or leaves alone."""

    kind: str
    name: str
    action: str  # create, update, unchanged

    def __str__(self) -> str:
        return f"{self.action:9} {self.kind} {self.name}"


def deploy(client: Any, config: Config | None, cron: str | None, dry_run: bool) -> list[Change]:
    """Create or update the workflows, the environment and the cron trigger; idempotent."""
    changes = []
    existing = {w.name: w for w in call("listing workflows", lambda: client.workflows.list())}
    for filename, text in packaged_definitions().items():
        scope = SCOPES[filename]
        for name in yaml.safe_load(text):
            if name == "version":
                continue
            current = existing.get(name)
            if current is None:
                action = "create"
            elif current.definition.strip() != text.strip() or current.scope != scope:
                action = "update"
            else:
                action = "unchanged"
            changes.append(Change("workflow", name, action))
            if dry_run or action == "unchanged":
                continue
            if action == "create":
                call(f"creating {name}",
                     lambda t=text, s=scope: client.workflows.create(t, scope=s))
            else:
                call(f"updating {name}",
                     lambda t=text, s=scope: client.workflows.update(t, scope=s))
    if config is not None:
        changes.append(_deploy_environment(client, config, dry_run))
    if cron is not None:
        changes.append(_deploy_cron(client, cron, dry_run))
    return changes


def _deploy_environment(client: Any, config: Config, dry_run: bool) -> Change:
    variables = {"configuration": config.public_view(), "fingerprint": config.fingerprint()}
    found = {e.name: e for e in call("listing environments", lambda: client.environments.list())}
    current = found.get(ENVIRONMENT)
    if current is None:
        action = "create"
    else:
        full = call("reading the environment", lambda: client.environments.get(ENVIRONMENT))
        stored = full.variables
        if isinstance(stored, str):
            stored = json.loads(stored)
        action = "unchanged" if stored == variables else "update"
    if not dry_run and action != "unchanged":
        method = client.environments.create if action == "create" else client.environments.update
        call(f"{action} environment", lambda: method(
            name=ENVIRONMENT, variables=json.dumps(variables),
            description="vm-expiry configuration (secrets hidden) deployed by vm-expiry deploy",
        ))
    return Change("environment", ENVIRONMENT, action)


def _deploy_cron(client: Any, pattern: str, dry_run: bool) -> Change:
    found = {t.name: t for t in call("listing cron triggers", lambda: client.cron_triggers.list())}
    current = found.get(CRON_TRIGGER)
    if current is None:
        action = "create"
    elif current.pattern != pattern:
        action = "update"  # cron triggers cannot be changed in place: replace it
    else:
        action = "unchanged"
    if not dry_run and action != "unchanged":
        if action == "update":
            call("replacing the cron trigger", lambda: client.cron_triggers.delete(CRON_TRIGGER))
        call("creating the cron trigger", lambda: client.cron_triggers.create(
            CRON_TRIGGER, SWEEP, workflow_input={}, workflow_params={"env": ENVIRONMENT},
            pattern=pattern,
        ))
    return Change("cron trigger", f"{CRON_TRIGGER} ({pattern})", action)


def run(client: Any, workflow: str, workflow_input: Mapping[str, Any], timeout: float,
        progress: bool = True) -> Mapping[str, Any]:
    """Start ``workflow``, wait for it to end, return its output; raise if it failed."""
    execution = call(f"starting {workflow}", lambda: client.executions.create(
        workflow, workflow_input=dict(workflow_input)))
    execution_id = execution.id
    started = time.monotonic()
    delay = 0.2
    while execution.state not in TERMINAL:
        waited = time.monotonic() - started
        if waited > timeout:
            raise MistralError(f"{workflow} execution {execution.id} still {execution.state} "
                               f"after {timeout:.0f} s; see `openstack workflow execution show "
                               f"{execution.id}`")
        if progress and sys.stderr.isatty():
            print(f"\r{workflow} {execution.state.lower()} {waited:5.1f} s", end="",
                  file=sys.stderr, flush=True)
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
        execution = call("reading the execution", lambda: client.executions.get(execution_id))
    if progress and sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    if execution.state != "SUCCESS":
        raise MistralError(f"{workflow} failed ({execution.id}): {execution.state_info}")
    output = execution.output
    return json.loads(output) if isinstance(output, str) else output

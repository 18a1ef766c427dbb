"""The pack's Mistral actions: thin wrappers around the policy, the sweep and the cloud.

Any Mistral user can call any installed action from a workflow of their own, so the actions
never trust who the execution context says the caller is: the caller's token is validated with
Keystone using the pack's service credentials, Mistral's target-cloud mode (``X-Target-*``
headers, which forge ``context.security``) is refused, and privileged actions require the
admin role. Configuration comes from the Mistral host's file (``VM_EXPIRY_CONFIG``), never from
workflow input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from mistral_lib import actions

from vm_expiry import sweep
from vm_expiry.cloud import PAGE_SIZE, Cloud, Forbidden, Identity, NotFound, service_session
from vm_expiry.config import Config, load_runtime
from vm_expiry.errors import VmExpiryError
from vm_expiry.prolonging import prolong_server
from vm_expiry.state import ExpiryState, Phase, locked_by_pack
from vm_expiry.timeutil import parse_api_time

log = logging.getLogger(__name__)


def _service_cloud(config: Config) -> Cloud:
    return Cloud(service_session(config.cloud), config.cloud.region_name, config.cloud.interface)


def caller(context: Any, cloud: Cloud) -> Identity:
    """The identity behind the execution, as Keystone vouches for it."""
    security = getattr(context, "security", None)
    token = getattr(security, "auth_token", None)
    if getattr(security, "is_target", False):
        raise Forbidden("refused: executions in Mistral's target-cloud mode (X-Target-* headers) "
                        "cannot use vm-expiry actions")
    if not token:
        raise Forbidden("refused: no caller token; Mistral must run with Keystone authentication")
    return cloud.validate_token(token)


def _admin_runtime(context: Any) -> tuple[Config, Cloud]:
    """The configuration and the pack's cloud, once Keystone confirms the caller is an admin."""
    config = load_runtime()
    cloud = _service_cloud(config)
    identity = caller(context, cloud)
    if not identity.is_admin:
        raise Forbidden(f"refused: user {identity.user_name or identity.user_id} is not an admin")
    return config, cloud


def resolve_now(now: str | None, allowed: bool = True) -> datetime:
    """The sweep's moment: ``now`` if given (simulated time), else the clock."""
    if now in (None, ""):
        return datetime.now(timezone.utc).replace(microsecond=0)
    if not allowed:
        raise Forbidden("refused: 'now' is accepted only with simulated_time: true")
    try:
        return parse_api_time(str(now))
    except ValueError as error:
        raise VmExpiryError(f"input 'now': {error}") from None


def _guarded(work: Callable[[], Any]) -> Any:
    """Run an action's work; errors become one clear line in the action's error result."""
    try:
        return work()
    except VmExpiryError as error:
        return actions.Result(error=str(error))
    except Exception as error:  # the traceback goes to Mistral's log, not to the user
        log.exception("vm-expiry action failed")
        return actions.Result(error=f"unexpected {type(error).__name__}; see the Mistral log")


class Plan(actions.Action):
    """List the selected projects' servers and return the due steps in batches (admin only)."""

    def __init__(self, now: str | None = None, page_size: int = PAGE_SIZE) -> None:
        super().__init__()
        self.now = now
        self.page_size = page_size

    def run(self, context: Any) -> Any:
        def work() -> Mapping[str, Any]:
            config, cloud = _admin_runtime(context)
            return sweep.plan(cloud, config, resolve_now(self.now), self.page_size)

        return _guarded(work)


class Apply(actions.Action):
    """Carry out one batch of planned steps (admin only); returns counts and events."""

    def __init__(self, steps: Sequence[Sequence[str]], now: str, dry_run: bool = False) -> None:
        super().__init__()
        self.steps = steps
        self.now = now
        self.dry_run = dry_run

    def run(self, context: Any) -> Any:
        def work() -> Mapping[str, Any]:
            config, cloud = _admin_runtime(context)
            applier = sweep.Applier(cloud, config, resolve_now(self.now), bool(self.dry_run))
            return applier.apply(self.steps)

        return _guarded(work)


class Summarize(actions.Action):
    """Merge the plan and the batches' results into the sweep's summary."""

    def __init__(self, plan: Mapping[str, Any], results: Sequence[Mapping[str, Any]] | None = None,
                 dry_run: bool = False) -> None:
        super().__init__()
        self.plan = plan
        self.results = results or []
        self.dry_run = dry_run

    def run(self, context: Any) -> Any:
        return _guarded(lambda: sweep.summarize(self.plan, self.results, bool(self.dry_run)))


class Prolong(actions.Action):
    """Prolong one server for its owner (a member of its project) or an admin."""

    def __init__(self, server: str, now: str | None = None) -> None:
        super().__init__()
        self.server = server
        self.now = now

    def run(self, context: Any) -> Any:
        def work() -> Mapping[str, Any]:
            config = load_runtime()
            cloud = _service_cloud(config)
            identity = caller(context, cloud)
            now = resolve_now(self.now, allowed=config.simulated_time)
            token = context.security.auth_token
            try:
                return prolong_server(cloud, config, identity, token, str(self.server), now)
            except NotFound:
                raise NotFound(f"server {self.server} not found in your projects") from None

        return _guarded(work)


class Exempt(actions.Action):
    """Take a server out of expiry for good (admin only): the sealed state ``exempt``.

    A server the pack locked and stopped is unlocked (it is left stopped: its owner starts it).
    """

    def __init__(self, server: str) -> None:
        super().__init__()
        self.server = server

    def run(self, context: Any) -> Any:
        def work() -> Mapping[str, Any]:
            config, cloud = _admin_runtime(context)
            facts = cloud.get_server(str(self.server))
            sweep.write_state(cloud, facts, ExpiryState(Phase.EXEMPT, None), config.secret_key)
            unlocked = locked_by_pack(facts.locked, facts.locked_reason)
            if unlocked:
                cloud.unlock(facts.id)
            return {"server": facts.id, "name": facts.name, "exempt": True, "unlocked": unlocked}

        return _guarded(work)

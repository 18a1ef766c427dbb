"""A sweep: plan over the whole cloud, then apply the due steps in batches.

``plan`` streams the listing through the policy and keeps only the steps due. ``apply`` re-reads
each server, asks the policy again (the plan may be stale, and its input may be forged), and
acts only when the policy still wants the same step. Everything returned is plain JSON whose
size follows the steps due, never the number of servers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from vm_expiry.cloud import Cloud, NotFound
from vm_expiry.config import Config
from vm_expiry.errors import VmExpiryError
from vm_expiry.mail.render import MailRenderer
from vm_expiry.mail.smtp import SmtpSender
from vm_expiry.policy import (
    ServerFacts,
    Step,
    StepKind,
    decide,
    plan_steps,
    user_is_exempt,
)
from vm_expiry.state import DELETE_AT, ExpiryState, lock_reason, read_state
from vm_expiry.timeutil import days_until, format_time

log = logging.getLogger(__name__)
BLOCKED_SHOWN = 200
EVENTS_SHOWN = 200
MAIL_EVENTS = {StepKind.REMIND: "reminder", StepKind.EXPIRE: "expired", StepKind.DELETE: "deleted"}


def plan(cloud: Cloud, config: Config, now: datetime, page_size: int) -> dict[str, Any]:
    """What the sweep will do: batches of ``[server id, step kind]`` and the counts."""
    projects = cloud.selected_projects(config.project_selector)
    seen = 0

    def decisions() -> Iterable[Step]:
        nonlocal seen
        for facts in cloud.iter_servers(projects, page_size=page_size):
            seen += 1
            yield decide_with_owner(cloud, facts, config, now)

    result = plan_steps(decisions(), config)
    acting = [s for s in result.steps if s.acts]
    over = max(0, len(acting) - config.max_steps_per_run)
    acting = acting[: config.max_steps_per_run]
    blocked = [s for s in result.steps if s.kind is StepKind.BLOCKED]
    refs = [[s.server_id, s.kind.value] for s in acting]
    size = config.batch_size
    return {
        "now": format_time(now),
        "projects": len(projects),
        "servers": seen,
        "counts": dict(result.counts),
        "deletions_waiting": result.deletions_waiting,
        "steps_waiting": over,
        "blocked": [{"server": s.server_id, "reason": s.reason} for s in blocked[:BLOCKED_SHOWN]],
        "blocked_total": len(blocked),
        "batches": [refs[i : i + size] for i in range(0, len(refs), size)],
    }


def decide_with_owner(cloud: Cloud, facts: ServerFacts, config: Config, now: datetime) -> Step:
    """The policy's step, asking Keystone about the owner only when the step would act."""
    step = decide(facts, config, now)
    if step.acts and user_is_exempt(cloud.user(facts.user_id)):
        return decide(replace(facts, owner_exempt=True), config, now)
    return step


@dataclass(frozen=True)
class Outcome:
    """What became of one planned step."""

    server: str
    name: str
    kind: str
    outcome: str  # done, failed, skipped, dry-run
    detail: str
    mail: str = "-"  # sent, failed, -

    def as_json(self) -> dict[str, str]:
        return dict(self.__dict__)


class Applier:
    """Carries out planned steps with the pack's cloud session, renderer and SMTP sender."""

    def __init__(self, cloud: Cloud, config: Config, now: datetime, dry_run: bool) -> None:
        self.cloud = cloud
        self.config = config
        self.now = now
        self.dry_run = dry_run
        self.renderer = MailRenderer(config.mail)
        self.sender = SmtpSender(config.mail)
        self._projects: dict[str, Mapping[str, Any] | None] = {}

    def apply(self, refs: Sequence[Sequence[str]]) -> dict[str, Any]:
        """Apply a batch; one server's failure never stops the others."""
        with ThreadPoolExecutor(max_workers=self.config.apply_concurrency) as pool:
            outcomes = list(pool.map(self._apply_safely, refs))
        return summarize_batch(outcomes)

    def _apply_safely(self, ref: Sequence[str]) -> Outcome:
        server_id, kind = str(ref[0]), str(ref[1])
        try:
            return self._apply(server_id, StepKind(kind))
        except VmExpiryError as error:
            return Outcome(server_id, "", kind, "failed", str(error))
        except ValueError:
            return Outcome(server_id, "", kind, "failed", f"unknown step kind {kind!r}")
        except Exception as error:  # a bug must not stop the batch; Mistral's log keeps it
            log.exception("applying %s to server %s", kind, server_id)
            return Outcome(server_id, "", kind, "failed", f"unexpected {type(error).__name__}")

    def _project(self, project_id: str) -> Mapping[str, Any] | None:
        if project_id not in self._projects:
            try:
                self._projects[project_id] = self.cloud.project(project_id)
            except NotFound:
                self._projects[project_id] = None
        return self._projects[project_id]

    def _apply(self, server_id: str, planned: StepKind) -> Outcome:
        try:
            facts = self.cloud.get_server(server_id)
        except NotFound:
            return Outcome(server_id, "", planned.value, "skipped", "server no longer exists")
        project = self._project(facts.project_id)
        if project is None or not self.config.project_selector.matches(project):
            return Outcome(server_id, facts.name, planned.value, "skipped",
                           "project no longer selected for expiry")
        step = decide_with_owner(self.cloud, facts, self.config, self.now)
        if step.kind is not planned:
            return Outcome(server_id, facts.name, planned.value, "skipped",
                           f"changed since the plan; now: {step.kind.value}: {step.reason}")
        if self.dry_run:
            return Outcome(server_id, facts.name, planned.value, "dry-run", step.reason)
        if step.kind in (StepKind.MARK, StepKind.REPAIR):
            self._write(facts, step.new_state)
            return Outcome(server_id, facts.name, step.kind.value, "done", step.reason)
        if step.kind is StepKind.DELETE:
            return self._delete(facts, project, step)
        return self._notify_then_record(facts, project, step)

    def _write(self, facts: ServerFacts, state: ExpiryState | None) -> None:
        assert state is not None
        write_state(self.cloud, facts, state, self.config.secret_key)

    def _notify_then_record(
        self, facts: ServerFacts, project: Mapping[str, Any], step: Step
    ) -> Outcome:
        """Remind or expire: the new state is written only once the mail was delivered."""
        assert step.new_state is not None
        if step.kind is StepKind.EXPIRE:
            assert step.new_state.expire_at is not None
            if step.lock:
                self.cloud.lock(facts.id, lock_reason(step.new_state.expire_at))
            if step.stop:
                self.cloud.stop(facts.id)
        error = self.mail(MAIL_EVENTS[step.kind], facts, project, step.new_state, step.stage)
        if error is None:
            self._write(facts, step.new_state)
            return Outcome(facts.id, facts.name, step.kind.value, "done", step.reason, "sent")
        if step.state_if_mail_fails is not None:
            self._write(facts, step.state_if_mail_fails)
        return Outcome(facts.id, facts.name, step.kind.value, "failed",
                       f"mail not delivered, will retry: {error}", "failed")

    def _delete(self, facts: ServerFacts, project: Mapping[str, Any], step: Step) -> Outcome:
        state = read_state(facts.id, facts.metadata, self.config.secret_key).sealed
        assert state is not None  # the policy deletes only sealed expired servers
        self.cloud.delete(facts.id)
        error = self.mail("deleted", facts, project, state, None)
        detail = step.reason if error is None else f"{step.reason}; deletion mail failed: {error}"
        return Outcome(facts.id, facts.name, "delete", "done", detail,
                       "sent" if error is None else "failed")

    def mail(self, event: str, facts: ServerFacts, project: Mapping[str, Any],
             state: ExpiryState, stage: int | None) -> str | None:
        """Send one event's mail to the server's owner; the error text, or None if delivered."""
        user = self.cloud.user(facts.user_id)
        email = (user or {}).get("email")
        if not email:
            return f"no e-mail address for user {facts.user_id}"
        expire_at = state.expire_at
        variables = {
            "server": {"id": facts.id, "name": facts.name, "status": facts.status},
            "project": {"id": project.get("id"), "name": project.get("name")},
            "user": {"id": facts.user_id, "name": (user or {}).get("name"), "email": email},
            "expire_at": expire_at,
            "days_left": days_until(expire_at, self.now) if expire_at else 0,
            "delete_at": state.delete_at,
            "grace_days": self.config.grace_days,
            "prolong_days": self.config.prolong_days,
            "stage": stage,
        }
        seed = f"{facts.id}|{event}|{format_time(expire_at) if expire_at else '-'}|{stage}"
        message = self.renderer.render(event, to=email, variables=variables, message_id_seed=seed)
        delivery = self.sender.send([message])[0]
        return None if delivery.delivered else delivery.error or "not delivered"


def write_state(cloud: Cloud, facts: ServerFacts, state: ExpiryState, secret_key: str) -> None:
    """Write a state's keys and seal, dropping a deletion date the state no longer has."""
    cloud.set_metadata(facts.id, state.to_metadata(facts.id, secret_key))
    if state.delete_at is None and DELETE_AT in facts.metadata:
        cloud.delete_metadata_key(facts.id, DELETE_AT)


def summarize_batch(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """A batch's result: counts per step kind and outcome, and the first events."""
    counts: dict[str, dict[str, int]] = {}
    for outcome in outcomes:
        per_kind = counts.setdefault(outcome.kind, {})
        per_kind[outcome.outcome] = per_kind.get(outcome.outcome, 0) + 1
    # Failures first: they feed the summary's list of blocked servers.
    shown = sorted(outcomes, key=lambda o: o.outcome != "failed")[:EVENTS_SHOWN]
    return {"counts": counts, "events": [o.as_json() for o in shown]}


def summarize(plan_result: Mapping[str, Any], batch_results: Sequence[Mapping[str, Any]],
              dry_run: bool) -> dict[str, Any]:
    """The sweep's summary from the plan and every batch's result."""
    outcomes: dict[str, dict[str, int]] = {}
    events: list[Mapping[str, Any]] = []
    for batch in batch_results:
        for kind, per_outcome in (batch.get("counts") or {}).items():
            merged = outcomes.setdefault(kind, {})
            for outcome, count in per_outcome.items():
                merged[outcome] = merged.get(outcome, 0) + int(count)
        events.extend(batch.get("events") or [])
    failed = [
        {"server": e["server"], "reason": f"{e['kind']} failed: {e['detail']}"}
        for e in events if e.get("outcome") == "failed"
    ]
    blocked = list(plan_result.get("blocked") or []) + failed
    return {
        "now": plan_result.get("now"),
        "dry_run": bool(dry_run),
        "projects": plan_result.get("projects", 0),
        "servers": plan_result.get("servers", 0),
        "steps": plan_result.get("counts", {}),
        "outcomes": outcomes,
        "deletions_waiting": plan_result.get("deletions_waiting", 0),
        "steps_waiting": plan_result.get("steps_waiting", 0),
        "blocked": blocked[:BLOCKED_SHOWN],
        "blocked_total": int(plan_result.get("blocked_total", 0)) + len(failed),
        "events": events[:EVENTS_SHOWN],
        "events_total": len(events),
    }

"""The expiry policy: facts about a server + configuration + now -> the one step due.

Pure: no clock, no I/O, no logging. Every lifecycle rule of the spec lives here once; the
actions, the workflows, the CLI and Horizon ask this module and never decide on their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

from vm_expiry.config import Config
from vm_expiry.state import ExpiryState, Phase, locked_by_pack, read_state
from vm_expiry.timeutil import days, format_time

BUSY_STATUSES = frozenset({"BUILD", "ERROR", "REBUILD", "MIGRATING", "RESIZE", "VERIFY_RESIZE"})
STOPPED = "SHUTOFF"


@dataclass(frozen=True)
class ServerFacts:
    """What the pack knows of one server from Nova. ``created`` is aware UTC."""

    id: str
    name: str
    status: str
    created: datetime
    metadata: Mapping[str, str]
    project_id: str
    user_id: str
    task_state: str | None = None
    locked: bool = False
    locked_reason: str | None = None
    vcpus: int = 0
    owner_exempt: bool = False


class StepKind(str, Enum):
    """The kinds of step a sweep can take on a server."""

    MARK = "mark"
    REMIND = "remind"
    EXPIRE = "expire"
    DELETE = "delete"
    REPAIR = "repair"
    NONE = "none"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Step:
    """The step due for one server, and the state to write once it succeeded.

    ``stage`` is the reminder stage (days) for REMIND. For EXPIRE, ``lock`` and ``stop`` say
    which parts are still to do (a retry after a failed mail finds them done).
    ``state_if_mail_fails`` is what to write when the step's mail is not delivered (a mark or
    repair folded into a reminder); None means write nothing.
    """

    kind: StepKind
    server_id: str
    reason: str
    new_state: ExpiryState | None = None
    stage: int | None = None
    lock: bool = False
    stop: bool = False
    state_if_mail_fails: ExpiryState | None = None

    @property
    def acts(self) -> bool:
        """Whether the step changes anything."""
        return self.kind not in (StepKind.NONE, StepKind.BLOCKED)


def decide(facts: ServerFacts, config: Config, now: datetime) -> Step:
    """The one step due for a server of a selected project at ``now``.

    A mark or a repair is folded into the reminder due on top of it, so that a sweep repeated
    at the same ``now`` after every step succeeded finds nothing left to do.
    """
    sid = facts.id
    if facts.status in BUSY_STATUSES or facts.task_state:
        busy = facts.task_state or facts.status
        return Step(StepKind.NONE, sid, f"skipped while {busy}")
    exempt_by = _configured_exemption(facts, config)
    if exempt_by:
        return Step(StepKind.NONE, sid, f"exempt ({exempt_by})")

    reading = read_state(sid, facts.metadata, config.secret_key)
    if not reading.has_pack_keys:
        state = _marked_state(facts, config, now)
        base = Step(StepKind.MARK, sid, _mark_reason(facts, state, config), new_state=state)
    elif reading.sealed is None:
        state = ExpiryState(Phase.ACTIVE, prolonged_expiry(facts, config, now))
        base = Step(
            StepKind.REPAIR, sid,
            f"{reading.problem}; expiry reset to {format_time(state.expire_at)}",
            new_state=state,
        )
    else:
        state = reading.sealed
        base = None if reading.intact else Step(
            StepKind.REPAIR, sid, f"{reading.problem}; restored the sealed values", new_state=state
        )
    if state.phase is Phase.EXEMPT:
        return base or Step(StepKind.NONE, sid, "expiry removed by an administrator")
    if state.phase is Phase.EXPIRED:
        step = _after_expiry(facts, state, config, now)
    else:
        step = _before_expiry(facts, state, config, now)
    if base is None:
        return step
    if not step.acts:
        return base
    return replace(step, reason=f"{base.reason}; {step.reason}", state_if_mail_fails=base.new_state)


def _configured_exemption(facts: ServerFacts, config: Config) -> str | None:
    if facts.owner_exempt:
        return "user, by an administrator"
    if facts.id in config.exempt.servers:
        return "server"
    if facts.user_id in config.exempt.users:
        return "user"
    if facts.project_id in config.exempt.projects:
        return "project"
    return None


def _marked_state(facts: ServerFacts, config: Config, now: datetime) -> ExpiryState:
    expire_at = max(facts.created + days(config.lifetime_days), now + days(config.min_notice_days))
    return ExpiryState(Phase.ACTIVE, expire_at)


def _mark_reason(facts: ServerFacts, state: ExpiryState, config: Config) -> str:
    assert state.expire_at is not None
    by_lifetime = state.expire_at == facts.created + days(config.lifetime_days)
    why = "lifetime_days after creation" if by_lifetime else "min_notice_days from now"
    return f"new to expiry: expires {format_time(state.expire_at)} ({why})"


def _before_expiry(facts: ServerFacts, state: ExpiryState, config: Config, now: datetime) -> Step:
    assert state.expire_at is not None
    sid = facts.id
    urgent_stage = min(config.reminder_days)
    if now >= state.expire_at:
        if state.reminded_stage is None:
            # No lock without a delivered reminder: remind now, and give the reminder's notice.
            later = now + days(urgent_stage)
            return Step(
                StepKind.REMIND, sid,
                f"expiry {format_time(state.expire_at)} passed without a delivered reminder: "
                f"not locked; {urgent_stage}-day reminder now, expiry moved to "
                f"{format_time(later)}",
                new_state=ExpiryState(Phase.REMINDED, later, reminded_stage=urgent_stage),
                stage=urgent_stage,
            )
        if facts.locked and not locked_by_pack(facts.locked, facts.locked_reason):
            return Step(
                StepKind.BLOCKED, sid,
                f"expired but locked by someone else ({facts.locked_reason or 'no reason given'})",
            )
        return Step(
            StepKind.EXPIRE, sid, f"expired {format_time(state.expire_at)}",
            new_state=ExpiryState(
                Phase.EXPIRED, state.expire_at, delete_at=now + days(config.grace_days)
            ),
            lock=not facts.locked,
            stop=facts.status != STOPPED,
        )
    due = [s for s in config.reminder_days if now >= state.expire_at - days(s)]
    if not due:
        return Step(StepKind.NONE, sid, f"expires {format_time(state.expire_at)}")
    urgent = min(due)
    if state.reminded_stage is not None and state.reminded_stage <= urgent:
        return Step(StepKind.NONE, sid, f"{state.reminded_stage}-day reminder already delivered")
    return Step(
        StepKind.REMIND, sid, f"{urgent}-day reminder due for {format_time(state.expire_at)}",
        new_state=replace(state, phase=Phase.REMINDED, reminded_stage=urgent),
        stage=urgent,
    )


def _after_expiry(facts: ServerFacts, state: ExpiryState, config: Config, now: datetime) -> Step:
    assert state.expire_at is not None and state.delete_at is not None
    sid = facts.id
    # A grace period raised after the server expired still applies to it.
    delete_at = max(state.delete_at, state.expire_at + days(config.grace_days))
    if now < delete_at:
        return Step(StepKind.NONE, sid, f"expired; deletion due {format_time(delete_at)}")
    if not locked_by_pack(facts.locked, facts.locked_reason) or facts.status != STOPPED:
        return Step(
            StepKind.BLOCKED, sid,
            "expired, but no longer locked and stopped by the pack: someone intervened; "
            "prolong it or remove its expiry",
        )
    return Step(StepKind.DELETE, sid, f"expired, grace ended {format_time(delete_at)}")


USER_EXEMPT_PROPERTY = "vm_expiry_exempt"


def user_is_exempt(user: Mapping[str, object] | None) -> bool:
    """Whether an administrator exempted a Keystone user (a property on the user)."""
    return bool(user) and str((user or {}).get(USER_EXEMPT_PROPERTY, "")).lower() == "true"


def lifetime_cap(facts: ServerFacts, config: Config) -> datetime | None:
    """The latest expiry a prolong may give, if the configuration caps lifetimes."""
    if config.max_lifetime_days is None:
        return None
    return facts.created + days(config.max_lifetime_days)


def prolonged_expiry(facts: ServerFacts, config: Config, now: datetime) -> datetime:
    """What a prolong would give now; used as the safe value for an untrusted state.

    Never less than ``min_notice_days`` ahead, so a repaired server still gets its notice.
    """
    target = now + days(config.prolong_days)
    cap = lifetime_cap(facts, config)
    if cap is not None:
        target = min(target, cap)
    return max(target, now + days(config.min_notice_days))


class ProlongRefused(Exception):
    """A prolong the policy refuses; the message is for the user."""


@dataclass(frozen=True)
class Prolongation:
    """The outcome of an accepted prolong: the state to write and what to undo."""

    new_state: ExpiryState
    previous_expire_at: datetime | None
    unlock: bool
    start: bool
    capped: bool


def prolong(facts: ServerFacts, config: Config, now: datetime) -> Prolongation:
    """Prolong a server to ``now + prolong_days`` (or the lifetime cap).

    Raises ProlongRefused with the reason when the server cannot be prolonged.
    """
    if facts.status in BUSY_STATUSES or facts.task_state:
        raise ProlongRefused(
            f"server {facts.id} is busy ({facts.task_state or facts.status}); try again later"
        )
    if _configured_exemption(facts, config):
        raise ProlongRefused(f"server {facts.id} is exempt from expiry; nothing to prolong")
    reading = read_state(facts.id, facts.metadata, config.secret_key)
    current = reading.sealed
    if current is not None and current.phase is Phase.EXEMPT:
        raise ProlongRefused(f"server {facts.id} is exempt from expiry; nothing to prolong")

    target = now + days(config.prolong_days)
    cap = lifetime_cap(facts, config)
    capped = cap is not None and cap < target
    if cap is not None and capped:
        if cap <= now:
            raise ProlongRefused(
                f"server {facts.id} has reached its maximum lifetime of "
                f"{config.max_lifetime_days} days (created {format_time(facts.created)})"
            )
        target = cap
    if current is not None and current.phase is not Phase.EXPIRED:
        assert current.expire_at is not None
        # Equal too: a prolong that moves nothing must not reset the reminders already sent
        # (they would go out again with the same Message-IDs) nor mail a second confirmation.
        if current.expire_at >= target:
            raise ProlongRefused(
                f"server {facts.id} already expires {format_time(current.expire_at)}, "
                f"no earlier than a prolong would give ({format_time(target)})"
            )
    ours = locked_by_pack(facts.locked, facts.locked_reason)
    was_expired = current is not None and current.phase is Phase.EXPIRED
    return Prolongation(
        new_state=ExpiryState(Phase.ACTIVE, target),
        previous_expire_at=current.expire_at if current else None,
        unlock=ours,
        start=(ours or was_expired) and facts.status == STOPPED,
        capped=capped,
    )


@dataclass(frozen=True)
class Plan:
    """The steps a sweep takes, after the deletion circuit breaker."""

    steps: tuple[Step, ...]
    deletions_waiting: int = 0
    counts: Mapping[str, int] = field(default_factory=dict)


def plan_steps(decisions: Iterable[Step], config: Config) -> Plan:
    """Keep the steps that act, holding back deletions beyond ``max_deletions_per_run``.

    Decisions are consumed as a stream; only acting steps are kept, so memory follows the
    number of steps due rather than the number of servers.
    """
    kept: list[Step] = []
    counts: dict[str, int] = {}
    deletions = 0
    waiting = 0
    for step in decisions:
        kind = step.kind
        if kind is StepKind.DELETE:
            if deletions >= config.max_deletions_per_run:
                waiting += 1
                kind = StepKind.NONE
                step = replace(step, kind=kind, reason=f"{step.reason}; waits for next sweep "
                               f"(max_deletions_per_run={config.max_deletions_per_run})")
            else:
                deletions += 1
        counts[kind.value] = counts.get(kind.value, 0) + 1
        if step.acts or step.kind is StepKind.BLOCKED:
            kept.append(step)
    return Plan(steps=tuple(kept), deletions_waiting=waiting, counts=counts)


def batches(steps: Sequence[Step], size: int) -> list[list[Step]]:
    """Acting steps grouped for the workflow's with-items, in order."""
    acting = [s for s in steps if s.acts]
    return [acting[i : i + size] for i in range(0, len(acting), size)]


def forecast_deletion(facts: ServerFacts, step: Step, config: Config,
                      now: datetime) -> datetime | None:
    """When the server will be deleted if nobody prolongs it and every mail is delivered."""
    if step.kind is StepKind.DELETE:
        return now
    state = step.new_state or read_state(facts.id, facts.metadata, config.secret_key).sealed
    if state is None or state.expire_at is None or step.kind is StepKind.BLOCKED:
        return None
    if state.phase is Phase.EXPIRED and state.delete_at is not None:
        return max(state.delete_at, state.expire_at + days(config.grace_days))
    return max(state.expire_at, now) + days(config.grace_days)

"""Invariants of the lifecycle, checked over random histories (hypothesis).

A history is a server's life: sweeps at advancing (sometimes skewed) times with mail delivery
succeeding or failing, prolongs by the owner, and the owner editing the metadata. After every
event the invariants of the spec must hold.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from policy_helpers import SECRET, T0, SimServer, make_server

from vm_expiry.config import Config, from_mapping
from vm_expiry.errors import ConfigError
from vm_expiry.policy import (
    ProlongRefused,
    StepKind,
    decide,
    lifetime_cap,
    prolong,
    prolonged_expiry,
)
from vm_expiry.state import PACK_KEYS, Phase
from vm_expiry.timeutil import days


@st.composite
def configs(draw: st.DrawFn) -> Config:
    lifetime = draw(st.integers(2, 120))
    prolong_days = draw(st.integers(2, 60))
    stages = draw(st.lists(st.integers(1, 30), min_size=1, max_size=4, unique=True))
    raw = {
        "secret_key": SECRET,
        "lifetime_days": lifetime,
        "prolong_days": prolong_days,
        "reminder_days": stages,
        "grace_days": draw(st.integers(1, 30)),
        "min_notice_days": draw(st.integers(1, 30)),
        "max_lifetime_days": draw(st.none() | st.integers(lifetime, 400)),
    }
    try:
        return from_mapping(raw)
    except ConfigError:
        assume(False)
        raise


TAMPERS = ("far_future", "delete_expire_at", "garbage", "forge_exempt", "forge_reminded",
           "wipe_all", "forge_expired")

events = st.lists(
    st.one_of(
        st.tuples(st.just("sweep"), st.integers(1, 24 * 20), st.booleans()),
        st.tuples(st.just("skewed_sweep"), st.integers(1, 24 * 5), st.booleans()),
        st.tuples(st.just("prolong"), st.integers(1, 24 * 20), st.just(True)),
        st.tuples(st.just("tamper"), st.sampled_from(TAMPERS), st.just(True)),
    ),
    min_size=1,
    max_size=60,
)


def tampered(metadata: dict[str, str], how: str) -> dict[str, str]:
    edited = dict(metadata)
    if how == "far_future":
        edited["expire_at"] = "2999-01-01T00:00:00Z"
    elif how == "delete_expire_at":
        edited.pop("expire_at", None)
    elif how == "garbage":
        edited["expire_at"] = "soon-ish"
    elif how == "forge_exempt":
        edited["expire_state"] = "exempt"
    elif how == "forge_reminded":
        edited["expire_state"] = "reminded-1"
    elif how == "forge_expired":
        edited.update(expire_state="expired", expire_delete_at="2026-01-02T00:00:00Z")
    elif how == "wipe_all":
        for key in PACK_KEYS:
            edited.pop(key, None)
    return edited


class History:
    """Runs events against one simulated server and checks the invariants after each."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sim = SimServer(make_server(created=T0))
        self.now = T0
        self.latest = T0
        self.stages_this_epoch: list[int] = []
        self.expiry_mail_at: datetime | None = None

    def new_epoch(self) -> None:
        self.stages_this_epoch = []
        self.expiry_mail_at = None

    def run(self, event: tuple) -> None:
        kind, amount, mail_ok = event
        if self.sim.deleted_at is not None:
            return
        if kind == "sweep":
            self.now = self.latest = self.latest + timedelta(hours=amount)
            self.sweep(mail_ok)
        elif kind == "skewed_sweep":
            self.now = self.latest - timedelta(hours=amount)
            self.skewed_sweep(mail_ok)
        elif kind == "prolong":
            self.now = self.latest = self.latest + timedelta(hours=amount)
            self.prolong()
        else:
            self.tamper(amount)

    def sweep(self, mail_ok: bool) -> None:
        config, sim, now = self.config, self.sim, self.now
        before = sim.sealed(config)
        was_locked = sim.facts.locked
        step = sim.sweep(now, config, mail_ok)
        self.record(step, before, was_locked, mail_ok)
        if step.kind is StepKind.DELETE:
            return
        if mail_ok:
            again = decide(sim.facts, config, now)
            assert not again.acts, f"repeated sweep at the same now acted: {again}"

    def record(self, step, before, was_locked: bool, mail_ok: bool) -> None:
        """Check one applied step against what this history delivered so far."""
        config, now = self.config, self.now
        if before is None and step.new_state is not None:
            # A state built afresh (mark, or repair of an untrusted one) is a new expiry; a
            # repair restoring the sealed values continues the one the reminders were for.
            self.new_epoch()
        if step.kind is StepKind.REMIND and mail_ok:
            # Each stage at most once for one expiry date.
            assert step.stage not in self.stages_this_epoch
            self.stages_this_epoch.append(step.stage)
        if step.kind is StepKind.EXPIRE:
            # Never a lock without a delivered reminder.
            assert self.stages_this_epoch, "locked without a delivered reminder"
            assert was_locked or step.lock
            if mail_ok:
                self.expiry_mail_at = now
        if step.kind is StepKind.DELETE:
            sealed = before
            assert sealed is not None and sealed.phase is Phase.EXPIRED
            assert self.expiry_mail_at is not None, "deleted without a delivered expiry mail"
            assert now >= sealed.expire_at + days(config.grace_days)
            assert now >= self.expiry_mail_at + days(config.grace_days)

    def skewed_sweep(self, mail_ok: bool) -> None:
        settled = decide(self.sim.facts, self.config, self.latest)
        before = self.sim.sealed(self.config)
        was_locked = self.sim.facts.locked
        step = decide(self.sim.facts, self.config, self.now)
        if not settled.acts:
            # Nothing due at the latest time seen means nothing due at an earlier one.
            assert not step.acts, f"skewed sweep acted: {step}"
        self.sim.apply(step, self.now, self.config, mail_ok)
        self.record(step, before, was_locked, mail_ok)

    def prolong(self) -> None:
        config, sim, now = self.config, self.sim, self.now
        try:
            result = prolong(sim.facts, config, now)
        except ProlongRefused:
            return
        cap = lifetime_cap(sim.facts, config)
        expected = now + days(config.prolong_days)
        assert result.new_state.expire_at == (min(expected, cap) if cap else expected)
        facts = sim.facts
        if result.unlock:
            facts = replace(facts, locked=False, locked_reason=None)
        if result.start:
            facts = replace(facts, status="ACTIVE")
        sim.facts = facts
        sim._write(result.new_state, config)
        self.new_epoch()

    def tamper(self, how: str) -> None:
        config, sim = self.config, self.sim
        if sim.facts.locked:
            return  # Nova refuses metadata changes on a locked server to its owner.
        sealed = sim.sealed(config)
        sim.facts = replace(sim.facts, metadata=tampered(dict(sim.facts.metadata), how))
        step = decide(sim.facts, config, self.now)
        state = step.state_if_mail_fails or step.new_state
        if sealed is None or state is None:
            return
        ceiling = max(
            sealed.expire_at or self.now,
            prolonged_expiry(sim.facts, config, self.now),
            sim.facts.created + days(config.lifetime_days),
        )
        assert state.phase is not Phase.EXEMPT, "a forged exemption was honoured"
        assert state.expire_at <= ceiling, "tampering bought more than a prolong"
        if how != "wipe_all" and step.kind is not StepKind.REPAIR:
            assert step.reason.startswith(("the seal", "expiry keys", "edited")), step


@settings(max_examples=400, deadline=None)
@given(config=configs(), history=events)
def test_no_history_breaks_the_lifecycle_invariants(config: Config, history: list) -> None:
    run = History(config)
    for event in history:
        run.run(event)


@settings(max_examples=300, deadline=None)
@given(config=configs(), offset=st.integers(0, 24 * 400), sweep_hours=st.integers(1, 48))
def test_a_forgotten_server_is_deleted_eventually_and_never_early(
    config: Config, offset: int, sweep_hours: int
) -> None:
    sim = SimServer(make_server(created=T0))
    now = T0 + timedelta(hours=offset)
    expire_at = None
    for _ in range(5000):
        step = sim.sweep(now, config)
        sealed = sim.sealed(config)
        if sealed is not None and sealed.phase is Phase.REMINDED:
            expire_at = sealed.expire_at
        if step.kind is StepKind.DELETE:
            assert expire_at is not None and now >= expire_at + days(config.grace_days)
            break
        now += timedelta(hours=sweep_hours)
    assert sim.deleted_at is not None, "a forgotten server was never deleted"
    assert [m[1] for m in sim.mails][-1] == "expired"


@settings(max_examples=300, deadline=None)
@given(config=configs(), created_days=st.integers(0, 400), at_days=st.integers(0, 400))
def test_prolong_yields_now_plus_prolong_days_or_the_cap(
    config: Config, created_days: int, at_days: int
) -> None:
    server = make_server(created=T0 + days(created_days))
    now = T0 + days(max(created_days, at_days))
    try:
        result = prolong(server, config, now)
    except ProlongRefused as refusal:
        cap = lifetime_cap(server, config)
        assert cap is not None and cap <= now, refusal
        return
    cap = lifetime_cap(server, config)
    wanted = now + days(config.prolong_days)
    assert result.new_state.expire_at == (min(wanted, cap) if cap else wanted)
    assert result.new_state.phase is Phase.ACTIVE

"""Each lifecycle rule of the spec, pinned by an example."""

from __future__ import annotations

from dataclasses import replace

import pytest
from policy_helpers import SECRET, T0, SimServer, make_config, make_server

from vm_expiry.policy import (
    ProlongRefused,
    StepKind,
    batches,
    decide,
    plan_steps,
    prolong,
)
from vm_expiry.state import ExpiryState, Phase, lock_reason
from vm_expiry.timeutil import days, format_time


def marked(server, config, now=T0):
    sim = SimServer(server)
    sim.sweep(now, config)
    return sim


def test_new_server_is_marked_lifetime_days_after_creation():
    config = make_config()
    step = decide(make_server(), config, T0 + days(1))
    assert step.kind is StepKind.MARK
    assert step.new_state.expire_at == T0 + days(90)


def test_existing_old_server_is_adopted_with_minimum_notice():
    config = make_config(min_notice_days=20)
    now = T0 + days(400)
    step = decide(make_server(), config, now)
    assert step.kind is StepKind.MARK
    assert step.new_state.expire_at == now + days(20)


@pytest.mark.parametrize("status", ["BUILD", "ERROR"])
def test_building_and_failed_servers_are_skipped(status):
    step = decide(make_server(status=status), make_config(), T0)
    assert step.kind is StepKind.NONE and status in step.reason


def test_server_with_task_in_progress_is_skipped():
    step = decide(make_server(task_state="rebooting"), make_config(), T0)
    assert step.kind is StepKind.NONE and "rebooting" in step.reason


def test_reminders_arrive_in_order_each_once():
    config = make_config()
    sim = marked(make_server(), config)
    expire_at = sim.sealed(config).expire_at
    stages = []
    for hour in range(0, 24 * 95, 6):
        step = sim.sweep(T0 + days(hour / 24), config)
        if step.kind is StepKind.REMIND:
            stages.append(step.stage)
        if step.kind is StepKind.EXPIRE:
            break
    assert stages == [14, 7, 1]
    assert [m[0] for m in sim.mails[:3]] == [
        expire_at - days(14), expire_at - days(7), expire_at - days(1)
    ]


def test_only_the_most_urgent_of_several_due_reminders_is_sent():
    config = make_config()
    sim = marked(make_server(), config)
    step = sim.sweep(T0 + days(89) + days(0.5), config)
    assert step.kind is StepKind.REMIND and step.stage == 1
    assert decide(sim.facts, config, T0 + days(89.6)).kind is StepKind.NONE


def test_expiry_locks_and_stops_only_after_a_delivered_reminder():
    config = make_config()
    sim = marked(make_server(), config)
    step = sim.sweep(T0 + days(91), config, mail_ok=False)
    assert step.kind is StepKind.REMIND and "not locked" in step.reason
    assert not sim.facts.locked
    step = sim.sweep(T0 + days(91), config)
    assert step.kind is StepKind.REMIND
    assert decide(sim.facts, config, T0 + days(91.9)).kind is StepKind.NONE
    step = sim.sweep(T0 + days(92), config)
    assert step.kind is StepKind.EXPIRE and step.lock and step.stop


def test_late_reminder_moves_expiry_to_give_the_smallest_stage_of_notice():
    config = make_config()
    sim = marked(make_server(), config)
    step = sim.sweep(T0 + days(95), config)
    assert step.kind is StepKind.REMIND and step.stage == 1
    assert step.new_state.expire_at == T0 + days(96)


def test_adopted_server_is_marked_and_reminded_in_one_step():
    config = make_config()
    now = T0 + days(400)
    step = decide(make_server(), config, now)
    assert step.kind is StepKind.REMIND and step.stage == 14
    assert step.state_if_mail_fails == ExpiryState(Phase.ACTIVE, now + days(14))
    assert step.new_state.expire_at == now + days(14)


def test_failed_expiry_mail_is_retried_without_locking_again():
    config = make_config()
    sim = marked(make_server(), config)
    sim.sweep(T0 + days(89.5), config)
    first = sim.sweep(T0 + days(90), config, mail_ok=False)
    assert first.kind is StepKind.EXPIRE and sim.facts.locked
    retry = decide(sim.facts, config, T0 + days(90.1))
    assert retry.kind is StepKind.EXPIRE and not retry.lock and not retry.stop


def test_server_locked_by_someone_else_is_not_expired():
    config = make_config()
    sim = marked(make_server(), config)
    sim.sweep(T0 + days(89.5), config)
    sim.facts = replace(sim.facts, locked=True, locked_reason="forensics")
    step = decide(sim.facts, config, T0 + days(90))
    assert step.kind is StepKind.BLOCKED and "forensics" in step.reason


def expired_server(config):
    sim = marked(make_server(), config)
    sim.sweep(T0 + days(89.5), config)
    sim.sweep(T0 + days(90), config)
    assert sim.sealed(config).phase is Phase.EXPIRED
    return sim


def test_deletion_waits_grace_days_after_the_shutdown():
    config = make_config(grace_days=14)
    sim = expired_server(config)
    assert decide(sim.facts, config, T0 + days(103.9)).kind is StepKind.NONE
    assert decide(sim.facts, config, T0 + days(104)).kind is StepKind.DELETE


def test_expired_server_someone_restarted_is_not_deleted():
    config = make_config()
    sim = expired_server(config)
    sim.facts = replace(sim.facts, locked=False, locked_reason=None, status="ACTIVE")
    assert decide(sim.facts, config, T0 + days(200)).kind is StepKind.BLOCKED


def test_circuit_breaker_holds_back_deletions_beyond_the_limit():
    config = make_config(max_deletions_per_run=5)
    now = T0 + days(200)
    steps = []
    for index in range(50):
        sim = expired_server(config)
        sim.facts = replace(sim.facts, id=f"s{index}")
        sim.facts = replace(
            sim.facts,
            metadata=ExpiryState(
                Phase.EXPIRED, T0 + days(90), delete_at=T0 + days(104)
            ).to_metadata(f"s{index}", SECRET),
        )
        steps.append(decide(sim.facts, config, now))
    plan = plan_steps(steps, config)
    assert plan.counts["delete"] == 5
    assert plan.deletions_waiting == 45
    assert len(batches(plan.steps, 2)) == 3


def test_prolong_gives_now_plus_prolong_days_and_resets_reminders():
    config = make_config()
    sim = marked(make_server(), config)
    sim.sweep(T0 + days(80), config)
    result = prolong(sim.facts, config, T0 + days(80))
    assert result.new_state == ExpiryState(Phase.ACTIVE, T0 + days(110))
    assert not result.unlock and not result.start


def test_prolong_of_expired_server_unlocks_and_starts_it():
    config = make_config()
    sim = expired_server(config)
    result = prolong(sim.facts, config, T0 + days(95))
    assert result.unlock and result.start
    assert result.new_state.expire_at == T0 + days(125)


def test_prolong_is_capped_at_the_maximum_lifetime():
    config = make_config(max_lifetime_days=100)
    sim = marked(make_server(), config)
    result = prolong(sim.facts, config, T0 + days(85))
    assert result.capped and result.new_state.expire_at == T0 + days(100)


def test_prolong_past_the_maximum_lifetime_is_refused():
    config = make_config(max_lifetime_days=100)
    sim = marked(make_server(), config)
    with pytest.raises(ProlongRefused, match="maximum lifetime of 100 days"):
        prolong(sim.facts, config, T0 + days(100))


def test_prolong_that_would_shorten_the_life_is_refused():
    config = make_config()
    sim = marked(make_server(), config)
    with pytest.raises(ProlongRefused, match="already expires"):
        prolong(sim.facts, config, T0 + days(1))


def test_user_moving_expire_at_forward_is_restored_to_the_sealed_value():
    config = make_config()
    sim = marked(make_server(), config)
    edited = {**sim.facts.metadata, "expire_at": "2099-01-01T00:00:00Z"}
    sim.facts = replace(sim.facts, metadata=edited)
    step = decide(sim.facts, config, T0 + days(2))
    assert step.kind is StepKind.REPAIR
    assert step.new_state.expire_at == T0 + days(90)
    assert "expire_at" in step.reason


@pytest.mark.parametrize("value", ["garbage", "2026-13-40T00:00:00Z", "", "2026-02-01"])
def test_malformed_expire_at_is_repaired(value):
    config = make_config()
    sim = marked(make_server(), config)
    sim.facts = replace(sim.facts, metadata={**sim.facts.metadata, "expire_at": value})
    step = decide(sim.facts, config, T0 + days(2))
    assert step.kind is StepKind.REPAIR and step.new_state.expire_at == T0 + days(90)


def test_deleted_expire_at_on_a_handled_server_is_repaired():
    config = make_config()
    sim = marked(make_server(), config)
    metadata = dict(sim.facts.metadata)
    del metadata["expire_at"]
    step = decide(replace(sim.facts, metadata=metadata), config, T0 + days(2))
    assert step.kind is StepKind.REPAIR and step.new_state.expire_at == T0 + days(90)


def test_forged_seal_resets_to_what_a_prolong_would_give_now():
    config = make_config()
    now = T0 + days(60)
    forged = ExpiryState(Phase.EXEMPT, None).to_metadata("srv-1", "not-the-secret-key-at-all")
    step = decide(make_server(metadata=forged), config, now)
    assert step.kind is StepKind.REPAIR
    assert step.new_state == ExpiryState(Phase.ACTIVE, now + days(30))


def test_forged_exemption_does_not_protect_a_server():
    config = make_config()
    sim = marked(make_server(), config)
    sim.facts = replace(sim.facts, metadata={**sim.facts.metadata, "expire_state": "exempt"})
    step = decide(sim.facts, config, T0 + days(2))
    assert step.kind is StepKind.REPAIR and step.new_state.phase is Phase.ACTIVE


def test_seal_copied_from_another_server_is_rejected():
    config = make_config()
    other = ExpiryState(Phase.EXEMPT, None).to_metadata("other-server", SECRET)
    step = decide(make_server(metadata=other), config, T0)
    assert step.kind is StepKind.REPAIR and "seal does not match" in step.reason


def test_admin_exemption_is_honoured():
    config = make_config()
    exempt = ExpiryState(Phase.EXEMPT, None).to_metadata("srv-1", SECRET)
    step = decide(make_server(metadata=exempt), config, T0 + days(500))
    assert step.kind is StepKind.NONE and "administrator" in step.reason


@pytest.mark.parametrize("kind,value", [("projects", "p1"), ("users", "u1"), ("servers", "srv-1")])
def test_configured_exemptions_are_honoured(kind, value):
    config = make_config(exempt={kind: [value]})
    step = decide(make_server(), config, T0 + days(500))
    assert step.kind is StepKind.NONE and "exempt" in step.reason


def test_pack_lock_reason_is_recognised_and_foreign_lock_is_not():
    config = make_config()
    sim = expired_server(config)
    assert sim.facts.locked_reason == lock_reason(T0 + days(90))
    assert format_time(T0 + days(90)) in sim.facts.locked_reason

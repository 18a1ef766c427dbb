"""The Mistral actions as Mistral calls them, with honest and forged execution contexts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fake_cloud import FakeCloud
from mistral_lib.actions import Result
from pack_helpers import SERVICE_PASSWORD, SMTP_PASSWORD, action_context
from policy_helpers import SECRET, T0

from vm_expiry.mistral_actions import Apply, Plan, Prolong, Summarize
from vm_expiry.state import read_state
from vm_expiry.timeutil import days, format_time


@pytest.fixture
def tenants(cloud: FakeCloud):
    alice_project = cloud.add_project("alice")
    bob_project = cloud.add_project("bob")
    alice, alice_token = cloud.add_user("alice", "alice@example.org", alice_project)
    _, bob_token = cloud.add_user("bob", "bob@example.org", bob_project)
    _, admin_token = cloud.add_user("admin", "admin@example.org", "admin", roles=("admin",))
    server = cloud.add_server("web", alice_project, alice, T0)
    return SimpleNamespace(alice=alice_token, bob=bob_token, admin=admin_token, server=server)


def sweep_at(token: str, when: str) -> dict:
    planned = Plan(now=when).run(action_context(token))
    results = [Apply(steps=batch, now=planned["now"]).run(action_context(token))
               for batch in planned["batches"]]
    return Summarize(plan=planned, results=results).run(action_context(token))


def test_owner_prolongs_an_expired_server_back_to_life(runtime, tenants):
    sweep_at(tenants.admin, format_time(T0))
    sweep_at(tenants.admin, format_time(T0 + days(89)))
    sweep_at(tenants.admin, format_time(T0 + days(90)))
    assert tenants.server.locked and tenants.server.status == "SHUTOFF"
    result = Prolong(server=tenants.server.id, now=format_time(T0 + days(91))).run(
        action_context(tenants.alice))
    assert result["expire_at"] == format_time(T0 + days(120))
    assert result["unlocked"] and result["started"]
    assert not tenants.server.locked and tenants.server.status == "ACTIVE"
    assert "expire_delete_at" not in tenants.server.metadata


def test_prolong_of_another_projects_server_is_refused(runtime, tenants):
    result = Prolong(server=tenants.server.id).run(action_context(tenants.bob))
    assert isinstance(result, Result) and "not found" in result.error
    assert tenants.server.metadata == {}


def test_forged_target_context_is_refused(runtime, tenants):
    forged = action_context(tenants.bob, is_target=True, project_id="p-alice", user_name="admin")
    result = Prolong(server=tenants.server.id).run(forged)
    assert "target-cloud mode" in result.error
    assert tenants.server.metadata == {}


def test_garbage_token_with_admin_looking_context_is_refused(runtime, tenants):
    forged = action_context("garbage", project_id="admin", user_name="admin",
                     service_catalog={"user": {"id": "admin"}})
    assert "Keystone does not know it" in Plan().run(forged).error
    assert "Keystone does not know it" in Prolong(server=tenants.server.id).run(forged).error


def test_member_cannot_run_the_privileged_sweep_actions(runtime, tenants, cloud: FakeCloud):
    assert "not an admin" in Plan().run(action_context(tenants.alice)).error
    result = Apply(steps=[[tenants.server.id, "delete"]], now="2030-01-01T00:00:00Z").run(
        action_context(tenants.alice))
    assert "not an admin" in result.error
    assert tenants.server.id in cloud.servers


def test_prolong_cannot_choose_its_time_without_simulated_time(runtime, tenants):
    runtime(simulated_time=False)
    result = Prolong(server=tenants.server.id, now="2099-01-01T00:00:00Z").run(
        action_context(tenants.alice))
    assert "simulated_time" in result.error


def test_prolong_past_the_lifetime_cap_is_refused_and_changes_nothing(runtime, tenants):
    sweep_at(tenants.admin, format_time(T0))
    before = dict(tenants.server.metadata)
    result = Prolong(server=tenants.server.id, now=format_time(T0 + days(121))).run(
        action_context(tenants.alice))
    assert "maximum lifetime of 120 days" in result.error
    assert tenants.server.metadata == before


def test_prolong_of_a_missing_server_is_a_clear_refusal(runtime, tenants):
    result = Prolong(server="no-such-server").run(action_context(tenants.alice))
    assert result.error == "server no-such-server not found in your projects"


def test_errors_never_carry_secrets(runtime, tenants, cloud: FakeCloud):
    cloud.fail("GET", r"/servers/detail", 500)
    outputs = [Plan(now=format_time(T0)).run(action_context(tenants.admin)),
               Prolong(server=tenants.server.id).run(action_context(tenants.bob))]
    text = repr([getattr(o, "error", o) for o in outputs])
    assert "listing servers" in text
    for secret in (SECRET, SMTP_PASSWORD, SERVICE_PASSWORD):
        assert secret not in text


def test_sweep_summary_counts_each_kind(runtime, tenants):
    summary = sweep_at(tenants.admin, format_time(T0))
    assert summary["steps"] == {"mark": 1} and summary["outcomes"] == {"mark": {"done": 1}}
    sealed = read_state(tenants.server.id, tenants.server.metadata, SECRET).sealed
    assert sealed.expire_at == T0 + days(90)

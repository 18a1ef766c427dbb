"""The sweep's plan and apply against the in-memory cloud and a real SMTP server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fake_cloud import FakeCloud
from pack_helpers import config_for, run_sweep
from policy_helpers import SECRET, T0

from vm_expiry import sweep
from vm_expiry.cloud import Cloud, CloudError
from vm_expiry.state import read_state
from vm_expiry.timeutil import days


@pytest.fixture
def world(cloud: FakeCloud):
    personal = cloud.add_project("alice-personal")
    shared = cloud.add_project("team", selected=False)
    alice, _ = cloud.add_user("alice", "alice@example.org", personal)
    web = cloud.add_server("web", personal, alice, T0)
    team = cloud.add_server("build", shared, alice, T0)
    return cloud, web, team


def test_a_forgotten_server_goes_through_its_whole_life(world, mail_sink):
    cloud, web, team = world
    sink, port = mail_sink
    config = config_for(port)
    assert run_sweep(cloud, config, T0)["outcomes"] == {"mark": {"done": 1}}
    for day, kind in ((76, "remind"), (83, "remind"), (89, "remind"), (90, "expire")):
        summary = run_sweep(cloud, config, T0 + days(day))
        assert summary["outcomes"] == {kind: {"done": 1}}, (day, summary)
    assert web.locked and web.status == "SHUTOFF"
    assert run_sweep(cloud, config, T0 + days(103))["outcomes"] == {}
    assert run_sweep(cloud, config, T0 + days(104))["outcomes"] == {"delete": {"done": 1}}
    assert web.id not in cloud.servers
    assert sink.subjects() == [
        'Your server "web" expires in 14 days',
        'Your server "web" expires in 7 days',
        'Your server "web" expires in 1 day',
        'Your server "web" has expired and was shut down',
        'Your server "web" has been deleted',
    ]
    assert all(m["To"] == "alice@example.org" for m in sink.messages)
    assert team.metadata == {} and team.id in cloud.servers


def test_a_reminder_sent_an_hour_late_still_says_the_days_of_its_stage(world, mail_sink):
    cloud, _, _ = world
    sink, port = mail_sink
    config = config_for(port)
    run_sweep(cloud, config, T0)
    run_sweep(cloud, config, T0 + days(83) + timedelta(hours=1))
    assert sink.subjects() == ['Your server "web" expires in 7 days']


def test_repeating_a_sweep_sends_no_second_mail(world, mail_sink):
    cloud, _, _ = world
    sink, port = mail_sink
    config = config_for(port)
    run_sweep(cloud, config, T0)
    run_sweep(cloud, config, T0 + days(80))
    again = run_sweep(cloud, config, T0 + days(80))
    assert len(sink.messages) == 1
    assert again["outcomes"] == {}


def test_smtp_down_advances_no_state_and_the_mail_is_retried_once(world, mail_sink):
    cloud, web, _ = world
    sink, port = mail_sink
    config = config_for(port)
    run_sweep(cloud, config, T0)
    sink.refuse = True
    summary = run_sweep(cloud, config, T0 + days(80))
    assert summary["outcomes"] == {"remind": {"failed": 1}}
    assert summary["blocked"][0]["server"] == web.id
    assert read_state(web.id, web.metadata, SECRET).sealed.reminded_stage is None
    sink.refuse = False
    run_sweep(cloud, config, T0 + days(80.1))
    run_sweep(cloud, config, T0 + days(80.2))
    assert len(sink.messages) == 1


def test_no_lock_when_no_reminder_could_be_delivered(world, mail_sink):
    cloud, web, _ = world
    sink, port = mail_sink
    config = config_for(port)
    run_sweep(cloud, config, T0)
    sink.refuse = True
    summary = run_sweep(cloud, config, T0 + days(95))
    assert summary["outcomes"] == {"remind": {"failed": 1}}
    assert not web.locked and web.status == "ACTIVE"


def test_user_without_email_is_reported_and_never_locked(cloud: FakeCloud, mail_sink):
    _, port = mail_sink
    project = cloud.add_project("bob")
    bob, _ = cloud.add_user("bob", None, project)
    server = cloud.add_server("db", project, bob, T0)
    config = config_for(port)
    run_sweep(cloud, config, T0)
    summary = run_sweep(cloud, config, T0 + days(95))
    assert "no e-mail address" in summary["blocked"][0]["reason"]
    assert not server.locked


def test_partial_listing_acts_on_nothing(cloud: FakeCloud, mail_sink):
    _, port = mail_sink
    project = cloud.add_project("p")
    user, _ = cloud.add_user("u", "u@example.org", project)
    for index in range(5):
        cloud.add_server(f"s{index}", project, user, T0)
    cloud.fail("GET", r"/servers/detail.*marker=", 500)  # the second page fails
    with pytest.raises(CloudError, match="listing servers"):
        sweep.plan(Cloud(cloud.session()), config_for(port), T0, page_size=2)
    assert all(not s.metadata for s in cloud.servers.values())


def test_apply_skips_a_step_the_policy_no_longer_wants(world, mail_sink):
    cloud, web, _ = world
    _, port = mail_sink
    config = config_for(port)
    outcome = sweep.Applier(Cloud(cloud.session()), config, T0, False).apply([[web.id, "delete"]])
    assert outcome["counts"] == {"delete": {"skipped": 1}}
    assert web.id in cloud.servers


def test_circuit_breaker_deletes_at_most_the_configured_number(cloud: FakeCloud, mail_sink):
    _, port = mail_sink
    project = cloud.add_project("p")
    user, _ = cloud.add_user("u", "u@example.org", project)
    for index in range(12):
        cloud.add_server(f"s{index}", project, user, T0)
    config = config_for(port, max_deletions_per_run=5)
    for day in (0, 89, 90):
        run_sweep(cloud, config, T0 + days(day))
    summary = run_sweep(cloud, config, T0 + days(110))
    assert summary["outcomes"] == {"delete": {"done": 5}}
    assert summary["deletions_waiting"] == 7
    assert len(cloud.servers) == 7


def test_dry_run_changes_nothing_and_sends_nothing(world, mail_sink):
    cloud, web, _ = world
    sink, port = mail_sink
    summary = run_sweep(cloud, config_for(port), T0, dry_run=True)
    assert summary["outcomes"] == {"mark": {"dry-run": 1}}
    assert web.metadata == {} and not sink.messages


def test_plan_output_grows_with_steps_due_not_with_servers(cloud: FakeCloud, mail_sink):
    _, port = mail_sink
    project = cloud.add_project("p")
    user, _ = cloud.add_user("u", "u@example.org", project)
    config = config_for(port)
    for index in range(300):
        cloud.add_server(f"s{index}", project, user, T0)
    for _ in range(3):
        run_sweep(cloud, config, T0, page_size=100)
    planned = sweep.plan(Cloud(cloud.session()), config, T0 + days(1), 100)
    assert planned["servers"] == 300 and planned["batches"] == []
    assert len(repr(planned)) < 500

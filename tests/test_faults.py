"""Faults at unit level: Nova and Keystone failing, SMTP failing, clock skew, the circuit breaker.

Everything runs the real sweep (plan, Applier, summarize) against the in-memory cloud with
injected faults and a real SMTP server. The rule under test: nothing is acted on that the sweep
could not see completely, no lock or delete follows a mail that was not delivered, and every
failure shows in what the sweep returns.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from fake_cloud import FakeCloud, FakeServer
from mail_sink import MailSink
from mistral_lib.actions import Result
from pack_helpers import action_context, config_for, free_port, run_sweep, sealed
from policy_helpers import T0

from vm_expiry import cloud as cloud_module
from vm_expiry import sweep
from vm_expiry.cloud import Cloud, CloudError
from vm_expiry.mistral_actions import Plan
from vm_expiry.state import Phase
from vm_expiry.timeutil import days, format_time


@pytest.fixture(autouse=True)
def backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The retry delays the cloud layer waited, recorded instead of slept."""
    delays: list[float] = []
    monkeypatch.setattr(cloud_module, "time", SimpleNamespace(sleep=delays.append))
    return delays


def populate(cloud: FakeCloud, count: int) -> list[FakeServer]:
    project = cloud.add_project("p")
    user, _ = cloud.add_user("u", "u@example.org", project)
    return [cloud.add_server(f"s{index}", project, user, T0) for index in range(count)]


def snapshot(cloud: FakeCloud) -> dict[str, tuple[Any, ...]]:
    """Everything a sweep can change on the servers."""
    return {s.id: (dict(s.metadata), s.locked, s.locked_reason, s.status)
            for s in cloud.servers.values()}


def walk_to_expired(cloud: FakeCloud, config) -> None:
    """Mark, remind (1 day before) and expire every server; all mail delivered."""
    for day in (0, 89, 90):
        run_sweep(cloud, config, T0 + days(day))


# --- Nova and Keystone failing while the sweep lists ---------------------------------------

LISTING_FAULTS = {
    "http-500": {"status": 500},
    "http-503": {"status": 503},
    "connection-dropped": {"exc": requests.exceptions.ConnectionError},
    "read-timeout": {"exc": requests.exceptions.ReadTimeout},
}


@pytest.mark.parametrize("fault", LISTING_FAULTS, ids=list(LISTING_FAULTS))
def test_a_listing_broken_on_its_second_page_deletes_nothing(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], backoff: list[float], fault: str
) -> None:
    sink, port = mail_sink
    config = config_for(port)
    populate(cloud, 5)
    walk_to_expired(cloud, config)
    mails, before = len(sink.messages), snapshot(cloud)
    cloud.fail("GET", r"/servers/detail.*marker=", **LISTING_FAULTS[fault])

    with pytest.raises(CloudError, match=r"listing servers: .*\(after 3 tries\)"):
        sweep.plan(Cloud(cloud.session()), config, T0 + days(110), page_size=2)

    assert snapshot(cloud) == before and len(cloud.servers) == 5
    assert len(sink.messages) == mails
    assert backoff == [0.5, 1.0]


@pytest.mark.parametrize("fault", LISTING_FAULTS, ids=list(LISTING_FAULTS))
def test_a_transient_listing_fault_is_retried_with_backoff_and_the_sweep_completes(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], backoff: list[float], fault: str
) -> None:
    _, port = mail_sink
    populate(cloud, 5)
    cloud.fail("GET", r"/servers/detail", times=2, **LISTING_FAULTS[fault])

    summary = run_sweep(cloud, config_for(port), T0, page_size=2)

    assert summary["servers"] == 5 and summary["outcomes"] == {"mark": {"done": 5}}
    assert backoff == [0.5, 1.0]


@pytest.mark.parametrize("path", [r"/v3/projects$", r"/v3/auth/tokens$"])
def test_keystone_down_stops_the_plan_action_with_the_reason(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], runtime: Callable[..., None],
    path: str,
) -> None:
    populate(cloud, 3)
    _, admin_token = cloud.add_user("admin", "admin@example.org", "admin", roles=("admin",))
    cloud.fail("GET", path, 503)

    result = Plan(now=format_time(T0)).run(action_context(admin_token))

    assert isinstance(result, Result) and result.error
    assert "HTTP 503" in result.error or "503" in result.error
    assert all(not s.metadata for s in cloud.servers.values())


def test_a_broken_listing_reaches_the_sweep_as_the_plan_actions_error(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], runtime: Callable[..., None]
) -> None:
    populate(cloud, 3)
    _, admin_token = cloud.add_user("admin", "admin@example.org", "admin", roles=("admin",))
    cloud.fail("GET", r"/servers/detail", exc=requests.exceptions.ConnectionError)

    result = Plan(now=format_time(T0)).run(action_context(admin_token))

    assert isinstance(result, Result)
    assert result.error.startswith("listing servers: ")
    assert "after 3 tries" in result.error
    assert all(not s.metadata for s in cloud.servers.values())


# --- Nova failing while the sweep applies ---------------------------------------------------

def test_a_server_that_cannot_be_reread_is_not_deleted_and_the_summary_says_so(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int]
) -> None:
    _, port = mail_sink
    config = config_for(port)
    [server] = populate(cloud, 1)
    walk_to_expired(cloud, config)
    api = Cloud(cloud.session())
    planned = sweep.plan(api, config, T0 + days(104), 1000)
    assert planned["batches"] == [[[server.id, "delete"]]]
    cloud.fail("GET", rf"/servers/{server.id}$", 500)

    result = sweep.Applier(Cloud(cloud.session()), config, T0 + days(104), False).apply(
        planned["batches"][0])
    summary = sweep.summarize(planned, [result], False)

    assert server.id in cloud.servers
    assert summary["outcomes"] == {"delete": {"failed": 1}}
    assert summary["blocked"][0]["server"] == server.id
    assert "HTTP 500" in summary["blocked"][0]["reason"]


def test_a_failed_delete_sends_no_deletion_mail_and_is_done_once_next_sweep(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int]
) -> None:
    sink, port = mail_sink
    config = config_for(port)
    [server] = populate(cloud, 1)
    walk_to_expired(cloud, config)
    fault = cloud.fail("DELETE", rf"/servers/{server.id}$", 500)

    failed = run_sweep(cloud, config, T0 + days(104))
    assert failed["outcomes"] == {"delete": {"failed": 1}}
    assert server.id in cloud.servers
    assert not [s for s in sink.subjects() if "deleted" in s]
    assert fault.fired == 1  # a non-idempotent call is not retried

    cloud.faults.clear()
    assert run_sweep(cloud, config, T0 + days(105))["outcomes"] == {"delete": {"done": 1}}
    run_sweep(cloud, config, T0 + days(106))
    assert server.id not in cloud.servers
    assert len([s for s in sink.subjects() if "deleted" in s]) == 1


def test_a_failed_lock_sends_no_expiry_mail_and_starts_no_grace_period(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int]
) -> None:
    sink, port = mail_sink
    config = config_for(port)
    [server] = populate(cloud, 1)
    run_sweep(cloud, config, T0)
    run_sweep(cloud, config, T0 + days(89))
    cloud.fail("POST", rf"/servers/{server.id}/action", 503)

    summary = run_sweep(cloud, config, T0 + days(90))

    assert summary["outcomes"] == {"expire": {"failed": 1}}
    assert not server.locked and server.status == "ACTIVE"
    assert sealed(server).phase is Phase.REMINDED
    assert not [s for s in sink.subjects() if "expired" in s]
    cloud.faults.clear()
    run_sweep(cloud, config, T0 + days(91))
    assert sealed(server).delete_at == T0 + days(91 + 14)
    assert run_sweep(cloud, config, T0 + days(104.9))["outcomes"] == {}
    assert server.id in cloud.servers


def test_a_failed_state_write_after_a_delivered_mail_resends_it_with_the_same_message_id(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int]
) -> None:
    """The one documented duplicate window: the mail went out, recording it failed."""
    sink, port = mail_sink
    config = config_for(port)
    [server] = populate(cloud, 1)
    run_sweep(cloud, config, T0)
    cloud.fail("POST", rf"/servers/{server.id}/metadata", 503)

    summary = run_sweep(cloud, config, T0 + days(80))
    assert summary["outcomes"] == {"remind": {"failed": 1}}
    assert "writing metadata" in summary["blocked"][0]["reason"]
    cloud.faults.clear()
    run_sweep(cloud, config, T0 + days(80.5))
    run_sweep(cloud, config, T0 + days(81))

    ids = [str(m["Message-ID"]) for m in sink.messages]
    assert len(ids) == 2 and ids[0] == ids[1]
    assert sealed(server).reminded_stage == 14


# --- SMTP failing ---------------------------------------------------------------------------

@pytest.fixture
def silent_smtp() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (an SMTP server hanging)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


SMTP_FAULTS = ("down", "refusing", "timing-out")


def broken_mail_config(fault: str, sink: MailSink, port: int, silent: int, **overrides: Any):
    """A configuration whose mail fails the way ``fault`` says."""
    if fault == "down":
        return config_for(free_port(), **overrides)
    if fault == "timing-out":
        return config_for(silent, **overrides, mail={
            "host": "127.0.0.1", "port": silent, "from": "ops@cloud.test", "timeout_seconds": 1})
    sink.refuse = True
    return config_for(port, **overrides)


@pytest.mark.parametrize("fault", SMTP_FAULTS)
def test_no_lock_while_no_reminder_could_be_delivered(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], silent_smtp: int, fault: str
) -> None:
    sink, port = mail_sink
    [server] = populate(cloud, 1)
    run_sweep(cloud, config_for(port), T0)
    broken = broken_mail_config(fault, sink, port, silent_smtp)

    for day in (83, 90, 120):
        summary = run_sweep(cloud, broken, T0 + days(day))
        assert summary["outcomes"] == {"remind": {"failed": 1}}, (day, summary)
        assert "mail not delivered" in summary["blocked"][0]["reason"]

    assert not server.locked and server.status == "ACTIVE" and server.id in cloud.servers
    assert sealed(server).reminded_stage is None
    assert not sink.messages


@pytest.mark.parametrize("fault", SMTP_FAULTS)
def test_no_delete_while_the_expiry_mail_is_undelivered_and_it_is_sent_once_later(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], silent_smtp: int, fault: str
) -> None:
    sink, port = mail_sink
    config = config_for(port)
    [server] = populate(cloud, 1)
    run_sweep(cloud, config, T0)
    run_sweep(cloud, config, T0 + days(89))
    broken = broken_mail_config(fault, sink, port, silent_smtp)

    for day in (90, 104, 130):
        summary = run_sweep(cloud, broken, T0 + days(day))
        assert summary["outcomes"] == {"expire": {"failed": 1}}, (day, summary)
    assert server.locked and server.status == "SHUTOFF" and server.id in cloud.servers
    assert sealed(server).phase is Phase.REMINDED

    sink.refuse = False
    assert run_sweep(cloud, config, T0 + days(131))["outcomes"] == {"expire": {"done": 1}}
    assert run_sweep(cloud, config, T0 + days(131))["outcomes"] == {}
    assert sealed(server).delete_at == T0 + days(131 + 14)
    assert run_sweep(cloud, config, T0 + days(144))["outcomes"] == {}
    assert run_sweep(cloud, config, T0 + days(145))["outcomes"] == {"delete": {"done": 1}}
    subjects = sink.subjects()
    assert len([s for s in subjects if "has expired" in s]) == 1
    assert len([s for s in subjects if "expires in" in s]) == 1
    assert len(subjects) == 3 and "deleted" in subjects[-1]


# --- Clock skew ----------------------------------------------------------------------------

@pytest.mark.parametrize("reached", [0, 80, 89.5, 90, 97], ids=lambda d: f"day{d}")
@pytest.mark.parametrize("back", [1 / 24, 10, 200], ids=["1h", "10d", "200d"])
def test_a_sweep_at_an_earlier_now_moves_nothing_forward(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], reached: float, back: float
) -> None:
    sink, port = mail_sink
    config = config_for(port)
    servers = populate(cloud, 2)
    for day in sorted({d for d in (0, 76, 83, 89, 90) if d <= reached} | {reached}):
        run_sweep(cloud, config, T0 + days(day))
    mails, before = len(sink.messages), snapshot(cloud)

    summary = run_sweep(cloud, config, T0 + days(reached - back))

    assert summary["outcomes"] == {}
    assert snapshot(cloud) == before
    assert len(sink.messages) == mails
    assert {s.id for s in servers} >= set(before)


# --- The circuit breaker -------------------------------------------------------------------

def test_circuit_breaker_deletes_exactly_five_per_sweep_and_says_how_many_wait(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int]
) -> None:
    sink, port = mail_sink
    config = config_for(port, max_deletions_per_run=5)
    populate(cloud, 50)
    walk_to_expired(cloud, config)

    waiting = []
    for sweep_number in range(10):
        summary = run_sweep(cloud, config, T0 + days(110 + sweep_number / 24))
        assert summary["outcomes"] == {"delete": {"done": 5}}
        waiting.append(summary["deletions_waiting"])
        assert len(cloud.servers) == 45 - 5 * sweep_number

    assert waiting == [45, 40, 35, 30, 25, 20, 15, 10, 5, 0]
    assert run_sweep(cloud, config, T0 + days(111))["outcomes"] == {}
    assert len([s for s in sink.subjects() if "deleted" in s]) == 50

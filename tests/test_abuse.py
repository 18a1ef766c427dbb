"""Abuse at unit level: owners editing metadata, prolong misuse, forged inputs and contexts,
hostile server names in mail, and secrets in outputs and logs.

The X-Target-* forgery against a real Mistral is in tests/lab/test_e2e_lifecycle.py
(test_forged_target_headers_do_not_bypass_the_ownership_check); here the forged context is
built by hand. Header injection and escaping at the renderer are also in tests/test_mail_*.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from fake_cloud import FakeCloud
from mail_sink import MailSink
from mistral_lib.actions import Result
from pack_helpers import (
    SERVICE_PASSWORD,
    SMTP_PASSWORD,
    action_context,
    config_for,
    run_sweep,
    sealed,
)
from policy_helpers import SECRET, T0

from vm_expiry.mistral_actions import Apply, Plan, Prolong, Summarize
from vm_expiry.state import ExpiryState, Phase
from vm_expiry.timeutil import days, format_time


@pytest.fixture
def people(cloud: FakeCloud) -> SimpleNamespace:
    alice_project = cloud.add_project("alice")
    bob_project = cloud.add_project("bob")
    alice, alice_token = cloud.add_user("alice", "alice@example.org", alice_project)
    bob, bob_token = cloud.add_user("bob", "bob@example.org", bob_project)
    _, admin_token = cloud.add_user("admin", "admin@example.org", "admin", roles=("admin",))
    return SimpleNamespace(
        alice=alice_token, bob=bob_token, admin=admin_token,
        web=cloud.add_server("web", alice_project, alice, T0),
        bobs=cloud.add_server("bobs", bob_project, bob, T0),
    )


# --- owners editing their server's metadata --------------------------------------------------

EDITS: dict[str, Callable[[dict[str, str]], None]] = {
    "far-future-expire_at": lambda m: m.update(expire_at="2999-01-01T00:00:00Z"),
    "expire_at-deleted": lambda m: m.pop("expire_at"),
    "garbage-expire_at": lambda m: m.update(expire_at="tomorrow\r\nBcc: x@evil.test"),
    "forged-reminder-sent": lambda m: m.update(expire_state="reminded-1"),
    "forged-expired-long-ago": lambda m: m.update(expire_state="expired",
                                                  expire_delete_at="2000-01-01T00:00:00Z"),
    "forged-exempt-state": lambda m: m.update(expire_state="exempt", expire_at="never"),
}


@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
def test_an_owners_metadata_edit_is_detected_and_the_sealed_values_restored(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], people: SimpleNamespace, edit: str
) -> None:
    _, port = mail_sink
    config = config_for(port)
    run_sweep(cloud, config, T0 + days(77))  # marked, 14-day reminder delivered
    good = dict(people.web.metadata)
    EDITS[edit](people.web.metadata)

    summary = run_sweep(cloud, config, T0 + days(78))

    assert summary["outcomes"] == {"repair": {"done": 1}}
    assert {k: v for k, v in people.web.metadata.items() if k.startswith("expire_")} == good
    assert not people.web.locked and people.web.id in cloud.servers


def test_a_forged_exemption_does_not_protect_the_server(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], people: SimpleNamespace
) -> None:
    _, port = mail_sink
    config = config_for(port)
    run_sweep(cloud, config, T0)
    people.web.metadata.update(expire_at="never", expire_state="exempt",
                               expire_seal="v1|never|exempt|-|" + "A" * 43)

    repaired = run_sweep(cloud, config, T0 + days(1))
    assert repaired["outcomes"] == {"repair": {"done": 1}}
    state = sealed(people.web)
    assert state is not None and state.phase is Phase.ACTIVE
    assert state.expire_at == T0 + days(1 + 30)  # what a prolong would give, no more
    for day in (17, 24, 30, 31, 46):
        run_sweep(cloud, config, T0 + days(day))
    assert people.web.id not in cloud.servers


def test_another_servers_genuine_exemption_copied_over_does_not_protect(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], people: SimpleNamespace
) -> None:
    sink, port = mail_sink
    config = config_for(port)
    run_sweep(cloud, config, T0)
    people.bobs.metadata.update(ExpiryState(Phase.EXEMPT, None).to_metadata(people.bobs.id,
                                                                           SECRET))
    people.web.metadata.update(people.bobs.metadata)  # alice copies bob's admin exemption

    run_sweep(cloud, config, T0 + days(1))

    assert sealed(people.web) is not None and sealed(people.web).phase is Phase.ACTIVE
    assert sealed(people.bobs).phase is Phase.EXEMPT
    for day in (17, 24, 30, 31, 46):
        run_sweep(cloud, config, T0 + days(day))
    assert people.web.id not in cloud.servers and people.bobs.id in cloud.servers
    assert not [m for m in sink.messages if m["To"] == "bob@example.org"]


# --- prolong misuse -------------------------------------------------------------------------

def prolong_as(token: str, server: str, now: float | None = None) -> Any:
    when = None if now is None else format_time(T0 + days(now))
    return Prolong(server=server, now=when).run(action_context(token))


def test_prolong_of_another_projects_server_is_refused_and_changes_nothing(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], runtime: Callable[..., None],
    people: SimpleNamespace,
) -> None:
    sink, port = mail_sink
    run_sweep(cloud, config_for(port), T0)
    before, mails = dict(people.web.metadata), len(sink.messages)

    result = prolong_as(people.bob, people.web.id, now=60)

    assert isinstance(result, Result)
    assert result.error == f"server {people.web.id} not found in your projects"
    assert people.web.metadata == before and len(sink.messages) == mails


@pytest.mark.parametrize("forged", [
    "{id}/action", "../servers/{id}", "{bobs}/../{id}", "{id}?all_tenants=1", "{id}#",
    "{id}%2Faction", " {id}",
])
def test_a_forged_server_input_does_not_get_past_the_ownership_check(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], runtime: Callable[..., None],
    people: SimpleNamespace, forged: str,
) -> None:
    _, port = mail_sink
    run_sweep(cloud, config_for(port), T0)
    before = dict(people.web.metadata)

    result = prolong_as(people.bob, forged.format(id=people.web.id, bobs=people.bobs.id), 60)

    assert isinstance(result, Result) and result.error
    assert people.web.metadata == before
    assert not people.web.locked


def test_prolong_of_a_deleted_server_is_a_clear_refusal(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], runtime: Callable[..., None],
    people: SimpleNamespace,
) -> None:
    _, port = mail_sink
    config = config_for(port)
    for day in (0, 89, 90, 104):
        run_sweep(cloud, config, T0 + days(day))
    assert people.web.id not in cloud.servers

    result = prolong_as(people.alice, people.web.id, now=105)

    assert result.error == f"server {people.web.id} not found in your projects"


def test_prolong_past_the_cap_is_refused_with_the_reason_and_changes_nothing(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], runtime: Callable[..., None],
    people: SimpleNamespace,
) -> None:
    sink, port = mail_sink
    run_sweep(cloud, config_for(port), T0)
    before, mails = dict(people.web.metadata), len(sink.messages)

    result = prolong_as(people.alice, people.web.id, now=120)

    assert "maximum lifetime of 120 days" in result.error
    assert people.web.metadata == before and len(sink.messages) == mails


def test_a_second_prolong_that_moves_nothing_is_refused_and_resends_nothing(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], runtime: Callable[..., None],
    people: SimpleNamespace,
) -> None:
    """Found by the histories: at the lifetime cap, a second prolong reset the reminders, which
    then went out again with the Message-IDs they had already been delivered with."""
    sink, port = mail_sink
    config = config_for(port, max_lifetime_days=120)
    run_sweep(cloud, config, T0)
    assert "expire_at" in prolong_as(people.alice, people.web.id, now=100)
    run_sweep(cloud, config, T0 + days(107))  # 14-day reminder for the cap
    state = sealed(people.web)

    result = prolong_as(people.alice, people.web.id, now=108)

    assert "no earlier than a prolong would give" in result.error
    assert sealed(people.web) == state
    run_sweep(cloud, config, T0 + days(108))
    ids = [str(m["Message-ID"]) for m in sink.messages]
    assert len(ids) == len(set(ids))


# --- forged execution contexts ---------------------------------------------------------------

def test_target_mode_is_refused_even_with_a_valid_admin_token(
    cloud: FakeCloud, runtime: Callable[..., None], people: SimpleNamespace,
) -> None:
    forged = action_context(people.admin, is_target=True)
    for action in (Plan(now=format_time(T0)), Prolong(server=people.web.id),
                   Apply(steps=[[people.web.id, "mark"]], now=format_time(T0))):
        assert "target-cloud mode" in action.run(forged).error
    assert people.web.metadata == {}


def test_a_members_context_with_a_forged_admin_project_and_name_stays_a_member(
    cloud: FakeCloud, runtime: Callable[..., None], people: SimpleNamespace,
) -> None:
    forged = action_context(people.bob, project_id="admin", user_name="admin",
                            service_catalog={"user": {"id": "u-admin"}, "roles": ["admin"]})
    assert "not an admin" in Plan().run(forged).error
    assert "not an admin" in Apply(steps=[[people.web.id, "delete"]],
                                   now=format_time(T0 + days(500))).run(forged).error
    assert Prolong(server=people.web.id).run(forged).error.endswith("not found in your projects")
    assert people.web.id in cloud.servers and people.web.metadata == {}


# --- hostile server names in mail ------------------------------------------------------------

def test_a_hostile_server_name_is_escaped_in_html_and_injects_no_header(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], people: SimpleNamespace
) -> None:
    sink, port = mail_sink
    people.web.name = "<script>alert(1)</script>\r\nBcc: victim@evil.test\r\nX-Injected: 1"
    run_sweep(cloud, config_for(port), T0 + days(77))

    [message] = [m for m in sink.messages if m["To"] == "alice@example.org"]
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert "\n" not in str(message["Subject"]) and "\r" not in str(message["Subject"])


# --- secrets --------------------------------------------------------------------------------

def test_secrets_never_appear_in_outputs_errors_or_logs(
    cloud: FakeCloud, mail_sink: tuple[MailSink, int], runtime: Callable[..., None],
    people: SimpleNamespace, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, port = mail_sink
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr("vm_expiry.cloud.time", SimpleNamespace(sleep=lambda seconds: None))
    # SMTP login configured against a server that offers no AUTH: every mail fails.
    runtime(mail={"host": "127.0.0.1", "port": port, "from": "ops@cloud.test",
                  "username": "vm-expiry", "password": SMTP_PASSWORD})
    outputs: list[Any] = []
    planned = Plan(now=format_time(T0 + days(77))).run(action_context(people.admin))
    outputs.append(planned)
    outputs.append(Apply(steps=planned["batches"][0], now=planned["now"]).run(
        action_context(people.admin)))
    outputs.append(Summarize(plan=planned, results=[outputs[-1]]).run(action_context(None)))
    outputs.append(prolong_as(people.alice, people.web.id, now=78))
    cloud.fail("GET", r"/servers/detail", 500)
    outputs.append(Plan(now=format_time(T0)).run(action_context(people.admin)))
    cloud.fail("POST", r"/v3/auth/tokens", 401)
    outputs.append(Plan(now=format_time(T0)).run(action_context(people.admin)))
    cloud.faults.clear()
    monkeypatch.setattr("vm_expiry.sweep.plan", lambda *a: 1 / 0)  # an unexpected bug
    outputs.append(Plan(now=format_time(T0)).run(action_context(people.admin)))

    text = repr([getattr(o, "error", None) or o for o in outputs])
    assert "does not offer AUTH" in text  # the failures really happened
    assert "unexpected ZeroDivisionError" in text
    assert "listing servers" in text
    logs = caplog.text + "".join(str(r.exc_info) for r in caplog.records)
    for secret in (SECRET, SMTP_PASSWORD, SERVICE_PASSWORD):
        assert secret not in text
        assert secret not in logs

"""End to end in the lab: real Mistral runs the deployed workflows against real Keystone and
Nova, and mail goes over SMTP into the sink. Simulated time walks with the workflows' ``now``.

The tests of this module are one story and run in order.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import datetime, timedelta

import pytest
import requests

from vm_expiry import mistral_ops
from vm_expiry.config import load_file
from vm_expiry.lab import population as pop
from vm_expiry.mail.render import format_date
from vm_expiry.timeutil import format_time, parse_api_time, parse_metadata_time

pytestmark = pytest.mark.lab
RUN = secrets.token_hex(3)


class Story:
    """What the tests of this module share: the lab, its people, servers and time."""

    def __init__(self, info: dict) -> None:
        self.info = info
        self.admin = pop.admin_session(info)
        self.admin_mistral = mistral_ops.connect(self.admin)
        mistral_ops.deploy(self.admin_mistral, load_file(info["config_path"]), None, False)
        self.personal = pop.ensure_project(
            self.admin, f"alice-{RUN}", {"type": "personal", "expire": "on"}
        )
        self.shared = pop.ensure_project(self.admin, f"team-{RUN}", {"type": "shared"})
        self.other = pop.ensure_project(
            self.admin, f"bob-{RUN}", {"type": "personal", "expire": "on"}
        )
        self.alice_email = f"alice-{RUN}@lab.example"
        pop.ensure_user(self.admin, f"alice-{RUN}", self.alice_email, self.personal)
        pop.ensure_user(self.admin, f"alice-{RUN}", self.alice_email, self.shared)
        pop.ensure_user(self.admin, f"bob-{RUN}", f"bob-{RUN}@lab.example", self.other)
        self.alice = pop.user_session(info, f"alice-{RUN}", self.personal)
        self.alice_in_team = pop.user_session(info, f"alice-{RUN}", self.shared)
        self.bob = pop.user_session(info, f"bob-{RUN}", self.other)
        self.web = pop.boot(self.alice, info, "web")
        self.team = pop.boot(self.alice_in_team, info, "team-build")
        self.created = parse_api_time(pop.server(self.admin, self.web)["created"])
        self.expire_at: datetime | None = None

    def sweep(self, now: datetime) -> dict:
        output = mistral_ops.run(
            self.admin_mistral,
            mistral_ops.SWEEP,
            {"now": format_time(now)},
            timeout=180,
            progress=False,
        )
        return output["summary"]

    def metadata(self, server_id: str) -> dict[str, str]:
        return pop.server(self.admin, server_id)["metadata"]

    def mails_to_alice(self) -> list[pop.Mail]:
        return [m for m in pop.read_maildir(self.info["maildir"]) if m.to == self.alice_email]


@pytest.fixture(scope="module")
def story(lab) -> Story:
    return Story(lab)


def outcome(summary: dict, server_id: str) -> tuple[str, str] | None:
    """(step kind, outcome) of one server in a sweep's summary; other runs' servers share the
    lab, so tests look at their own."""
    for event in summary["events"]:
        if event["server"] == server_id:
            return event["kind"], event["outcome"]
    return None


def days_after(moment: datetime, count: float) -> datetime:
    return moment + timedelta(days=count)


def test_a_new_server_is_marked_and_a_non_selected_project_is_not(story: Story):
    summary = story.sweep(story.created + timedelta(minutes=5))
    assert outcome(summary, story.web) == ("mark", "done")
    assert outcome(summary, story.team) is None
    expire_at = parse_metadata_time(story.metadata(story.web)["expire_at"])
    assert expire_at == days_after(story.created, 90).replace(microsecond=0)
    story.expire_at = expire_at
    assert not any(k.startswith("expire_") for k in story.metadata(story.team))


def test_each_reminder_arrives_once_in_order_with_the_expiry_date(story: Story):
    for stage in (14, 7, 1):
        moment = story.expire_at - timedelta(days=stage)
        story.sweep(moment)
        story.sweep(moment)  # the same sweep again sends nothing new
    mails = story.mails_to_alice()
    assert [m.subject for m in mails] == [
        'Your server "web" expires in 14 days',
        'Your server "web" expires in 7 days',
        'Your server "web" expires in 1 day',
    ]
    assert all(format_date(story.expire_at) in m.text for m in mails)


def test_at_expiry_the_server_is_locked_and_shut_off_and_the_mail_says_so(story: Story):
    summary = story.sweep(story.expire_at)
    assert outcome(summary, story.web) == ("expire", "done")
    body = pop.wait_for(story.admin, story.web, lambda s: s["status"] == "SHUTOFF", "SHUTOFF")
    assert body["locked"] and body["locked_reason"].startswith("vm-expiry:")
    expired = story.mails_to_alice()[-1]
    assert "expired" in expired.subject
    assert format_date(days_after(story.expire_at, 14)) in expired.text


def test_owner_prolongs_and_the_server_comes_back(story: Story):
    alice = mistral_ops.connect(story.alice)
    now = days_after(story.expire_at, 1)
    output = mistral_ops.run(
        alice, mistral_ops.PROLONG, {"server": story.web, "now": format_time(now)}, 120, False
    )
    assert output["expire_at"] == format_time(days_after(now, 30))
    body = pop.wait_for(story.admin, story.web, lambda s: s["status"] == "ACTIVE", "ACTIVE")
    assert not body["locked"]
    assert "expire_delete_at" not in body["metadata"]
    assert "now expires" in story.mails_to_alice()[-1].subject
    story.expire_at = parse_metadata_time(output["expire_at"])


def test_prolong_of_another_projects_server_is_refused(story: Story):
    bob = mistral_ops.connect(story.bob)
    before = story.metadata(story.web)
    with pytest.raises(mistral_ops.MistralError, match="not found in your projects"):
        mistral_ops.run(bob, mistral_ops.PROLONG, {"server": story.web}, 120, False)
    assert story.metadata(story.web) == before


def test_forged_target_headers_do_not_bypass_the_ownership_check(story: Story):
    admin_project = story.admin.get_project_id()
    catalog = base64.b64encode(json.dumps({"user": {"id": "admin"}}).encode()).decode()
    response = requests.post(
        f"{story.info['mistral_url']}/executions",
        json={"workflow_name": mistral_ops.PROLONG, "input": json.dumps({"server": story.web})},
        headers={
            "X-Auth-Token": story.bob.get_token(),
            "X-Target-Auth-Uri": story.info["keystone_url"],
            "X-Target-Auth-Token": "garbage",
            "X-Target-Project-Id": admin_project,
            "X-Target-User-Name": "admin",
            "X-Target-Service-Catalog": catalog,
        },
        timeout=30,
    )
    response.raise_for_status()
    execution_id = response.json()["id"]
    for _ in range(100):
        # The forged project is the admin's: Mistral files the execution there.
        execution = story.admin_mistral.executions.get(execution_id)
        if execution.state in mistral_ops.TERMINAL:
            break
        time.sleep(0.3)
    assert execution.state == "ERROR"
    assert "target-cloud mode" in execution.state_info


def test_after_the_grace_period_the_server_is_deleted_and_the_mail_says_so(story: Story):
    story.sweep(days_after(story.expire_at, -1))
    story.sweep(story.expire_at)
    summary = story.sweep(days_after(story.expire_at, 14))
    assert outcome(summary, story.web) == ("delete", "done")
    pop.wait_for(story.admin, story.web, None, "gone")
    assert "deleted" in story.mails_to_alice()[-1].subject
    assert not any(k.startswith("expire_") for k in story.metadata(story.team))


def test_the_deployed_cron_trigger_runs_the_sweep_with_the_admins_trust(story: Story):
    fresh = pop.boot(story.alice, story.info, "cron-fresh")
    name = f"vm_expiry.e2e-{RUN}"
    story.admin_mistral.cron_triggers.create(
        name, mistral_ops.SWEEP, workflow_input={}, pattern="* * * * *", count=1
    )
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        metadata = story.metadata(fresh)
        if "expire_at" in metadata:
            break
        time.sleep(2)
    assert "expire_at" in metadata, "the cron-fired sweep did not mark the new server"
    executions = [
        e
        for e in story.admin_mistral.executions.list(
            workflow_name=mistral_ops.SWEEP, sort_keys="created_at", sort_dirs="desc", limit=5
        )
        if "cron" in (e.description or "")
    ]
    assert executions and executions[0].state in ("SUCCESS", "RUNNING")

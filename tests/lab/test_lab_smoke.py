"""Smoke test of the lab: every service answers and works together, and ``down`` cleans up.

The tests run in file order: the last one brings the lab down, so other lab modules call
``up`` themselves (fast once installed).
"""

from __future__ import annotations

import mailbox
import smtplib
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

import openstack
import pytest
import requests
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from mistralclient.api import client as mistral_client

from vm_expiry.lab import down, processes

pytestmark = pytest.mark.lab

WORKFLOW = """
version: '2.0'
lab_smoke_echo:
  input: [greeting: hello]
  output: {echo: <% $.greeting %>, project: <% $.openstack.project_id %>}
  tasks:
    noop:
      action: std.noop
"""


def _session(auth: dict) -> ks_session.Session:
    return ks_session.Session(auth=v3.Password(**auth))


@pytest.fixture(scope="module")
def tenant(lab: dict) -> dict:
    """A personal project with expiry properties and a member user with an e-mail."""
    admin = _session(lab["admin"])
    keystone = lab["keystone_url"]
    suffix = uuid.uuid4().hex[:8]
    project = admin.post(
        f"{keystone}/projects",
        json={
            "project": {
                "name": f"smoke-{suffix}",
                "domain_id": "default",
                "type": "personal",
                "expire": "on",
            }
        },
    ).json()["project"]
    password = uuid.uuid4().hex
    user = admin.post(
        f"{keystone}/users",
        json={
            "user": {
                "name": f"smoke-{suffix}",
                "password": password,
                "domain_id": "default",
                "email": f"smoke-{suffix}@lab.example",
                "default_project_id": project["id"],
            }
        },
    ).json()["user"]
    member = admin.get(f"{keystone}/roles", params={"name": "member"}).json()["roles"][0]
    admin.put(f"{keystone}/projects/{project['id']}/users/{user['id']}/roles/{member['id']}")
    auth = {
        "auth_url": keystone,
        "username": user["name"],
        "password": password,
        "project_id": project["id"],
        "user_domain_name": "Default",
    }
    return {"project": project, "user": user, "auth": auth}


def test_project_keeps_its_properties(lab: dict, tenant: dict) -> None:
    admin = _session(lab["admin"])
    project = admin.get(f"{lab['keystone_url']}/projects/{tenant['project']['id']}").json()
    assert project["project"]["type"] == "personal"
    assert project["project"]["expire"] == "on"
    assert tenant["user"]["email"].endswith("@lab.example")


def test_user_boots_a_server_admin_sees_it(lab: dict, tenant: dict) -> None:
    user = openstack.connect(auth=tenant["auth"], region_name=lab["region_name"])
    server = user.compute.create_server(
        name="smoke", image_id=lab["image_id"], flavor_id=lab["flavor_id"], networks="none"
    )
    server = user.compute.wait_for_server(server, status="ACTIVE", wait=60)
    admin = openstack.connect(auth=lab["admin"], region_name=lab["region_name"])
    listed = {found.id: found for found in admin.compute.servers(all_projects=True)}
    assert listed[server.id].project_id == tenant["project"]["id"]
    assert listed[server.id].status == "ACTIVE"


def test_seeded_servers_act_like_booted_ones(lab: dict, tenant: dict) -> None:
    admin_session = _session(lab["admin"])
    response = requests.post(
        lab["seed_url"],
        json={
            "count": 3,
            "project_id": tenant["project"]["id"],
            "user_id": tenant["user"]["id"],
            "created_at": "2025-01-02T03:04:05Z",
        },
        headers={"X-Auth-Token": admin_session.get_token()},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    ids = response.json()["ids"]
    admin = openstack.connect(auth=lab["admin"], region_name=lab["region_name"])
    listed = {found.id: found for found in admin.compute.servers(all_projects=True)}
    assert listed[ids[0]].status == "ACTIVE"
    assert listed[ids[0]].created_at == "2025-01-02T03:04:05Z"
    admin.compute.lock_server(ids[0], locked_reason="smoke")
    admin.compute.stop_server(ids[0])
    stopped = admin.compute.wait_for_server(admin.compute.get_server(ids[0]), status="SHUTOFF")
    assert stopped.is_locked
    doomed = admin.compute.get_server(ids[1])
    admin.compute.delete_server(doomed)
    admin.compute.wait_for_delete(doomed, wait=30)
    user_token = _session(tenant["auth"]).get_token()
    refused = requests.post(
        lab["seed_url"], json={"count": 1}, timeout=10, headers={"X-Auth-Token": user_token}
    )
    assert refused.status_code == 403


def test_user_runs_a_public_workflow(lab: dict, tenant: dict) -> None:
    admin = mistral_client.client(session=_session(lab["admin"]), mistral_url=lab["mistral_url"])
    if any(found.name == "lab_smoke_echo" for found in admin.workflows.list()):
        admin.workflows.delete("lab_smoke_echo")
    admin.workflows.create(WORKFLOW, scope="public")
    user = mistral_client.client(session=_session(tenant["auth"]), mistral_url=lab["mistral_url"])
    execution = user.executions.create("lab_smoke_echo", workflow_input={"greeting": "hi"})
    deadline = time.monotonic() + 60
    while execution.state not in ("SUCCESS", "ERROR") and time.monotonic() < deadline:
        time.sleep(0.5)
        execution = user.executions.get(execution.id)
    assert execution.state == "SUCCESS", execution.state_info
    assert '"echo": "hi"' in execution.output
    assert tenant["project"]["id"] in execution.output


def test_mail_lands_in_the_maildir_with_its_envelope(lab: dict) -> None:
    message = EmailMessage()
    marker = uuid.uuid4().hex
    message["From"] = "cloud-ops@lab.example"
    message["To"] = "owner@lab.example"
    message["Subject"] = f"smoke {marker}"
    message.set_content("hello")
    with smtplib.SMTP(lab["smtp_host"], lab["smtp_port"], timeout=10) as smtp:
        smtp.send_message(message, to_addrs=["owner@lab.example", "audit@lab.example"])
    stored = [found for found in mailbox.Maildir(lab["maildir"]) if marker in found["Subject"]]
    assert len(stored) == 1
    assert stored[0]["X-Envelope-To"] == "owner@lab.example, audit@lab.example"


def test_down_leaves_no_process(lab: dict) -> None:
    lab_dir = Path(lab["lab_dir"])
    started = processes.lab_processes(lab_dir)
    assert started, "the lab should be running before down"
    assert down(lab_dir) == []
    assert not any(
        Path(f"/proc/{pid}").exists() and processes.lab_processes(lab_dir) for pid in started
    )
    assert not list((lab_dir / "run").glob("*.pid"))

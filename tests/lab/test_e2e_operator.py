"""The operator's commands against the lab, through the real console script entry point."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta

import pytest
import yaml

from vm_expiry import cli, mistral_ops
from vm_expiry.lab import population as pop
from vm_expiry.timeutil import format_time, parse_api_time

pytestmark = pytest.mark.lab
RUN = secrets.token_hex(3)


@pytest.fixture(scope="module")
def scene(lab, tmp_path_factory):
    """A user with a personal project and a server, and a clouds.yaml for admin and user."""
    admin = pop.admin_session(lab)
    project = pop.ensure_project(admin, f"op-{RUN}", {"type": "personal", "expire": "on"})
    pop.ensure_user(admin, f"op-{RUN}", f"op-{RUN}@lab.example", project)
    user = pop.user_session(lab, f"op-{RUN}", project)
    with open(lab["clouds_yaml"]) as source:
        clouds = yaml.safe_load(source)
    clouds["clouds"]["lab-user"] = {"auth": {
        "auth_url": lab["keystone_url"], "username": f"op-{RUN}",
        "password": pop.USER_PASSWORD, "project_id": project, "user_domain_name": "Default"},
        "region_name": "RegionOne"}
    path = tmp_path_factory.mktemp("clouds") / "clouds.yaml"
    path.write_text(yaml.safe_dump(clouds))
    servers = [pop.boot(user, lab, name) for name in ("kept", "planned")]
    created = parse_api_time(pop.server(admin, servers[0])["created"])
    return {"lab": lab, "admin": admin, "user": user, "project": project, "clouds": str(path),
            "kept": servers[0], "planned": servers[1], "created": created}


def vm_expiry(scene, monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", scene["clouds"])
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_deploy_twice_changes_nothing_the_second_time(scene, monkeypatch, capsys):
    config = scene["lab"]["config_path"]
    vm_expiry(scene, monkeypatch, capsys, "deploy", "--cloud", "lab-admin", "--config", config,
              "--cron", "off")
    status, out, _ = vm_expiry(scene, monkeypatch, capsys, "deploy", "--cloud", "lab-admin",
                               "--config", config, "--cron", "off")
    assert status == 0
    lines = out.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("unchanged") for line in lines), out


def test_plan_matches_what_the_next_sweep_does(scene, monkeypatch, capsys):
    when = format_time(scene["created"] + timedelta(minutes=1))
    status, out, _ = vm_expiry(scene, monkeypatch, capsys, "plan", "--cloud", "lab-admin",
                               "--config", scene["lab"]["config_path"], "--now", when,
                               "--format", "json")
    assert status == 0
    planned = {row["server"]: row["step"] for row in json.loads(out)["servers"]}
    assert planned[scene["planned"]] == "mark" and planned[scene["kept"]] == "mark"
    client = mistral_ops.connect(scene["admin"])
    summary = mistral_ops.run(client, mistral_ops.SWEEP, {"now": when}, 180, False)["summary"]
    done = {e["server"]: e["kind"] for e in summary["events"]}
    assert done[scene["planned"]] == "mark" and done[scene["kept"]] == "mark"


def test_removed_server_is_left_alone_by_later_sweeps(scene, monkeypatch, capsys):
    status, out, _ = vm_expiry(scene, monkeypatch, capsys, "remove", "--cloud", "lab-admin",
                               scene["kept"])
    assert status == 0 and "exempt" in out
    client = mistral_ops.connect(scene["admin"])
    for days in (100, 200, 300):  # late reminder, expiry, deletion of the neighbour
        when = format_time(scene["created"] + timedelta(days=days))
        summary = mistral_ops.run(client, mistral_ops.SWEEP, {"now": when}, 180, False)
        assert scene["kept"] not in {e["server"] for e in summary["summary"]["events"]}
    body = pop.server(scene["admin"], scene["kept"])
    assert body["status"] == "ACTIVE" and not body["locked"]
    assert body["metadata"]["expire_state"] == "exempt"
    assert pop.server(scene["admin"], scene["planned"]) is None  # its neighbour expired


def test_a_member_cannot_remove_or_exempt(scene, monkeypatch, capsys):
    status, _, err = vm_expiry(scene, monkeypatch, capsys, "remove", "--cloud", "lab-user",
                               scene["kept"])
    assert status == 1 and err.count("\n") == 1 and "vm-expiry: error:" in err
    status, _, err = vm_expiry(scene, monkeypatch, capsys, "exempt", "--cloud", "lab-user",
                               "--project", scene["project"])
    assert status == 1 and "not allowed" in err and err.count("\n") == 1


def test_list_shows_the_users_servers_and_their_expiry(scene, monkeypatch, capsys):
    status, out, _ = vm_expiry(scene, monkeypatch, capsys, "list", "--cloud", "lab-user",
                               "--format", "json")
    assert status == 0
    rows = {row["server"]: row for row in json.loads(out)}
    assert rows[scene["kept"]]["state"] == "exempt"

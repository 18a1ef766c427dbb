"""Faults that are real only in the lab: Mistral killed in the middle of a sweep.

The sweep is started, Mistral's processes are stopped (SIGTERM, SIGKILL after a second) while it
runs, the lab is brought up again, and the sweep is re-run at the same ``now``: every server must
end in the state the policy says, with each mail delivered once and no step taken twice.
Uses its own project, user and servers; other engineers' servers share the lab.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from vm_expiry import mistral_ops
from vm_expiry.config import load_file
from vm_expiry.lab import population as pop
from vm_expiry.lab import processes
from vm_expiry.lab.lifecycle import up
from vm_expiry.timeutil import format_time, parse_api_time, parse_metadata_time

pytestmark = pytest.mark.lab
RUN = secrets.token_hex(3)
SERVERS = 4


def test_mistral_killed_mid_sweep_then_rerun_sends_each_mail_once(lab: dict, lab_dir: Path):
    admin = pop.admin_session(lab)
    client = mistral_ops.connect(admin)
    mistral_ops.deploy(client, load_file(lab["config_path"]), None, False)
    project = pop.ensure_project(admin, f"crash-{RUN}", {"type": "personal", "expire": "on"})
    email = f"crash-{RUN}@lab.example"
    pop.ensure_user(admin, f"crash-{RUN}", email, project)
    user = pop.user_session(lab, f"crash-{RUN}", project)
    ids = [pop.boot(user, lab, f"crash{index}") for index in range(SERVERS)]
    created = max(parse_api_time(pop.server(admin, sid)["created"]) for sid in ids)

    def sweep(now) -> dict:
        return mistral_ops.run(client, mistral_ops.SWEEP, {"now": format_time(now)},
                               timeout=240, progress=False)["summary"]

    sweep(created + timedelta(minutes=5))
    expire_at = max(parse_metadata_time(pop.server(admin, sid)["metadata"]["expire_at"])
                    for sid in ids)
    reminder_time = expire_at - timedelta(days=1)

    # Start the sweep that sends the 1-day reminders, and kill Mistral while it runs.
    execution = client.executions.create(
        mistral_ops.SWEEP, workflow_input={"now": format_time(reminder_time)})
    time.sleep(1.5)
    killed_state = client.executions.get(execution.id).state
    processes.stop(lab_dir, "mistral", timeout=1)
    up(lab_dir)
    client = mistral_ops.connect(pop.admin_session(lab))

    sweep(reminder_time)  # the re-run
    sweep(reminder_time)  # and once more: nothing left to do
    states = {sid: pop.server(admin, sid)["metadata"]["expire_state"] for sid in ids}
    assert states == dict.fromkeys(ids, "reminded-1"), (killed_state, states)

    summary = sweep(expire_at)
    for sid in ids:
        body = pop.wait_for(admin, sid, lambda s: s["status"] == "SHUTOFF", "SHUTOFF")
        assert body["locked"] and body["metadata"]["expire_state"] == "expired"
    assert summary["steps"].get("expire", 0) >= SERVERS

    mails = [m for m in pop.read_maildir(lab["maildir"]) if m.to == email]
    per_id = Counter(str(m.message["Message-ID"]) for m in mails)
    assert all(count == 1 for count in per_id.values()), per_id
    subjects = Counter(m.subject for m in mails)
    for index in range(SERVERS):
        assert subjects[f'Your server "crash{index}" expires in 1 day'] == 1, subjects
        assert subjects[f'Your server "crash{index}" has expired and was shut down'] == 1
    print(f"execution state when Mistral was killed: {killed_state}")

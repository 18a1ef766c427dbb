"""``vm-expiry demo``: a few people and servers in the lab, walked through 120 simulated days.

Everything happens for real: the lab's Mistral runs the deployed sweep workflow against the
lab's Keystone and Nova, mail goes over SMTP into the sink, and one owner prolongs their expired
server with their own credentials.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from vm_expiry import mistral_ops
from vm_expiry.config import load_file
from vm_expiry.lab import lifecycle
from vm_expiry.lab import population as pop
from vm_expiry.timeutil import format_time

PERSONAL = {"type": "personal", "expire": "on"}
# Days on which the demo sweeps; the owner of "ci-runner" prolongs it on PROLONG_DAY.
SWEEP_DAYS = (0, 7, 13, 14, 28, 76, 83, 89, 90, 92, 104, 120)
PROLONG_DAY = 91


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command."""
    demo = commands.add_parser("demo", help="walk a few servers through 120 simulated days in "
                               "the local lab")
    demo.add_argument("--dir", default=".lab", help="lab folder (default: %(default)s)")
    demo.set_defaults(handler=run_demo)


def _say(text: str = "") -> None:
    print(text, flush=True)


class Demo:
    """The demo's cast and its timeline."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        self.info = info
        self.admin = pop.admin_session(info)
        self.mistral = mistral_ops.connect(self.admin)
        self.names: dict[str, str] = {}
        self.owners: dict[str, str] = {}

    def cast(self) -> None:
        """Users, projects and servers; servers of earlier demo runs are removed first."""
        admin = self.admin
        projects = {
            "alice": pop.ensure_project(admin, "demo-alice", PERSONAL),
            "bob": pop.ensure_project(admin, "demo-bob", PERSONAL),
            "carol": pop.ensure_project(admin, "demo-carol", PERSONAL),
            "team": pop.ensure_project(admin, "demo-team", {"type": "shared"}),
        }
        for project_id in projects.values():
            pop.delete_servers(admin, project_id)
        users = {
            "alice": pop.ensure_user(admin, "demo-alice", "alice@lab.example", projects["alice"]),
            "bob": pop.ensure_user(admin, "demo-bob", "bob@lab.example", projects["bob"]),
            "carol": pop.ensure_user(admin, "demo-carol", None, projects["carol"]),
        }
        pop.ensure_user(admin, "demo-alice", "alice@lab.example", projects["team"])
        self.bob_session = pop.user_session(self.info, "demo-bob", projects["bob"])
        boots = (("alice", "web", projects["alice"]), ("bob", "ci-runner", projects["bob"]),
                 ("carol", "scratch", projects["carol"]), ("alice", "team-build", projects["team"]))
        for owner, name, project_id in boots:
            owner_session = pop.user_session(self.info, f"demo-{owner}", project_id)
            self._add(pop.boot(owner_session, self.info, name), name, owner)
        # The next whole minute, so that day N is at least N days after every boot.
        self.start = (datetime.now(timezone.utc) + timedelta(minutes=1)).replace(
            second=0, microsecond=0)
        old = format_time(self.start - timedelta(days=300))
        legacy = pop.seed(admin, self.info, projects["alice"], users["alice"], 1, old, "legacy-db")
        self._add(legacy[0], "legacy-db-0", "alice")
        self.ci_runner = next(i for i, n in self.names.items() if n == "ci-runner")
        _say("cast:")
        _say("  alice  alice@lab.example  personal project: web (new), legacy-db-0 (300 days "
             "old, from before the pack)")
        _say("  bob    bob@lab.example    personal project: ci-runner (new)")
        _say("  carol  (no e-mail)        personal project: scratch (new)")
        _say("  team   shared project, not under expiry: team-build (new)")

    def _add(self, server_id: str, name: str, owner: str) -> None:
        self.names[server_id] = name
        self.owners[server_id] = owner

    def day(self, number: int) -> datetime:
        return self.start + timedelta(days=number)

    def walk(self) -> None:
        """Sweep on the demo's days and print what happened to each server."""
        _say()
        _say(f"{'day':>4}  {'date':10}  {'server':12} {'what happened':72} mail")
        for number in SWEEP_DAYS:
            if number > PROLONG_DAY and self.ci_runner:
                self.prolong(PROLONG_DAY)
                self.ci_runner = ""
            output = mistral_ops.run(self.mistral, mistral_ops.SWEEP,
                                     {"now": format_time(self.day(number))}, 300, False)
            self.show(number, output["summary"])

    def prolong(self, number: int) -> None:
        bob = mistral_ops.connect(self.bob_session)
        output = mistral_ops.run(bob, mistral_ops.PROLONG, {
            "server": self.ci_runner, "now": format_time(self.day(number))}, 120, False)
        what = f"bob prolonged it: now expires {output['expire_at'][:10]}"
        if output.get("unlocked"):
            what += ", unlocked and started"
        self.line(number, "ci-runner", what, "prolonged" if output["mail"] == "sent" else "-")

    def line(self, number: int, server: str, what: str, mail: str) -> None:
        date = self.day(number).strftime("%Y-%m-%d")
        _say(f"{number:>4}  {date:10}  {server:12} {what[:72]:72} {mail}")

    def show(self, number: int, summary: Mapping[str, Any]) -> None:
        shown = False
        mails = {"remind": "reminder", "expire": "expired", "delete": "deleted"}
        for event in summary.get("events", []):
            name = self.names.get(event["server"])
            if name is None:
                continue
            what = f"{event['kind']}: {event['detail']}"
            mail = mails.get(event["kind"], "-") if event["mail"] == "sent" else (
                "NOT SENT" if event["mail"] == "failed" else "-")
            self.line(number, name, what, mail)
            shown = True
        if not shown:
            self.line(number, "", "nothing due", "-")


def run_demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    lab_dir = Path(args.dir).resolve()
    info = lifecycle.up(lab_dir)
    demo = Demo(info)
    mistral_ops.deploy(demo.mistral, load_file(info["config_path"]), None, False)
    demo.cast()
    demo.walk()
    maildir = info["maildir"]
    count = len(pop.read_maildir(maildir))
    _say()
    _say(f"done in {time.monotonic() - started:.0f} s. Where to look:")
    _say(f"  mail:     {count} messages in {maildir} (Maildir; e.g. ls {maildir}/new)")
    _say(f"  Mistral:  OS_CLIENT_CONFIG_FILE={lab_dir}/clouds.yaml "
         f"{lab_dir}/venvs/mistral/bin/mistral --os-cloud lab-admin execution-list")
    _say(f"  servers:  metadata keys expire_* on each server; lab URLs in {lab_dir}/lab.json")
    _say(f"  stop it:  .venv/bin/vm-expiry lab down --dir {args.dir}")
    return 0

"""``vm-expiry plan``, ``list``, ``remove`` and ``exempt``: reports and exemptions.

``plan`` and ``list`` read the APIs directly (no Mistral) and change nothing; ``remove`` runs the
admin-only ``vm_expiry.exempt`` workflow (the seal's secret lives on the Mistral hosts), and
``exempt --project/--user`` marks the project or user in Keystone, where only admins can.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from vm_expiry import mistral_ops, sweep
from vm_expiry.cloud import Cloud, NotFound, cloud_session
from vm_expiry.commands import add_cloud_option
from vm_expiry.config import EXEMPT_PROJECT_TAG, load_file, runtime_path
from vm_expiry.errors import VmExpiryError
from vm_expiry.policy import (
    USER_EXEMPT_PROPERTY,
    ServerFacts,
    Step,
    forecast_deletion,
    plan_steps,
)
from vm_expiry.state import display_state
from vm_expiry.timeutil import format_time, parse_api_time


def register(commands: argparse._SubParsersAction) -> None:
    """Add plan, list, remove and exempt."""
    plan = commands.add_parser("plan", help="what the next sweep would do (read-only)")
    add_cloud_option(plan)
    plan.add_argument("--config", metavar="FILE", help="the pack's configuration (default: "
                      "$VM_EXPIRY_CONFIG or /etc/vm-expiry/vm-expiry.yaml)")
    plan.add_argument("--now", metavar="ISO", help="plan for this time (default: the clock)")
    plan.add_argument("--format", choices=("table", "json"), default="table")
    plan.add_argument("--all", action="store_true", help="also list servers with nothing due")
    plan.add_argument("--summary", action="store_true", help="counts and a chart of the servers "
                      "and cores freed per day")
    plan.add_argument("--days", type=int, default=30, help="days the chart covers (30)")
    plan.set_defaults(handler=run_plan)

    listing = commands.add_parser("list", help="servers and their expiry")
    add_cloud_option(listing)
    listing.add_argument("--project", help="project name or id (admin: any project)")
    listing.add_argument("--all-projects", action="store_true", help="every project (admin)")
    listing.add_argument("--expiring-within", type=int, metavar="DAYS",
                         help="only servers expiring within DAYS days")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(handler=run_list)

    remove = commands.add_parser("remove", help="take expiry off a server for good (admin)")
    add_cloud_option(remove)
    remove.add_argument("server", help="server id")
    remove.set_defaults(handler=run_remove)

    exempt = commands.add_parser("exempt", help="exempt a project, user or server (admin)")
    add_cloud_option(exempt)
    target = exempt.add_mutually_exclusive_group(required=True)
    target.add_argument("--project", help="project id")
    target.add_argument("--user", help="user id")
    target.add_argument("--server", help="server id (same as remove)")
    exempt.add_argument("--undo", action="store_true", help="end a project's or user's exemption")
    exempt.set_defaults(handler=run_exempt)


class Progress:
    """A counter on stderr while a long listing pages along (only on a terminal)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.count = 0
        self.live = sys.stderr.isatty()

    def track(self, items: Iterable[ServerFacts]) -> Iterator[ServerFacts]:
        for item in items:
            self.count += 1
            if self.live and self.count % 200 == 0:
                print(f"\r{self.label}: {self.count} servers", end="", file=sys.stderr,
                      flush=True)
            yield item
        if self.live:
            print(f"\r{self.label}: {self.count} servers, done", file=sys.stderr, flush=True)


def _now(text: str | None) -> datetime:
    if not text:
        return datetime.now(timezone.utc).replace(microsecond=0)
    try:
        return parse_api_time(text)
    except ValueError as error:
        raise VmExpiryError(f"--now: {error}") from None


def run_plan(args: argparse.Namespace) -> int:
    config = load_file(args.config or runtime_path())
    cloud = Cloud(cloud_session(args.cloud))
    now = _now(args.now)
    projects = cloud.selected_projects(config.project_selector)
    rows: list[dict[str, Any]] = []
    freed: Counter[tuple[str, str]] = Counter()
    horizon = now + timedelta(days=args.days)

    def decisions() -> Iterator[Step]:
        for facts in Progress("planning").track(cloud.iter_servers(projects)):
            step = sweep.decide_with_owner(cloud, facts, config, now)
            deleted = forecast_deletion(facts, step, config, now)
            if deleted is not None and deleted < horizon:
                day = deleted.strftime("%Y-%m-%d")
                freed[(day, "servers")] += 1
                freed[(day, "cores")] += facts.vcpus
            if args.all or step.acts or step.kind.value == "blocked":
                project = projects.get(facts.project_id, {})
                rows.append({"server": facts.id, "name": facts.name,
                             "project": project.get("name", facts.project_id),
                             "step": step.kind.value, "reason": step.reason})
            yield step

    result = plan_steps(decisions(), config)
    days = sorted({day for day, _ in freed})
    forecast = [{"date": d, "servers": freed[(d, "servers")], "cores": freed[(d, "cores")]}
                for d in days]
    report = {"now": format_time(now), "projects": len(projects), "steps": result.counts,
              "deletions_waiting": result.deletions_waiting, "servers": rows,
              "forecast": forecast}
    if args.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    print(f"plan at {report['now']}: {sum(result.counts.values())} servers in "
          f"{len(projects)} projects where expiry applies")
    for kind, count in sorted(result.counts.items()):
        print(f"  {kind:8} {count:7}")
    if result.deletions_waiting:
        print(f"  {result.deletions_waiting} deletions would wait (max_deletions_per_run)")
    if args.summary:
        print(f"\nfreed in the next {args.days} days if nobody prolongs:")
        peak = max([f["cores"] for f in forecast] + [1])
        for row in forecast:
            bar = "#" * max(1, round(40 * row["cores"] / peak)) if row["cores"] else ""
            print(f"  {row['date']}  {row['servers']:5} servers {row['cores']:6} cores  {bar}")
        if not forecast:
            print("  nothing")
        return 0
    if rows:
        print()
        print(_table(rows, ("server", "name", "project", "step", "reason")))
    return 0


def _table(rows: list[Mapping[str, Any]], columns: tuple[str, ...]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c) or "")) for r in rows)) for c in columns}
    widths[columns[-1]] = len(columns[-1])  # the last column runs free
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c) or "").ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def run_list(args: argparse.Namespace) -> int:
    cloud = Cloud(cloud_session(args.cloud))
    wanted: set[str] | None = None
    names: dict[str, str] = {}
    if args.project or args.all_projects:
        projects = cloud.projects()
        names = {p["id"]: p["name"] for p in projects}
        wanted = {p["id"] for p in projects
                  if args.all_projects or args.project in (p["id"], p["name"])}
        if not wanted:
            raise NotFound(f"project {args.project}: not found")
    now = datetime.now(timezone.utc)
    rows = []
    for facts in Progress("listing").track(cloud.iter_servers(wanted)):
        shown = display_state(facts.metadata)
        if shown is None:
            continue
        if args.expiring_within is not None and (
                shown.expire_at is None
                or shown.expire_at > now + timedelta(days=args.expiring_within)):
            continue
        rows.append({
            "server": facts.id, "name": facts.name,
            "project": names.get(facts.project_id, facts.project_id),
            "expire_at": format_time(shown.expire_at) if shown.expire_at else "never",
            "state": shown.phase,
            "delete_at": format_time(shown.delete_at) if shown.delete_at else "",
        })
    rows.sort(key=lambda r: r["expire_at"])
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif rows:
        print(_table(rows, ("server", "name", "project", "expire_at", "state", "delete_at")))
    else:
        print("no servers under expiry")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    client = mistral_ops.connect(cloud_session(args.cloud))
    output = mistral_ops.run(client, mistral_ops.EXEMPT, {"server": args.server}, 120)
    unlocked = " and unlocked" if output.get("unlocked") else ""
    print(f"server {output.get('server')} is exempt from expiry{unlocked}")
    return 0


def run_exempt(args: argparse.Namespace) -> int:
    if args.server:
        if args.undo:
            raise VmExpiryError("--undo applies to projects and users; to put a server back "
                                "under expiry, delete its expire_* metadata keys as admin and "
                                "the next sweep marks it afresh")
        return run_remove(argparse.Namespace(cloud=args.cloud, server=args.server))
    cloud = Cloud(cloud_session(args.cloud))
    if args.project:
        cloud.tag_project(args.project, EXEMPT_PROJECT_TAG, present=not args.undo)
        print(f"project {args.project} is {'no longer ' if args.undo else ''}exempt from expiry")
    else:
        cloud.set_user_property(args.user, USER_EXEMPT_PROPERTY, "false" if args.undo else "true")
        print(f"user {args.user} is {'no longer ' if args.undo else ''}exempt from expiry")
    return 0

"""``vm-expiry deploy``, ``sweep`` and ``prolong``: the pack's workflows driven through Mistral."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from vm_expiry import mistral_ops
from vm_expiry.cloud import cloud_session
from vm_expiry.config import load_file


def add_cloud_option(parser: argparse.ArgumentParser) -> None:
    """``--cloud NAME`` as every OpenStack client has it (else the ``OS_*`` variables)."""
    parser.add_argument("--cloud", metavar="NAME", help="cloud in clouds.yaml (default: OS_* "
                        "variables or OS_CLOUD)")


def register(commands: argparse._SubParsersAction) -> None:
    """Add deploy, sweep and prolong."""
    deploy = commands.add_parser("deploy", help="create or update the workflows, the environment "
                                 "and the cron trigger in Mistral")
    add_cloud_option(deploy)
    deploy.add_argument("--config", metavar="FILE", help="configuration file to validate and "
                        "record in the Mistral environment")
    deploy.add_argument("--cron", default=mistral_ops.DEFAULT_CRON,
                        help="cron pattern of the scheduled sweep (default: %(default)s); "
                        "'off' for none")
    deploy.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    deploy.set_defaults(handler=run_deploy)

    sweep = commands.add_parser("sweep", help="run the sweep workflow in Mistral and print its "
                                "summary")
    add_cloud_option(sweep)
    sweep.add_argument("--now", metavar="ISO", help="simulated time (default: the clock)")
    sweep.add_argument("--dry-run", action="store_true", help="plan and report; change nothing")
    sweep.add_argument("--format", choices=("table", "json"), default="table")
    sweep.add_argument("--timeout", type=float, default=1800, help="seconds to wait")
    sweep.set_defaults(handler=run_sweep)

    prolong = commands.add_parser("prolong", help="prolong one of your servers")
    add_cloud_option(prolong)
    prolong.add_argument("server", help="server id")
    prolong.add_argument("--now", metavar="ISO", help="simulated time (labs only)")
    prolong.add_argument("--format", choices=("table", "json"), default="table")
    prolong.add_argument("--timeout", type=float, default=120, help="seconds to wait")
    prolong.set_defaults(handler=run_prolong)


def _client(args: argparse.Namespace) -> Any:
    return mistral_ops.connect(cloud_session(args.cloud))


def _run(args: argparse.Namespace, workflow: str, **workflow_input: Any) -> Mapping[str, Any]:
    """Run ``workflow`` with the given input (and ``--now`` when set) and wait for its output."""
    if args.now:
        workflow_input["now"] = args.now
    return mistral_ops.run(_client(args), workflow, workflow_input, args.timeout)


def run_deploy(args: argparse.Namespace) -> int:
    config = load_file(args.config) if args.config else None
    cron = None if args.cron == "off" else args.cron
    changes = mistral_ops.deploy(_client(args), config, cron, args.dry_run)
    for change in changes:
        print(("would " if args.dry_run and change.action != "unchanged" else "") + str(change))
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    output = _run(args, mistral_ops.SWEEP, dry_run=args.dry_run)
    summary = output.get("summary") or {}
    print(json.dumps(summary, indent=2) if args.format == "json" else format_summary(summary))
    return 0


def run_prolong(args: argparse.Namespace) -> int:
    output = _run(args, mistral_ops.PROLONG, server=args.server)
    if args.format == "json":
        print(json.dumps(output, indent=2))
    else:
        extra = [w for w, done in (("unlocked", output.get("unlocked")),
                                   ("started", output.get("started"))) if done]
        print(f"server {output.get('server')} now expires {output.get('expire_at')}"
              + (f" ({', '.join(extra)})" if extra else ""))
    return 0


def format_summary(summary: Mapping[str, Any]) -> str:
    """The sweep's summary as a few readable lines."""
    mode = " (dry run: nothing changed)" if summary.get("dry_run") else ""
    lines = [f"sweep at {summary.get('now')}{mode}: {summary.get('servers', 0)} servers in "
             f"{summary.get('projects', 0)} projects"]
    outcomes = summary.get("outcomes") or {}
    for kind, count in sorted((summary.get("steps") or {}).items()):
        results = ", ".join(f"{n} {o}" for o, n in sorted((outcomes.get(kind) or {}).items()))
        lines.append(f"  {kind:8} {count:6}" + (f"   ({results})" if results else ""))
    if summary.get("deletions_waiting"):
        lines.append(f"  {summary['deletions_waiting']} deletions wait for the next sweep "
                     "(max_deletions_per_run)")
    if summary.get("steps_waiting"):
        lines.append(f"  {summary['steps_waiting']} steps wait for the next sweep "
                     "(max_steps_per_run)")
    blocked = summary.get("blocked") or []
    if blocked:
        lines.append(f"blocked ({summary.get('blocked_total', len(blocked))}):")
        lines += [f"  {b['server']}  {b['reason']}" for b in blocked]
    return "\n".join(lines)

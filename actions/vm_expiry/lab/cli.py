"""``vm-expiry lab up|down|status``: the local lab from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vm_expiry.lab.ports import DEFAULT_PORTS

SERVICE_NAMES = {
    "keystone": "Keystone",
    "nova": "Nova",
    "mistral": "Mistral",
    "rabbit": "RabbitMQ",
    "smtp": "the SMTP sink",
}


def _dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir", type=Path, default=Path(".lab"), help="the lab's state folder (default: ./.lab)"
    )


def _up(args: argparse.Namespace) -> int:
    from vm_expiry.lab import lifecycle

    ports = {name: getattr(args, f"{name}_port") for name in DEFAULT_PORTS}
    info = lifecycle.up(args.dir, ports=ports, pack_dir=args.pack_dir)
    lines = {
        "keystone": info["keystone_url"],
        "nova": info["nova_url"],
        "mistral": info["mistral_url"],
        "seeding": info["seed_url"],
        "smtp": f"{info['smtp_host']}:{info['smtp_port']}",
        "maildir": info["maildir"],
        "config": info["config_path"],
        "clouds.yaml": info["clouds_yaml"],
        "lab.json": str(Path(info["lab_dir"]) / "lab.json"),
        "admin": f"OS_CLIENT_CONFIG_FILE={info['clouds_yaml']} OS_CLOUD=lab-admin",
    }
    for label, value in lines.items():
        print(f"{label:12} {value}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from vm_expiry.lab import lifecycle

    left = lifecycle.down(args.dir)
    if left:
        print(f"still running after SIGKILL: {' '.join(map(str, left))}")
        return 1
    return 0


def _status(args: argparse.Namespace) -> int:
    from vm_expiry.lab import lifecycle

    statuses = lifecycle.status(args.dir)
    for service in statuses:
        state = "stopped" if service.pid is None else f"pid {service.pid}"
        answer = "answering" if service.answering else "not answering"
        print(f"{service.name:10} {state:12} {answer}")
    return 0 if all(service.answering for service in statuses) else 1


def register(commands: Any) -> None:
    """Add the ``lab`` command group to the ``vm-expiry`` parser's subcommands."""
    lab = commands.add_parser(
        "lab",
        help="a local lab: Keystone, Nova, RabbitMQ, Mistral, SMTP",
        description="Start, stop or inspect a local lab on 127.0.0.1.",
    )
    actions = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")

    up = actions.add_parser("up", help="start every service (idempotent)")
    _dir_option(up)
    for name, default in DEFAULT_PORTS.items():
        up.add_argument(
            f"--{name}-port",
            type=int,
            metavar="PORT",
            help=f"port of {SERVICE_NAMES[name]} (default {default}, or the one used last time)",
        )
    up.add_argument(
        "--pack-dir",
        type=Path,
        help="the pack's source tree to install into Mistral "
        "(default: the one this vm-expiry runs from)",
    )
    up.set_defaults(handler=_up)

    down = actions.add_parser("down", help="stop every process the lab started")
    _dir_option(down)
    down.set_defaults(handler=_down)

    status = actions.add_parser("status", help="which services run and answer")
    _dir_option(status)
    status.set_defaults(handler=_status)

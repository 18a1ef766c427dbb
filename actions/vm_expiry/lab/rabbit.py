"""RabbitMQ (Debian's ``rabbitmq-server``) as the lab's own Erlang node, with its own epmd.

Everything the node writes (database, logs, PID file, Erlang cookie) lives under
``DIR/rabbit``; epmd runs on a lab-specific port so that stopping it never affects another
Erlang program on the machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vm_expiry.errors import VmExpiryError
from vm_expiry.lab import processes

# The /usr/sbin wrapper switches to the rabbitmq user and writes to /var/log/rabbitmq.
SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def transport_url(port: int) -> str:
    """The oslo.messaging URL of the lab's broker."""
    return f"rabbit://guest:guest@127.0.0.1:{port}/"


def check_installed() -> None:
    """Fail with the install command when Debian's RabbitMQ or Erlang's epmd is missing."""
    if not SERVER.exists() or shutil.which("epmd") is None:
        raise VmExpiryError(
            "rabbitmq: Debian's rabbitmq-server is not installed; "
            "run: apt-get update && apt-get install -y rabbitmq-server"
        )


def _environment(lab_dir: Path, port: int, dist_port: int, epmd_port: int) -> dict[str, str]:
    home = lab_dir / "rabbit"
    return {
        # The Erlang cookie is created in $HOME.
        "HOME": str(home),
        "ERL_EPMD_PORT": str(epmd_port),
        "RABBITMQ_NODENAME": f"vmexpiry-{port}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(home / "log"),
        "RABBITMQ_PID_FILE": str(home / "rabbitmq.pid"),
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
        "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
    }


def start_epmd(lab_dir: Path, epmd_port: int) -> int:
    """Start the lab's own epmd in the foreground of its session."""
    return processes.start(
        lab_dir, "epmd", ["epmd", "-port", str(epmd_port)], {"ERL_EPMD_PORT": str(epmd_port)}
    )


def start(lab_dir: Path, port: int, dist_port: int, epmd_port: int) -> int:
    """Start the broker node; it answers on ``port`` a few seconds later."""
    home = lab_dir / "rabbit"
    home.mkdir(parents=True, exist_ok=True)
    env = _environment(lab_dir, port, dist_port, epmd_port)
    return processes.start(lab_dir, "rabbit", [str(SERVER)], env, cwd=home)

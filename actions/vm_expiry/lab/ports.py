"""The lab's TCP ports: defaults, the ones derived from them, and checking that one is free."""

from __future__ import annotations

import socket
from collections.abc import Mapping

#: Ports a user chooses (CLI flags ``--<name>-port``), with their defaults.
DEFAULT_PORTS: dict[str, int] = {
    "keystone": 5000,
    "nova": 8774,
    "mistral": 8989,
    "rabbit": 5672,
    "smtp": 2525,
}

#: Ports derived from the chosen ones, so that two labs with different chosen ports never clash.
#: RabbitMQ's own convention puts distribution at AMQP + 20000; epmd is started by the lab on a
#: port of its own so that it is never shared with a system epmd or another lab.
DERIVED_PORTS: dict[str, tuple[str, int]] = {
    "nova_seed": ("nova", 1),
    "rabbit_dist": ("rabbit", 20000),
    "epmd": ("rabbit", 30000),
}

#: Which service listens on which port, for error messages and for the checks before a start.
PORT_OWNERS: dict[str, str] = {
    "keystone": "keystone",
    "nova": "nova",
    "nova_seed": "nova",
    "mistral": "mistral",
    "rabbit": "rabbit",
    "rabbit_dist": "rabbit",
    "epmd": "epmd",
    "smtp": "smtp",
}


def resolve(stored: Mapping[str, int], requested: Mapping[str, int | None]) -> dict[str, int]:
    """Chosen ports: requested ones first, then those stored by an earlier ``up``, then defaults."""
    ports = {
        name: requested.get(name) or stored.get(name) or default
        for name, default in DEFAULT_PORTS.items()
    }
    for name, (base, offset) in DERIVED_PORTS.items():
        ports[name] = ports[base] + offset
    return ports


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def answers(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """True when a TCP connection to ``host:port`` is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False

"""Helpers shared by the tests that run the sweep and the Mistral actions over the fake cloud."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

from fake_cloud import FakeCloud, FakeServer
from policy_helpers import SECRET

from vm_expiry import sweep
from vm_expiry.cloud import Cloud
from vm_expiry.config import Config, from_mapping
from vm_expiry.state import ExpiryState, read_state

SMTP_PASSWORD = "smtp-pw-Zq81"
SERVICE_PASSWORD = "svc-pw-Kx42"


def free_port() -> int:
    """A port nothing listens on (bound once by the OS, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config_for(port: int, **overrides: Any) -> Config:
    """The pack's configuration, mailing to an SMTP server on ``port``."""
    return from_mapping({
        "secret_key": SECRET,
        "mail": {"host": "127.0.0.1", "port": port, "from": "ops@cloud.test",
                 "horizon_url": "https://horizon.test"},
        **overrides,
    })


def run_sweep(cloud: FakeCloud, config: Config, now, dry_run: bool = False,
              page_size: int = 1000) -> dict[str, Any]:
    """Plan, apply every batch with a fresh ``Cloud`` (as Mistral does), summarize."""
    api = Cloud(cloud.session())
    planned = sweep.plan(api, config, now, page_size)
    results = [sweep.Applier(Cloud(cloud.session()), config, now, dry_run).apply(batch)
               for batch in planned["batches"]]
    return sweep.summarize(planned, results, dry_run)


def sealed(server: FakeServer) -> ExpiryState | None:
    """The server's sealed expiry state, or None."""
    return read_state(server.id, server.metadata, SECRET).sealed


def action_context(token: str | None, **security: Any) -> SimpleNamespace:
    """An action context as Mistral builds it; ``security`` overrides (or forges) fields."""
    return SimpleNamespace(security=SimpleNamespace(
        **{"auth_token": token, "is_target": False, **security}))

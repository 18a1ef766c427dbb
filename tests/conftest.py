"""Fixtures shared by the unit tests: a real local SMTP server, the in-memory cloud, and the
Mistral host's configuration file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests_mock
import yaml
from aiosmtpd.controller import Controller
from fake_cloud import KEYSTONE, FakeCloud
from mail_sink import MailSink
from pack_helpers import SERVICE_PASSWORD, SMTP_PASSWORD, free_port
from policy_helpers import SECRET


@pytest.fixture
def mail_sink() -> Iterator[tuple[MailSink, int]]:
    sink = MailSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with requests_mock.Mocker() as mocker:
        yield FakeCloud(mocker)


@pytest.fixture
def runtime(mail_sink: tuple[MailSink, int], tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """The Mistral host's configuration file, pointing at the fake cloud and the sink; call it
    with keys to override."""
    _, port = mail_sink

    def write(**overrides: Any) -> None:
        document = {
            "secret_key": SECRET, "simulated_time": True, "max_lifetime_days": 120,
            "mail": {"host": "127.0.0.1", "port": port, "from": "ops@cloud.test",
                     "password": SMTP_PASSWORD},
            "cloud": {"auth": {"auth_url": KEYSTONE, "username": "vm-expiry",
                               "password": SERVICE_PASSWORD, "project_name": "service"}},
            **overrides,
        }
        path = tmp_path / "vm-expiry.yaml"
        path.write_text(yaml.safe_dump(document))
        monkeypatch.setenv("VM_EXPIRY_CONFIG", str(path))

    write()
    return write

"""Fixtures shared by the unit tests: a real local SMTP server and the in-memory cloud."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests_mock
from aiosmtpd.controller import Controller
from fake_cloud import FakeCloud
from mail_sink import MailSink


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mail_sink() -> Iterator[tuple[MailSink, int]]:
    sink = MailSink()
    port = _free_port()
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

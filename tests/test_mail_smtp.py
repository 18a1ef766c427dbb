"""Delivery through a real SMTP server (aiosmtpd on 127.0.0.1), checked by parsing what arrived."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vm_expiry.config import MailConfig
from vm_expiry.mail import MailRenderer, SmtpSender

PASSWORD = "s3cret-Pa55word"
EXPIRE_AT = dt.datetime(2026, 12, 7, 14, 0, tzinfo=dt.timezone.utc)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    peer: Any
    tls: bool


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps what arrives and misbehaves on request."""

    refuse: set[str] = field(default_factory=set)
    slow: set[str] = field(default_factory=set)
    replies: list[str] = field(default_factory=list)  # to DATA, in turn; then 250
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.slow & set(envelope.rcpt_tos):
            await asyncio.sleep(1.5)
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message,
                session.peer,
                session.ssl is not None,
            )
        )
        return self.replies.pop(0) if self.replies else "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def smtp_server(handler: Recorder, **smtp_options: Any) -> Iterator[int]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp_options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def port(recorder: Recorder) -> Iterator[int]:
    with smtp_server(recorder) as port:
        yield port


def mail(
    config: MailConfig, to: str = "alice@example.org", name: str = "build-box", seed: str = "seed"
) -> EmailMessage:
    variables = {
        "server": {"id": "3f2a-server", "name": name, "status": "ACTIVE"},
        "project": {"id": "p-1", "name": "alice-personal"},
        "user": {"id": "u-1", "name": "Alice", "email": to},
        "expire_at": EXPIRE_AT,
        "days_left": 7,
        "delete_at": None,
        "grace_days": 14,
        "prolong_days": 30,
        "stage": 7,
    }
    return MailRenderer(config).render("reminder", to=to, variables=variables, message_id_seed=seed)


def config_for(port: int, **changes: Any) -> MailConfig:
    settings: dict[str, Any] = {"sender": "ops@example.org", "timeout_seconds": 5, **changes}
    return MailConfig(host="127.0.0.1", port=port, **settings)


def test_reminder_mail_arrives_with_text_and_html_parts(port: int, recorder: Recorder) -> None:
    config = config_for(port)
    sent = mail(config)

    [delivery] = SmtpSender(config).send([sent])

    assert delivery.delivered and delivery.error is None
    assert delivery.recipients == ("alice@example.org",)
    assert delivery.message_id == sent["Message-ID"]
    [received] = recorder.received
    assert received.mail_from == "ops@example.org"
    assert received.rcpt_tos == ["alice@example.org"]
    message = received.message
    assert message["Subject"] == 'Your server "build-box" expires in 7 days'
    assert message["Message-ID"] == sent["Message-ID"]
    assert message.get_content_type() == "multipart/alternative"
    assert "on Mon 7 Dec 2026 14:00 UTC" in message.get_body(("plain",)).get_content()
    assert "<strong>Mon 7 Dec 2026 14:00 UTC</strong>" in message.get_body(("html",)).get_content()


def test_html_part_escapes_script_in_server_name(port: int, recorder: Recorder) -> None:
    config = config_for(port)

    SmtpSender(config).send([mail(config, name="<script>alert('x')</script>")])

    html = recorder.received[0].message.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html


def test_crlf_in_server_name_cannot_inject_headers(port: int, recorder: Recorder) -> None:
    config = config_for(port)

    [delivery] = SmtpSender(config).send([mail(config, name="x\r\nBcc: evil@example.net\r\n")])

    assert delivery.delivered
    [received] = recorder.received
    assert received.rcpt_tos == ["alice@example.org"]
    message = received.message
    assert sorted(message.keys()) == sorted(
        [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "Auto-Submitted",
            "MIME-Version",
            "Content-Type",
        ]
    )
    assert message["Subject"] == 'Your server "x Bcc: evil@example.net " expires in 7 days'


def test_bcc_recipients_receive_but_are_not_in_headers(port: int, recorder: Recorder) -> None:
    config = config_for(port, cc=("ops@example.org",), bcc=("archive@example.org",))

    [delivery] = SmtpSender(config).send([mail(config)])

    assert delivery.delivered
    assert delivery.recipients == ("alice@example.org", "ops@example.org", "archive@example.org")
    [received] = recorder.received
    assert received.rcpt_tos == ["alice@example.org", "ops@example.org", "archive@example.org"]
    assert received.message["Cc"] == "ops@example.org"
    assert received.message["Bcc"] is None
    assert b"archive@example.org" not in received.message.as_bytes()


def test_many_messages_share_one_connection(port: int, recorder: Recorder) -> None:
    config = config_for(port)
    messages = [mail(config, to=f"user{i}@example.org", seed=str(i)) for i in range(5)]

    deliveries = SmtpSender(config).send(messages)

    assert [d.delivered for d in deliveries] == [True] * 5
    assert [d.message_id for d in deliveries] == [m["Message-ID"] for m in messages]
    assert len({r.peer for r in recorder.received}) == 1


def test_sending_nothing_opens_no_connection() -> None:
    assert SmtpSender(config_for(free_port())).send([]) == []


def test_unreachable_smtp_reports_every_message_undelivered() -> None:
    port = free_port()
    config = config_for(port)

    deliveries = SmtpSender(config).send([mail(config, seed="1"), mail(config, seed="2")])

    assert len(deliveries) == 2
    for delivery in deliveries:
        assert not delivery.delivered
        assert delivery.error == f"SMTP 127.0.0.1:{port} unreachable: Connection refused"


def test_refused_recipient_marks_only_that_message_undelivered() -> None:
    recorder = Recorder(refuse={"gone@example.org"})
    with smtp_server(recorder) as port:
        config = config_for(port)
        deliveries = SmtpSender(config).send(
            [
                mail(config, to="alice@example.org", seed="1"),
                mail(config, to="gone@example.org", seed="2"),
                mail(config, to="bob@example.org", seed="3"),
            ]
        )

    assert [d.delivered for d in deliveries] == [True, False, True]
    assert deliveries[1].error == (
        "all recipients refused: gone@example.org: 550 5.1.1 <gone@example.org>: "
        "mailbox unavailable"
    )
    assert [r.rcpt_tos for r in recorder.received] == [["alice@example.org"], ["bob@example.org"]]


def test_refused_owner_fails_the_delivery_even_when_cc_accepts() -> None:
    recorder = Recorder(refuse={"gone@example.org"})
    with smtp_server(recorder) as port:
        config = config_for(port, cc=("ops@example.org",))
        [delivery] = SmtpSender(config).send([mail(config, to="gone@example.org")])

    assert not delivery.delivered
    assert delivery.error is not None
    assert delivery.error.startswith("recipient refused: gone@example.org: 550")


def test_refused_cc_is_reported_but_the_mail_counts_as_delivered() -> None:
    recorder = Recorder(refuse={"archive@example.org"})
    with smtp_server(recorder) as port:
        config = config_for(port, bcc=("archive@example.org",))
        [delivery] = SmtpSender(config).send([mail(config)])

    assert delivery.delivered
    assert delivery.error is not None
    assert delivery.error.startswith("recipient refused: archive@example.org: 550")
    assert recorder.received[0].rcpt_tos == ["alice@example.org"]


def test_rejected_message_is_reported_with_the_server_reply() -> None:
    recorder = Recorder(replies=["554 5.7.1 Message rejected as spam"])
    with smtp_server(recorder) as port:
        config = config_for(port)
        [delivery] = SmtpSender(config).send([mail(config)])

    assert not delivery.delivered
    assert delivery.error == "message refused: 554 5.7.1 Message rejected as spam"


def test_dropped_connection_is_reopened_for_the_next_message() -> None:
    # 421 makes the server close the connection after its reply.
    recorder = Recorder(replies=["421 4.3.2 Service shutting down"])
    with smtp_server(recorder) as port:
        config = config_for(port)
        deliveries = SmtpSender(config).send([mail(config, seed="1"), mail(config, seed="2")])

    assert [d.delivered for d in deliveries] == [False, True]
    assert deliveries[0].error == "message refused: 421 4.3.2 Service shutting down"
    assert len({r.peer for r in recorder.received}) == 2


def test_timeout_marks_the_message_undelivered_and_the_next_is_sent() -> None:
    recorder = Recorder(slow={"slow@example.org"})
    with smtp_server(recorder) as port:
        config = config_for(port, timeout_seconds=1)
        deliveries = SmtpSender(config).send(
            [
                mail(config, to="slow@example.org", seed="1"),
                mail(config, to="bob@example.org", seed="2"),
            ]
        )

    assert not deliveries[0].delivered
    assert deliveries[0].error == f"SMTP 127.0.0.1:{port} timed out after 1s"
    assert deliveries[1].delivered


def test_starttls_against_a_server_without_it_is_a_clear_error(port: int) -> None:
    config = config_for(port, starttls=True)

    [delivery] = SmtpSender(config).send([mail(config)])

    assert not delivery.delivered
    assert delivery.error == (
        f"SMTP 127.0.0.1:{port} does not offer STARTTLS (mail.starttls is on); nothing sent"
    )


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextmanager
def tls_server(handler: Recorder, certificate: tuple[Path, Path], **options: Any) -> Iterator[int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    with smtp_server(handler, tls_context=context, require_starttls=True, **options) as port:
        yield port


def test_starttls_delivers_over_tls_with_a_trusted_certificate(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # How an operator trusts a private CA: the default context reads SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    recorder = Recorder()
    with tls_server(recorder, certificate) as port:
        config = config_for(port, starttls=True)
        [delivery] = SmtpSender(config).send([mail(config)])

    assert delivery.delivered, delivery.error
    assert recorder.received[0].tls


def test_starttls_refuses_an_untrusted_certificate(certificate: tuple[Path, Path]) -> None:
    recorder = Recorder()
    with tls_server(recorder, certificate) as port:
        config = config_for(port, starttls=True)
        [delivery] = SmtpSender(config).send([mail(config)])

    assert not delivery.delivered
    assert delivery.error is not None
    assert delivery.error.startswith(
        f"STARTTLS with SMTP 127.0.0.1:{port} failed: certificate verify failed"
    )
    assert recorder.received == []


def accept_only(login: bytes, password: bytes):
    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = auth_data.login == login and auth_data.password == password
        return AuthResult(success=ok, handled=False)

    return authenticator


def test_login_with_username_then_delivers(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    recorder = Recorder()
    authenticator = accept_only(b"vm-expiry", PASSWORD.encode())
    with tls_server(recorder, certificate, authenticator=authenticator, auth_required=True) as port:
        config = config_for(port, starttls=True, username="vm-expiry", password=PASSWORD)
        [delivery] = SmtpSender(config).send([mail(config)])

    assert delivery.delivered, delivery.error


def test_smtp_password_never_appears_in_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="vm_expiry")

    def error_sending_to(port: int) -> str:
        config = config_for(port, username="vm-expiry", password=PASSWORD)
        [delivery] = SmtpSender(config).send([mail(config)])
        assert not delivery.delivered and delivery.error
        return delivery.error

    plain = {"auth_require_tls": False}
    with smtp_server(Recorder(), authenticator=accept_only(b"other", b"x"), **plain) as port:
        rejected = error_sending_to(port)
    with smtp_server(Recorder()) as port:
        no_auth = error_sending_to(port)
    unreachable = error_sending_to(free_port())
    echoing = Recorder(replies=[f"554 5.7.1 bad password {PASSWORD}"])
    with smtp_server(
        echoing, authenticator=accept_only(b"vm-expiry", PASSWORD.encode()), **plain
    ) as port:
        echoed = error_sending_to(port)

    assert "rejected the login as 'vm-expiry': 535" in rejected
    assert "does not offer AUTH" in no_auth
    assert "unreachable: Connection refused" in unreachable
    assert echoed == "message refused: 554 5.7.1 bad password ***"
    for error in (rejected, no_auth, unreachable, echoed):
        assert PASSWORD not in error
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("vm_expiry")]
    assert len(ours) == 4
    assert not [line for line in ours if PASSWORD in line]

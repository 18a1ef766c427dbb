"""Deliver rendered mails over SMTP and report, per message, whether the server accepted it.

One connection serves a whole ``send`` call. A message counts as delivered when the server
accepted it for every ``To`` address; a refused CC or BCC address is reported in ``error`` but
does not fail the delivery, since the owner is the one who must read the mail. A failure of one
message does not stop the others; if the server cannot be reached (or STARTTLS or login fails),
every remaining message is reported undelivered with that reason.

STARTTLS verifies the server's certificate against the system's trust store
(``ssl.create_default_context``; ``SSL_CERT_FILE`` points it at a private CA).
The SMTP password never appears in an error or a log line.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses

from vm_expiry.config import MailConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """What became of one message."""

    message_id: str
    recipients: tuple[str, ...]
    delivered: bool
    error: str | None = None


class _Unavailable(Exception):
    """No usable connection: every message still to send fails with this reason."""


class SmtpSender:
    """Sends messages through the configured SMTP server."""

    def __init__(self, mail_config: MailConfig) -> None:
        self.config = mail_config
        self.where = f"{mail_config.host}:{mail_config.port}"

    def recipients(self, message: EmailMessage) -> list[str]:
        """The envelope: the message's To and Cc addresses, then the configured BCC addresses."""
        headers = [*message.get_all("To", []), *message.get_all("Cc", [])]
        addresses = [address for _, address in getaddresses(headers)]
        addresses += [address for _, address in getaddresses(list(self.config.bcc))]
        seen: set[str] = set()
        envelope = []
        for address in addresses:
            if address and address.lower() not in seen:
                seen.add(address.lower())
                envelope.append(address)
        return envelope

    def send(self, messages: Sequence[EmailMessage]) -> list[Delivery]:
        """Send each message; one ``Delivery`` per message, in order."""
        deliveries: list[Delivery] = []
        connection: smtplib.SMTP | None = None
        unavailable: str | None = None
        try:
            for message in messages:
                envelope = tuple(self.recipients(message))
                message_id = str(message.get("Message-ID", ""))
                if unavailable is None:
                    try:
                        connection = self._usable(connection)
                    except _Unavailable as error:
                        unavailable = self._redacted(str(error))
                if unavailable is not None or connection is None:
                    delivery = Delivery(message_id, envelope, False, unavailable)
                else:
                    delivery, keep = self._deliver(connection, message, envelope)
                    if not keep:
                        _close(connection)
                        connection = None
                deliveries.append(delivery)
                _log(delivery)
        finally:
            if connection is not None:
                _quit(connection)
        return deliveries

    def _usable(self, connection: smtplib.SMTP | None) -> smtplib.SMTP:
        """The open connection if the server still answers, else a new one."""
        if connection is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                if connection.noop()[0] == 250:
                    return connection
            # Servers close idle and failed connections; that must not cost the next message.
            _close(connection)
        return self._connect()

    def _connect(self) -> smtplib.SMTP:
        where, timeout = self.where, self.config.timeout_seconds
        try:
            connection = smtplib.SMTP(self.config.host, self.config.port, timeout=timeout)
        except (TimeoutError, smtplib.SMTPServerDisconnected) as error:
            reason = f"timed out after {timeout}s" if _timed_out(error) else _reason(error)
            raise _Unavailable(f"SMTP {where} unreachable: {reason}") from None
        except smtplib.SMTPResponseException as error:
            raise _Unavailable(f"SMTP {where} refused the connection: {_reply(error)}") from None
        except (smtplib.SMTPException, OSError) as error:
            raise _Unavailable(f"SMTP {where} unreachable: {_reason(error)}") from None
        try:
            if self.config.starttls:
                self._starttls(connection)
            if self.config.username:
                self._login(connection)
        except BaseException:
            _close(connection)
            raise
        return connection

    def _starttls(self, connection: smtplib.SMTP) -> None:
        where = self.where
        try:
            connection.starttls(context=ssl.create_default_context())
        except smtplib.SMTPNotSupportedError:
            raise _Unavailable(
                f"SMTP {where} does not offer STARTTLS (mail.starttls is on); nothing sent"
            ) from None
        except ssl.SSLError as error:
            raise _Unavailable(f"STARTTLS with SMTP {where} failed: {_reason(error)}") from None
        except smtplib.SMTPResponseException as error:
            raise _Unavailable(f"SMTP {where} refused STARTTLS: {_reply(error)}") from None
        except (smtplib.SMTPException, OSError) as error:
            raise _Unavailable(f"STARTTLS with SMTP {where} failed: {_reason(error)}") from None

    def _login(self, connection: smtplib.SMTP) -> None:
        where, username = self.where, self.config.username
        try:
            connection.login(username or "", self.config.password or "")
        except smtplib.SMTPNotSupportedError:
            raise _Unavailable(
                f"SMTP {where} does not offer AUTH (mail.username is set); nothing sent"
            ) from None
        except smtplib.SMTPResponseException as error:
            raise _Unavailable(
                f"SMTP {where} rejected the login as {username!r}: {_reply(error)}"
            ) from None
        except (smtplib.SMTPException, OSError) as error:
            raise _Unavailable(
                f"SMTP {where} login as {username!r} failed: {_reason(error)}"
            ) from None

    def _deliver(
        self, connection: smtplib.SMTP, message: EmailMessage, envelope: tuple[str, ...]
    ) -> tuple[Delivery, bool]:
        """The delivery of one message, and whether the connection is still fit for the next."""
        message_id = str(message.get("Message-ID", ""))

        def failed(error: str) -> Delivery:
            return Delivery(message_id, envelope, False, self._redacted(error))

        try:
            refused = connection.send_message(message, to_addrs=list(envelope))
        except smtplib.SMTPRecipientsRefused as error:
            return failed(f"all recipients refused: {_refusals(error.recipients)}"), True
        except smtplib.SMTPSenderRefused as error:
            return failed(f"sender {error.sender} refused: {_reply(error)}"), True
        except smtplib.SMTPDataError as error:
            return failed(f"message refused: {_reply(error)}"), True
        except (TimeoutError, smtplib.SMTPServerDisconnected) as error:
            if _timed_out(error):
                timeout = self.config.timeout_seconds
                return failed(f"SMTP {self.where} timed out after {timeout}s"), False
            return failed(f"SMTP {self.where} closed the connection: {_reason(error)}"), False
        except smtplib.SMTPResponseException as error:
            return failed(f"SMTP {self.where} error: {_reply(error)}"), False
        except (smtplib.SMTPException, OSError) as error:
            return failed(f"SMTP {self.where} error: {_reason(error)}"), False
        if not refused:
            return Delivery(message_id, envelope, True), True
        owners = {a.lower() for _, a in getaddresses(message.get_all("To", []))}
        if owners & {a.lower() for a in refused}:
            return failed(f"recipient refused: {_refusals(refused)}"), True
        return Delivery(
            message_id, envelope, True, self._redacted(f"recipient refused: {_refusals(refused)}")
        ), True

    def _redacted(self, text: str) -> str:
        password = self.config.password
        return text.replace(password, "***") if password else text


def _timed_out(error: BaseException) -> bool:
    # smtplib reports a reply that never came as a disconnection caused by the timeout.
    return isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError)


def _reply(error: smtplib.SMTPResponseException) -> str:
    text = error.smtp_error
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{error.smtp_code} {' '.join(str(text).split())}"


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{address}: {_reply(smtplib.SMTPResponseException(code, text))}"
        for address, (code, text) in refused.items()
    )


def _log(delivery: Delivery) -> None:
    if delivery.delivered and delivery.error is None:
        log.info("mail %s accepted for %s", delivery.message_id, ", ".join(delivery.recipients))
    elif delivery.delivered:
        log.warning("mail %s accepted, but %s", delivery.message_id, delivery.error)
    else:
        log.warning("mail %s not delivered: %s", delivery.message_id, delivery.error)


def _quit(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        _close(connection)


def _close(connection: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        connection.close()

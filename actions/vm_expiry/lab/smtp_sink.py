"""The lab's SMTP sink: accepts every message and stores it in a Maildir.

Run as ``python -m vm_expiry.lab.smtp_sink --port P --maildir DIR``. Each stored message gets
``X-Envelope-From`` and ``X-Envelope-To`` headers, because Bcc recipients only appear in the
SMTP envelope.
"""

from __future__ import annotations

import argparse
import email.policy
import mailbox
import signal
import threading
from email import message_from_bytes
from pathlib import Path
from typing import Any


class MaildirHandler:
    """aiosmtpd handler writing each message to a Maildir."""

    def __init__(self, maildir: Path) -> None:
        self._maildir = mailbox.Maildir(maildir, create=True)
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(
            envelope.original_content or envelope.content, policy=email.policy.compat32
        )
        message["X-Envelope-From"] = envelope.mail_from or ""
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self._lock:
            self._maildir.add(message)
        return "250 OK stored"


def main() -> None:
    parser = argparse.ArgumentParser(description="SMTP server storing every message in a Maildir")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args()
    from aiosmtpd.controller import Controller

    controller = Controller(MaildirHandler(args.maildir), hostname="127.0.0.1", port=args.port)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    controller.start()
    print(f"smtp sink on 127.0.0.1:{args.port}, maildir {args.maildir}", flush=True)
    while not stopped.wait(1):
        pass
    controller.stop()


if __name__ == "__main__":
    main()

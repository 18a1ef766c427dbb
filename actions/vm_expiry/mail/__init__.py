"""Mail to server owners: Jinja2 rendering to ``EmailMessage`` and SMTP delivery."""

from vm_expiry.mail.errors import MailError
from vm_expiry.mail.render import EVENTS, MailRenderer
from vm_expiry.mail.smtp import Delivery, SmtpSender

__all__ = ["EVENTS", "Delivery", "MailError", "MailRenderer", "SmtpSender"]

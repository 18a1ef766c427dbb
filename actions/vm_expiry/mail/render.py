"""Render one event's templates into a standard ``email.message.EmailMessage``.

Each event (``reminder``, ``expired``, ``deleted``, ``prolonged``) has three templates:
``<event>.subject.j2``, ``<event>.txt.j2`` and ``<event>.html.j2``. They are looked up first in
``mail.templates_dir`` (so an operator overrides any single file) and then in the package.
HTML templates (``*.html.j2``) are autoescaped; undefined variables are errors.

Variables the caller passes (``variables``):

- ``server``: mapping with ``id``, ``name``, ``status``
- ``project``: mapping with ``id``, ``name``
- ``user``: mapping with ``id``, ``name``, ``email``
- ``expire_at``: aware datetime; for ``prolonged`` the new expiry
- ``days_left``: days until ``expire_at``, rounded to the nearest day; 0 or less once due
- ``delete_at``: datetime or None, when an expired server will be deleted
- ``grace_days``, ``prolong_days``: the configuration's values
- ``stage``: the reminder stage in days (``reminder`` only)

Variables the renderer adds unless the caller gives them:

- ``prolong_url``: the server's Horizon page, or None when ``mail.horizon_url`` is unset
- ``prolong_command``: the CLI command that prolongs the server
- ``subject``: the rendered one-line subject (in the text and HTML parts)

Filters: ``date`` ("Mon 7 Dec 2026 14:00 UTC"), ``days`` ("1 day", "7 days"), ``in_days``
("in 7 days", "in 1 day", "today", "now").
"""

from __future__ import annotations

import functools
import hashlib
import json
import shlex
import traceback
import unicodedata
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from importlib.resources import files
from typing import Any, TypeVar
from urllib.parse import quote

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    FunctionLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    Undefined,
    select_autoescape,
)

from vm_expiry.config import MailConfig
from vm_expiry.mail.errors import MailError

EVENTS = ("reminder", "expired", "deleted", "prolonged")
SUBJECT_LIMIT = 200
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


_T = TypeVar("_T")


def _strict(function: Callable[[_T], str]) -> Callable[[_T], str]:
    """A filter that reports an undefined input as such instead of failing on its type."""

    @functools.wraps(function)
    def checked(value: _T) -> str:
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()
        return function(value)

    return checked


@_strict
def format_date(moment: datetime) -> str:
    """``Mon 7 Dec 2026 14:00 UTC``; English whatever the host's locale."""
    if not isinstance(moment, datetime):
        raise TypeError(f"date filter needs a datetime, got {moment!r}")
    utc = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
    utc = utc.astimezone(timezone.utc)
    return (
        f"{_WEEKDAYS[utc.weekday()]} {utc.day} {_MONTHS[utc.month - 1]} {utc.year} {utc:%H:%M} UTC"
    )


@_strict
def format_days(count: int) -> str:
    """``1 day``, ``7 days``."""
    return f"{count} day" if abs(count) == 1 else f"{count} days"


@_strict
def format_in_days(count: int) -> str:
    """When something falls due, seen from now: ``in 7 days``, ``today``, ``now``."""
    if count > 0:
        return f"in {format_days(count)}"
    return "today" if count == 0 else "now"


def prolong_url(horizon_url: str | None, server_id: str) -> str | None:
    """The server's page in Horizon, where its owner prolongs it."""
    if not horizon_url:
        return None
    return f"{horizon_url.rstrip('/')}/project/instances/{quote(server_id, safe='')}/"


def prolong_command(server_id: str) -> str:
    """The CLI command that prolongs the server, quoted for a POSIX shell."""
    return "openstack workflow execution create vm_expiry.prolong " + shlex.quote(
        json.dumps({"server": server_id})
    )


def message_id(seed: str) -> str:
    """A Message-ID that is the same for the same seed, so a duplicate mail is recognisable."""
    return f"<{hashlib.sha256(seed.encode()).hexdigest()[:32]}@vm-expiry>"


def one_line(text: str, limit: int = SUBJECT_LIMIT) -> str:
    """``text`` as one header-safe line: control and line-break characters become spaces."""
    # Unicode line separators count too: some mail clients break lines on them.
    cleaned = "".join(
        " " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text
    )
    line = " ".join(cleaned.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


class MailRenderer:
    """Builds the mail for one event from the operator's or the packaged templates."""

    def __init__(self, mail_config: MailConfig) -> None:
        self.config = mail_config
        loaders: list[BaseLoader] = []
        if mail_config.templates_dir:
            loaders.append(FileSystemLoader(mail_config.templates_dir))
        loaders.append(FunctionLoader(_packaged_template))
        self.environment = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.environment.filters.update(date=format_date, days=format_days, in_days=format_in_days)

    def render(
        self, event: str, *, to: str, variables: Mapping[str, Any], message_id_seed: str
    ) -> EmailMessage:
        """The ``event`` mail to ``to``: text and HTML alternatives, CC from the configuration.

        BCC addresses are not in the headers; ``SmtpSender.recipients`` adds them to the
        envelope. ``message_id_seed`` names the mail, e.g. ``"<server id>|<event>|<expire_at>"``:
        the same seed gives the same Message-ID. Raises ``MailError`` for an unknown event, a
        template error (naming the file and line) or an unusable address.
        """
        if event not in EVENTS:
            raise MailError(f"unknown mail event {event!r}; expected one of {', '.join(EVENTS)}")
        address = _checked_address(to, variables)
        context = self._context(variables)
        subject = one_line(self._render(event, "subject", context))
        context["subject"] = subject
        text = self._render(event, "txt", context)
        html = self._render(event, "html", context)

        message = EmailMessage()
        message["From"] = self.config.sender
        message["To"] = address
        if self.config.cc:
            message["Cc"] = ", ".join(self.config.cc)
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.now(timezone.utc))
        message["Message-ID"] = message_id(message_id_seed)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message

    def _context(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        server = variables.get("server")
        server_id = server.get("id") if isinstance(server, Mapping) else None
        defaults: dict[str, Any] = {}
        if isinstance(server_id, str):
            defaults["prolong_url"] = prolong_url(self.config.horizon_url, server_id)
            defaults["prolong_command"] = prolong_command(server_id)
        return {**defaults, **variables}

    def _render(self, event: str, part: str, context: Mapping[str, Any]) -> str:
        name = f"{event}.{part}.j2"
        try:
            return self.environment.get_template(name).render(context)
        except TemplateNotFound as error:
            raise MailError(f"mail template {error.name} not found") from error
        except TemplateSyntaxError as error:
            where = error.filename or error.name or name
            problem = f"{where} line {error.lineno}: {error.message}"
            raise MailError(f"mail template {problem}") from error
        except (TemplateError, TypeError, ValueError) as error:
            raise MailError(f"mail template {_where(error, name)}: {error}") from error


def _packaged_template(name: str) -> tuple[str, str, Callable[[], bool]] | None:
    resource = files("vm_expiry.templates").joinpath(name)
    if not resource.is_file():
        return None
    # The package does not change under a running process.
    return resource.read_text(encoding="utf-8"), str(resource), lambda: True


def _where(error: BaseException, name: str) -> str:
    """The template file and line an error was raised from (Jinja rewrites the traceback)."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.endswith(".j2")]
    if not frames:
        return name
    return f"{frames[-1].filename} line {frames[-1].lineno}"


def _checked_address(to: str, variables: Mapping[str, Any]) -> str:
    user = variables.get("user")
    user_id = user.get("id") if isinstance(user, Mapping) else None
    if not isinstance(to, str) or not to.strip():
        raise MailError(f"no e-mail address for user {user_id}")
    address = to.strip()
    _, parsed = parseaddr(address)
    local, at, domain = address.rpartition("@")
    if (
        any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Zs") for c in address)
        or parsed != address
        or not (local and at and domain)
    ):
        raise MailError(f"invalid e-mail address for user {user_id}: {to!r}")
    return address

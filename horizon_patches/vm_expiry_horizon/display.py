"""How Horizon words and styles a server's expiry.

Only the readable mirrors in the server's metadata are shown (``vm_expiry.state.display_state``);
the lifecycle rules live in the pack's workflows, never here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from django.utils import timezone as django_timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from vm_expiry.state import Phase, display_state

UNKNOWN = "unknown"

# phase -> (our CSS class, Bootstrap label class). Bootstrap styles the label with no
# stylesheet of ours; the vm-expiry-* class is there for operators' themes and for tests.
_STYLES = {
    Phase.ACTIVE.value: ("vm-expiry-fine", "label-success"),
    Phase.REMINDED.value: ("vm-expiry-reminded", "label-warning"),
    Phase.EXPIRED.value: ("vm-expiry-expired", "label-danger"),
    Phase.EXEMPT.value: ("vm-expiry-exempt", "label-default"),
    UNKNOWN: ("vm-expiry-unknown", "label-default"),
}


@dataclass(frozen=True)
class ExpiryView:
    """A server's expiry as the dashboard shows it."""

    phase: str
    expire_at: datetime | None
    delete_at: datetime | None
    now: datetime

    @property
    def prolongable(self) -> bool:
        """Whether to offer Prolong: the pack manages the server and it is not exempt.

        Whether the prolong is allowed (membership, caps) is the workflow's decision.
        """
        return self.phase != Phase.EXEMPT.value

    @property
    def css_class(self) -> str:
        ours, bootstrap = _STYLES.get(self.phase, _STYLES[UNKNOWN])
        return f"label {bootstrap} vm-expiry {ours}"

    @property
    def state_text(self) -> str:
        return {
            Phase.ACTIVE.value: _("Active"),
            Phase.REMINDED.value: _("Reminder sent"),
            Phase.EXPIRED.value: _("Expired: locked and shut down"),
            Phase.EXEMPT.value: _("Exempt: never expires"),
        }.get(self.phase, _("Unknown"))

    @property
    def date_text(self) -> str:
        """The expiry date, "never" for exempt servers, empty when unreadable."""
        if self.phase == Phase.EXEMPT.value:
            return _("never")
        return format_moment(self.expire_at) if self.expire_at else ""

    @property
    def relative_text(self) -> str:
        """How long is left, or how long ago it passed ("in 12 days", "expired 3 days ago")."""
        if self.expire_at is None or self.phase == Phase.EXEMPT.value:
            return ""
        left = self.expire_at - self.now
        if left >= timedelta(0):
            return until(self.expire_at, self.now)
        if self.phase == Phase.EXPIRED.value:
            return _("expired %(span)s ago") % {"span": span_text(-left)}
        # The date passed but the sweep has not expired the server yet.
        return _("due %(span)s ago") % {"span": span_text(-left)}

    @property
    def delete_text(self) -> str:
        """When an expired server will be deleted, with how long is left; empty otherwise."""
        if self.delete_at is None:
            return ""
        left = self.delete_at - self.now
        if left < timedelta(0):
            return _("%(date)s (at the next sweep)") % {"date": format_moment(self.delete_at)}
        return _("%(date)s (in %(span)s)") % {
            "date": format_moment(self.delete_at),
            "span": span_text(left),
        }

    @property
    def summary(self) -> str:
        """Date and time left in one line, as the table column shows it."""
        if self.relative_text:
            return f"{self.date_text} ({self.relative_text})"
        return self.date_text or self.state_text

def expiry_view(metadata: Mapping[str, str] | None,
                now: datetime | None = None) -> ExpiryView | None:
    """The expiry of a server with this metadata; None when the pack does not manage it."""
    display = display_state(metadata or {})
    if display is None:
        return None
    return ExpiryView(
        phase=display.phase,
        expire_at=display.expire_at,
        delete_at=display.delete_at,
        now=now or datetime.now(timezone.utc),
    )


def until(moment: datetime, now: datetime | None = None) -> str:
    """How long until a future moment: "in 12 days"."""
    left = moment - (now or datetime.now(timezone.utc))
    return _("in %(span)s") % {"span": span_text(max(left, timedelta(0)))}


def format_moment(moment: datetime) -> str:
    """A date in the user's Horizon time zone (Horizon activates it per request)."""
    return django_timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


def span_text(span: timedelta) -> str:
    """A positive duration in its largest whole unit: days, else hours, else minutes."""
    if span.days >= 1:
        return ngettext("%(n)d day", "%(n)d days", span.days) % {"n": span.days}
    hours = span.seconds // 3600
    if hours >= 1:
        return ngettext("%(n)d hour", "%(n)d hours", hours) % {"n": hours}
    minutes = max(1, span.seconds // 60)
    return ngettext("%(n)d minute", "%(n)d minutes", minutes) % {"n": minutes}

"""Time in the pack: aware UTC datetimes inside, ``YYYY-MM-DDTHH:MM:SSZ`` in metadata."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_METADATA_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def format_time(moment: datetime) -> str:
    """The metadata form of an aware datetime, truncated to the second."""
    return moment.astimezone(timezone.utc).strftime(ISO_FORMAT)


def parse_metadata_time(text: str) -> datetime | None:
    """A value the pack wrote into metadata, or None if it is not exactly that form."""
    if not isinstance(text, str) or not _METADATA_TIME.fullmatch(text):
        return None
    try:
        # fromisoformat is several times faster than strptime; the pattern above already
        # pinned the exact form, so both accept and refuse the same values.
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def parse_api_time(text: str) -> datetime:
    """A timestamp as Nova and the CLI give it: ISO 8601, with or without zone (UTC assumed).

    Raises ValueError naming the text when it is not a timestamp.
    """
    cleaned = text.strip()
    if cleaned.endswith("Z"):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).replace(microsecond=0)


def days(count: float) -> timedelta:
    """A duration of ``count`` days."""
    return timedelta(days=count)


def days_until(moment: datetime, now: datetime) -> int:
    """Days from ``now`` until ``moment``, rounded to the nearest day.

    A 7-day reminder sent by an hourly sweep finds 6 days 23 hours left and must still say
    "in 7 days"; 0 within half a day of ``moment``, negative once it is further past.
    """
    return (moment - now + timedelta(hours=12)) // timedelta(days=1)

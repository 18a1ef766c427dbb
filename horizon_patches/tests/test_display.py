"""Wording and styling of a server's expiry, from its metadata mirrors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from vm_expiry_horizon.display import expiry_view, span_text

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


def view(**metadata):
    return expiry_view(metadata, now=NOW)


@pytest.mark.parametrize(("span", "text"), [
    (timedelta(days=1), "1 day"),
    (timedelta(days=12, hours=23), "12 days"),
    (timedelta(hours=5, minutes=59), "5 hours"),
    (timedelta(minutes=1), "1 minute"),
    (timedelta(seconds=5), "1 minute"),
])
def test_span_uses_the_largest_whole_unit(span, text):
    assert span_text(span) == text


def test_unmanaged_server_has_no_view():
    assert expiry_view({}) is None
    assert expiry_view(None) is None
    assert expiry_view({"owner": "x"}) is None


def test_active_server():
    shown = view(expire_at="2025-06-13T12:00:00Z", expire_state="active")
    assert shown.summary == "2025-06-13 12:00 UTC (in 12 days)"
    assert "vm-expiry-fine" in shown.css_class
    assert shown.prolongable
    assert shown.delete_text == ""


def test_date_passed_but_not_expired_yet_is_due():
    shown = view(expire_at="2025-05-30T12:00:00Z", expire_state="reminded-1")
    assert shown.relative_text == "due 2 days ago"
    assert "vm-expiry-reminded" in shown.css_class


def test_expired_server_shows_its_deletion():
    shown = view(expire_at="2025-05-29T12:00:00Z", expire_state="expired",
                 expire_delete_at="2025-06-12T12:00:00Z")
    assert shown.relative_text == "expired 3 days ago"
    assert shown.delete_text == "2025-06-12 12:00 UTC (in 11 days)"
    overdue = view(expire_at="2025-05-01T12:00:00Z", expire_state="expired",
                   expire_delete_at="2025-05-31T12:00:00Z")
    assert overdue.delete_text == "2025-05-31 12:00 UTC (at the next sweep)"


def test_exempt_server_never_expires_and_is_not_prolongable():
    shown = view(expire_at="never", expire_state="exempt")
    assert shown.summary == "never"
    assert "vm-expiry-exempt" in shown.css_class
    assert not shown.prolongable


def test_unreadable_mirrors_show_unknown():
    shown = view(expire_at="soon", expire_state="whatever")
    assert shown.summary == "Unknown"
    assert "vm-expiry-unknown" in shown.css_class
    assert shown.prolongable  # the pack manages it; its workflow repairs the mirrors

"""Rendering mails from the packaged and the operator's templates."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from vm_expiry.config import MailConfig
from vm_expiry.mail import EVENTS, MailError, MailRenderer
from vm_expiry.mail.render import format_date, one_line
from vm_expiry.timeutil import days_until

EXPIRE_AT = datetime(2026, 12, 7, 14, 0, tzinfo=timezone.utc)
HORIZON = "https://dashboard.example.org"


def variables(**changes: Any) -> dict[str, Any]:
    """Every variable the sweep passes, for a server due in 7 days."""
    values: dict[str, Any] = {
        "server": {"id": "3f2a-server", "name": "build-box", "status": "ACTIVE"},
        "project": {"id": "p-1", "name": "alice-personal"},
        "user": {"id": "u-1", "name": "Alice", "email": "alice@example.org"},
        "expire_at": EXPIRE_AT,
        "days_left": 7,
        "delete_at": EXPIRE_AT + timedelta(days=14),
        "grace_days": 14,
        "prolong_days": 30,
        "stage": 7,
    }
    values.update(changes)
    return values


def render(
    event: str = "reminder", config: MailConfig | None = None, **changes: Any
) -> EmailMessage:
    renderer = MailRenderer(config or MailConfig(horizon_url=HORIZON))
    return renderer.render(
        event, to="alice@example.org", variables=variables(**changes), message_id_seed="seed"
    )


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()


def html_of(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()


@pytest.mark.parametrize("horizon_url", [HORIZON, None])
@pytest.mark.parametrize("event", EVENTS)
def test_every_event_renders_subject_text_and_html(event: str, horizon_url: str | None) -> None:
    message = render(event, MailConfig(horizon_url=horizon_url))

    assert message.get_content_type() == "multipart/alternative"
    assert "build-box" in message["Subject"]
    for body in (text_of(message), html_of(message)):
        assert "build-box" in body
        assert "None" not in body
        assert "alice-personal" in body
    assert "<html" in html_of(message)


def test_minimal_variables_are_enough_for_every_event() -> None:
    minimal = {
        "server": {"id": "s", "name": "n", "status": "ACTIVE"},
        "project": {"id": "p", "name": "p"},
        "user": {"id": "u", "name": "U", "email": "u@example.org"},
        "expire_at": EXPIRE_AT,
        "days_left": 1,
        "delete_at": None,
        "grace_days": 0,
        "prolong_days": 30,
        "stage": 1,
    }
    renderer = MailRenderer(MailConfig())
    for event in EVENTS:
        renderer.render(event, to="u@example.org", variables=minimal, message_id_seed="s")


def test_reminder_tells_days_left_expiry_date_and_how_to_prolong() -> None:
    message = render("reminder", days_left=7)
    text = text_of(message)

    assert message["Subject"] == 'Your server "build-box" expires in 7 days'
    assert "expires in 7 days, on Mon 7 Dec 2026 14:00 UTC" in text
    assert "14 days later it is deleted" in text
    assert "prolong it by 30 days" in text
    assert f"{HORIZON}/project/instances/3f2a-server/" in text
    assert (
        'openstack workflow execution create vm_expiry.prolong \'{"server": "3f2a-server"}\''
        in text
    )
    assert f'href="{HORIZON}/project/instances/3f2a-server/"' in html_of(message)


@pytest.mark.parametrize(("days_left", "phrase"), [(1, "in 1 day"), (0, "today"), (-2, "now")])
def test_reminder_reads_naturally_on_the_last_days(days_left: int, phrase: str) -> None:
    message = render("reminder", days_left=days_left)

    assert message["Subject"] == f'Your server "build-box" expires {phrase}'
    assert f"expires {phrase}, on Mon 7 Dec 2026 14:00 UTC" in text_of(message)


@pytest.mark.parametrize(("left", "days"), [
    (timedelta(days=6, hours=23), 7),         # a 7-day reminder sent by an hourly sweep
    (timedelta(days=7, seconds=21), 7),       # swept a few seconds before its stage was due
    (timedelta(days=1, seconds=-5), 1),
    (timedelta(hours=11), 0),
    (timedelta(hours=-13), -1),
])
def test_days_left_is_rounded_to_the_nearest_day(left: timedelta, days: int) -> None:
    assert days_until(EXPIRE_AT, EXPIRE_AT - left) == days


def test_mail_without_horizon_url_offers_only_the_command() -> None:
    message = render("reminder", MailConfig(horizon_url=None))

    for body in (text_of(message), html_of(message)):
        assert "dashboard" not in body
        assert "vm_expiry.prolong" in body


def test_expired_mail_says_locked_shut_down_and_when_it_is_deleted() -> None:
    message = render("expired", days_left=0)
    text = text_of(message)

    assert message["Subject"] == 'Your server "build-box" has expired and was shut down'
    assert "expired on Mon 7 Dec 2026 14:00 UTC" in text
    assert "locked and shut down" in text
    assert "deleted on Mon 21 Dec 2026 14:00 UTC" in text
    assert "deleted on Mon 21 Dec 2026 14:00 UTC" in html_of(message)


def test_expired_mail_without_delete_date_counts_the_grace_days() -> None:
    text = text_of(render("expired", delete_at=None, grace_days=3))

    assert "deleted 3 days from now" in text


def test_deleted_mail_says_the_server_was_deleted() -> None:
    message = render("deleted", days_left=-14)

    assert message["Subject"] == 'Your server "build-box" has been deleted'
    assert "has now been deleted" in text_of(message)
    assert "vm_expiry.prolong" not in text_of(message)


def test_prolonged_mail_shows_the_new_expiry_date() -> None:
    new_expiry = datetime(2027, 1, 6, 9, 30, tzinfo=timezone.utc)
    message = render("prolonged", expire_at=new_expiry, days_left=30)

    assert message["Subject"] == 'Your server "build-box" now expires on Wed 6 Jan 2027 09:30 UTC'
    assert "It now expires on Wed 6 Jan 2027 09:30 UTC." in text_of(message)


def test_date_filter_shows_utc_whatever_the_input_zone() -> None:
    berlin = timezone(timedelta(hours=1))

    assert format_date(datetime(2026, 12, 7, 15, 0, tzinfo=berlin)) == "Mon 7 Dec 2026 14:00 UTC"


def test_text_part_is_not_html_escaped_and_html_part_is() -> None:
    message = render(server={"id": "s-1", "name": "a&b <c>", "status": "ACTIVE"})

    assert '"a&b <c>"' in text_of(message)
    assert "a&amp;b &lt;c&gt;" in html_of(message)
    assert "<c>" not in html_of(message)


def test_subject_with_line_breaks_becomes_one_line() -> None:
    name = "x\r\nBcc: evil@example.net\u2028y\x00z"
    message = render(server={"id": "s-1", "name": name, "status": "ACTIVE"})

    assert message["Subject"] == 'Your server "x Bcc: evil@example.net y z" expires in 7 days'
    assert message["Bcc"] is None
    headers = message.as_string().split("\n\n", 1)[0]
    assert "Bcc" not in headers.replace(message["Subject"], "")


def test_subject_is_limited_in_length() -> None:
    assert len(one_line("word " * 100)) == 200
    assert one_line("word " * 100).endswith("…")
    assert len(render(server={"id": "s", "name": "n" * 500, "status": "A"})["Subject"]) == 200


def test_cc_is_in_the_headers_and_bcc_is_not() -> None:
    config = MailConfig(cc=("ops@example.org", "audit@example.org"), bcc=("archive@example.org",))
    message = render(config=config)

    assert message["To"] == "alice@example.org"
    assert message["Cc"] == "ops@example.org, audit@example.org"
    assert message["Bcc"] is None
    assert "archive@example.org" not in message.as_string()


def test_headers_carry_sender_date_and_auto_submitted() -> None:
    message = render(config=MailConfig(sender="Cloud Ops <ops@example.org>"))

    assert message["From"] == "Cloud Ops <ops@example.org>"
    assert message["Date"]
    assert message["Auto-Submitted"] == "auto-generated"


def test_message_id_is_stable_for_the_same_seed() -> None:
    renderer = MailRenderer(MailConfig())

    def message_id(seed: str) -> str:
        message = renderer.render(
            "reminder", to="a@example.org", variables=variables(), message_id_seed=seed
        )
        return message["Message-ID"]

    first = message_id("3f2a|reminder|2026-12-07T14:00:00Z")
    assert first == message_id("3f2a|reminder|2026-12-07T14:00:00Z")
    assert first != message_id("3f2a|expired|2026-12-07T14:00:00Z")
    assert first.startswith("<") and first.endswith("@vm-expiry>")


def test_operator_template_overrides_packaged_one(tmp_path: Path) -> None:
    (tmp_path / "reminder.subject.j2").write_text("[ACME cloud] {{ server.name }} ends soon\n")
    message = render(config=MailConfig(templates_dir=str(tmp_path)))

    assert message["Subject"] == "[ACME cloud] build-box ends soon"
    assert "expires in 7 days" in text_of(message)


def test_operator_html_template_is_autoescaped(tmp_path: Path) -> None:
    (tmp_path / "reminder.html.j2").write_text("<p>{{ server.name }}</p>\n")
    message = render(
        config=MailConfig(templates_dir=str(tmp_path)),
        server={"id": "s", "name": "<script>alert(1)</script>", "status": "ACTIVE"},
    )

    assert html_of(message) == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n"


def test_template_typo_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "reminder.txt.j2").write_text("Hello,\n\n{{ sever.name }}\n")

    with pytest.raises(MailError) as caught:
        render(config=MailConfig(templates_dir=str(tmp_path)))

    assert f"{tmp_path / 'reminder.txt.j2'} line 3" in str(caught.value)
    assert "'sever' is undefined" in str(caught.value)


def test_missing_variable_names_the_packaged_template() -> None:
    values = variables()
    del values["prolong_days"]

    with pytest.raises(MailError) as caught:
        MailRenderer(MailConfig()).render(
            "reminder", to="a@example.org", variables=values, message_id_seed="s"
        )

    assert "reminder.txt.j2 line " in str(caught.value)
    assert "'prolong_days' is undefined" in str(caught.value)


def test_template_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "expired.html.j2").write_text("<p>\n{% if %}\n</p>\n")

    with pytest.raises(MailError, match=r"expired\.html\.j2 line 2"):
        render("expired", config=MailConfig(templates_dir=str(tmp_path)))


def test_unknown_event_is_a_clear_error() -> None:
    with pytest.raises(MailError, match="unknown mail event 'reminded'"):
        render("reminded")


@pytest.mark.parametrize("address", ["", "   ", None])
def test_missing_email_address_is_a_clear_error(address: str | None) -> None:
    renderer = MailRenderer(MailConfig())

    with pytest.raises(MailError, match=r"^no e-mail address for user u-1$"):
        renderer.render(
            "reminder",
            to=address,
            variables=variables(),
            message_id_seed="s",  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    "address",
    [
        "alice",
        "alice@",
        "@example.org",
        "alice@example.org\r\nBcc: evil@example.net",
        "alice@example.org, evil@example.net",
        "Alice <alice@example.org>",
    ],
)
def test_unusable_email_address_is_a_clear_error(address: str) -> None:
    renderer = MailRenderer(MailConfig())

    with pytest.raises(MailError, match=r"^invalid e-mail address for user u-1: "):
        renderer.render("reminder", to=address, variables=variables(), message_id_seed="s")

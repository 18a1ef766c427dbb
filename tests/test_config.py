"""The configuration model: defaults, files, and an error naming the key for every bad value."""

from __future__ import annotations

import pytest

from vm_expiry.config import from_mapping, load_file
from vm_expiry.errors import ConfigError

SECRET = {"secret_key": "0123456789abcdef"}


def test_defaults_follow_the_spec():
    config = from_mapping(SECRET)
    assert config.lifetime_days == 90 and config.prolong_days == 30
    assert config.reminder_days == (14, 7, 1)
    assert config.project_selector.properties == {"type": "personal", "expire": "on"}
    assert config.max_lifetime_days is None


@pytest.mark.parametrize(
    "raw,key,words",
    [
        ({"lifetime_days": -3}, "lifetime_days", "at least 1"),
        ({"grace_days": "two weeks"}, "grace_days", "whole number of days"),
        ({"prolong_days": True}, "prolong_days", "whole number"),
        ({"reminder_days": [14, -7]}, "reminder_days[1]", "before expiry"),
        ({"reminder_days": []}, "reminder_days", "non-empty"),
        ({"reminder_days": [7, 7]}, "reminder_days[1]", "twice"),
        ({"reminder_days": [100], "lifetime_days": 90}, "reminder_days[0]", "lifetime_days"),
        ({"reminder_days": [40]}, "reminder_days[0]", "prolong"),
        ({"max_lifetime_days": 30}, "max_lifetime_days", "below lifetime_days"),
        ({"min_notice_days": 1, "reminder_days": [7, 3]}, "min_notice_days", "no reminder"),
        ({"lifetim_days": 3}, "lifetim_days", "not a known configuration key"),
        ({"mail": {"port": 70000}}, "mail.port", "not a TCP port"),
        ({"mail": {"from": "nobody"}}, "mail.from", "not an e-mail address"),
        ({"mail": {"cc": ["ops@example.org\r\nBcc: x@evil"]}}, "mail.cc[0]", "one line"),
        ({"mail": {"smtp_host": "x"}}, "mail.smtp_host", "not a known"),
        ({"mail": {"starttls": "yes"}}, "mail.starttls", "true or false"),
        ({"mail": {"templates_dir": "/does/not/exist"}}, "mail.templates_dir", "not a folder"),
        ({"project_selector": {"properties": {"expire": True}}}, "project_selector.properties"
         ".expire", "quote it"),
        ({"project_selector": {"properties": {}}}, "project_selector.properties", "every project"),
        ({"cloud": {"name": "x", "auth": {"auth_url": "u"}}}, "cloud.auth", "not both"),
        ({"cloud": {"auth": {"username": "u"}}}, "cloud.auth.auth_url", "required"),
        ({"exempt": {"projects": "p1"}}, "exempt.projects", "must be a list"),
        ({"max_deletions_per_run": -1}, "max_deletions_per_run", "at least 0"),
    ],
)
def test_bad_value_is_refused_with_an_error_naming_the_key(raw, key, words):
    with pytest.raises(ConfigError) as caught:
        from_mapping({**SECRET, **raw})
    assert caught.value.key == key
    assert f"'{key}'" in str(caught.value) and words in str(caught.value)


def test_missing_secret_key_is_refused():
    with pytest.raises(ConfigError, match="'secret_key': is required"):
        from_mapping({})


def test_short_secret_key_is_refused():
    with pytest.raises(ConfigError, match="'secret_key': must be at least 16"):
        from_mapping({"secret_key": "short"})


def test_reminder_days_are_ordered_most_distant_first():
    assert from_mapping({**SECRET, "reminder_days": [1, 14, 7]}).reminder_days == (14, 7, 1)


def test_yaml_file_with_quoted_on_loads(tmp_path):
    path = tmp_path / "vm-expiry.yaml"
    path.write_text(
        "secret_key: 0123456789abcdef\nproject_selector:\n  properties: {expire: 'on'}\n"
        "mail:\n  from: Ops <ops@example.org>\n  bcc: audit@example.org\n"
    )
    config = load_file(path)
    assert config.project_selector.properties == {"expire": "on"}
    assert config.mail.sender == "Ops <ops@example.org>"
    assert config.mail.bcc == ("audit@example.org",)


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("secret_key: x\nlifetime_days: [1,\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d"):
        load_file(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_file(tmp_path / "absent.yaml")


def test_public_view_hides_secrets():
    config = from_mapping(
        {**SECRET, "mail": {"password": "hunter2"}, "cloud": {"auth": {"auth_url": "http://k",
                                                                    "password": "pw-secret"}}}
    )
    shown = repr(config.public_view()) + repr(config)
    assert "hunter2" not in shown and "pw-secret" not in shown and SECRET["secret_key"] not in shown
    assert config.public_view()["mail"]["from"] == "cloud-ops@localhost"


def test_fingerprint_changes_with_any_value():
    base = from_mapping(SECRET)
    assert base.fingerprint() == from_mapping(SECRET).fingerprint()
    assert base.fingerprint() != from_mapping({**SECRET, "grace_days": 15}).fingerprint()

"""Errors a user meets end as one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import pytest
import yaml
from fake_cloud import FakeCloud
from pack_helpers import free_port

from vm_expiry import cli

ENV_PREFIXES = ("OS_",)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No OS_* variables, and an empty clouds.yaml the test can fill."""
    import os

    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            monkeypatch.delenv(name)
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds: {}\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    return clouds


def run(capsys, *argv: str) -> tuple[int, str]:
    status = cli.main(list(argv))
    err = capsys.readouterr().err
    return status, err


def assert_one_line(err: str, words: str) -> None:
    assert err.count("\n") == 1, err
    assert err.startswith("vm-expiry: error: ") and words in err, err
    assert "Traceback" not in err


def test_no_credentials_is_one_clear_line(clean_env, capsys):
    status, err = run(capsys, "sweep")
    assert status == 1
    assert_one_line(err, "no credentials: give --cloud NAME")


def test_unknown_cloud_name_is_one_clear_line(clean_env, capsys):
    status, err = run(capsys, "prolong", "--cloud", "nope", "some-server")
    assert status == 1
    assert_one_line(err, "Cloud nope was not found")


def test_unreachable_keystone_is_one_clear_line(clean_env, capsys):
    port = free_port()
    clean_env.write_text(yaml.safe_dump({"clouds": {"down": {"auth": {
        "auth_url": f"http://127.0.0.1:{port}/v3", "username": "u", "password": "p",
        "project_name": "p", "user_domain_name": "Default", "project_domain_name": "Default"}}}}))
    status, err = run(capsys, "sweep", "--cloud", "down")
    assert status == 1
    assert_one_line(err, f"Keystone is unreachable (Unable to establish connection to "
                         f"http://127.0.0.1:{port}")


def test_unreachable_mistral_is_one_clear_line(clean_env, capsys, cloud: FakeCloud, monkeypatch):
    port = free_port()
    monkeypatch.setattr("fake_cloud.MISTRAL", f"http://127.0.0.1:{port}/v2")
    cloud.register_passthrough(port)
    clean_env.write_text(yaml.safe_dump({"clouds": {"fake": {"auth": dict(
        FakeCloud.cloud_config().auth, user_domain_name="Default",
        project_domain_name="Default")}}}))
    status, err = run(capsys, "sweep", "--cloud", "fake")
    assert status == 1
    assert_one_line(err, "starting vm_expiry.sweep: Mistral is unreachable")


def test_wrong_password_is_one_clear_line(clean_env, capsys, cloud: FakeCloud):
    cloud.fail("POST", r"/v3/auth/tokens", 401)
    clean_env.write_text(yaml.safe_dump({"clouds": {"fake": {"auth": dict(
        FakeCloud.cloud_config().auth, user_domain_name="Default",
        project_domain_name="Default")}}}))
    status, err = run(capsys, "deploy", "--cloud", "fake", "--cron", "off")
    assert status == 1
    assert_one_line(err, "Keystone refused the credentials")


def test_project_not_found_is_one_clear_line(clean_env, capsys, cloud: FakeCloud):
    clean_env.write_text(yaml.safe_dump({"clouds": {"fake": {"auth": dict(
        FakeCloud.cloud_config().auth, user_domain_name="Default",
        project_domain_name="Default")}}}))
    status, err = run(capsys, "list", "--cloud", "fake", "--project", "nope")
    assert status == 1
    assert_one_line(err, "project nope: not found")


def test_bad_configuration_names_the_key(clean_env, capsys, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("secret_key: 0123456789abcdef\ngrace_days: -1\n")
    status, err = run(capsys, "plan", "--config", str(config))
    assert status == 1
    assert_one_line(err, "configuration key 'grace_days'")


def test_bad_now_is_one_clear_line(clean_env, capsys, tmp_path, cloud: FakeCloud):
    config = tmp_path / "ok.yaml"
    config.write_text("secret_key: 0123456789abcdef\n")
    clean_env.write_text(yaml.safe_dump({"clouds": {"fake": {"auth": dict(
        FakeCloud.cloud_config().auth, user_domain_name="Default",
        project_domain_name="Default")}}}))
    status, err = run(capsys, "plan", "--cloud", "fake", "--config", str(config),
                      "--now", "next tuesday")
    assert status == 1
    assert_one_line(err, "--now: not an ISO 8601 time")

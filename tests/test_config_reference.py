"""The configuration reference in docs/ is the model's own, and covers every key."""

from __future__ import annotations

from pathlib import Path

from vm_expiry import config_reference
from vm_expiry.config import from_mapping

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_docs_configuration_reference_equals_the_generated_one():
    assert DOC.read_text() == config_reference.markdown(), (
        "docs/configuration.md is stale: run `vm-expiry config reference > "
        "docs/configuration.md`"
    )


def test_every_key_the_loader_accepts_is_in_the_reference():
    keys = {key for key, *_ in config_reference.rows()}
    sections = {key.split(".")[0] for key in keys if "." in key}
    document: dict = {"secret_key": "0123456789abcdef"}
    for key in keys - {"secret_key"}:
        section, _, name = key.partition(".")
        if section in sections and name:
            document.setdefault(section, {})
    from_mapping(document)  # every section the reference names is one the loader knows
    assert {"lifetime_days", "mail.from", "cloud.auth", "project_selector.properties"} <= keys


def test_no_description_is_left_without_a_key():
    keys = {key for key, *_ in config_reference.rows()}
    assert set(config_reference.DESCRIPTIONS) == keys

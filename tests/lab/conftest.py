"""Fixtures for tests that need the local lab (``pytest -m lab tests/lab``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def lab_dir() -> Path:
    """The lab's folder: ``$VM_EXPIRY_LAB_DIR``, else the repository's ``.lab`` (shared with the
    demo, so the venvs are installed once)."""
    return Path(os.environ.get("VM_EXPIRY_LAB_DIR") or REPO / ".lab").resolve()


@pytest.fixture(scope="module")
def lab(lab_dir: Path) -> dict:
    """The lab, brought up if needed; its ``lab.json``."""
    from vm_expiry.lab import up

    return up(lab_dir)

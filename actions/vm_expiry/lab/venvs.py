"""The services' virtual environments: created on first use, recreated when the pins change."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from vm_expiry.errors import VmExpiryError
from vm_expiry.lab.processes import log_tail
from vm_expiry.lab.progress import Progress

MARKER = "vm-expiry-pins.sha256"


def python(venv: Path) -> Path:
    """The venv's interpreter."""
    return venv / "bin" / "python"


def _fingerprint(requirements: Sequence[str], constraints: Sequence[str]) -> str:
    text = "\n".join([*requirements, "--", *constraints])
    return hashlib.sha256(text.encode()).hexdigest()


def is_current(venv: Path, requirements: Sequence[str], constraints: Sequence[str]) -> bool:
    """True when ``venv`` was built from exactly these pins."""
    marker = venv / MARKER
    expected = _fingerprint(requirements, constraints)
    return marker.is_file() and marker.read_text().strip() == expected


def run_logged(argv: Sequence[str], log: Path, what: str) -> None:
    """Run a command with its output appended to ``log``; fail with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        output.write(f"\n--- vm-expiry lab: {' '.join(map(str, argv))}\n".encode())
        output.flush()
        result = subprocess.run(
            list(map(str, argv)), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
    if result.returncode != 0:
        raise VmExpiryError(f"{what} failed; last lines of {log}:\n{log_tail(log)}")


def ensure(
    venv: Path,
    label: str,
    requirements: Sequence[str],
    constraints: Sequence[str],
    progress: Progress,
    log: Path,
    finish: Callable[[Path], None] | None = None,
) -> Path:
    """Make ``venv`` hold exactly the pinned packages; return its interpreter.

    ``finish`` runs after the install, before the venv is marked as complete, for fixes the
    packages need (an interrupted install is redone from scratch on the next call).
    """
    if is_current(venv, requirements, constraints):
        return python(venv)
    progress.say(f"installing the {label} venv (first run, 1-2 min; log: {log})...")
    if venv.exists():
        shutil.rmtree(venv)
    run_logged([sys.executable, "-m", "venv", venv], log, f"creating the {label} venv")
    constraints_file = venv / "constraints.txt"
    constraints_file.write_text("\n".join(constraints) + "\n")
    pip = [python(venv), "-m", "pip", "install", "--disable-pip-version-check"]
    run_logged([*pip, "-c", constraints_file, *requirements], log, f"installing the {label} venv")
    if finish is not None:
        finish(venv)
    (venv / MARKER).write_text(_fingerprint(requirements, constraints) + "\n")
    progress.say(f"{label} venv ready")
    return python(venv)

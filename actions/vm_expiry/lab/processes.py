"""Starting and stopping the lab's processes: PID files, logs, and how to recognise our own.

Every service is started in a new session, so its PID is also its process group and session
id. The PID file holds that PID and the process's start time, so a PID reused by another
program is never taken for ours. A process belongs to a service when it is in the session the
service was started in, or carries the service's marker in its environment
(``VM_EXPIRY_LAB_DIR``, ``VM_EXPIRY_LAB_SERVICE``, inherited by every descendant): Erlang's
helpers start sessions of their own, and Mistral rewrites its process title over its
environment, so neither test alone finds everything. Names are never matched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vm_expiry.errors import VmExpiryError

MARKER_DIR = "VM_EXPIRY_LAB_DIR"
MARKER_SERVICE = "VM_EXPIRY_LAB_SERVICE"
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class _Stat:
    state: str
    session: int
    started: int


def pid_file(lab_dir: Path, service: str) -> Path:
    """Where the PID (and start time) of ``service``'s session leader is kept."""
    return lab_dir / "run" / f"{service}.pid"


def log_file(lab_dir: Path, service: str) -> Path:
    """Where ``service``'s output goes."""
    return lab_dir / "logs" / f"{service}.log"


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log, or a note that there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _stat(pid: int) -> _Stat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command: state ppid pgrp session ... starttime (22nd).
    fields = text.rsplit(")", 1)[1].split()
    return _Stat(state=fields[0], session=int(fields[3]), started=int(fields[19]))


def _alive(stat: _Stat | None) -> bool:
    return stat is not None and stat.state not in ("Z", "X")


def start(
    lab_dir: Path,
    service: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``argv`` as ``service`` in its own session; return its PID."""
    log = log_file(lab_dir, service)
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file(lab_dir, service).parent.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, **(env or {})}
    environment[MARKER_DIR] = str(lab_dir)
    environment[MARKER_SERVICE] = service
    with log.open("ab") as output:
        output.write(f"\n--- vm-expiry lab: starting {service}: {' '.join(argv)}\n".encode())
        output.flush()
        try:
            process = subprocess.Popen(
                list(argv),
                env=environment,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            raise VmExpiryError(f"{service}: cannot run {argv[0]}: {error}") from error
    stat = _stat(process.pid)
    pid_file(lab_dir, service).write_text(f"{process.pid} {stat.started if stat else 0}\n")
    return process.pid


def _recorded(lab_dir: Path, service: str) -> tuple[int, int] | None:
    try:
        pid, started = pid_file(lab_dir, service).read_text().split()
        return int(pid), int(started)
    except (OSError, ValueError):
        return None


def running_pid(lab_dir: Path, service: str) -> int | None:
    """The PID recorded for ``service`` if that very process is still alive, else None."""
    recorded = _recorded(lab_dir, service)
    if recorded is None:
        return None
    stat = _stat(recorded[0])
    return recorded[0] if _alive(stat) and stat.started == recorded[1] else None


def _marker(pid: int) -> tuple[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    entries = dict(item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    lab = entries.get(MARKER_DIR.encode())
    return (lab.decode(), entries.get(MARKER_SERVICE.encode(), b"").decode()) if lab else None


def _all_pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            yield int(entry.name)


def lab_processes(lab_dir: Path, service: str | None = None) -> list[int]:
    """Live processes started by this lab (for ``service`` only, if given)."""
    services = [service] if service else [path.stem for path in (lab_dir / "run").glob("*.pid")]
    sessions = {recorded[0] for name in services if (recorded := _recorded(lab_dir, name))}
    found = []
    for pid in _all_pids():
        stat = _stat(pid)
        if not _alive(stat):
            continue
        marker = _marker(pid)
        marked = marker is not None and marker[0] == str(lab_dir)
        if marked and service is not None:
            marked = marker[1] == service
        if marked or stat.session in sessions:
            found.append(pid)
    return sorted(found)


def _reap(pid: int) -> None:
    # A process this interpreter started stays a zombie until waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _signal(pids: Sequence[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def stop(lab_dir: Path, service: str, timeout: float = STOP_TIMEOUT) -> None:
    """Stop ``service``: SIGTERM to its group and its other processes, SIGKILL after ``timeout``."""
    leader = running_pid(lab_dir, service)
    if leader is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(leader, signal.SIGTERM)
    # Processes outside the group (Erlang helpers) end with their parent; those left get TERM.
    deadline = time.monotonic() + timeout
    while (remaining := lab_processes(lab_dir, service)) and time.monotonic() < deadline:
        if leader is not None:
            _reap(leader)
        if leader is None or leader not in remaining:
            _signal(remaining, signal.SIGTERM)
        time.sleep(0.2)
    if remaining:
        _signal(remaining, signal.SIGKILL)
        time.sleep(0.2)
    if leader is not None:
        _reap(leader)
    pid_file(lab_dir, service).unlink(missing_ok=True)


def wait_until(
    lab_dir: Path,
    service: str,
    ready: Callable[[], bool],
    timeout: float,
) -> None:
    """Poll ``ready`` until true; fail with the log's tail if the process dies or time ends."""
    deadline = time.monotonic() + timeout
    while not ready():
        alive = running_pid(lab_dir, service) is not None
        if not alive or time.monotonic() > deadline:
            problem = "exited" if not alive else f"did not answer within {timeout:.0f} s"
            tail = log_tail(log_file(lab_dir, service))
            raise VmExpiryError(f"{service} {problem}; last lines of its log:\n{tail}")
        time.sleep(0.25)

"""Bringing the whole lab up and down, and reporting on it.

Services and their order: epmd and RabbitMQ, the SMTP sink and Keystone start first; once
Keystone answers, it is provisioned, then Nova and Mistral start. ``up`` leaves running services
alone, so a second ``up`` only checks that everything answers (and reinstalls the pack into
Mistral when its sources changed).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests
from keystoneauth1 import exceptions as ks_exceptions

from vm_expiry.errors import VmExpiryError
from vm_expiry.lab import keystone, mistral, nova, pins, processes, rabbit, settings, venvs
from vm_expiry.lab.ports import PORT_OWNERS, answers, is_free
from vm_expiry.lab.progress import Progress
from vm_expiry.lab.settings import LabInfo

#: Start order; ``down`` stops in reverse.
SERVICES = ("epmd", "rabbit", "smtp", "keystone", "nova", "mistral")
#: Seconds each service gets to answer after its start.
#: Seconds a service gets between SIGTERM and SIGKILL: Mistral's master never exits on SIGTERM
#: alone (its workers hang in their graceful stop), so it gets less.
STOP_TIMEOUTS = {"mistral": 5.0}
START_TIMEOUTS = {"epmd": 10, "rabbit": 60, "smtp": 20, "keystone": 60, "nova": 120, "mistral": 120}


@dataclass(frozen=True)
class ServiceStatus:
    """One service as ``status`` sees it."""

    name: str
    pid: int | None
    answering: bool


def default_pack_dir() -> Path:
    """The source tree this package was loaded from (the repository holding pyproject.toml)."""
    return Path(__file__).resolve().parents[3]


@contextlib.contextmanager
def _locked(lab_dir: Path) -> Iterator[None]:
    # Two commands on one lab at once (a test and the demo) would start everything twice.
    lab_dir.mkdir(parents=True, exist_ok=True)
    with (lab_dir / "lab.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _token(info: LabInfo) -> str:
    admin = settings.credentials(info, "admin", "admin")
    return keystone.session(admin["auth_url"], "admin", admin["password"], "admin").get_token()


def _http_ok(url: str, token: str | None = None) -> bool:
    headers = {"X-Auth-Token": token} if token else {}
    try:
        return requests.get(url, headers=headers, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _smtp_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
            return connection.recv(64).startswith(b"220")
    except OSError:
        return False


def _probes(info: LabInfo, token: Callable[[], str]) -> dict[str, Callable[[], bool]]:
    ports = info["ports"]
    return {
        "epmd": lambda: answers(ports["epmd"]),
        "rabbit": lambda: answers(ports["rabbit"]),
        "smtp": lambda: _smtp_banner(ports["smtp"]),
        "keystone": lambda: _http_ok(keystone.url(ports["keystone"])),
        "nova": lambda: _http_ok(nova.url(ports["nova"]) + "/flavors", token()),
        "mistral": lambda: _http_ok(mistral.url(ports["mistral"]) + "/workflows?limit=1", token()),
    }


def _lazy_token(info: LabInfo) -> Callable[[], str]:
    cache: list[str] = []

    def token() -> str:
        if not cache:
            cache.append(_token(info))
        return cache[0]

    return token


def _check_ports(info: LabInfo, running: Mapping[str, int | None]) -> None:
    for port_name, service in PORT_OWNERS.items():
        port = info["ports"][port_name]
        if running.get(service) is None and not is_free(port):
            flag = (
                f"--{port_name}-port"
                if port_name in ("keystone", "nova", "mistral", "rabbit", "smtp")
                else None
            )
            hint = f"; choose another with {flag}" if flag else ""
            raise VmExpiryError(f"port {port} ({service}) is in use by another program{hint}")


def _check_prerequisites() -> None:
    rabbit.check_installed()
    if importlib.util.find_spec("aiosmtpd") is None:
        raise VmExpiryError("smtp: aiosmtpd is not installed; run: pip install 'aiosmtpd>=1.4'")


def _wait(lab_dir: Path, service: str, probe: Callable[[], bool], progress: Progress) -> None:
    if not probe():
        progress.say(f"waiting for {service}...")
    processes.wait_until(lab_dir, service, probe, START_TIMEOUTS[service])


def _ensure_venvs(lab_dir: Path, progress: Progress) -> tuple[Path, Path]:
    logs = lab_dir / "logs"
    openstack = lab_dir / "venvs" / "openstack"
    venvs.ensure(
        openstack,
        "openstack (keystone + nova)",
        pins.OPENSTACK_REQUIREMENTS,
        pins.OPENSTACK_CONSTRAINTS,
        progress,
        logs / "venv-openstack.log",
        nova.fix_venv,
    )
    workflow = lab_dir / "venvs" / "mistral"
    venvs.ensure(
        workflow,
        "mistral",
        pins.MISTRAL_REQUIREMENTS,
        pins.MISTRAL_CONSTRAINTS,
        progress,
        logs / "venv-mistral.log",
    )
    return openstack, workflow


def _start_mistral(
    lab_dir: Path, venv: Path, pack_dir: Path, info: LabInfo, progress: Progress
) -> None:
    if not mistral.pack_is_current(lab_dir, pack_dir):
        if processes.running_pid(lab_dir, "mistral") is not None:
            progress.say("the pack changed: stopping mistral to reinstall it")
            processes.stop(lab_dir, "mistral", STOP_TIMEOUTS["mistral"])
        progress.say(f"installing the pack from {pack_dir} into mistral's venv...")
        mistral.install_pack(lab_dir, venv, pack_dir)
    if processes.running_pid(lab_dir, "mistral") is None:
        mistral.create_database(lab_dir, venv)
        progress.say("starting mistral")
        mistral.start(lab_dir, venv, Path(info["config_path"]))


def _start_broker_and_sink(
    lab_dir: Path, info: LabInfo, running: Mapping[str, int | None], progress: Progress
) -> None:
    port = info["ports"]
    if running["epmd"] is None:
        progress.say("starting epmd and rabbitmq")
        rabbit.start_epmd(lab_dir, port["epmd"])
        processes.wait_until(lab_dir, "epmd", lambda: answers(port["epmd"]), START_TIMEOUTS["epmd"])
    if running["rabbit"] is None:
        rabbit.start(lab_dir, port["rabbit"], port["rabbit_dist"], port["epmd"])
    if running["smtp"] is None:
        progress.say("starting the smtp sink")
        sink = [
            sys.executable,
            "-m",
            "vm_expiry.lab.smtp_sink",
            "--port",
            str(port["smtp"]),
            "--maildir",
            info["maildir"],
        ]
        processes.start(lab_dir, "smtp", sink)


def _start_keystone(
    lab_dir: Path,
    venv: Path,
    info: LabInfo,
    running: Mapping[str, int | None],
    progress: Progress,
) -> None:
    port = info["ports"]["keystone"]
    if running["keystone"] is None:
        progress.say("starting keystone")
        keystone.configure(lab_dir, venv, port, info["passwords"]["admin"])
        keystone.start(lab_dir, venv, port)
    _wait(lab_dir, "keystone", lambda: _http_ok(info["keystone_url"]), progress)
    catalog = {
        "identity": ("keystone", info["keystone_url"]),
        "compute": ("nova", info["nova_url"]),
        "workflowv2": ("mistral", info["mistral_url"]),
    }
    keystone.provision(lab_dir, info["keystone_url"], info["passwords"], catalog)


def up(
    lab_dir: Path | str,
    ports: Mapping[str, int | None] | None = None,
    pack_dir: Path | str | None = None,
    progress: Progress | None = None,
) -> LabInfo:
    """Bring every service up (leaving running ones alone) and return the lab's ``lab.json``.

    ``ports`` maps ``keystone``, ``nova``, ``mistral``, ``rabbit``, ``smtp`` to a port (None:
    the one stored by an earlier ``up``, or the default).
    """
    lab_dir = Path(lab_dir).resolve()
    pack = Path(pack_dir).resolve() if pack_dir else default_pack_dir()
    if not (pack / "pyproject.toml").is_file():
        raise VmExpiryError(f"no pack sources (pyproject.toml) in {pack}: pass --pack-dir")
    progress = progress or Progress()
    _check_prerequisites()
    with _locked(lab_dir):
        running = {service: processes.running_pid(lab_dir, service) for service in SERVICES}
        stored = settings.load_info(lab_dir) if settings.info_path(lab_dir).exists() else {}
        info = settings.prepare(lab_dir, dict(ports or {}))
        info["pack_dir"] = str(pack)
        if any(running.values()) and stored.get("ports") != info["ports"]:
            raise VmExpiryError(
                "the lab is running with other ports: run 'vm-expiry lab down' first"
            )
        _check_ports(info, running)
        settings.save_info(lab_dir, info)
        openstack_venv, mistral_venv = _ensure_venvs(lab_dir, progress)
        info = settings.complete(lab_dir, info)
        settings.write_pack_config(lab_dir, info)
        port = info["ports"]

        _start_broker_and_sink(lab_dir, info, running, progress)
        _start_keystone(lab_dir, openstack_venv, info, running, progress)
        if running["nova"] is None:
            progress.say("starting nova")
            nova_auth = settings.credentials(info, "nova", keystone.SERVICE_PROJECT)
            nova.start(lab_dir, openstack_venv, port["nova"], port["nova_seed"], nova_auth)
        mistral.configure(
            lab_dir,
            port["mistral"],
            rabbit.transport_url(port["rabbit"]),
            info["keystone_url"],
            info["passwords"]["mistral"],
        )
        _start_mistral(lab_dir, mistral_venv, pack, info, progress)
        probes = _probes(info, _lazy_token(info))
        for service in ("rabbit", "smtp", "nova", "mistral"):
            _wait(lab_dir, service, probes[service], progress)
        progress.say("lab is up")
        return info


def down(lab_dir: Path | str, progress: Progress | None = None) -> list[int]:
    """Stop every process the lab started; return the PIDs still alive afterwards (none)."""
    lab_dir = Path(lab_dir).resolve()
    progress = progress or Progress()
    with _locked(lab_dir):
        for service in reversed(SERVICES):
            if processes.lab_processes(lab_dir, service):
                progress.say(f"stopping {service}")
            processes.stop(lab_dir, service, STOP_TIMEOUTS.get(service, processes.STOP_TIMEOUT))
        return processes.lab_processes(lab_dir)


def restart_mistral(lab_dir: Path | str, progress: Progress | None = None) -> None:
    """Restart Mistral (reinstalling the pack if it changed) and wait until it answers."""
    lab_dir = Path(lab_dir).resolve()
    progress = progress or Progress()
    info = settings.load_info(lab_dir)
    with _locked(lab_dir):
        processes.stop(lab_dir, "mistral", STOP_TIMEOUTS["mistral"])
        venv = lab_dir / "venvs" / "mistral"
        _start_mistral(
            lab_dir, venv, Path(info.get("pack_dir") or default_pack_dir()), info, progress
        )
        probe = _probes(info, _lazy_token(info))["mistral"]
        _wait(lab_dir, "mistral", probe, progress)


def status(lab_dir: Path | str) -> list[ServiceStatus]:
    """Each service's PID (None when not running) and whether it answers."""
    lab_dir = Path(lab_dir).resolve()
    info = settings.load_info(lab_dir)
    probes = _probes(info, _lazy_token(info))
    result = []
    for service in SERVICES:
        pid = processes.running_pid(lab_dir, service)
        try:
            answering = pid is not None and probes[service]()
        except ks_exceptions.ClientException:  # the probes needing a token, Keystone down
            answering = False
        result.append(ServiceStatus(service, pid, answering))
    return result

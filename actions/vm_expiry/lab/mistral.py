"""Mistral 23 (``mistral-server --server all``) on SQLite and RabbitMQ, with Keystone auth.

The pack is pip-installed (not editable, as an operator would) into Mistral's venv. A hash of
its sources decides when to reinstall it; Mistral reads action entry points at start, so a
reinstall means a restart.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from vm_expiry.lab import processes
from vm_expiry.lab.venvs import run_logged

PACK_SOURCES = ("actions", "templates", "workflows", "pyproject.toml")
_IGNORED_PARTS = ("__pycache__", ".egg-info")


def url(port: int) -> str:
    """Mistral's v2 endpoint as registered in the catalog."""
    return f"http://127.0.0.1:{port}/v2"


def _conf(lab_dir: Path) -> Path:
    return lab_dir / "mistral" / "mistral.conf"


def configure(lab_dir: Path, port: int, transport_url: str, auth_url: str, password: str) -> None:
    """Write mistral.conf: the lab's broker, SQLite, Keystone auth with the ``mistral`` user."""
    home = lab_dir / "mistral"
    home.mkdir(parents=True, exist_ok=True)
    conf = _conf(lab_dir)
    conf.write_text(
        "[DEFAULT]\n"
        f"transport_url = {transport_url}\n"
        f"log_file = {processes.log_file(lab_dir, 'mistral')}\n"
        # The master otherwise waits up to 60 s for its workers on SIGTERM.
        "graceful_shutdown_timeout = 5\n"
        "[database]\n"
        f"connection = sqlite:///{home / 'mistral.sqlite'}\n"
        "[pecan]\nauth_enable = True\n"
        "[executor]\ntype = local\n"
        # Cron triggers run in the periodic server that `--server all` starts. Run in the API
        # (the default), their loop lives in the master process, which may hold Mistral's DB
        # lock while it forks the workers: that worker then hangs for ever (seen on restarts).
        "[cron_trigger]\nrun_in_api = False\n"
        f"[api]\nhost = 127.0.0.1\nport = {port}\napi_workers = 1\n"
        "[keystone_authtoken]\n"
        f"www_authenticate_uri = {auth_url}\n"
        f"auth_url = {auth_url}\n"
        "auth_type = password\n"
        "username = mistral\n"
        f"password = {password}\n"
        "project_name = service\n"
        "user_domain_name = Default\n"
        "project_domain_name = Default\n"
        "region_name = RegionOne\n"
        "service_token_roles_required = True\n"
    )
    conf.chmod(0o600)


def create_database(lab_dir: Path, venv: Path) -> None:
    """On the first run only: create the schema, stamp it and load the standard actions.

    ``mistral-db-manage upgrade head`` fails on SQLite (a migration alters constraints), so the
    schema comes straight from the models and is then stamped as current.
    """
    done = lab_dir / "mistral" / "database-created"
    if done.exists():
        return
    conf = str(_conf(lab_dir))
    log = processes.log_file(lab_dir, "mistral-setup")
    create_schema = (
        "import sys; from mistral import config; "
        "config.parse_args(['--config-file', sys.argv[1]]); "
        "from mistral.db.v2 import api; api.setup_db()"
    )
    run_logged(
        [venv / "bin" / "python", "-c", create_schema, conf], log, "creating Mistral's schema"
    )
    manage = [venv / "bin" / "mistral-db-manage", "--config-file", conf]
    run_logged([*manage, "stamp", "head"], log, "stamping Mistral's schema")
    run_logged([*manage, "populate"], log, "populating Mistral's actions")
    done.write_text("ok\n")


def _pack_files(pack_dir: Path) -> Iterator[Path]:
    for name in PACK_SOURCES:
        source = pack_dir / name
        candidates = sorted(source.rglob("*")) if source.is_dir() else [source]
        for path in candidates:
            relative = path.relative_to(pack_dir).as_posix()
            if path.is_file() and not any(part in relative for part in _IGNORED_PARTS):
                yield path


def pack_hash(pack_dir: Path) -> str:
    """SHA-256 over the pack's source file names and contents."""
    digest = hashlib.sha256()
    for path in _pack_files(pack_dir):
        digest.update(path.relative_to(pack_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def pack_is_current(lab_dir: Path, pack_dir: Path) -> bool:
    """True when the pack installed in Mistral's venv was built from the current sources."""
    installed = lab_dir / "mistral" / "pack.sha256"
    return installed.is_file() and installed.read_text().strip() == pack_hash(pack_dir)


def install_pack(lab_dir: Path, venv: Path, pack_dir: Path) -> None:
    """pip-install the pack (not editable) into Mistral's venv and record its hash."""
    digest = pack_hash(pack_dir)
    log = processes.log_file(lab_dir, "mistral-pack")
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check"]
    # The version does not change between edits: force the reinstall. A new dependency then
    # shows in `pip check`, and only then does pip resolve (slowly) within the venv's pins.
    run_logged(
        [*pip, "--force-reinstall", "--no-deps", pack_dir],
        log,
        "installing the pack into Mistral's venv",
    )
    check = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "check"], capture_output=True, check=False
    )
    if check.returncode != 0:
        run_logged(
            [*pip, "-c", venv / "constraints.txt", pack_dir],
            log,
            "installing the pack's dependencies into Mistral's venv",
        )
    (lab_dir / "mistral" / "pack.sha256").write_text(digest + "\n")


def start(lab_dir: Path, venv: Path, config_path: Path) -> int:
    """Start every Mistral component; actions read the pack's configuration from ``config_path``."""
    argv = [
        str(venv / "bin" / "mistral-server"),
        "--server",
        "all",
        "--config-file",
        str(_conf(lab_dir)),
    ]
    env = {"VM_EXPIRY_CONFIG": str(config_path)}
    return processes.start(lab_dir, "mistral", argv, env, cwd=lab_dir / "mistral")

"""The lab's files: ``lab.json`` (ports, passwords, URLs), ``clouds.yaml`` and ``vm-expiry.yaml``.

``lab.json`` is written before the first service starts (ports and generated passwords, so a
later ``up`` reuses them) and completed once every service answers.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import yaml

from vm_expiry.errors import VmExpiryError
from vm_expiry.lab import keystone, mistral, nova
from vm_expiry.lab.ports import resolve

#: What ``up`` returns and ``load_info`` reads: the parsed ``lab.json``.
LabInfo = dict[str, Any]

USERS_WITH_PASSWORDS = ("admin", *keystone.SERVICE_USERS)


def info_path(lab_dir: Path) -> Path:
    """Where the lab describes itself."""
    return lab_dir / "lab.json"


def load_info(lab_dir: Path | str) -> LabInfo:
    """The lab's ``lab.json``; fails clearly when the lab was never brought up."""
    path = info_path(Path(lab_dir).resolve())
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise VmExpiryError(f"no lab in {path.parent}: run 'vm-expiry lab up --dir DIR'") from None
    except (OSError, ValueError) as error:
        raise VmExpiryError(f"cannot read {path}: {error}") from error


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as output:
        output.write(text)


def save_info(lab_dir: Path, info: LabInfo) -> None:
    """Write ``lab.json`` (it holds passwords: readable by the owner only)."""
    _write_private(info_path(lab_dir), json.dumps(info, indent=2, sort_keys=True) + "\n")


def prepare(lab_dir: Path, requested_ports: dict[str, int | None]) -> LabInfo:
    """Ports and passwords for this ``up``: those stored earlier unless new ports are requested.

    Not saved: the caller saves them once it has checked that they can be used.
    """
    path = info_path(lab_dir)
    stored: LabInfo = load_info(lab_dir) if path.exists() else {}
    passwords = {
        user: stored.get("passwords", {}).get(user) or secrets.token_hex(8)
        for user in USERS_WITH_PASSWORDS
    }
    ports = resolve(stored.get("ports", {}), requested_ports)
    return {**stored, "lab_dir": str(lab_dir), "ports": ports, "passwords": passwords}


def credentials(info: LabInfo, user: str, project: str) -> dict[str, str]:
    """An openstacksdk/keystoneauth ``auth`` block for one of the lab's users."""
    return {
        "auth_url": keystone.url(info["ports"]["keystone"]),
        "username": user,
        "password": info["passwords"][user],
        "project_name": project,
        "user_domain_name": "Default",
        "project_domain_name": "Default",
    }


def complete(lab_dir: Path, info: LabInfo) -> LabInfo:
    """Add the URLs and credentials clients need, and write ``clouds.yaml``."""
    ports = info["ports"]
    info.update(
        keystone_url=keystone.url(ports["keystone"]),
        nova_url=nova.url(ports["nova"]),
        mistral_url=mistral.url(ports["mistral"]),
        seed_url=nova.seed_url(ports["nova_seed"]),
        smtp_host="127.0.0.1",
        smtp_port=ports["smtp"],
        maildir=str(lab_dir / "maildir"),
        image_id=nova.IMAGE_ID,
        flavor_id=nova.FLAVOR_ID,
        region_name=keystone.REGION,
        admin=credentials(info, "admin", "admin"),
        service_user=credentials(info, "vm-expiry", keystone.SERVICE_PROJECT),
        clouds_yaml=str(lab_dir / "clouds.yaml"),
        config_path=str(lab_dir / "vm-expiry.yaml"),
        pids_dir=str(lab_dir / "run"),
        logs_dir=str(lab_dir / "logs"),
    )
    clouds = {
        name: {
            "auth": auth,
            "region_name": keystone.REGION,
            "interface": "public",
            "identity_api_version": 3,
        }
        for name, auth in (("lab-admin", info["admin"]), ("lab-vm-expiry", info["service_user"]))
    }
    _write_private(lab_dir / "clouds.yaml", yaml.safe_dump({"clouds": clouds}, sort_keys=False))
    save_info(lab_dir, info)
    return info


def write_pack_config(lab_dir: Path, info: LabInfo) -> Path:
    """Write ``vm-expiry.yaml`` for the pack's actions, only if missing (it is the operator's)."""
    path = lab_dir / "vm-expiry.yaml"
    if path.exists():
        return path
    config = {
        "secret_key": secrets.token_hex(32),
        "simulated_time": True,
        "mail": {
            "host": "127.0.0.1",
            "port": info["ports"]["smtp"],
            "starttls": False,
            "from": "Cloud Operations <cloud-ops@lab.example>",
            "horizon_url": "http://127.0.0.1:8080",
        },
        "cloud": {
            "auth": credentials(info, "vm-expiry", keystone.SERVICE_PROJECT),
            "region_name": keystone.REGION,
        },
    }
    _write_private(path, yaml.safe_dump(config, sort_keys=False))
    return path

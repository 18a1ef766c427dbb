"""Keystone 30 on SQLite under uwsgi: configuration, bootstrap, and the catalog the lab needs.

``provision`` is idempotent and cheap, so every ``lab up`` runs it: it makes the roles, the
``service`` project, the service users (with the lab's passwords) and the catalog match the
lab's current ports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from vm_expiry.lab import processes
from vm_expiry.lab.venvs import run_logged

REGION = "RegionOne"
ROLES = ("admin", "member", "reader")
SERVICE_PROJECT = "service"
#: Service users, each with the admin role on the ``service`` project; ``vm-expiry`` is the pack's.
SERVICE_USERS = ("mistral", "nova", "vm-expiry")


def url(port: int) -> str:
    """Keystone's v3 endpoint."""
    return f"http://127.0.0.1:{port}/v3"


def _conf(lab_dir: Path) -> Path:
    return lab_dir / "keystone" / "keystone.conf"


def configure(lab_dir: Path, venv: Path, port: int, admin_password: str) -> None:
    """Write keystone.conf and, on the first run only, create the database, keys and admin."""
    home = lab_dir / "keystone"
    keys = home / "fernet-keys"
    conf = _conf(lab_dir)
    home.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        "[database]\n"
        f"connection = sqlite:///{home / 'keystone.db'}\n"
        "[token]\nprovider = fernet\n"
        f"[fernet_tokens]\nkey_repository = {keys}\n"
        f"[fernet_receipts]\nkey_repository = {keys}\n"
        f"[credential]\nkey_repository = {home / 'credential-keys'}\n"
    )
    done = home / "bootstrapped"
    if done.exists():
        return
    log = processes.log_file(lab_dir, "keystone-setup")
    # keystone-manage ignores OS_KEYSTONE_CONFIG_*: without --config-file it writes to /etc.
    manage = [venv / "bin" / "keystone-manage", "--config-file", conf]
    owner = ["--keystone-user", "root", "--keystone-group", "root"]
    run_logged([*manage, "db_sync"], log, "keystone db_sync")
    run_logged([*manage, "fernet_setup", *owner], log, "keystone fernet_setup")
    run_logged([*manage, "credential_setup", *owner], log, "keystone credential_setup")
    endpoint = url(port)
    run_logged(
        [
            *manage,
            "bootstrap",
            "--bootstrap-password",
            admin_password,
            "--bootstrap-admin-url",
            endpoint,
            "--bootstrap-public-url",
            endpoint,
            "--bootstrap-internal-url",
            endpoint,
            "--bootstrap-region-id",
            REGION,
        ],
        log,
        "keystone bootstrap",
    )
    done.write_text("ok\n")


def start(lab_dir: Path, venv: Path, port: int) -> int:
    """Start Keystone under uwsgi on ``port``."""
    conf = _conf(lab_dir)
    argv = [
        str(venv / "bin" / "uwsgi"),
        "--http-socket",
        f"127.0.0.1:{port}",
        # Without it, clients reusing a connection get ConnectionResetError from uwsgi.
        "--add-header",
        "Connection: close",
        "--virtualenv",
        str(venv),
        "--module",
        "keystone.wsgi.api:application",
        "--master",
        "--processes",
        "1",
        "--threads",
        "2",
        "--die-on-term",
        "--lazy-apps",
    ]
    env = {"OS_KEYSTONE_CONFIG_DIR": str(conf.parent), "OS_KEYSTONE_CONFIG_FILES": conf.name}
    return processes.start(lab_dir, "keystone", argv, env)


def session(auth_url: str, username: str, password: str, project: str) -> ks_session.Session:
    """A keystoneauth session for a user in the Default domain."""
    auth = v3.Password(
        auth_url=auth_url,
        username=username,
        password=password,
        project_name=project,
        user_domain_name="Default",
        project_domain_name="Default",
    )
    return ks_session.Session(auth=auth)


class _Identity:
    """Find-or-create calls on Keystone's v3 API with an admin session."""

    def __init__(self, admin: ks_session.Session, auth_url: str) -> None:
        # Absolute URLs: the catalog may still hold an identity endpoint from older ports.
        self._admin = admin
        self._base = auth_url.rstrip("/")

    def _get(self, path: str, key: str, **query: str) -> list[dict[str, Any]]:
        response = self._admin.get(self._base + path, params=query)
        return response.json()[key]

    def _post(self, path: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self._admin.post(self._base + path, json={key: body})
        return response.json()[key]

    def _patch(self, path: str, key: str, body: dict[str, Any]) -> None:
        self._admin.patch(self._base + path, json={key: body})

    def role(self, name: str) -> str:
        found = self._get("/roles", "roles", name=name)
        return found[0]["id"] if found else self._post("/roles", "role", {"name": name})["id"]

    def project(self, name: str) -> str:
        found = self._get("/projects", "projects", name=name, domain_id="default")
        if found:
            return found[0]["id"]
        body = {"name": name, "domain_id": "default", "description": "Service accounts"}
        return self._post("/projects", "project", body)["id"]

    def user(self, name: str, password: str, project_id: str) -> str:
        found = self._get("/users", "users", name=name, domain_id="default")
        if found:
            self._patch(f"/users/{found[0]['id']}", "user", {"password": password})
            return found[0]["id"]
        body = {
            "name": name,
            "password": password,
            "domain_id": "default",
            "default_project_id": project_id,
        }
        return self._post("/users", "user", body)["id"]

    def grant(self, project_id: str, user_id: str, role_id: str) -> None:
        self._admin.put(f"{self._base}/projects/{project_id}/users/{user_id}/roles/{role_id}")

    def service(self, name: str, service_type: str) -> str:
        found = self._get("/services", "services", type=service_type)
        if found:
            return found[0]["id"]
        return self._post("/services", "service", {"name": name, "type": service_type})["id"]

    def endpoints(self, service_id: str, endpoint_url: str) -> None:
        existing = {
            endpoint["interface"]: endpoint
            for endpoint in self._get("/endpoints", "endpoints", service_id=service_id)
        }
        for interface in ("public", "internal", "admin"):
            endpoint = existing.get(interface)
            if endpoint is None:
                body = {
                    "service_id": service_id,
                    "interface": interface,
                    "url": endpoint_url,
                    "region_id": REGION,
                }
                self._post("/endpoints", "endpoint", body)
            elif endpoint["url"] != endpoint_url:
                self._patch(f"/endpoints/{endpoint['id']}", "endpoint", {"url": endpoint_url})


def provision(
    lab_dir: Path,
    auth_url: str,
    passwords: Mapping[str, str],
    catalog: Mapping[str, tuple[str, str]],
) -> None:
    """Roles, the service project and users, and one endpoint set per ``catalog`` entry.

    ``passwords`` holds ``admin``'s and each service user's; ``catalog`` maps a service type to
    ``(name, url)``. Skipped when the same request already succeeded (setting passwords costs
    Keystone a bcrypt hash each).
    """
    request = json.dumps([auth_url, dict(passwords), dict(catalog)], sort_keys=True)
    digest = hashlib.sha256(request.encode()).hexdigest()
    done = lab_dir / "keystone" / "provisioned.sha256"
    if done.is_file() and done.read_text().strip() == digest:
        return
    identity = _Identity(session(auth_url, "admin", passwords["admin"], "admin"), auth_url)
    role_ids = {name: identity.role(name) for name in ROLES}
    project_id = identity.project(SERVICE_PROJECT)
    for name in SERVICE_USERS:
        user_id = identity.user(name, passwords[name], project_id)
        identity.grant(project_id, user_id, role_ids["admin"])
    for service_type, (name, endpoint_url) in catalog.items():
        identity.endpoints(identity.service(name, service_type), endpoint_url)
    done.write_text(digest + "\n")

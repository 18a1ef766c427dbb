"""People, projects and servers in the lab, created the way a cloud's users create them.

Used by the demo and the end-to-end tests: projects and users through Keystone's API as the
lab admin, servers booted through Nova's API by their owners.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from keystoneauth1 import session
from keystoneauth1.identity import v3

from vm_expiry.errors import VmExpiryError

BOOT_MICROVERSION = "2.73"
USER_PASSWORD = "lab-user-password"


def admin_session(info: Mapping[str, Any]) -> session.Session:
    """The lab admin, scoped to the admin project."""
    admin = info["admin"]
    return session.Session(auth=v3.Password(
        auth_url=admin["auth_url"], username=admin["username"], password=admin["password"],
        project_name=admin["project_name"], user_domain_name="Default",
        project_domain_name="Default"))


def user_session(info: Mapping[str, Any], username: str, project_id: str) -> session.Session:
    """A lab user, scoped to one of their projects."""
    return session.Session(auth=v3.Password(
        auth_url=info["keystone_url"], username=username, password=USER_PASSWORD,
        project_id=project_id, user_domain_name="Default"))


def _identity(sess: session.Session, method: str, path: str, **kwargs: Any) -> Any:
    response = sess.request(path, method, endpoint_filter={"service_type": "identity",
                                                           "interface": "public"}, **kwargs)
    return response.json() if response.content else None


def _find(sess: session.Session, kind: str, name: str) -> dict[str, Any] | None:
    found = _identity(sess, "GET", f"/{kind}?name={name}")[kind]
    return found[0] if found else None


def ensure_project(sess: session.Session, name: str, properties: Mapping[str, str]) -> str:
    """A project with extra properties (e.g. type=personal, expire=on); its id."""
    existing = _find(sess, "projects", name)
    if existing:
        return existing["id"]
    body = {"project": {"name": name, "domain_id": "default", **properties}}
    return _identity(sess, "POST", "/projects", json=body)["project"]["id"]


def ensure_user(sess: session.Session, name: str, email: str | None, project_id: str,
                role: str = "member") -> str:
    """A user with a password (USER_PASSWORD), an e-mail if given, and a role on a project."""
    user = _find(sess, "users", name)
    if user is None:
        body: dict[str, Any] = {"name": name, "domain_id": "default", "password": USER_PASSWORD,
                                "default_project_id": project_id}
        if email:
            body["email"] = email
        user = _identity(sess, "POST", "/users", json={"user": body})["user"]
    role_id = _find(sess, "roles", role)["id"]  # type: ignore[index]
    _identity(sess, "PUT", f"/projects/{project_id}/users/{user['id']}/roles/{role_id}")
    return user["id"]


def _compute(sess: session.Session, method: str, path: str, **kwargs: Any) -> Any:
    response = sess.request(path, method, endpoint_filter={"service_type": "compute",
                                                           "interface": "public"},
                            headers={"OpenStack-API-Version": f"compute {BOOT_MICROVERSION}"},
                            **kwargs)
    return response.json() if response.content else None


def boot(sess: session.Session, info: Mapping[str, Any], name: str) -> str:
    """Boot a server as the session's user; its id once it is ACTIVE."""
    body = {"server": {"name": name, "imageRef": info["image_id"],
                       "flavorRef": info["flavor_id"], "networks": "none"}}
    server_id = _compute(sess, "POST", "/servers", json=body)["server"]["id"]
    wait_for(sess, server_id, lambda s: s["status"] == "ACTIVE", "ACTIVE")
    return server_id


def server(sess: session.Session, server_id: str) -> dict[str, Any] | None:
    """A server's body, or None once it is gone."""
    response = sess.get(f"/servers/{server_id}", raise_exc=False,
                        endpoint_filter={"service_type": "compute", "interface": "public"},
                        headers={"OpenStack-API-Version": f"compute {BOOT_MICROVERSION}"})
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()["server"]


def wait_for(sess: session.Session, server_id: str, done: Any, what: str,
             timeout: float = 60) -> dict[str, Any] | None:
    """Poll a server until ``done(body)`` (or it is gone when ``what`` is 'gone')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = server(sess, server_id)
        if (body is None and what == "gone") or (body is not None and done(body)):
            return body
        if body is not None and body["status"] == "ERROR":
            raise VmExpiryError(f"server {server_id} went into ERROR")
        time.sleep(0.3)
    raise VmExpiryError(f"server {server_id} not {what} after {timeout:.0f} s")


@dataclass(frozen=True)
class Mail:
    """One message the lab's SMTP sink received."""

    to: str
    subject: str
    text: str
    message: EmailMessage


def read_maildir(path: str | Path) -> list[Mail]:
    """Every message in the sink's Maildir, in the order they arrived."""
    files = [f for sub in ("new", "cur") if (Path(path) / sub).is_dir()
             for f in (Path(path) / sub).iterdir()]
    mails = []
    for file in sorted(files, key=lambda f: f.stat().st_mtime_ns):
        message = message_from_bytes(file.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        body = message.get_body(preferencelist=("plain",))
        mails.append(Mail(str(message["To"]), str(message["Subject"]),
                          body.get_content() if body else "", message))
    return mails


def seed(sess: session.Session, info: Mapping[str, Any], project_id: str, user_id: str,
         count: int, created_at: str | None = None, name_prefix: str = "seeded") -> list[str]:
    """Servers created straight through Nova's objects in the lab (e.g. with a past creation
    date, or thousands at once); their ids."""
    body: dict[str, Any] = {"count": count, "project_id": project_id, "user_id": user_id,
                            "name_prefix": name_prefix}
    if created_at:
        body["created_at"] = created_at
    response = sess.post(info["seed_url"], json=body, authenticated=True, timeout=600)
    return response.json()["ids"]


def delete_servers(sess: session.Session, project_id: str) -> None:
    """Remove every server of a project (admin), waiting until they are gone."""
    listing = _compute(sess, "GET", f"/servers?all_tenants=1&project_id={project_id}")
    for body in listing["servers"]:
        detail = server(sess, body["id"])
        if detail and detail.get("locked"):
            _compute(sess, "POST", f"/servers/{body['id']}/action", json={"unlock": None})
        _compute(sess, "DELETE", f"/servers/{body['id']}")
    for body in listing["servers"]:
        wait_for(sess, body["id"], None, "gone")

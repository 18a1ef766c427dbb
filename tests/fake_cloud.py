"""An in-memory Keystone + Nova served through requests-mock, for fast tests of real pack code.

It answers the calls the pack makes, with Nova's rules that matter here: a member sees only
their project's servers, and a non-admin cannot change a locked server. Faults can be injected.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests_mock
from keystoneauth1 import fixture, session
from keystoneauth1.identity import v3

from vm_expiry.config import CloudConfig
from vm_expiry.timeutil import format_time

KEYSTONE = "http://keystone.test/v3"
NOVA = "http://nova.test/v2.1"
MISTRAL = "http://mistral.test/v2"
IDENTITY_V3 = "application/vnd.openstack.identity-v3+json"


@dataclass
class FakeServer:
    id: str
    name: str
    project_id: str
    user_id: str
    created: datetime
    status: str = "ACTIVE"
    metadata: dict[str, str] = field(default_factory=dict)
    locked: bool = False
    locked_reason: str | None = None
    task_state: str | None = None

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "status": self.status, "tenant_id": self.project_id,
            "user_id": self.user_id, "created": format_time(self.created),
            "metadata": dict(self.metadata), "locked": self.locked,
            "locked_reason": self.locked_reason, "OS-EXT-STS:task_state": self.task_state,
        }


@dataclass
class Fault:
    """An injected failure: an HTTP status, or an exception raised as if the connection broke
    (e.g. ``requests.exceptions.ConnectionError`` or ``ReadTimeout``); ``times`` limits how
    often it fires (None: until cleared)."""

    method: str
    pattern: str
    status: int = 503
    times: int | None = None
    exc: type[Exception] | None = None
    fired: int = 0


@dataclass
class Caller:
    user_id: str
    user_name: str
    project_id: str
    roles: tuple[str, ...]


class FakeCloud:
    """Projects, users and servers; tokens map to callers."""

    def __init__(self, mocker: requests_mock.Mocker) -> None:
        self.projects: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.servers: dict[str, FakeServer] = {}
        self.tokens: dict[str, Caller] = {}
        self.faults: list[Fault] = []
        self.calls: list[tuple[str, str]] = []
        self.tokens["service-token"] = Caller("svc", "vm-expiry", "service", ("admin",))
        self.mocker = mocker
        self._mount(mocker)

    # --- set-up helpers -------------------------------------------------------------------

    def add_project(self, name: str, selected: bool = True, **extra: Any) -> str:
        pid = f"p-{name}"
        props = {"type": "personal", "expire": "on"} if selected else {"type": "shared"}
        self.projects[pid] = {"id": pid, "name": name, "tags": [], **props, **extra}
        return pid

    def add_user(self, name: str, email: str | None, project_id: str,
                 roles: tuple[str, ...] = ("member",)) -> tuple[str, str]:
        """A user and a token for them; returns (user id, token)."""
        uid = f"u-{name}"
        self.users[uid] = {"id": uid, "name": name, **({"email": email} if email else {})}
        token = f"token-{name}"
        self.tokens[token] = Caller(uid, name, project_id, roles)
        return uid, token

    def add_server(self, name: str, project_id: str, user_id: str, created: datetime,
                   **extra: Any) -> FakeServer:
        server = FakeServer(str(uuid.uuid4()), name, project_id, user_id, created, **extra)
        self.servers[server.id] = server
        return server

    def fail(self, method: str, path_regex: str, status: int = 503, *, times: int | None = None,
             exc: type[Exception] | None = None) -> Fault:
        """Make requests whose URL matches fail with ``status`` (or raise ``exc``), ``times``
        times or until cleared (``faults.clear()``)."""
        fault = Fault(method, path_regex, status, times, exc)
        self.faults.append(fault)
        return fault

    def register_passthrough(self, port: int) -> None:
        """Let requests to 127.0.0.1:port reach the real network (e.g. a closed port)."""
        self.mocker.register_uri(requests_mock.ANY, re.compile(rf"http://127\.0\.0\.1:{port}/"),
                                 real_http=True)

    def session(self) -> session.Session:
        """A session as the pack's service user."""
        return session.Session(auth=v3.Password(
            auth_url=KEYSTONE, username="vm-expiry", password="pw", project_name="service",
            user_domain_name="Default", project_domain_name="Default"))

    @staticmethod
    def cloud_config() -> CloudConfig:
        return CloudConfig(auth={"auth_url": KEYSTONE, "username": "vm-expiry", "password": "pw",
                                 "project_name": "service"})

    # --- HTTP -----------------------------------------------------------------------------

    def _mount(self, mocker: requests_mock.Mocker) -> None:
        mocker.register_uri(requests_mock.ANY, re.compile(r"http://(keystone|nova)\.test/.*"),
                            json=self._dispatch)

    def _caller(self, request: Any) -> Caller | None:
        return self.tokens.get(request.headers.get("X-Auth-Token", ""))

    def _dispatch(self, request: Any, context: Any) -> Any:
        path = request.path
        self.calls.append((request.method, path))
        for fault in self.faults:
            if fault.times is not None and fault.fired >= fault.times:
                continue
            if fault.method == request.method and re.search(fault.pattern, request.url):
                fault.fired += 1
                if fault.exc is not None:
                    raise fault.exc(f"injected {fault.exc.__name__}")
                context.status_code = fault.status
                return {"error": {"message": "injected fault", "code": fault.status}}
        if request.netloc == "keystone.test":
            return self._keystone(request, context, path)
        caller = self._caller(request)
        if caller is None:
            context.status_code = 401
            return {"error": {"message": "unauthorized"}}
        return self._nova(request, context, path, caller)

    def _keystone(self, request: Any, context: Any, path: str) -> Any:
        if path.rstrip("/") == "/v3" and request.method == "GET":
            return {"version": {"id": "v3.14", "status": "stable",
                                "links": [{"rel": "self", "href": f"{KEYSTONE}/"}],
                                "media-types": [{"base": "application/json", "type": IDENTITY_V3}]}}
        if path == "/v3/auth/tokens" and request.method == "POST":
            context.status_code = 201
            context.headers["X-Subject-Token"] = "service-token"
            token = fixture.V3Token(user_id="svc", user_name="vm-expiry", project_id="service",
                                    project_name="service")
            token.add_role(name="admin")
            for kind, url in (("identity", KEYSTONE), ("compute", NOVA),
                              ("workflowv2", globals()["MISTRAL"])):
                token.add_service(kind).add_standard_endpoints(public=url, region="RegionOne")
            return token
        if self._caller(request) is None:
            context.status_code = 401
            return {"error": {"message": "unauthorized"}}
        if path == "/v3/auth/tokens":
            subject = self.tokens.get(request.headers.get("X-Subject-Token", ""))
            if subject is None:
                context.status_code = 404
                return {"error": {"message": "token not found"}}
            return {"token": {"user": {"id": subject.user_id, "name": subject.user_name},
                              "project": {"id": subject.project_id},
                              "roles": [{"name": r} for r in subject.roles]}}
        if path == "/v3/projects":
            return {"projects": list(self.projects.values()), "links": {"next": None}}
        match = re.fullmatch(r"/v3/(projects|users)/([^/]+)", path)
        if match:
            store = self.projects if match[1] == "projects" else self.users
            item = store.get(match[2])
            if item is None:
                context.status_code = 404
                return {"error": {"message": "not found"}}
            return {match[1][:-1]: item}
        context.status_code = 404
        return {"error": {"message": f"no route {path}"}}

    def _visible(self, caller: Caller, server_id: str) -> FakeServer | None:
        server = self.servers.get(server_id)
        if server is None:
            return None
        mine = "admin" in caller.roles or server.project_id == caller.project_id
        return server if mine else None

    def _nova(self, request: Any, context: Any, path: str, caller: Caller) -> Any:
        path = path.removeprefix("/v2.1")
        if path == "/servers/detail":
            query = request.qs
            limit = int(query.get("limit", ["1000"])[0])
            ordered = sorted(self.servers.values(), key=lambda s: s.id)
            if "marker" in query:
                ordered = [s for s in ordered if s.id > query["marker"][0]]
            page = ordered[:limit]
            links = []
            if len(ordered) > limit:
                links = [{"rel": "next",
                          "href": f"{NOVA}/servers/detail?all_tenants=1&limit={limit}"
                                  f"&marker={page[-1].id}"}]
            return {"servers": [s.body() for s in page], "servers_links": links}
        match = re.fullmatch(r"/servers/([^/]+)(/.*)?", path)
        server = self._visible(caller, match[1]) if match else None
        if server is None:
            context.status_code = 404
            return {"itemNotFound": {"message": "Instance could not be found"}}
        rest = match[2] or ""
        admin = "admin" in caller.roles
        if request.method == "GET" and not rest:
            return {"server": server.body()}
        if server.locked and not admin:
            context.status_code = 409
            return {"conflictingRequest": {"message": "Instance is locked"}}
        if request.method == "DELETE" and not rest:
            del self.servers[server.id]
            context.status_code = 204
            return None
        if rest == "/metadata" and request.method == "POST":
            server.metadata.update(request.json()["metadata"])
            return {"metadata": server.metadata}
        if rest.startswith("/metadata/") and request.method == "DELETE":
            server.metadata.pop(rest.split("/")[-1], None)
            context.status_code = 204
            return None
        if rest == "/action":
            action = request.json()
            if "lock" in action:
                server.locked = True
                server.locked_reason = (action["lock"] or {}).get("locked_reason")
            elif "unlock" in action:
                server.locked, server.locked_reason = False, None
            elif "os-stop" in action:
                server.status = "SHUTOFF"
            elif "os-start" in action:
                server.status = "ACTIVE"
            context.status_code = 202
            return None
        context.status_code = 404
        return {"error": f"no route {request.method} {path}"}

#!/usr/bin/env python3
"""Benchmark of the sweep at 1k, 10k and 100k servers (issue 8). Not a test: it prints a table.

Run from the repository: ``.venv/bin/python tools/bench_sweep.py`` (``--help`` for options).

Rows labelled ``fixture``: Keystone and Nova listing/server/action responses come from a
generated cloud served by a small HTTP server on 127.0.0.1 in its own process (N servers over
N/10 projects, bodies shaped like the lab's Nova 2.73 bodies, every server marked and sealed with
a valid seal; 1% due: half a 7-day reminder, half an expiry). Mail goes to an SMTP sink in the
same fixture process. The planning process is a fresh subprocess per N, so its peak RSS is its own.

Row labelled ``lab``: the shared lab (real Keystone, Nova, Mistral). The bench seeds N servers
through Nova's objects into ``bench-sweep-*`` projects of its own, seals them through the admin
API, plans from this machine against the lab, then runs the deployed ``vm_expiry.sweep`` in
Mistral with ``dry_run: true`` (other engineers' servers are in the same lab: a real apply would
act on them), and the naive baseline (``bench_sweep.naive``: one ``std.noop`` with-items item per
server) over the same servers. It removes what it seeded at the end.

How the plan's time is split: the plan is run once for real (wall time, process CPU, requests,
peak RSS). The pack's own CPU is then measured by replaying the same plan over the pages already
fetched and parsed (``Cloud.iter_servers`` replaced by a generator over the pre-fetched page
bodies; owners cached): that is ``facts_from_body`` + ``decide`` + ``plan_steps`` + the plan's
bookkeeping, with ``time.process_time``. API time = plan wall time - pack CPU (server, transfer,
and the client's HTTP and JSON decoding).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

REPO = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-key-0123456789abcdef"
NOW = datetime(2030, 1, 15, 12, 0, tzinfo=timezone.utc)
DUE_EVERY = 100  # 1% of the servers are due
NOVA_MAX_LIMIT = 1000
PLAN_RUNS = 3
LAB_AHEAD_DAYS = 45  # Nova's [api] max_limit default
SERVERS_PER_PROJECT = 10
LAB_PREFIX = "bench-sweep"
NAIVE = "bench_sweep.naive"
NAIVE_DEFINITION = f"""---
version: '2.0'

{NAIVE}:
  description: The naive design, for the benchmark only; one with-items item per server.
  input:
    - servers
  tasks:
    per_server:
      with-items: s in <% $.servers %>
      action: std.noop
"""


# --- the generated cloud ------------------------------------------------------------------


def _fixture_state(index: int, server_id: str, now: datetime) -> tuple[Any, str, bool]:
    """The sealed state of server ``index``, its status, and whether a step is due."""
    from vm_expiry.state import ExpiryState, Phase

    if index % DUE_EVERY == 0:
        if (index // DUE_EVERY) % 2 == 0:  # 7-day reminder due
            return ExpiryState(Phase.ACTIVE, now + timedelta(days=5)), "ACTIVE", True
        # reminded, expiry passed: lock, stop, mail, write
        return (ExpiryState(Phase.REMINDED, now - timedelta(hours=1), reminded_stage=1),
                "ACTIVE", True)
    spread = timedelta(days=20 + index % 40)
    return ExpiryState(Phase.ACTIVE, now + spread), "ACTIVE", False


def _server_body(base: str, server_id: str, name: str, project: str, user: str,
                 created: str, metadata: dict[str, str], status: str) -> dict[str, Any]:
    """A server body shaped like the lab Nova's at microversion 2.73."""
    image = "155d900f-4e14-4e4c-a73d-069cbf4541e6"
    host = "compute"
    return {
        "accessIPv4": "", "accessIPv6": "", "addresses": {}, "created": created,
        "flavor": {"vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 0, "swap": 0,
                   "original_name": "m1.tiny", "extra_specs": {}},
        "hostId": "f8f2b49d493ce752ed0acd8f23744f13d45f4bc2f7e8234203ac2cf2", "id": server_id,
        "image": {"id": image, "links": [{"rel": "bookmark", "href": f"{base}/images/{image}"}]},
        "links": [{"rel": "self", "href": f"{base}/v2.1/servers/{server_id}"},
                  {"rel": "bookmark", "href": f"{base}/servers/{server_id}"}],
        "metadata": metadata, "name": name, "status": status, "tenant_id": project,
        "user_id": user, "updated": created, "OS-DCF:diskConfig": "MANUAL", "progress": 0,
        "OS-EXT-AZ:availability_zone": "nova", "config_drive": "", "key_name": None,
        "OS-SRV-USG:launched_at": created.rstrip("Z") + ".126203",
        "OS-SRV-USG:terminated_at": None, "OS-EXT-SRV-ATTR:host": host,
        "OS-EXT-SRV-ATTR:instance_name": "instance-000001a1",
        "OS-EXT-SRV-ATTR:hypervisor_hostname": "fake-mini", "OS-EXT-SRV-ATTR:hostname": name,
        "OS-EXT-SRV-ATTR:kernel_id": "", "OS-EXT-SRV-ATTR:launch_index": 0,
        "OS-EXT-SRV-ATTR:ramdisk_id": "", "OS-EXT-SRV-ATTR:reservation_id": "r-qzuwdspa",
        "OS-EXT-SRV-ATTR:root_device_name": "/dev/sda", "OS-EXT-SRV-ATTR:user_data": None,
        "OS-EXT-STS:task_state": None, "OS-EXT-STS:vm_state": "active",
        "OS-EXT-STS:power_state": 1, "os-extended-volumes:volumes_attached": [],
        "locked": False, "description": None, "tags": [], "trusted_image_certificates": None,
        "locked_reason": None, "host_status": "UP",
    }


class GeneratedCloud:
    """N servers over N/10 selected projects, one owner per project, served over HTTP."""

    def __init__(self, count: int, base: str) -> None:
        from vm_expiry.timeutil import format_time

        rng = random.Random(count)
        self.base = base
        self.lock = threading.Lock()
        self.stats: dict[str, int] = {}
        nprojects = max(1, count // SERVERS_PER_PROJECT)
        self.projects = {}
        self.users = {}
        for p in range(nprojects):
            pid = uuid.UUID(int=rng.getrandbits(128)).hex
            uid = uuid.UUID(int=rng.getrandbits(128)).hex
            self.projects[pid] = {"id": pid, "name": f"bench-{p}", "domain_id": "default",
                                  "enabled": True, "is_domain": False, "parent_id": "default",
                                  "description": "", "tags": [], "type": "personal",
                                  "expire": "on", "links": {"self": f"{base}/v3/projects/{pid}"}}
            self.users[uid] = {"id": uid, "name": f"owner-{p}", "email": f"owner-{p}@bench.test",
                               "domain_id": "default", "enabled": True}
        pids, uids = list(self.projects), list(self.users)
        created = format_time(NOW - timedelta(days=30))
        self.servers: dict[str, dict[str, Any]] = {}
        self.due = 0
        for i in range(count):
            sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            state, status, due = _fixture_state(i, sid, NOW)
            self.due += due
            p = i // SERVERS_PER_PROJECT % nprojects
            self.servers[sid] = _server_body(base, sid, f"vm-{i}", pids[p], uids[p], created,
                                             state.to_metadata(sid, SECRET), status)
        self.order = sorted(self.servers)
        self.position = {sid: i for i, sid in enumerate(self.order)}
        self.pages: dict[tuple[str | None, int], bytes] = {}
        marker = None
        while True:  # pre-render the pages the pack asks for, so the API is fast and steady
            _, marker = self._render(marker, NOVA_MAX_LIMIT)
            if marker is None:
                break

    def _render(self, marker: str | None, limit: int) -> tuple[bytes, str | None]:
        key = (marker, limit)
        start = 0 if marker is None else self.position[marker] + 1
        ids = self.order[start:start + limit]
        links = []
        if len(ids) == limit:  # Nova links a next page whenever a page is full
            links = [{"rel": "next", "href": f"{self.base}/v2.1/servers/detail?all_tenants=1"
                                             f"&limit={limit}&marker={ids[-1]}"}]
        body = json.dumps({"servers": [self.servers[s] for s in ids],
                           "servers_links": links}).encode()
        self.pages[key] = body
        return body, (ids[-1] if links else None)

    def page(self, marker: str | None, limit: int) -> bytes:
        limit = min(limit, NOVA_MAX_LIMIT)
        cached = self.pages.get((marker, limit))
        return cached if cached is not None else self._render(marker, limit)[0]

    def count(self, kind: str) -> None:
        with self.lock:
            self.stats[kind] = self.stats.get(kind, 0) + 1

    def token(self) -> dict[str, Any]:
        from keystoneauth1 import fixture

        token = fixture.V3Token(user_id="svc", user_name="vm-expiry", project_id="service",
                                project_name="service")
        token.add_role(name="admin")
        for kind, url in (("identity", f"{self.base}/v3"), ("compute", f"{self.base}/v2.1")):
            token.add_service(kind).add_standard_endpoints(public=url, region="RegionOne")
        return dict(token)

    def changed(self) -> None:
        self.pages.clear()


def _handler(cloud: GeneratedCloud) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's algorithm and the
            # client's delayed ACK add ~40 ms to every small response.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
                  raw: bytes | None = None) -> None:
            data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length)) if length else None

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            path, query = url.path, parse_qs(url.query)
            if path == "/_stats":
                return self._send(200, {"stats": cloud.stats, "due": cloud.due})
            if path == "/v2.1/servers/detail":
                cloud.count("GET servers/detail")
                marker = query.get("marker", [None])[0]
                limit = int(query.get("limit", [NOVA_MAX_LIMIT])[0])
                return self._send(200, raw=cloud.page(marker, limit))
            if path == "/v3/projects":
                cloud.count("GET projects")
                return self._send(200, {"projects": list(cloud.projects.values()),
                                        "links": {"next": None, "self": self.path,
                                                  "previous": None}})
            match = re.fullmatch(r"/v3/(projects|users)/([^/]+)", path)
            if match:
                cloud.count(f"GET {match[1]}/id")
                store = cloud.projects if match[1] == "projects" else cloud.users
                item = store.get(match[2])
                if item is None:
                    return self._send(404, {"error": {"message": "not found", "code": 404}})
                return self._send(200, {match[1][:-1]: item})
            match = re.fullmatch(r"/v2.1/servers/([^/]+)", path)
            if match:
                cloud.count("GET servers/id")
                server = cloud.servers.get(match[1])
                if server is None:
                    return self._send(404, {"itemNotFound": {"message": "not found"}})
                return self._send(200, {"server": server})
            return self._send(404, {"error": f"no route GET {path}"})

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            body = self._body()
            if path == "/v3/auth/tokens":
                cloud.count("POST auth/tokens")
                return self._send(201, cloud.token(), {"X-Subject-Token": "bench-token"})
            match = re.fullmatch(r"/v2.1/servers/([^/]+)/(metadata|action)", path)
            server = cloud.servers.get(match[1]) if match else None
            if server is None:
                return self._send(404, {"itemNotFound": {"message": "not found"}})
            with cloud.lock:
                cloud.changed()
                if match[2] == "metadata":
                    cloud.stats["POST metadata"] = cloud.stats.get("POST metadata", 0) + 1
                    server["metadata"].update(body["metadata"])
                    return self._send(200, {"metadata": server["metadata"]})
                action = next(iter(body))
                cloud.stats[f"POST action {action}"] = \
                    cloud.stats.get(f"POST action {action}", 0) + 1
                if action == "lock":
                    server["locked"] = True
                    server["locked_reason"] = (body["lock"] or {}).get("locked_reason")
                elif action == "os-stop":
                    server["status"] = "SHUTOFF"
            return self._send(202)

        def do_DELETE(self) -> None:
            path = urlsplit(self.path).path
            match = re.fullmatch(r"/v2.1/servers/([^/]+)/metadata/([^/]+)", path)
            server = cloud.servers.get(match[1]) if match else None
            if server is None:
                return self._send(404, {"itemNotFound": {"message": "not found"}})
            cloud.count("DELETE metadata")
            with cloud.lock:
                cloud.changed()
                server["metadata"].pop(match[2], None)
            return self._send(204)

    return Handler


def serve_fixture(count: int) -> None:
    """The fixture process: prints its ports as one JSON line, serves until stdin closes."""
    from aiosmtpd.controller import Controller

    class Sink:
        messages = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            Sink.messages += 1
            return "250 OK"

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    started = time.perf_counter()
    cloud = GeneratedCloud(count, base)
    httpd.RequestHandlerClass = _handler(cloud)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with socket.socket() as probe:  # aiosmtpd's Controller cannot take port 0
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    smtp = Controller(Sink(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    print(json.dumps({"base": base, "smtp_port": smtp_port, "due": cloud.due,
                      "generated_s": round(time.perf_counter() - started, 1)}), flush=True)
    sys.stdin.read()
    smtp.stop()


# --- the planning process -----------------------------------------------------------------


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class _Replay:
    """A Cloud stand-in that serves pre-fetched pages, to time the pack's own work."""

    def __init__(self, cloud: Any, projects: dict, pages: list[dict]) -> None:
        self._cloud = cloud
        self._projects = projects
        self._pages = pages

    def selected_projects(self, selector: Any) -> dict:
        return self._projects

    def iter_servers(self, project_ids: Any, page_size: int = 0) -> Any:
        from vm_expiry.cloud import facts_from_body

        for body in self._pages:
            for server in body.get("servers", []):
                if server.get("tenant_id") in project_ids:
                    yield facts_from_body(server)

    def user(self, user_id: str) -> Any:
        return self._cloud.user(user_id)


def plan_child(mode: str, count: int, base: str | None, smtp_port: int | None) -> dict:
    """Plan (and apply) once; the measurements as a dict. Runs in a fresh process."""
    from vm_expiry import sweep
    from vm_expiry.cloud import PAGE_SIZE, Cloud, service_session
    from vm_expiry.config import CloudConfig, Config, MailConfig, load_file
    from vm_expiry.policy import StepKind

    if mode == "fixture":
        config = Config(
            secret_key=SECRET,
            mail=MailConfig(host="127.0.0.1", port=int(smtp_port or 0),
                            sender="ops@bench.test"),
            cloud=CloudConfig(auth={"auth_url": f"{base}/v3", "username": "vm-expiry",
                                    "password": "pw", "project_name": "service"}),
        )
        now = NOW
        dry_run = False
    else:
        info = json.loads((Path(os.environ["BENCH_LAB_DIR"]) / "lab.json").read_text())
        config = load_file(info["config_path"])
        now = datetime.fromisoformat(os.environ["BENCH_NOW"])
        dry_run = True  # other engineers' servers share the lab
    rss_before = _rss_mb()
    runs = []
    for _ in range(PLAN_RUNS):  # the machine is shared: keep the fastest of a few plans
        cloud = Cloud(service_session(config.cloud), config.cloud.region_name,
                      config.cloud.interface)
        cloud.session.get_token()  # authenticate outside the timed plan
        wall0, cpu0 = time.perf_counter(), time.process_time()
        result = sweep.plan(cloud, config, now, PAGE_SIZE)
        runs.append((time.perf_counter() - wall0, time.process_time() - cpu0, cloud.requests))
    rss_peak = _rss_mb()
    wall, cpu, plan_requests = min(runs)
    refs = [ref for batch in result["batches"] for ref in batch]
    due_users = set()

    # The pack's own CPU: replay the plan over the same pages, pre-fetched and parsed.
    projects = cloud.selected_projects(config.project_selector)
    pages, url = [], "/servers/detail"
    params: dict[str, Any] = {"limit": PAGE_SIZE, "all_tenants": 1}
    while url:
        body = cloud.compute.get(url, params=params).json()
        params = {}
        pages.append(body)
        url = next((ln["href"] for ln in body.get("servers_links", [])
                    if ln["rel"] == "next"), None)
    due_ids = {ref[0] for ref in refs}
    for body in pages:
        for server in body["servers"]:
            if server["id"] in due_ids:
                due_users.add(server["user_id"])
    replay = _Replay(cloud, projects, pages)
    samples = []
    for _ in range(3):
        c0 = time.process_time()
        again = sweep.plan(replay, config, now, PAGE_SIZE)  # type: ignore[arg-type]
        samples.append(time.process_time() - c0)
        assert again["counts"] == result["counts"]
    pack_cpu = statistics.median(samples)
    del pages, replay

    # Apply, one fresh Cloud per batch as each Mistral action execution has.
    apply_requests = 0
    outcomes: dict[str, dict[str, int]] = {}
    a0 = time.perf_counter()
    for batch in result["batches"]:
        batch_cloud = Cloud(service_session(config.cloud), config.cloud.region_name,
                            config.cloud.interface)
        out = sweep.Applier(batch_cloud, config, now, dry_run).apply(batch)
        apply_requests += batch_cloud.requests
        for kind, per in out["counts"].items():
            for outcome, n in per.items():
                outcomes.setdefault(kind, {}).setdefault(outcome, 0)
                outcomes[kind][outcome] += n
    apply_wall = time.perf_counter() - a0
    seen = result["servers"]
    return {
        "mode": mode, "servers": seen, "projects": result["projects"],
        "counts": result["counts"], "due": len(refs),
        "due_kinds": {k: sum(1 for r in refs if r[1] == k) for k in {r[1] for r in refs}},
        "due_users": len(due_users), "batches": len(result["batches"]),
        "plan_wall": wall, "plan_cpu": cpu, "pack_cpu": pack_cpu, "pack_cpu_samples": samples,
        "plan_requests": plan_requests, "plan_walls": [r[0] for r in runs],
        "apply_requests": apply_requests,
        "apply_wall": apply_wall, "outcomes": outcomes, "dry_run": dry_run,
        "rss_before_mb": rss_before, "rss_peak_mb": rss_peak,
        "remind": StepKind.REMIND.value,
    }


def run_child(mode: str, count: int, base: str | None = None, smtp_port: int | None = None,
              env: dict[str, str] | None = None) -> dict:
    argv = [sys.executable, __file__, "--child", mode, str(count), base or "-",
            str(smtp_port or 0)]
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})},
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"planning child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fixture_row(count: int) -> dict:
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(count)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        ready = json.loads(server.stdout.readline())
        row = run_child("fixture", count, ready["base"], ready["smtp_port"])
        import requests

        row["server_stats"] = requests.get(f"{ready['base']}/_stats", timeout=10).json()["stats"]
        row["fixture_due"] = ready["due"]
        return row
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(30)


# --- the lab ------------------------------------------------------------------------------


def _compute(sess: Any, method: str, path: str, **kwargs: Any) -> Any:
    response = sess.request(path, method, endpoint_filter={"service_type": "compute",
                                                           "interface": "public"},
                            headers={"OpenStack-API-Version": "compute 2.73"},
                            raise_exc=False, **kwargs)
    return response


def _bench_projects(admin: Any, prefix: str) -> list[dict]:
    from vm_expiry.lab import population as pop

    found = pop._identity(admin, "GET", "/projects")["projects"]
    return [p for p in found if p["name"].startswith(f"{prefix}-")]


def lab_cleanup(admin: Any, prefix: str) -> int:
    """Delete every server of this run's projects, the projects and the owner; how many
    servers (deletion goes on in Nova after this returns)."""
    from vm_expiry.lab import population as pop

    ids = []
    projects = _bench_projects(admin, prefix)
    for project in projects:
        listing = _compute(admin, "GET",
                           f"/servers?all_tenants=1&project_id={project['id']}&limit=1000")
        ids += [s["id"] for s in listing.json()["servers"]]

    def remove(server_id: str) -> None:
        _compute(admin, "POST", f"/servers/{server_id}/action", json={"unlock": None})
        _compute(admin, "DELETE", f"/servers/{server_id}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(remove, ids))
    for project in projects:
        pop._identity(admin, "DELETE", f"/projects/{project['id']}")
    user = pop._find(admin, "users", f"{prefix}-owner")
    if user:
        pop._identity(admin, "DELETE", f"/users/{user['id']}")
    return len(ids)


def lab_seed(info: dict, admin: Any, prefix: str, count: int, now: datetime,
             at: datetime) -> tuple[list[str], float]:
    """Seed ``count`` servers created 30 days before ``now`` over count/10 projects of this
    run, sealed so that 1% are due at ``at``; ids, seconds."""
    from vm_expiry.config import load_file
    from vm_expiry.lab import population as pop

    secret = load_file(info["config_path"]).secret_key
    started = time.perf_counter()
    nprojects = max(1, count // SERVERS_PER_PROJECT)
    props = {"type": "personal", "expire": "on"}
    pids = [pop.ensure_project(admin, f"{prefix}-{p:04d}", props) for p in range(nprojects)]
    uid = pop.ensure_user(admin, f"{prefix}-owner", f"{prefix}-owner@lab.example", pids[0])
    created = (now - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with ThreadPoolExecutor(4) as pool:
        lists = list(pool.map(lambda pid: pop.seed(admin, info, pid, uid, SERVERS_PER_PROJECT,
                                                   created, prefix), pids))
    ids = [sid for ids in lists for sid in ids]

    def seal(item: tuple[int, str]) -> None:
        state, _, _ = _fixture_state(item[0], item[1], at)
        response = _compute(admin, "POST", f"/servers/{item[1]}/metadata",
                            json={"metadata": state.to_metadata(item[1], secret)})
        response.raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(seal, enumerate(ids)))
    return ids, time.perf_counter() - started


def _run_execution(client: Any, workflow: str, workflow_input: dict, timeout: float) -> dict:
    started = time.perf_counter()
    execution = client.executions.create(workflow, workflow_input=workflow_input)
    while execution.state not in ("SUCCESS", "ERROR", "CANCELLED"):
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"{workflow} {execution.id} still {execution.state} after "
                             f"{timeout:.0f} s")
        time.sleep(0.1)
        execution = client.executions.get(execution.id)
    wall = time.perf_counter() - started
    if execution.state != "SUCCESS":
        raise SystemExit(f"{workflow} {execution.id} {execution.state}: {execution.state_info}")
    tasks = client.tasks.list(workflow_execution_id=execution.id)
    actions = sum(len(client.action_executions.list(task_execution_id=t.id)) for t in tasks)
    output = execution.output
    return {"wall": wall, "tasks": len(tasks), "actions": actions, "id": execution.id,
            "output": json.loads(output) if isinstance(output, str) else output}


def lab_rows(lab_dir: Path, count: int, naive: bool) -> dict:
    from vm_expiry import mistral_ops
    from vm_expiry.config import load_file
    from vm_expiry.lab import population as pop
    from vm_expiry.lab.lifecycle import up

    info = up(lab_dir)
    admin = pop.admin_session(info)
    client = mistral_ops.connect(admin)
    mistral_ops.deploy(client, load_file(info["config_path"]), None, False)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    # Other engineers' sweeps (real or simulated time near now) act on every selected server,
    # so the bench's 1% fall due only at a time well ahead, where the bench sweeps (dry run).
    at = now + timedelta(days=LAB_AHEAD_DAYS)
    prefix = f"{LAB_PREFIX}-{uuid.uuid4().hex[:6]}"
    out: dict[str, Any] = {"now": now.isoformat(), "at": at.isoformat(), "prefix": prefix}
    try:
        ids, out["seed_s"] = lab_seed(info, admin, prefix, count, now, at)
        out["seeded"] = len(ids)
        env = {"BENCH_LAB_DIR": str(lab_dir), "BENCH_NOW": at.isoformat()}
        out["plan"] = run_child("lab", count, env=env)
        sweep_input = {"now": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "dry_run": True}
        out["sweep"] = _run_execution(client, mistral_ops.SWEEP, sweep_input, 900)
        quiet = (now - timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out["sweep_quiet"] = _run_execution(client, mistral_ops.SWEEP,
                                            {"now": quiet, "dry_run": True}, 900)
        if naive:
            existing = {w.name for w in client.workflows.list()}
            if NAIVE in existing:
                client.workflows.update(NAIVE_DEFINITION, scope="private")
            else:
                client.workflows.create(NAIVE_DEFINITION, scope="private")
            try:
                out["naive"] = _run_execution(client, NAIVE, {"servers": ids}, 1800)
            finally:
                client.workflows.delete(NAIVE)
    finally:
        out["removed_after"] = lab_cleanup(admin, prefix)
    return out


# --- the table ----------------------------------------------------------------------------


def _floor(row: dict) -> tuple[int, int]:
    """(plan floor, sweep floor) as issue 8 defines it: list pages (Nova links a next page after
    each full one) + project pages + one request per step due + one per owner mailed; the plan
    alone needs the pages and, for steps that act, the owner (exemption check)."""
    pages = row["servers_listed"] // NOVA_MAX_LIMIT + 1
    plan_floor = pages + 1 + row["due_users"]
    return plan_floor, pages + 1 + row["due"] + row["due_users"]


def format_table(rows: list[dict]) -> str:
    head = ["source", "servers", "due", "plan wall s", "API s", "pack CPU s", "pack µs/srv",
            "proc CPU µs/srv", "plan req (floor)", "apply req", "sweep req / floor",
            "peak RSS MB", "Mistral tasks (items)", "sweep wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        plan_floor, floor = _floor(r)
        n = r["servers_listed"]
        total = r["plan_requests"] + r["apply_requests"]
        lines.append("| " + " | ".join([
            r["label"], f"{r['servers']:,}", str(r["due"]), f"{r['plan_wall']:.2f}",
            f"{r['plan_wall'] - r['pack_cpu']:.2f}", f"{r['pack_cpu']:.3f}",
            f"{r['pack_cpu'] / n * 1e6:.1f}", f"{r['plan_cpu'] / n * 1e6:.1f}",
            f"{r['plan_requests']} ({plan_floor})", str(r["apply_requests"]),
            f"{total} / {floor} = {total / floor:.2f}x", f"{r['rss_peak_mb']:.0f}",
            r.get("mistral", "not run"), r.get("sweep_wall", "not run"),
        ]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000",
                        help="fixture sizes (servers), comma-separated")
    parser.add_argument("--lab-servers", type=int, default=1000,
                        help="servers to seed in the lab (0: skip the lab)")
    parser.add_argument("--lab-dir", type=Path, default=REPO / ".lab")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        return serve_fixture(args.serve)
    if args.child:
        mode, count, base, smtp = args.child
        print(json.dumps(plan_child(mode, int(count), base, int(smtp))))
        return None

    rows: list[dict] = []
    raw: dict[str, Any] = {"fixture": []}
    for size in [int(s) for s in args.sizes.split(",") if s]:
        print(f"fixture {size:,} servers...", file=sys.stderr, flush=True)
        row = fixture_row(size)
        raw["fixture"].append(row)
        rows.append({**row, "label": "fixture", "servers_listed": row["servers"],
                     "mistral": "-", "sweep_wall": "-"})
    if args.lab_servers:
        print(f"lab: seeding {args.lab_servers:,} servers and sweeping...", file=sys.stderr,
              flush=True)
        lab = lab_rows(args.lab_dir, args.lab_servers, not args.no_naive)
        raw["lab"] = lab
        plan = lab["plan"]
        sweep, quiet = lab["sweep"], lab["sweep_quiet"]
        rows.append({**plan, "label": f"lab ({lab['seeded']:,} seeded)",
                     "servers_listed": plan["servers"],
                     "mistral": f"{sweep['tasks']} ({sweep['actions']} actions)",
                     "sweep_wall": f"{sweep['wall']:.1f}"})
    print(format_table(rows))
    if args.lab_servers:
        print()
        print(f"lab sweep (dry run) at a time with nothing of the bench due: "
              f"{quiet['tasks']} task executions, {quiet['actions']} action executions, "
              f"{quiet['wall']:.1f} s; steps planned {quiet['output']['summary']['steps']}")
        if "naive" in lab:
            naive = lab["naive"]
            print(f"naive design over the same {lab['seeded']:,} servers (one std.noop "
                  f"with-items item each): {naive['tasks']} task execution, "
                  f"{naive['actions']} action executions, {naive['wall']:.1f} s; "
                  f"pack sweep {sweep['wall']:.1f} s: {naive['wall'] / sweep['wall']:.0f}x faster")
        print(f"lab seeding: {lab['seed_s']:.0f} s; removed {lab['removed_after']} bench servers")
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1, default=str))
    return None


if __name__ == "__main__":
    main()

"""Nova 34's API and compute stack in one process, with the fake virt driver.

Run by the lab's ``openstack`` venv, never imported by vm-expiry (nothing here imports
``vm_expiry``): ``python -I nova_runner.py CONFIG.json``. ``-I`` keeps this directory off
``sys.path``, where the lab's own modules would shadow ``nova`` and ``keystone``.

It drives Nova's functional-test base (API, conductor, scheduler, placement, fake glance, neutron
and cinder, on in-memory SQLite), with real keystonemiddleware against the lab's Keystone, and
serves the compute API with a threaded WSGI server. Every start is an empty cloud.

A second port serves ``POST /seed`` for benchmarks that need thousands of servers: it creates
instances straight through Nova's objects (ACTIVE, running, m1.tiny, on the fake compute host),
known to the fake driver so that lock, stop and delete work through the API. It takes an admin
token in ``X-Auth-Token`` and a JSON body ``{"count": N, "project_id": ..., "user_id": ...,
"created_at": ISO (optional), "name_prefix": ... (optional)}`` and answers ``{"ids": [...]}``.
"""

# As Nova's own entry points do: patch before anything imports socket, select or threading,
# or the servers below block every green thread.
from nova import monkey_patch

monkey_patch.patch()

import datetime  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import socketserver  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import warnings  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from pathlib import Path  # noqa: E402
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server  # noqa: E402

import keystonemiddleware.auth_token  # noqa: E402, F401  (registers [keystone_authtoken] options)
from keystoneauth1 import loading as ks_loading  # noqa: E402
from keystoneauth1 import session as ks_session  # noqa: E402
from keystoneauth1.identity import v3  # noqa: E402
from nova import context as nova_context  # noqa: E402
from nova import objects  # noqa: E402
from nova.api import wsgi as nova_wsgi  # noqa: E402
from nova.compute import power_state, vm_states  # noqa: E402
from nova.conf import CONF  # noqa: E402
from nova.network import model as network_model  # noqa: E402
from nova.tests.functional import integrated_helpers  # noqa: E402
from nova.virt import fake  # noqa: E402
from oslo_utils import uuidutils  # noqa: E402

IMAGE_ID = "155d900f-4e14-4e4c-a73d-069cbf4541e6"
COMPUTE_HOST = "compute"
LOG = logging.getLogger("vm_expiry_lab.nova")


class LabNova(integrated_helpers._IntegratedTestBase):
    """The functional-test stack with real Keystone auth and the full fake driver."""

    ADMIN_API = True
    STUB_KEYSTONE = False

    def __init__(self, config: dict) -> None:
        super().__init__("runTest")
        self.lab = config

    def runTest(self) -> None:
        """Required by testtools; the stack is only set up, never run as a test."""

    def setUp(self) -> None:
        CONF.register_opts(
            ks_loading.get_auth_plugin_conf_options("password"), group="keystone_authtoken"
        )
        auth = self.lab["auth"]
        self.flags(
            group="keystone_authtoken",
            auth_type="password",
            auth_url=auth["auth_url"],
            www_authenticate_uri=auth["auth_url"],
            username=auth["username"],
            password=auth["password"],
            project_name=auth["project_name"],
            user_domain_name="Default",
            project_domain_name="Default",
            region_name="RegionOne",
        )
        # The fixtures keep Nova's databases in in-memory SQLite: a connection recycled after
        # the default hour comes back empty ("no such table"), so never recycle.
        for group in ("database", "api_database"):
            self.flags(group=group, connection_recycle_time=10**9)
        super().setUp()
        # Nova's own default; the test fixtures turn an invalid response into a 500.
        self.flags(group="api", response_validation="warn")

    def _setup_compute_service(self):
        # The default SmallFakeDriver holds only a handful of tiny servers.
        self.flags(compute_driver="fake.FakeDriver")
        return self._start_compute(COMPUTE_HOST)

    def seed(self, request: dict) -> list[str]:
        """Create ``count`` ACTIVE servers through Nova's objects; return their ids."""
        count = int(request["count"])
        created_at = request.get("created_at")
        created = (
            datetime.datetime.fromisoformat(created_at.replace("Z", "+00:00"))
            if created_at
            else datetime.datetime.now(datetime.timezone.utc)
        )
        prefix = request.get("name_prefix", "seeded")
        admin = nova_context.get_admin_context()
        cell = self.cell_mappings["cell1"]
        flavor = objects.Flavor.get_by_flavor_id(admin, "1")
        driver = self.compute.manager.driver
        ids = []
        with nova_context.target_cell(admin, cell) as cell_context:
            node = objects.ComputeNodeList.get_all_by_host(cell_context, COMPUTE_HOST)[0]
            for index in range(count):
                instance_id = uuidutils.generate_uuid()
                name = f"{prefix}-{index}"
                instance = objects.Instance(
                    context=cell_context,
                    uuid=instance_id,
                    project_id=request["project_id"],
                    user_id=request["user_id"],
                    display_name=name,
                    hostname=name,
                    host=COMPUTE_HOST,
                    node=node.hypervisor_hostname,
                    compute_id=node.id,
                    vm_state=vm_states.ACTIVE,
                    power_state=power_state.RUNNING,
                    task_state=None,
                    image_ref=IMAGE_ID,
                    flavor=flavor,
                    instance_type_id=flavor.id,
                    memory_mb=flavor.memory_mb,
                    vcpus=flavor.vcpus,
                    root_gb=flavor.root_gb,
                    ephemeral_gb=flavor.ephemeral_gb,
                    availability_zone="nova",
                    launched_at=created,
                    created_at=created,
                    metadata={},
                    system_metadata={},
                    # What a boot sets; the API's response schema requires them.
                    launch_index=0,
                    reservation_id=f"r-{instance_id[:8]}",
                    root_device_name="/dev/vda",
                    progress=0,
                    config_drive="",
                    info_cache=objects.InstanceInfoCache(
                        network_info=network_model.NetworkInfo([])
                    ),
                )
                instance.create()
                objects.InstanceMapping(
                    context=admin,
                    instance_uuid=instance_id,
                    cell_mapping=cell,
                    project_id=request["project_id"],
                    user_id=request["user_id"],
                    queued_for_delete=False,
                ).create()
                driver.instances[instance_id] = fake.FakeInstance(
                    instance.name, power_state.RUNNING, instance_id
                )
                ids.append(instance_id)
        return ids


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        LOG.info("%s %s", self.address_string(), format % args)


def _seed_handler(stack: LabNova, auth_url: str, service: ks_session.Session) -> type:
    class SeedHandler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _is_admin(self) -> bool:
            token = self.headers.get("X-Auth-Token", "")
            if not token:
                return False
            response = service.get(
                f"{auth_url}/auth/tokens",
                headers={"X-Subject-Token": token},
                raise_exc=False,
            )
            if response.status_code != 200:
                return False
            roles = response.json()["token"].get("roles", [])
            return any(role["name"] == "admin" for role in roles)

        def do_POST(self) -> None:
            if self.path != "/seed":
                self._answer(404, {"error": "only POST /seed"})
                return
            if not self._is_admin():
                self._answer(403, {"error": "an admin token is required"})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                request = json.loads(self.rfile.read(length) or b"{}")
                ids = stack.seed(request)
            except (KeyError, ValueError, TypeError) as error:
                self._answer(400, {"error": f"bad seed request: {error!r}"})
                return
            except Exception as error:  # report any Nova failure to the caller, keep serving
                LOG.exception("seeding failed")
                self._answer(500, {"error": repr(error)})
                return
            self._answer(200, {"ids": ids})

        def log_message(self, format: str, *args: object) -> None:
            LOG.info("seed: %s", format % args)

    return SeedHandler


def _log_to(path: str) -> None:
    # The test fixtures capture stdout, stderr and logging in memory: without this, failures
    # are silent and the buffers grow for as long as the lab runs.
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    stack = LabNova(config)
    stack.setUp()
    # SQLAlchemy 2.1 deprecation warnings are errors under the fixtures: lock would answer 500.
    warnings.simplefilter("ignore")
    _log_to(config["log_file"])
    app = nova_wsgi.Loader().load_app("osapi_compute")
    server = make_server("127.0.0.1", config["port"], app, _ThreadingWSGIServer, _QuietHandler)
    auth = config["auth"]
    service = ks_session.Session(
        auth=v3.Password(
            auth_url=auth["auth_url"],
            username=auth["username"],
            password=auth["password"],
            project_name=auth["project_name"],
            user_domain_name="Default",
            project_domain_name="Default",
        )
    )
    seeder = ThreadingHTTPServer(
        ("127.0.0.1", config["seed_port"]), _seed_handler(stack, auth["auth_url"], service)
    )
    threading.Thread(target=seeder.serve_forever, daemon=True).start()
    LOG.info("nova ready on port %s, seeding on port %s", config["port"], config["seed_port"])
    server.serve_forever()


if __name__ == "__main__":
    main()

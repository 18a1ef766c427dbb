"""Access to Keystone and Nova through keystoneauth, with plain JSON in and out.

Listing is streamed page by page, so a sweep over 100k servers never holds them all. Raw JSON
through a keystoneauth ``Adapter`` (instead of openstacksdk's resource objects) keeps the pack's
own cost per server in microseconds; sessions come from clouds.yaml via openstacksdk's config
loader, from an auth dict, or from a user's token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from keystoneauth1 import adapter, exceptions, session, token_endpoint
from keystoneauth1.identity import v3

from vm_expiry.config import CloudConfig, ProjectSelector
from vm_expiry.errors import VmExpiryError
from vm_expiry.policy import ServerFacts
from vm_expiry.timeutil import parse_api_time

# 2.73 gives `locked_reason` in server bodies and lets `lock` carry one.
COMPUTE_MICROVERSION = "2.73"
PAGE_SIZE = 1000
RETRIES = 3
T = TypeVar("T")


class CloudError(VmExpiryError):
    """A cloud API call failed; the message names the call and the reason."""


class NotFound(CloudError):
    """The server (or user, project) does not exist or is not visible to the caller."""


class Forbidden(CloudError):
    """The caller may not do this."""


def service_session(cloud: CloudConfig) -> session.Session:
    """A session with the pack's own credentials (clouds.yaml entry or auth dict)."""
    if cloud.auth is not None:
        auth = dict(cloud.auth)
        plugin = v3.Password(
            auth_url=auth.pop("auth_url"),
            username=auth.get("username"),
            user_id=auth.get("user_id"),
            password=auth.get("password"),
            project_name=auth.get("project_name"),
            project_id=auth.get("project_id"),
            user_domain_name=auth.get("user_domain_name", "Default"),
            project_domain_name=auth.get("project_domain_name", "Default"),
        )
        return session.Session(auth=plugin)
    return cloud_session(cloud.name)


def cloud_session(name: str | None) -> session.Session:
    """A session for a clouds.yaml cloud, or for the ``OS_*`` variables when name is None."""
    from openstack import config as os_config
    from openstack import exceptions as os_exceptions

    try:
        region = os_config.OpenStackConfig().get_one(cloud=name)
        return region.get_session()
    except os_exceptions.ConfigException as error:
        raise CloudError(f"cloud configuration: {error}") from None
    except exceptions.MissingRequiredOptions as error:
        names = ", ".join(option.dest for option in error.options)
        raise CloudError(
            f"no credentials: give --cloud NAME (clouds.yaml) or set OS_* variables ({names})"
        ) from None


def token_session(endpoint: str, token: str) -> session.Session:
    """A session that sends a user's token to one endpoint, for calls the user must be
    allowed to make themselves (Nova then enforces ownership)."""
    return session.Session(auth=token_endpoint.Token(endpoint, token))


def _retrying(call: Callable[[], T], what: str) -> T:
    """Run an idempotent read, retrying connection failures and 5xx with backoff."""
    delay = 0.5
    for attempt in range(1, RETRIES + 1):
        try:
            return call()
        except (exceptions.ConnectFailure, exceptions.ConnectTimeout,
                exceptions.RetriableConnectionFailure, exceptions.ServiceUnavailable,
                exceptions.InternalServerError, exceptions.BadGateway,
                exceptions.GatewayTimeout) as error:
            if attempt == RETRIES:
                raise CloudError(f"{what}: {describe(error)} (after {RETRIES} tries)") from None
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def describe(error: BaseException) -> str:
    if isinstance(error, exceptions.ConnectionError):
        # keystoneauth appends the whole urllib3 error chain; the first clause says it all.
        return str(error).split(": HTTPConnectionPool", 1)[0].split(": HTTPSConnectionPool")[0]
    if isinstance(error, exceptions.HttpError):
        detail = error.details or error.message
        return f"HTTP {error.http_status}: {detail}"
    return type(error).__name__ + (f": {error}" if str(error) else "")


def _translate(error: exceptions.ClientException, what: str) -> CloudError:
    """A keystoneauth error as the pack's own, in one line."""
    if isinstance(error, exceptions.NotFound):
        return NotFound(f"{what}: not found")
    if isinstance(error, exceptions.Forbidden | exceptions.Unauthorized):
        return Forbidden(f"{what}: not allowed ({describe(error)})")
    return CloudError(f"{what}: {describe(error)}")


@dataclass(frozen=True)
class Identity:
    """Who a token really belongs to, as Keystone says."""

    user_id: str
    user_name: str
    project_id: str | None
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class Cloud:
    """Keystone and Nova calls the pack makes, with one session."""

    def __init__(self, sess: session.Session, region_name: str | None = None,
                 interface: str = "public") -> None:
        self.session = sess
        self.compute = adapter.Adapter(
            sess, service_type="compute", interface=interface, region_name=region_name,
            default_microversion=COMPUTE_MICROVERSION,
        )
        self.identity = adapter.Adapter(
            sess, service_type="identity", interface=interface, region_name=region_name,
        )
        self.requests = 0
        self._users: dict[str, Mapping[str, Any] | None] = {}

    # --- Keystone -------------------------------------------------------------------------

    def _get_json(self, api: adapter.Adapter, url: str, what: str, **kwargs: Any) -> Any:
        def call() -> Any:
            self.requests += 1
            return api.get(url, **kwargs).json()

        try:
            return _retrying(call, what)
        except exceptions.ClientException as error:
            raise _translate(error, what) from None

    def selected_projects(self, selector: ProjectSelector) -> dict[str, Mapping[str, Any]]:
        """Projects where expiry applies, by id."""
        params = {"tags": ",".join(selector.tags)} if selector.tags else {}
        url: str | None = "/projects"
        found: dict[str, Mapping[str, Any]] = {}
        while url:
            body = self._get_json(self.identity, url, "listing projects", params=params)
            params = {}
            for project in body.get("projects", []):
                if selector.matches(project):
                    found[project["id"]] = project
            url = (body.get("links") or {}).get("next")
        return found

    def project(self, project_id: str) -> Mapping[str, Any]:
        """One project."""
        return self._get_json(
            self.identity, f"/projects/{project_id}", f"project {project_id}"
        )["project"]

    def projects(self) -> list[Mapping[str, Any]]:
        """Every project the caller may list."""
        return self._get_json(self.identity, "/projects", "listing projects")["projects"]

    def tag_project(self, project_id: str, tag: str, present: bool) -> None:
        """Add or remove one tag of a project (admin)."""
        what = f"tagging project {project_id}"
        try:
            self.requests += 1
            if present:
                self.identity.put(f"/projects/{project_id}/tags/{tag}")
            else:
                self.identity.delete(f"/projects/{project_id}/tags/{tag}")
        except exceptions.ClientException as error:
            raise _translate(error, what) from None

    def set_user_property(self, user_id: str, name: str, value: str) -> None:
        """Set an extra property of a Keystone user (admin)."""
        try:
            self.requests += 1
            self.identity.patch(f"/users/{user_id}", json={"user": {name: value}})
        except exceptions.ClientException as error:
            raise _translate(error, f"updating user {user_id}") from None

    def user(self, user_id: str) -> Mapping[str, Any] | None:
        """One user (cached for the life of this object); None when it no longer exists."""
        if user_id not in self._users:
            try:
                self._users[user_id] = self._get_json(
                    self.identity, f"/users/{user_id}", f"user {user_id}"
                )["user"]
            except NotFound:
                self._users[user_id] = None
        return self._users[user_id]

    def validate_token(self, token: str) -> Identity:
        """Ask Keystone whose token this is; raises Forbidden for a token it does not know."""
        what = "validating the caller's token"
        try:
            self.requests += 1
            body = self.identity.get(
                "/auth/tokens", headers={"X-Subject-Token": token}
            ).json()["token"]
        except exceptions.ClientException as error:
            if isinstance(error, exceptions.NotFound | exceptions.Unauthorized):
                raise Forbidden(f"{what}: Keystone does not know it") from None
            raise _translate(error, what) from None
        project = body.get("project") or {}
        return Identity(
            user_id=body["user"]["id"],
            user_name=body["user"].get("name", ""),
            project_id=project.get("id"),
            roles=frozenset(role["name"] for role in body.get("roles", [])),
        )

    def compute_endpoint(self) -> str:
        """Nova's endpoint from the catalog of this session."""
        endpoint = self.compute.get_endpoint()
        if not endpoint:
            raise CloudError("no compute endpoint in the service catalog")
        return endpoint

    # --- Nova -----------------------------------------------------------------------------

    def iter_servers(self, project_ids: Mapping[str, Any] | set[str] | None,
                     page_size: int = PAGE_SIZE) -> Iterator[ServerFacts]:
        """Every server of the given projects, streamed page by page across all projects
        (``None``: the caller's own project's servers, as a non-admin sees them).

        A failure mid-listing raises CloudError: a caller must not act on a partial listing.
        """
        params: dict[str, Any] = {"limit": page_size}
        if project_ids is not None:
            params["all_tenants"] = 1
        url: str | None = "/servers/detail"
        while url:
            body = self._get_json(self.compute, url, "listing servers", params=params)
            params = {}
            for server in body.get("servers", []):
                if project_ids is None or server.get("tenant_id") in project_ids:
                    yield facts_from_body(server)
            url = next(
                (link["href"] for link in body.get("servers_links", []) if link["rel"] == "next"),
                None,
            )

    def get_server(self, server_id: str) -> ServerFacts:
        """One server's facts."""
        body = self._get_json(self.compute, f"/servers/{server_id}", f"server {server_id}")
        return facts_from_body(body["server"])

    def _post(self, url: str, body: Mapping[str, Any] | None, what: str) -> None:
        try:
            self.requests += 1
            self.compute.post(url, json=body)
        except exceptions.ClientException as error:
            raise _translate(error, what) from None

    def set_metadata(self, server_id: str, values: Mapping[str, str]) -> None:
        """Add or replace metadata keys (others are kept)."""
        self._post(f"/servers/{server_id}/metadata", {"metadata": dict(values)},
                   f"writing metadata of server {server_id}")

    def delete_metadata_key(self, server_id: str, key: str) -> None:
        """Remove one metadata key; a key already gone is fine."""
        try:
            self.requests += 1
            self.compute.delete(f"/servers/{server_id}/metadata/{key}")
        except exceptions.NotFound:
            return
        except exceptions.ClientException as error:
            raise _translate(error, f"removing metadata {key} of server {server_id}") from None

    def lock(self, server_id: str, reason: str) -> None:
        self._post(f"/servers/{server_id}/action", {"lock": {"locked_reason": reason}},
                   f"locking server {server_id}")

    def unlock(self, server_id: str) -> None:
        self._post(f"/servers/{server_id}/action", {"unlock": None},
                   f"unlocking server {server_id}")

    def stop(self, server_id: str) -> None:
        self._post(f"/servers/{server_id}/action", {"os-stop": None},
                   f"stopping server {server_id}")

    def start(self, server_id: str) -> None:
        self._post(f"/servers/{server_id}/action", {"os-start": None},
                   f"starting server {server_id}")

    def delete(self, server_id: str) -> None:
        try:
            self.requests += 1
            self.compute.delete(f"/servers/{server_id}")
        except exceptions.ClientException as error:
            raise _translate(error, f"deleting server {server_id}") from None


def facts_from_body(server: Mapping[str, Any]) -> ServerFacts:
    """A Nova server body (microversion 2.73) as policy facts."""
    return ServerFacts(
        id=server["id"],
        name=server.get("name") or "",
        status=server.get("status") or "UNKNOWN",
        created=parse_api_time(server["created"]),
        metadata=server.get("metadata") or {},
        project_id=server.get("tenant_id") or "",
        user_id=server.get("user_id") or "",
        task_state=server.get("OS-EXT-STS:task_state"),
        locked=bool(server.get("locked")),
        locked_reason=server.get("locked_reason"),
        vcpus=int((server.get("flavor") or {}).get("vcpus") or 0),
    )

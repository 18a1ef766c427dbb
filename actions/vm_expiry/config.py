"""The pack's configuration: one typed model, its defaults, and validation naming the key.

The same keys come from a YAML file (``load_file``) or a Mistral environment dict
(``from_mapping``). Every bad value raises ``ConfigError`` whose message names the key, e.g.
``configuration key 'reminder_days[1]': must be a whole number of days above 0, got -7``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import yaml

from vm_expiry.errors import ConfigError

DEFAULT_PATH = "/etc/vm-expiry/vm-expiry.yaml"
CONFIG_PATH_VARIABLE = "VM_EXPIRY_CONFIG"
SECRET_KEYS = frozenset({"secret_key", "mail.password", "cloud.auth.password"})


EXEMPT_PROJECT_TAG = "vm-expiry-exempt"


@dataclass(frozen=True)
class ProjectSelector:
    """Which Keystone projects expiry applies to: all properties must match, all tags present,
    and no administrator put the exemption tag on the project."""

    properties: Mapping[str, str] = field(
        default_factory=lambda: {"type": "personal", "expire": "on"}
    )
    tags: tuple[str, ...] = ()

    def matches(self, project: Mapping[str, Any]) -> bool:
        """Whether a Keystone project (as the API returns it) is selected."""
        project_tags = set(project.get("tags") or ())
        if EXEMPT_PROJECT_TAG in project_tags:
            return False
        return all(str(project.get(k)) == v for k, v in self.properties.items()) and set(
            self.tags
        ) <= project_tags


@dataclass(frozen=True)
class Exemptions:
    """Projects, users and servers (ids) that expiry never touches."""

    projects: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    servers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MailConfig:
    """SMTP delivery and the addresses every mail carries."""

    host: str = "localhost"
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "cloud-ops@localhost"
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    horizon_url: str | None = None
    templates_dir: str | None = None
    timeout_seconds: int = 30


@dataclass(frozen=True)
class CloudConfig:
    """The pack's own service credentials: a clouds.yaml entry or an auth dict."""

    name: str | None = None
    auth: Mapping[str, str] | None = field(default=None, repr=False)
    region_name: str | None = None
    interface: str = "public"


@dataclass(frozen=True)
class Config:
    """Every setting of the pack. Durations are whole days."""

    secret_key: str = field(repr=False)
    lifetime_days: int = 90
    prolong_days: int = 30
    reminder_days: tuple[int, ...] = (14, 7, 1)
    grace_days: int = 14
    min_notice_days: int = 14
    max_lifetime_days: int | None = None
    max_deletions_per_run: int = 10
    project_selector: ProjectSelector = field(default_factory=ProjectSelector)
    exempt: Exemptions = field(default_factory=Exemptions)
    mail: MailConfig = field(default_factory=MailConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    max_steps_per_run: int = 5000
    batch_size: int = 200
    apply_concurrency: int = 4
    simulated_time: bool = False

    def fingerprint(self) -> str:
        """A digest of every value, secrets included, that names this configuration."""
        canonical = json.dumps(_plain(dataclasses.asdict(self)), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def public_view(self) -> dict[str, Any]:
        """The configuration as plain data with secrets replaced by ``***``."""
        return _redact(_plain(dataclasses.asdict(self)), "")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list | frozenset | set):
        items = [_plain(v) for v in value]
        return sorted(items) if isinstance(value, frozenset | set) else items
    return value


def _redact(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            dotted = f"{path}.{key}" if path else key
            # The model calls it `sender`; the file calls it `from`.
            shown = "from" if dotted == "mail.sender" else key
            secret = dotted in SECRET_KEYS and item is not None
            out[shown] = "***" if secret else _redact(item, dotted)
        return out
    return value


# --- loading --------------------------------------------------------------------------------


def load_file(path: str | os.PathLike[str]) -> Config:
    """Read and validate a YAML configuration file."""
    location = Path(path)
    try:
        text = location.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError("(file)", f"cannot read {location}: {error.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError("(file)", f"{location} is not valid YAML{where}") from None
    if document is None:
        document = {}
    return from_mapping(document)


def runtime_path() -> Path:
    """Where the actions read their configuration on a Mistral host."""
    return Path(os.environ.get(CONFIG_PATH_VARIABLE, DEFAULT_PATH))


_cache: dict[Path, tuple[float, Config]] = {}


def load_runtime() -> Config:
    """The Mistral host's configuration, re-read whenever the file changes."""
    path = runtime_path()
    try:
        mtime = path.stat().st_mtime
    except OSError:
        raise ConfigError(
            "(file)", f"{path} does not exist; set {CONFIG_PATH_VARIABLE} or create it"
        ) from None
    cached = _cache.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    config = load_file(path)
    _cache[path] = (mtime, config)
    return config


def from_mapping(raw: Any) -> Config:
    """Validate a mapping of configuration keys (a YAML document or a Mistral environment)."""
    reader = _Reader(raw, "")
    secret_key = reader.string("secret_key", required=True)
    if len(secret_key) < 16:
        raise ConfigError("secret_key", "must be at least 16 characters long")
    config = Config(
        secret_key=secret_key,
        lifetime_days=reader.days("lifetime_days", 90, minimum=1),
        prolong_days=reader.days("prolong_days", 30, minimum=1),
        reminder_days=reader.reminder_days("reminder_days", (14, 7, 1)),
        grace_days=reader.days("grace_days", 14, minimum=1),
        min_notice_days=reader.days("min_notice_days", 14, minimum=1),
        max_lifetime_days=reader.optional_days("max_lifetime_days"),
        max_deletions_per_run=reader.days("max_deletions_per_run", 10, minimum=0, unit="items"),
        project_selector=_project_selector(reader.section("project_selector")),
        exempt=_exemptions(reader.section("exempt")),
        mail=_mail(reader.section("mail")),
        cloud=_cloud(reader.section("cloud")),
        max_steps_per_run=reader.days("max_steps_per_run", 5000, minimum=1, unit="items"),
        batch_size=reader.days("batch_size", 200, minimum=1, unit="items"),
        apply_concurrency=reader.days("apply_concurrency", 4, minimum=1, unit="items"),
        simulated_time=reader.boolean("simulated_time", False),
    )
    reader.reject_unknown()
    _check_consistency(config)
    return config


def _check_consistency(config: Config) -> None:
    for index, stage in enumerate(config.reminder_days):
        key = f"reminder_days[{index}]"
        if stage >= config.lifetime_days:
            raise ConfigError(
                key, f"{stage} days is not before expiry of a new server (lifetime_days "
                f"is {config.lifetime_days})"
            )
        if stage >= config.prolong_days:
            raise ConfigError(
                key, f"{stage} days would fall due at once after a prolong (prolong_days "
                f"is {config.prolong_days})"
            )
    if config.min_notice_days < min(config.reminder_days):
        raise ConfigError(
            "min_notice_days",
            f"{config.min_notice_days} leaves no reminder stage before expiry "
            f"(smallest reminder is {min(config.reminder_days)} days)",
        )
    if config.max_lifetime_days is not None and config.max_lifetime_days < config.lifetime_days:
        raise ConfigError(
            "max_lifetime_days",
            f"{config.max_lifetime_days} is below lifetime_days ({config.lifetime_days})",
        )


def _project_selector(reader: _Reader) -> ProjectSelector:
    default = ProjectSelector()
    properties = reader.string_map("properties", default.properties)
    tags = reader.string_list("tags", ())
    reader.reject_unknown()
    if not properties and not tags:
        raise ConfigError(
            reader.key("properties"), "an empty selector would apply expiry to every project"
        )
    return ProjectSelector(properties=properties, tags=tags)


def _exemptions(reader: _Reader) -> Exemptions:
    exempt = Exemptions(
        projects=frozenset(reader.string_list("projects", ())),
        users=frozenset(reader.string_list("users", ())),
        servers=frozenset(reader.string_list("servers", ())),
    )
    reader.reject_unknown()
    return exempt


def _mail(reader: _Reader) -> MailConfig:
    default = MailConfig()
    mail = MailConfig(
        host=reader.string("host", default=default.host),
        port=reader.days("port", default.port, minimum=1, unit="port"),
        starttls=reader.boolean("starttls", default.starttls),
        username=reader.optional_string("username"),
        password=reader.optional_string("password"),
        sender=reader.address("from", default.sender),
        cc=tuple(reader.address_list("cc")),
        bcc=tuple(reader.address_list("bcc")),
        horizon_url=reader.optional_string("horizon_url"),
        templates_dir=reader.optional_string("templates_dir"),
        timeout_seconds=reader.days("timeout_seconds", 30, minimum=1, unit="seconds"),
    )
    reader.reject_unknown()
    if mail.port > 65535:
        raise ConfigError(reader.key("port"), f"{mail.port} is not a TCP port")
    if mail.templates_dir is not None and not Path(mail.templates_dir).is_dir():
        raise ConfigError(reader.key("templates_dir"), f"{mail.templates_dir} is not a folder")
    return mail


def _cloud(reader: _Reader) -> CloudConfig:
    name = reader.optional_string("name")
    auth = reader.string_map("auth", None) if "auth" in reader.raw else None
    cloud = CloudConfig(
        name=name,
        auth=auth,
        region_name=reader.optional_string("region_name"),
        interface=reader.string("interface", default="public"),
    )
    reader.reject_unknown()
    if name and auth:
        raise ConfigError(
            reader.key("auth"), "give either 'name' (clouds.yaml) or 'auth', not both"
        )
    if auth is not None and "auth_url" not in auth:
        raise ConfigError(reader.key("auth.auth_url"), "is required with 'auth'")
    return cloud


class _Reader:
    """Reads typed values from one mapping, remembering which keys it consumed."""

    def __init__(self, raw: Any, prefix: str) -> None:
        if not isinstance(raw, Mapping):
            where = prefix or "(top level)"
            raise ConfigError(where, f"must be a mapping of keys, got {type(raw).__name__}")
        self.raw = raw
        self.prefix = prefix
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def _get(self, name: str) -> Any:
        self.seen.add(name)
        return self.raw.get(name)

    def reject_unknown(self) -> None:
        unknown = sorted(str(k) for k in self.raw if k not in self.seen)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "is not a known configuration key")

    def section(self, name: str) -> _Reader:
        value = self._get(name)
        return _Reader({} if value is None else value, self.key(name))

    def days(self, name: str, default: int, *, minimum: int, unit: str = "days") -> int:
        value = self._get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            noun = {"days": "number of days", "port": "port number"}.get(unit, f"number of {unit}")
            raise ConfigError(
                self.key(name), f"must be a whole {noun} of at least {minimum}, got {value!r}"
            )
        return value

    def optional_days(self, name: str) -> int | None:
        if self.raw.get(name) is None:
            self.seen.add(name)
            return None
        return self.days(name, 0, minimum=1)

    def reminder_days(self, name: str, default: tuple[int, ...]) -> tuple[int, ...]:
        value = self._get(name)
        if value is None:
            return default
        if not isinstance(value, list) or not value:
            raise ConfigError(self.key(name), f"must be a non-empty list of days, got {value!r}")
        stages = []
        for index, stage in enumerate(value):
            if isinstance(stage, bool) or not isinstance(stage, int) or stage < 1:
                raise ConfigError(
                    f"{self.key(name)}[{index}]",
                    f"must be a whole number of days above 0 (reminders come before expiry), "
                    f"got {stage!r}",
                )
            if stage in stages:
                raise ConfigError(f"{self.key(name)}[{index}]", f"{stage} is listed twice")
            stages.append(stage)
        return tuple(sorted(stages, reverse=True))

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), f"must be true or false, got {value!r}")
        return value

    def string(self, name: str, *, default: str | None = None, required: bool = False) -> str:
        value = self._get(name)
        if value is None:
            if required or default is None:
                raise ConfigError(self.key(name), "is required")
            return default
        return self._checked_string(self.key(name), value)

    def optional_string(self, name: str) -> str | None:
        value = self._get(name)
        return None if value is None else self._checked_string(self.key(name), value)

    @staticmethod
    def _checked_string(key: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            hint = " (quote it in YAML: 'on')" if isinstance(value, bool) else ""
            raise ConfigError(key, f"must be a non-empty string, got {value!r}{hint}")
        return value

    def string_map(
        self, name: str, default: Mapping[str, str] | None
    ) -> Mapping[str, str] | None:
        value = self._get(name)
        if value is None:
            return default
        if not isinstance(value, Mapping):
            raise ConfigError(self.key(name), f"must be a mapping, got {value!r}")
        return {
            str(k): self._checked_string(f"{self.key(name)}.{k}", v) for k, v in value.items()
        }

    def string_list(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._get(name)
        if value is None:
            return default
        if not isinstance(value, list):
            raise ConfigError(self.key(name), f"must be a list, got {value!r}")
        return tuple(
            self._checked_string(f"{self.key(name)}[{i}]", item) for i, item in enumerate(value)
        )

    def address(self, name: str, default: str) -> str:
        value = self._get(name)
        if value is None:
            return default
        return _checked_address(self.key(name), value)

    def address_list(self, name: str) -> list[str]:
        value = self._get(name)
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(self.key(name), f"must be a list of addresses, got {value!r}")
        return [_checked_address(f"{self.key(name)}[{i}]", a) for i, a in enumerate(value)]


def _checked_address(key: str, value: Any) -> str:
    if not isinstance(value, str) or "\r" in value or "\n" in value:
        raise ConfigError(key, f"must be one e-mail address on one line, got {value!r}")
    _, address = parseaddr(value)
    if "@" not in address or address.startswith("@") or address.endswith("@"):
        raise ConfigError(key, f"{value!r} is not an e-mail address")
    return value

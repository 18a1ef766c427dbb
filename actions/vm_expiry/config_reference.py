"""The configuration reference, generated from the model so that it cannot drift from it.

``vm-expiry config reference`` prints it; docs/configuration.md holds a copy that a test keeps
equal to this output.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterator
from typing import Any

from vm_expiry.config import SECRET_KEYS, Config, load_file, runtime_path

DESCRIPTIONS = {
    "secret_key": "Key of the HMAC seal over each server's expiry metadata (at least 16 "
                  "characters). Changing it makes every seal invalid: servers are repaired to "
                  "what a prolong would give.",
    "lifetime_days": "A new server expires this many days after its creation.",
    "prolong_days": "A prolong sets the expiry to now plus this many days.",
    "reminder_days": "Days before expiry at which one reminder each is sent; several due at "
                     "once send only the most urgent.",
    "grace_days": "Days between the expiry (lock, shut down, mail) and the deletion.",
    "min_notice_days": "Servers older than the pack get at least this much notice.",
    "max_lifetime_days": "If set, no prolong goes beyond creation plus this many days.",
    "max_deletions_per_run": "Circuit breaker: at most this many deletions per sweep; the rest "
                             "wait for the next sweep.",
    "project_selector.properties": "Keystone project properties that must all match for expiry "
                                   "to apply (quote 'on' and 'off' in YAML).",
    "project_selector.tags": "Keystone project tags that must all be present.",
    "exempt.projects": "Project ids never touched.",
    "exempt.users": "User ids whose servers are never touched.",
    "exempt.servers": "Server ids never touched.",
    "mail.host": "SMTP server.",
    "mail.port": "SMTP port.",
    "mail.starttls": "Upgrade the SMTP connection with STARTTLS (verified against the system's "
                     "CA store; SSL_CERT_FILE for a private CA).",
    "mail.username": "SMTP login, if the server needs one.",
    "mail.password": "SMTP password.",
    "mail.from": "Sender address of every mail.",
    "mail.cc": "Addresses copied on every mail.",
    "mail.bcc": "Addresses blind-copied on every mail (envelope only).",
    "mail.horizon_url": "Dashboard URL; mails link to the server's page there.",
    "mail.templates_dir": "Folder of templates overriding the packaged ones, file by file.",
    "mail.timeout_seconds": "SMTP timeout per operation.",
    "cloud.name": "clouds.yaml entry (on the Mistral hosts) with the pack's service "
                  "credentials.",
    "cloud.auth": "Or the credentials themselves: auth_url, username, password, project_name, "
                  "user_domain_name, project_domain_name.",
    "cloud.region_name": "Region of the endpoints to use.",
    "cloud.interface": "Endpoint interface: public, internal or admin.",
    "max_steps_per_run": "At most this many steps per sweep (keeps a sweep's Mistral context "
                         "small); the rest wait for the next sweep.",
    "batch_size": "Steps per Mistral with-items item (one vm_expiry.apply action).",
    "apply_concurrency": "Servers handled at once inside one batch.",
    "simulated_time": "Accept `now` from callers of vm_expiry.prolong: for labs and demos only.",
}
FILE_NAMES = {"mail.sender": "mail.from"}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(names) + ", optional"
    if origin in (tuple, frozenset, list):
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is not None and "Mapping" in str(origin):
        return "mapping"
    return {str: "string", int: "integer", bool: "boolean"}.get(annotation, str(annotation))


def rows() -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, description) for every key of the model, in file order."""
    yield from _rows(Config, "")


def _rows(model: type, prefix: str) -> Iterator[tuple[str, str, str, str]]:
    hints = typing.get_type_hints(model)
    for item in dataclasses.fields(model):
        key = FILE_NAMES.get(f"{prefix}{item.name}", f"{prefix}{item.name}")
        hint = hints[item.name]
        if dataclasses.is_dataclass(hint):
            yield from _rows(hint, f"{key}.")
            continue
        if item.default is not dataclasses.MISSING:
            default = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        else:
            default = "required"
        shown = _shown(default, key)
        yield key, _type_name(hint), shown, DESCRIPTIONS[key]


def _shown(default: Any, key: str) -> str:
    if key in SECRET_KEYS or default is None:
        return "" if default != "required" else "required"
    if isinstance(default, frozenset):
        default = sorted(default)
    if isinstance(default, tuple | list):
        return "[" + ", ".join(str(v) for v in default) + "]"
    if isinstance(default, dict):
        return ", ".join(f"{k}={v}" for k, v in default.items())
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def markdown() -> str:
    """The reference as a Markdown table."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the configuration model by `vm-expiry config reference`; a test keeps",
        "this file equal to its output. Keys with a dot are nested (`mail.host` is `host` under",
        "`mail:`). Check a file with `vm-expiry config check FILE`.",
        "",
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| `{k}` | {t} | {d} | {m} |" for k, t, d, m in rows()]
    return "\n".join(lines) + "\n"


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``config reference`` and ``config check``."""
    config = commands.add_parser("config", help="the configuration reference, or check a file")
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    actions.add_parser("reference", help="print every key, its type and default").set_defaults(
        handler=lambda args: print(markdown(), end="") or 0)
    check = actions.add_parser("check", help="validate a configuration file")
    check.add_argument("file", nargs="?", help="default: $VM_EXPIRY_CONFIG or "
                       "/etc/vm-expiry/vm-expiry.yaml")
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    path = args.file or runtime_path()
    config = load_file(path)
    print(f"{path}: valid (fingerprint {config.fingerprint()})")
    return 0

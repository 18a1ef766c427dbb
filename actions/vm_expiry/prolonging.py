"""Prolonging a server on its owner's request, with ownership proven by Nova itself."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from vm_expiry.cloud import Cloud, Forbidden, Identity, NotFound, token_session
from vm_expiry.config import Config
from vm_expiry.errors import VmExpiryError
from vm_expiry.policy import ProlongRefused, prolong
from vm_expiry.sweep import Applier, write_state
from vm_expiry.timeutil import format_time


def prolong_server(
    cloud: Cloud, config: Config, identity: Identity, token: str, server_id: str, now: datetime
) -> Mapping[str, Any]:
    """Prolong ``server_id`` for the caller behind ``token`` (validated as ``identity``).

    A non-admin's right to the server is established by asking Nova with the caller's own
    token: Nova only shows a member the servers of their project. The change itself is made
    with the pack's service credentials (an expired server is locked by an admin).
    """
    if not identity.is_admin:
        users_view = Cloud(token_session(cloud.compute_endpoint(), token))
        owned = users_view.get_server(server_id)
        if owned.project_id != identity.project_id:
            raise NotFound(f"server {server_id}: not found")
    facts = cloud.get_server(server_id)
    project = cloud.project(facts.project_id)
    if not config.project_selector.matches(project):
        raise Forbidden(
            f"refused: expiry does not apply to project {project.get('name') or facts.project_id}"
        )
    try:
        result = prolong(facts, config, now)
    except ProlongRefused as refusal:
        raise VmExpiryError(f"refused: {refusal}") from None
    write_state(cloud, facts, result.new_state, config.secret_key)
    if result.unlock:
        cloud.unlock(facts.id)
    if result.start:
        cloud.start(facts.id)
    error = Applier(cloud, config, now, dry_run=False).mail(
        "prolonged", facts, project, result.new_state, None
    )
    assert result.new_state.expire_at is not None
    return {
        "server": facts.id,
        "name": facts.name,
        "expire_at": format_time(result.new_state.expire_at),
        "previous_expire_at": (
            format_time(result.previous_expire_at) if result.previous_expire_at else None
        ),
        "capped": result.capped,
        "unlocked": result.unlock,
        "started": result.start,
        "mail": "sent" if error is None else f"failed: {error}",
    }

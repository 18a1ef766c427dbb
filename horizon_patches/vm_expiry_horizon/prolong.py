"""Start ``vm_expiry.prolong`` in Mistral as the logged-in user and wait briefly for it.

Whether the user may prolong, and to which date, is decided by the workflow; Horizon only asks.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from mistralclient.api import client as mistral_client
from openstack_dashboard.api import base

from vm_expiry.timeutil import parse_metadata_time

WORKFLOW = "vm_expiry.prolong"
SERVICE_TYPE = "workflowv2"
FINISHED = ("SUCCESS", "ERROR", "CANCELLED")
POLL_INTERVAL = 0.25
DEFAULT_WAIT = 5.0


@dataclass(frozen=True)
class ProlongResult:
    """The execution as last seen: finished (SUCCESS, ERROR, CANCELLED) or still running."""

    execution_id: str
    state: str
    expire_at: datetime | None = None
    error: str = ""


def client_for(request: HttpRequest) -> Any:
    """A Mistral client acting with the user's own token and project.

    The user's token (not a service account) is what lets the workflow check that the
    user may touch the server.
    """
    return mistral_client.client(
        auth_token=request.user.token.id,
        project_id=request.user.tenant_id,
        mistral_url=base.url_for(request, SERVICE_TYPE),
        insecure=getattr(settings, "OPENSTACK_SSL_NO_VERIFY", False),
        cacert=getattr(settings, "OPENSTACK_SSL_CACERT", None),
    )


def prolong(request: HttpRequest, server_id: str) -> ProlongResult:
    """Start the prolong of ``server_id`` and poll it for up to ``VM_EXPIRY_PROLONG_WAIT`` s.

    Exceptions from Mistral (unreachable, refused, no endpoint) propagate to the caller.
    """
    client = client_for(request)
    execution = client.executions.create(WORKFLOW, workflow_input={"server": server_id})
    deadline = time.monotonic() + float(getattr(settings, "VM_EXPIRY_PROLONG_WAIT",
                                                DEFAULT_WAIT))
    while execution.state not in FINISHED and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
        execution = client.executions.get(execution.id)
    return _result(execution)


def _result(execution: Any) -> ProlongResult:
    if execution.state != "SUCCESS":
        return ProlongResult(execution.id, execution.state,
                             error=str(getattr(execution, "state_info", "") or ""))
    output = execution.output
    if isinstance(output, str):
        output = json.loads(output or "{}")
    expire_at = output.get("expire_at") if isinstance(output, dict) else None
    return ProlongResult(execution.id, execution.state,
                         expire_at=parse_metadata_time(expire_at or ""))

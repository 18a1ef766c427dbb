"""The expiry state a server carries in its metadata, and the HMAC seal that vouches for it.

Keys (see docs/design.md): ``expire_at``, ``expire_state``, ``expire_delete_at`` are readable
mirrors; ``expire_seal`` holds the same values and a MAC over them and the server id, so that a
user who edits their server's metadata is detected and the last values the pack wrote survive.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from vm_expiry.timeutil import format_time, parse_metadata_time

EXPIRE_AT = "expire_at"
STATE = "expire_state"
DELETE_AT = "expire_delete_at"
SEAL = "expire_seal"
PACK_KEYS = (EXPIRE_AT, STATE, DELETE_AT, SEAL)
SEAL_VERSION = "v1"
NEVER = "never"
LOCK_REASON_PREFIX = "vm-expiry:"


class Phase(str, Enum):
    """Where a server is in its expiry lifecycle."""

    ACTIVE = "active"
    REMINDED = "reminded"
    EXPIRED = "expired"
    EXEMPT = "exempt"


@dataclass(frozen=True)
class ExpiryState:
    """What the pack knows about one server. ``expire_at`` is None only when exempt."""

    phase: Phase
    expire_at: datetime | None
    reminded_stage: int | None = None
    delete_at: datetime | None = None

    @property
    def state_text(self) -> str:
        """The ``expire_state`` value."""
        if self.phase is Phase.REMINDED:
            return f"reminded-{self.reminded_stage}"
        return self.phase.value

    def mirrors(self) -> dict[str, str]:
        """The readable keys as they should appear in metadata (absent keys omitted)."""
        values = {
            EXPIRE_AT: NEVER if self.expire_at is None else format_time(self.expire_at),
            STATE: self.state_text,
        }
        if self.delete_at is not None:
            values[DELETE_AT] = format_time(self.delete_at)
        return values

    def to_metadata(self, server_id: str, secret_key: str) -> dict[str, str]:
        """Every pack key to write for this state, the seal included."""
        values = self.mirrors()
        values[SEAL] = _seal(server_id, values, secret_key)
        return values


def _seal_body(values: Mapping[str, str]) -> str:
    return "|".join(
        (SEAL_VERSION, values[EXPIRE_AT], values[STATE], values.get(DELETE_AT, "-"))
    )


def _mac(server_id: str, body: str, secret_key: str) -> str:
    digest = hmac.new(
        secret_key.encode(), f"{server_id}|{body}".encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _seal(server_id: str, values: Mapping[str, str], secret_key: str) -> str:
    body = _seal_body(values)
    return f"{body}|{_mac(server_id, body, secret_key)}"


@dataclass(frozen=True)
class Reading:
    """The state a server's metadata vouches for, and how far its mirrors can be trusted.

    ``sealed`` is the state under a valid seal (None if there is none); ``intact`` says the
    mirrors equal it; ``problem`` says in words what is wrong when something is.
    """

    sealed: ExpiryState | None
    intact: bool
    has_pack_keys: bool
    problem: str | None = None


def read_state(server_id: str, metadata: Mapping[str, str], secret_key: str) -> Reading:
    """Check a server's metadata against its seal."""
    present = [key for key in PACK_KEYS if key in metadata]
    if not present:
        return Reading(sealed=None, intact=True, has_pack_keys=False)
    seal = metadata.get(SEAL)
    if not isinstance(seal, str):
        return Reading(None, False, True, "expiry keys present but the seal is missing")
    parts = seal.split("|")
    if len(parts) != 5 or parts[0] != SEAL_VERSION:
        return Reading(None, False, True, "the seal is malformed")
    body = "|".join(parts[:4])
    if not hmac.compare_digest(_mac(server_id, body, secret_key), parts[4]):
        return Reading(None, False, True, "the seal does not match (edited, or another server's)")
    sealed = _parse_sealed(parts[1], parts[2], parts[3])
    if sealed is None:
        # A valid MAC over values the pack cannot have written: a different secret_key era.
        return Reading(None, False, True, "the sealed values are not understood")
    expected = sealed.mirrors()
    actual = {key: metadata[key] for key in (EXPIRE_AT, STATE, DELETE_AT) if key in metadata}
    if actual != expected:
        changed = sorted(k for k in set(expected) | set(actual) if expected.get(k) != actual.get(k))
        return Reading(sealed, False, True, f"edited outside the pack: {', '.join(changed)}")
    return Reading(sealed, True, True)


def _parse_sealed(expire_text: str, state_text: str, delete_text: str) -> ExpiryState | None:
    delete_at = None if delete_text == "-" else parse_metadata_time(delete_text)
    if delete_text != "-" and delete_at is None:
        return None
    if state_text == Phase.EXEMPT.value:
        return ExpiryState(Phase.EXEMPT, None) if expire_text == NEVER else None
    expire_at = parse_metadata_time(expire_text)
    if expire_at is None:
        return None
    if state_text == Phase.ACTIVE.value and delete_at is None:
        return ExpiryState(Phase.ACTIVE, expire_at)
    if state_text == Phase.EXPIRED.value and delete_at is not None:
        return ExpiryState(Phase.EXPIRED, expire_at, delete_at=delete_at)
    prefix = f"{Phase.REMINDED.value}-"
    if state_text.startswith(prefix) and state_text[len(prefix):].isdigit() and delete_at is None:
        return ExpiryState(Phase.REMINDED, expire_at, reminded_stage=int(state_text[len(prefix):]))
    return None


@dataclass(frozen=True)
class Display:
    """What a dashboard shows about a server, read from the mirrors alone (no secret needed)."""

    expire_at: datetime | None
    phase: str
    delete_at: datetime | None


def display_state(metadata: Mapping[str, str]) -> Display | None:
    """The mirrors as a dashboard shows them; None when the pack does not manage the server."""
    if EXPIRE_AT not in metadata and STATE not in metadata:
        return None
    state_text = str(metadata.get(STATE, ""))
    phase = state_text.split("-", 1)[0] if state_text else "unknown"
    return Display(
        expire_at=parse_metadata_time(str(metadata.get(EXPIRE_AT, ""))),
        phase=phase if phase in {p.value for p in Phase} else "unknown",
        delete_at=parse_metadata_time(str(metadata.get(DELETE_AT, ""))),
    )


def lock_reason(expire_at: datetime) -> str:
    """The ``locked_reason`` the pack sets, which also tells later sweeps the lock is its own."""
    return f"{LOCK_REASON_PREFIX} expired {format_time(expire_at)}; prolong to unlock"


def locked_by_pack(locked: bool, reason: str | None) -> bool:
    """Whether a server's lock is the pack's own."""
    return locked and bool(reason) and str(reason).startswith(LOCK_REASON_PREFIX)

"""Shared builders for policy tests: servers as facts, and a minimal history simulator."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from vm_expiry.config import Config, from_mapping
from vm_expiry.policy import ServerFacts, Step, StepKind, decide
from vm_expiry.state import ExpiryState, lock_reason, read_state

SECRET = "test-secret-key-0123456789"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def make_config(**overrides: object) -> Config:
    """A valid configuration with the spec's defaults and ``overrides``."""
    return from_mapping({"secret_key": SECRET, **overrides})


def make_server(**overrides: object) -> ServerFacts:
    """An ACTIVE, unlocked server created at T0 with no metadata."""
    values: dict[str, object] = {
        "id": "srv-1", "name": "web", "status": "ACTIVE", "created": T0, "metadata": {},
        "project_id": "p1", "user_id": "u1",
    }
    values.update(overrides)
    return ServerFacts(**values)  # type: ignore[arg-type]


@dataclass
class SimServer:
    """One server whose metadata, lock and power state a simulated sweep changes."""

    facts: ServerFacts
    deleted_at: datetime | None = None
    mails: list[tuple[datetime, str, str]] = field(default_factory=list)
    locks: list[datetime] = field(default_factory=list)

    def apply(self, step: Step, now: datetime, config: Config, mail_ok: bool) -> None:
        """Carry out a step the way the actions do, with mail delivery succeeding or not."""
        facts = self.facts
        if step.kind in (StepKind.MARK, StepKind.REPAIR):
            self._write(step.new_state, config)
        elif step.kind is StepKind.REMIND:
            if mail_ok:
                self.mails.append((now, "reminder", str(step.stage)))
                self._write(step.new_state, config)
            elif step.state_if_mail_fails:
                self._write(step.state_if_mail_fails, config)
        elif step.kind is StepKind.EXPIRE:
            assert step.new_state is not None
            if step.lock:
                self.locks.append(now)
                reason = lock_reason(step.new_state.expire_at)
                facts = replace(facts, locked=True, locked_reason=reason)
            if step.stop:
                facts = replace(facts, status="SHUTOFF")
            self.facts = facts
            if mail_ok:
                self.mails.append((now, "expired", ""))
                self._write(step.new_state, config)
            elif step.state_if_mail_fails:
                self._write(step.state_if_mail_fails, config)
        elif step.kind is StepKind.DELETE:
            self.deleted_at = now

    def _write(self, state: ExpiryState | None, config: Config) -> None:
        assert state is not None
        metadata = {k: v for k, v in self.facts.metadata.items() if not k.startswith("expire_")}
        metadata.update(state.to_metadata(self.facts.id, config.secret_key))
        self.facts = replace(self.facts, metadata=metadata)

    def sealed(self, config: Config):
        """The state the server's seal vouches for."""
        return read_state(self.facts.id, self.facts.metadata, config.secret_key).sealed

    def sweep(self, now: datetime, config: Config, mail_ok: bool = True) -> Step:
        """Decide and apply one step, as one sweep does for this server."""
        step = decide(self.facts, config, now)
        self.apply(step, now, config, mail_ok)
        return step

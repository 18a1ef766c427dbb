"""Random histories of the whole pack, checked after every step (hypothesis, stateful).

A history drives the REAL sweep (``sweep.plan`` + ``sweep.Applier`` + ``sweep.summarize``) and the
REAL prolong (``prolonging.prolong_server``, ownership checked with the caller's own token) over
the in-memory Keystone + Nova, with mail going to a real SMTP server. Rules: sweeps at advancing
and occasionally skewed times, repeated sweeps, prolongs by the owner, by another project's user
and by an admin, owners editing their server's metadata (only while it is unlocked: Nova refuses
otherwise), admin exemptions (the sealed ``exempt`` state, or the configuration's list), Nova
and Keystone faults for the next sweep, and SMTP refusing mail.

Invariants, after every step:

- no delete before the sealed ``expire_at + grace_days``, nor before ``grace_days`` after the
  delivered expiry mail, nor without a delivered reminder; at most ``max_deletions_per_run``;
- no lock without a delivered reminder (mail seen by the SMTP server since the last prolong),
  and not before the sealed ``expire_at``;
- no duplicate mail: the same Message-ID (a hash of server, event, expire_at and stage) is
  delivered at most once, except in the documented window (a metadata write failed right after
  the mail was accepted) and after the owner destroyed the seal (the pack then knows nothing and
  starts the reminders again, see docs/design.md);
- nothing happens to an exempt server (configuration list, or a valid sealed exemption), and a
  sealed exemption exists only where an admin made it (a forged one never counts);
- a prolong gives exactly ``min(now + prolong_days, created + max_lifetime_days)``, never more;
  a refused prolong, or one by a user of another project, changes nothing and sends nothing;
- a sweep that cannot list completely changes nothing and sends nothing;
- servers of projects where expiry does not apply are never touched;
- after a clean sweep every managed server carries a valid seal and intact mirrors, and a
  repeated sweep or a sweep at an earlier ``now`` changes nothing and sends nothing.

``HISTORIES`` (env ``VM_EXPIRY_HISTORIES``) sets how many histories run; ``tools/run_histories.py``
runs 10,000.
"""

from __future__ import annotations

import atexit
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import requests
import requests_mock
from aiosmtpd.controller import Controller
from fake_cloud import FakeCloud, FakeServer, Fault
from hypothesis import HealthCheck, settings
from hypothesis import Phase as Stage
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)
from mail_sink import MailSink
from policy_helpers import SECRET, T0

from vm_expiry import cloud as cloud_module
from vm_expiry import sweep
from vm_expiry.cloud import Cloud, CloudError, NotFound
from vm_expiry.config import Config, MailConfig, from_mapping
from vm_expiry.errors import ConfigError, VmExpiryError
from vm_expiry.mail.render import MailRenderer
from vm_expiry.policy import lifetime_cap
from vm_expiry.prolonging import prolong_server
from vm_expiry.state import ExpiryState, Phase, locked_by_pack, read_state
from vm_expiry.timeutil import days

HISTORIES = int(os.environ.get("VM_EXPIRY_HISTORIES", "200"))
STEPS = int(os.environ.get("VM_EXPIRY_HISTORY_STEPS", "15"))
SHRINK = os.environ.get("VM_EXPIRY_HISTORY_SHRINK", "1") != "0"
PAGE_SIZE = 2  # several pages, so that a fault can hit the middle of a listing

_sink: tuple[MailSink, int] | None = None


def shared_sink() -> tuple[MailSink, int]:
    """One real SMTP server for every history (starting one per history costs more than it)."""
    global _sink
    if _sink is None:
        sink = MailSink()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        controller = Controller(sink, hostname="127.0.0.1", port=port)
        controller.start()
        atexit.register(controller.stop)
        _sink = (sink, port)
    return _sink


_renderers: dict[MailConfig, MailRenderer] = {}


def cached_renderer(mail_config: MailConfig) -> MailRenderer:
    """The real renderer, built once per mail configuration: compiling the templates for every
    batch would be most of a history's time."""
    if mail_config not in _renderers:
        _renderers[mail_config] = MailRenderer(mail_config)
    return _renderers[mail_config]


@dataclass
class Snap:
    """What a sweep or a prolong can change on one server."""

    metadata: dict[str, str]
    locked: bool
    locked_reason: str | None
    status: str

    @classmethod
    def of(cls, server: FakeServer) -> Snap:
        return cls(dict(server.metadata), server.locked, server.locked_reason, server.status)


@dataclass
class Tracked:
    """What the test knows about one server from outside the pack."""

    name: str
    email: str
    token: str
    created: datetime
    last_prolong: datetime | None = None
    reminders_since_prolong: int = 0
    expired_mail_at: datetime | None = None
    admin_exempt: bool = False
    mail_ids: set[str] = field(default_factory=set)


class ExpiryHistories(RuleBasedStateMachine):
    """One history: a small cloud and a configuration drawn at the start."""

    servers = Bundle("servers")
    ran = 0  # histories started in this process (tools/run_histories.py reports it)

    def __init__(self) -> None:
        super().__init__()
        type(self).ran += 1
        self.mocker = requests_mock.Mocker()
        self.mocker.start()
        self.cloud = FakeCloud(self.mocker)
        self.sink, self.port = shared_sink()
        self.sink.messages.clear()
        self.sink.refuse = False
        self._time = cloud_module.time
        cloud_module.time = SimpleNamespace(sleep=lambda seconds: None)  # no backoff waits
        self._renderer = sweep.MailRenderer
        sweep.MailRenderer = cached_renderer  # type: ignore[assignment,misc]
        self.now = T0
        self.tracked: dict[str, Tracked] = {}
        self.config_exempt: set[str] = set()
        self.raw_config: dict[str, Any] = {}
        self.config: Config | None = None
        self.pending_faults: list[tuple[str, str, dict[str, Any], str | None]] = []
        self.installed: list[Fault] = []
        self.smtp_refuses = False
        self.settled = False
        self.may_repeat: set[str] = set()  # Message-IDs whose recording failed
        self.untouched: dict[str, Snap] = {}

    def teardown(self) -> None:
        self.mocker.stop()
        cloud_module.time = self._time
        sweep.MailRenderer = self._renderer  # type: ignore[misc]
        self.sink.refuse = False

    # --- set-up ---------------------------------------------------------------------------

    @initialize(
        target=servers,
        lifetime=st.sampled_from([20, 45, 90]),
        prolong_days=st.sampled_from([15, 30, 60]),
        grace=st.sampled_from([1, 7, 14]),
        stages=st.sampled_from([(14, 7, 1), (7, 1), (3,), (10, 2)]),
        cap_extra=st.sampled_from([None, 0, 30, 200]),
        max_deletions=st.sampled_from([1, 2, 10]),
        ages=st.lists(st.integers(0, 24 * 200), min_size=4, max_size=4),
    )
    def set_up(self, lifetime: int, prolong_days: int, grace: int, stages: tuple[int, ...],
               cap_extra: int | None, max_deletions: int, ages: list[int]) -> Any:
        self.raw_config = {
            "secret_key": SECRET,
            "lifetime_days": lifetime,
            "prolong_days": prolong_days,
            "grace_days": grace,
            "reminder_days": list(stages),
            "min_notice_days": max(stages),
            "max_lifetime_days": None if cap_extra is None else lifetime + cap_extra,
            "max_deletions_per_run": max_deletions,
            "mail": {"host": "127.0.0.1", "port": self.port, "from": "ops@cloud.test"},
        }
        try:
            self.config = from_mapping(self.raw_config)
        except ConfigError:  # e.g. a reminder stage not below prolong_days: use safe stages
            self.raw_config["reminder_days"] = [1]
            self.raw_config["min_notice_days"] = 1
            self.config = from_mapping(self.raw_config)
        personal = self.cloud.add_project("alice")
        other = self.cloud.add_project("bob")
        shared = self.cloud.add_project("team", selected=False)
        ids = []
        homes = (personal, personal, other)
        for index, (project, age) in enumerate(zip(homes, ages, strict=False)):
            name = f"owner{index}"
            user, token = self.cloud.add_user(name, f"{name}@example.org", project)
            created = T0 - timedelta(hours=age)
            server = self.cloud.add_server(f"vm{index}", project, user, created)
            self.tracked[server.id] = Tracked(f"vm{index}", f"{name}@example.org", token, created)
            ids.append(server.id)
        user, _ = self.cloud.add_user("teamer", "teamer@example.org", shared)
        team = self.cloud.add_server("team-vm", shared, user, T0 - timedelta(hours=ages[3]))
        self.untouched[team.id] = Snap.of(team)
        _, self.outsider = self.cloud.add_user("mallory", "mallory@example.org",
                                               self.cloud.add_project("mallory"))
        _, self.admin = self.cloud.add_user("admin", "admin@example.org", "admin",
                                            roles=("admin",))
        return multiple(*ids)

    # --- helpers --------------------------------------------------------------------------

    @property
    def cfg(self) -> Config:
        assert self.config is not None
        return self.config

    def snapshot(self) -> dict[str, Snap]:
        return {sid: Snap.of(s) for sid, s in self.cloud.servers.items()}

    def sealed(self, snap: Snap, sid: str) -> ExpiryState | None:
        return read_state(sid, snap.metadata, SECRET).sealed

    def new_mails(self, start: int) -> list[Any]:
        return list(self.sink.messages[start:])

    def server_of(self, message: Any) -> str:
        to = str(message["To"])
        [sid] = [sid for sid, t in self.tracked.items() if t.email in to]
        return sid

    @staticmethod
    def event_of(message: Any) -> str:
        subject = str(message["Subject"])
        for marker, event in (("has been deleted", "deleted"), ("has expired", "expired"),
                              ("now expires", "prolonged"), ("expires", "reminder")):
            if marker in subject:
                return event
        raise AssertionError(f"unknown mail {subject!r}")

    def record_mails(self, mails: list[Any], now: datetime, before: Mapping[str, Snap],
                     after: Mapping[str, Snap], write_failed: set[str]) -> None:
        """Check each new mail against the duplicate rule and remember what it was."""
        for message in mails:
            sid = self.server_of(message)
            assert str(message["To"]) == self.tracked[sid].email
            event = self.event_of(message)
            mid = str(message["Message-ID"])
            delivered = self.tracked[sid].mail_ids
            if mid in delivered:
                assert mid in self.may_repeat, f"duplicate mail {mid} ({event}) for {sid}"
                self.may_repeat.discard(mid)
            delivered.add(mid)
            if sid in write_failed:
                self.may_repeat.add(mid)
            tracked = self.tracked[sid]
            if event == "reminder":
                tracked.reminders_since_prolong += 1
            elif event == "expired":
                tracked.expired_mail_at = now

    def install_faults(self) -> set[str]:
        """The faults drawn for this sweep; the servers whose metadata writes fail."""
        write_failed: set[str] = set()
        self.installed = []
        for method, pattern, kwargs, sid in self.pending_faults:
            self.installed.append(self.cloud.fail(method, pattern, **kwargs))
            if sid is not None and "metadata" in pattern:
                write_failed.add(sid)
        self.sink.refuse = self.smtp_refuses
        return write_failed

    def clear_faults(self) -> bool:
        faulty = bool(self.pending_faults) or self.smtp_refuses
        self.cloud.faults.clear()
        self.pending_faults = []
        self.smtp_refuses = False
        self.sink.refuse = False
        return faulty

    # --- the sweep and its checks ---------------------------------------------------------

    def sweep_at(self, now: datetime) -> dict[str, Any] | None:
        before = self.snapshot()
        start = len(self.sink.messages)
        write_failed = self.install_faults()
        summary: dict[str, Any] | None = None
        try:
            planned = sweep.plan(Cloud(self.cloud.session()), self.cfg, now, PAGE_SIZE)
            results = [sweep.Applier(Cloud(self.cloud.session()), self.cfg, now, False)
                       .apply(batch) for batch in planned["batches"]]
            summary = sweep.summarize(planned, results, False)
        except CloudError:
            pass
        # A listing fault that fired and never stopped firing (a fault on the second page does
        # not fire when the servers left fit on one page).
        listing_broken = any("detail" in f.pattern and f.times is None and f.fired
                             for f in self.installed)
        faulty = self.clear_faults()
        after = self.snapshot()
        mails = self.new_mails(start)
        if summary is None:
            # A sweep that could not plan (listing, projects or owners unreadable) did nothing.
            assert after == before and not mails, "a failed plan still acted"
        else:
            assert not listing_broken, "a broken listing was planned on"
        self.check_sweep(now, before, after, mails, write_failed)
        self.record_mails(mails, now, before, after, write_failed)
        clean = summary is not None and not faulty and not any(
            per.get("failed") for per in summary["outcomes"].values()
        ) and summary["deletions_waiting"] == 0 and summary["steps_waiting"] == 0
        if clean:
            self.check_clean(after)
        self.settled = clean
        return summary

    def check_sweep(self, now: datetime, before: Mapping[str, Snap], after: Mapping[str, Snap],
                    mails: list[Any], write_failed: set[str]) -> None:
        mailed = {self.server_of(m) for m in mails}
        deleted = [sid for sid in before if sid not in after]
        assert len(deleted) <= self.cfg.max_deletions_per_run
        for sid, snap in self.untouched.items():
            assert after.get(sid) == snap, "a server of a non-selected project was touched"
        for sid, old in before.items():
            if sid not in self.tracked:
                continue
            new = after.get(sid)
            tracked = self.tracked[sid]
            sealed_before = self.sealed(old, sid)
            exempt = sid in self.config_exempt or (
                sealed_before is not None and sealed_before.phase is Phase.EXEMPT)
            if exempt:
                assert new is not None, "an exempt server was deleted"
                assert (new.locked, new.status) == (old.locked, old.status), "exempt, acted on"
                assert sid not in mailed, "an exempt server's owner got mail"
                if sid in self.config_exempt:
                    assert new.metadata == old.metadata
                else:
                    assert self.sealed(new, sid) == sealed_before
            if new is None:
                assert sealed_before is not None and sealed_before.phase is Phase.EXPIRED
                assert sealed_before.expire_at is not None and sealed_before.delete_at is not None
                assert now >= sealed_before.expire_at + days(self.cfg.grace_days), "early delete"
                assert now >= sealed_before.delete_at, "delete before expire_delete_at"
                assert tracked.expired_mail_at is not None, "delete without a delivered expiry"
                assert now >= tracked.expired_mail_at + days(self.cfg.grace_days)
                assert tracked.reminders_since_prolong > 0, "delete without a reminder"
                assert locked_by_pack(old.locked, old.locked_reason) and old.status == "SHUTOFF"
                continue
            if new.locked and not old.locked:
                assert tracked.reminders_since_prolong > 0, "lock without a delivered reminder"
                assert sealed_before is not None and sealed_before.expire_at is not None
                assert now >= sealed_before.expire_at, "locked before expire_at"
            sealed_after = self.sealed(new, sid)
            if sealed_after is not None and sealed_after.phase is Phase.EXEMPT:
                assert tracked.admin_exempt, "a sealed exemption no admin made"

    def check_clean(self, after: Mapping[str, Snap]) -> None:
        """After a sweep without faults, every managed server's state is sound."""
        for sid, snap in after.items():
            if sid not in self.tracked or sid in self.config_exempt:
                continue
            reading = read_state(sid, snap.metadata, SECRET)
            assert reading.sealed is not None and reading.intact, (sid, reading.problem)

    # --- rules ----------------------------------------------------------------------------

    @rule(hours=st.integers(1, 24 * 25))
    def sweep_later(self, hours: int) -> None:
        self.now += timedelta(hours=hours)
        self.sweep_at(self.now)

    @rule()
    def repeat_sweep(self) -> None:
        was_settled = self.settled
        before, start = self.snapshot(), len(self.sink.messages)
        self.sweep_at(self.now)
        if was_settled:
            assert self.snapshot() == before and len(self.sink.messages) == start, \
                "a repeated sweep did something"

    @rule(hours=st.integers(1, 24 * 60))
    def skewed_sweep(self, hours: int) -> None:
        """The clock goes back for one sweep (and forward again afterwards)."""
        was_settled = self.settled
        before, start = self.snapshot(), len(self.sink.messages)
        self.sweep_at(self.now - timedelta(hours=hours))
        if was_settled:
            assert self.snapshot() == before and len(self.sink.messages) == start, \
                "a sweep at an earlier now moved something"
        self.settled = False

    @rule(sid=servers, who=st.sampled_from(["owner", "owner", "outsider", "admin"]))
    def prolong(self, sid: str, who: str) -> None:
        tracked = self.tracked[sid]
        token = {"owner": tracked.token, "outsider": self.outsider, "admin": self.admin}[who]
        before, start = self.snapshot(), len(self.sink.messages)
        api = Cloud(self.cloud.session())
        try:
            identity = api.validate_token(token)
            result: Mapping[str, Any] | None = prolong_server(
                api, self.cfg, identity, token, sid, self.now)
        except NotFound:
            result = None
            assert who == "outsider" or sid not in before
        except VmExpiryError:
            result = None
            assert who != "outsider", "an outsider learnt more than 'not found'"
        after, mails = self.snapshot(), self.new_mails(start)
        self.settled = False
        if result is None:
            assert after == before and not mails, "a refused prolong changed something"
            return
        assert who != "outsider" and sid in before
        cap = lifetime_cap(self.facts_created(sid), self.cfg)
        target = self.now + days(self.cfg.prolong_days)
        if cap is not None:
            assert cap > self.now, "prolonged past the lifetime cap"
            target = min(target, cap)
        state = self.sealed(after[sid], sid)
        assert state is not None and state.phase is Phase.ACTIVE
        assert state.expire_at == target, "prolong gave another date than configured"
        assert not locked_by_pack(after[sid].locked, after[sid].locked_reason)
        tracked.last_prolong = self.now
        tracked.reminders_since_prolong = 0
        tracked.expired_mail_at = None
        self.record_mails(mails, self.now, before, after, set())

    def facts_created(self, sid: str) -> Any:
        return SimpleNamespace(created=self.tracked[sid].created)

    @rule(sid=servers, how=st.sampled_from([
        "far_future", "delete_expire_at", "garbage", "forge_exempt_state", "forge_reminded",
        "forge_expired", "wipe_all", "forge_full_exemption", "copy_other_seal",
        "edit_delete_at"]))
    def owner_edits_metadata(self, sid: str, how: str) -> None:
        server = self.cloud.servers.get(sid)
        if server is None or server.locked:  # Nova: a locked server's metadata is read-only
            return
        meta = server.metadata
        if how == "far_future":
            meta["expire_at"] = "2999-01-01T00:00:00Z"
        elif how == "delete_expire_at":
            meta.pop("expire_at", None)
        elif how == "garbage":
            meta["expire_at"] = "soon\r\nBcc: x@evil.test"
        elif how == "forge_exempt_state":
            meta["expire_state"] = "exempt"
        elif how == "forge_reminded":
            meta["expire_state"] = "reminded-1"
        elif how == "forge_expired":
            meta.update(expire_state="expired", expire_delete_at="2000-01-01T00:00:00Z")
        elif how == "wipe_all":
            for key in [k for k in meta if k.startswith("expire_")]:
                del meta[key]
        elif how == "forge_full_exemption":
            meta.update(expire_at="never", expire_state="exempt",
                        expire_seal="v1|never|exempt|-|AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        elif how == "copy_other_seal":
            others = [s for s in self.cloud.servers.values() if s.id != sid and s.metadata]
            if others:
                meta.update({k: v for k, v in others[0].metadata.items()
                             if k.startswith("expire_")})
        elif how == "edit_delete_at":
            meta["expire_delete_at"] = "2000-01-01T00:00:00Z"
        self.settled = False
        if read_state(sid, meta, SECRET).sealed is None:
            # The owner destroyed the seal: the pack no longer knows which mails went out and
            # starts the reminders again (docs/design.md), possibly for the same date.
            self.tracked[sid].mail_ids.clear()

    @rule(sid=servers)
    def admin_exempts_server(self, sid: str) -> None:
        """What ``vm_expiry.exempt`` does: the sealed state ``exempt``, the pack's lock undone."""
        server = self.cloud.servers.get(sid)
        if server is None:
            return
        api = Cloud(self.cloud.session())
        facts = api.get_server(sid)
        sweep.write_state(api, facts, ExpiryState(Phase.EXEMPT, None), SECRET)
        if locked_by_pack(facts.locked, facts.locked_reason):
            api.unlock(sid)
        self.tracked[sid].admin_exempt = True
        self.settled = False

    @rule(sid=servers)
    def operator_exempts_in_configuration(self, sid: str) -> None:
        self.config_exempt.add(sid)
        self.raw_config["exempt"] = {"servers": sorted(self.config_exempt)}
        self.config = from_mapping(self.raw_config)
        self.settled = False

    @rule(sid=servers, kind=st.sampled_from([
        "listing-503", "listing-dropped-mid-way", "listing-timeout", "listing-transient",
        "projects-500", "owner-lookup-503", "reread-500", "metadata-write-503",
        "action-503", "delete-500"]))
    def fault_next_sweep(self, sid: str, kind: str) -> None:
        conn = requests.exceptions.ConnectionError
        faults = {
            "listing-503": ("GET", r"/servers/detail", {"status": 503}, None),
            "listing-dropped-mid-way": ("GET", r"/servers/detail.*marker=", {"exc": conn}, None),
            "listing-timeout": ("GET", r"/servers/detail",
                                {"exc": requests.exceptions.ReadTimeout}, None),
            "listing-transient": ("GET", r"/servers/detail", {"status": 503, "times": 2}, None),
            "projects-500": ("GET", r"/v3/projects$", {"status": 500}, None),
            "owner-lookup-503": ("GET", r"/v3/users/", {"status": 503}, None),
            "reread-500": ("GET", rf"/servers/{sid}$", {"status": 500}, sid),
            "metadata-write-503": ("POST", rf"/servers/{sid}/metadata", {"status": 503}, sid),
            "action-503": ("POST", rf"/servers/{sid}/action", {"status": 503}, sid),
            "delete-500": ("DELETE", rf"/servers/{sid}$", {"status": 500}, sid),
        }
        self.pending_faults.append(faults[kind])

    @rule()
    def smtp_refuses_next_sweep(self) -> None:
        self.smtp_refuses = True

    @precondition(lambda self: self.config is not None)
    @invariant()
    def non_selected_servers_untouched(self) -> None:
        for sid, snap in self.untouched.items():
            assert Snap.of(self.cloud.servers[sid]) == snap


ExpiryHistories.TestCase.settings = settings(
    max_examples=HISTORIES,
    stateful_step_count=STEPS,
    deadline=None,
    phases=[p for p in Stage if SHRINK or p is not Stage.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestExpiryHistories = ExpiryHistories.TestCase

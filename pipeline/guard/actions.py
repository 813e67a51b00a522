"""Session actions: decided from the stream's evidence bundles, held by enforcement points.

`ActionDecider` reads bundles (the evidence topic): a bundle at or above a profile rule's
severity for one of its categories, or a session whose bundles add up past the profile's
`session_risk`, puts the session under an action (block, read-only tools, safe fallback) for a
while. Drills never act. A grant's categories do not count; an action a grant changed carries
the grant's id. Record ids are stable per (session, bundle, action), so a replayed bundle
issues the same record again, not a second action.

`ActionBook` is what an enforcement point (the guard, `oodwatch guard-proxy`, any gateway that
reads the `actions` topic) holds: per session, the unexpired, unlifted actions; the strictest
one applies. Expiry is checked when asked, so an action ends on time with nothing to process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.guard.grants import GrantBook
from pipeline.policy import Profile, RoutingPolicy
from schemas.evidence import EvidenceBundle, Severity
from schemas.guard import ActionKind, GuardAction, SessionAction, action_record_id, strictest

log = logging.getLogger(__name__)

#: What a bundle adds to its session's risk.
SEVERITY_WEIGHT = {Severity.LOW: 0.25, Severity.MEDIUM: 0.5, Severity.HIGH: 1.0, Severity.CRITICAL: 2.0}
#: Span/event attributes that name the end user (the guard sets the first).
USER_ATTRIBUTES = ("enduser.id", "user.id", "gen_ai.user.id")
MINUTE_NS = 60 * 1_000_000_000


def user_of(bundle: EvidenceBundle) -> str:
    for event in bundle.events:
        for key in USER_ATTRIBUTES:
            if event.attributes.get(key):
                return event.attributes[key]
    return ""


class ActionDecider:
    def __init__(self, policy: RoutingPolicy, grants: GrantBook, *, max_sessions: int = 100_000) -> None:
        self.policy = policy
        self.grants = grants
        self.max_sessions = max_sessions
        self._risk: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def _decayed(self, session_id: str, profile: Profile, now_ns: int) -> float:
        risk, at_ns = self._risk.get(session_id, (0.0, now_ns))
        if profile.session_risk is None or now_ns <= at_ns:
            return risk
        return float(risk * 0.5 ** ((now_ns - at_ns) / 1e9 / profile.session_risk.half_life_s))

    def _outcome(
        self, bundle: EvidenceBundle, profile: Profile, categories: Sequence[str], risk: float
    ) -> tuple[GuardAction, float, str]:
        """(action, minutes, why) for these categories and this accumulated risk."""
        best: tuple[GuardAction, float, str] = (GuardAction.ALLOW, 0.0, "")
        bases = {c.removeprefix("tier2:").split("/", 1)[0] for c in categories}
        for rule in profile.session_actions:
            if bundle.severity.rank < rule.min_severity.rank or not bases:
                continue
            if rule.categories and not bases & set(rule.categories):
                continue
            why = f"{bundle.severity.value} bundle flagging {', '.join(sorted(bases))}"
            best = _stricter(best, (rule.action, rule.minutes, why))
        limit = profile.session_risk
        if limit is not None and bases and risk >= limit.at:
            best = _stricter(best, (limit.action, limit.minutes, f"session risk {risk:.2f} >= {limit.at:.2f}"))
        return best

    def on_bundle(self, bundle: EvidenceBundle, now_ns: int | None = None) -> SessionAction | None:
        """Actions run from the bundle's creation (event time), so a replayed or late bundle gives
        the same action, and one whose action would already have ended gives none."""
        if bundle.drill_id:
            return None
        current = time.time_ns() if now_ns is None else now_ns
        now = bundle.created_ns if 0 < bundle.created_ns <= current else current
        guard = self.policy.guard
        profile_name, profile = guard.profile_for(bundle.tenant)
        grants = self.grants.covering(bundle.tenant, bundle.service, user_of(bundle), current)
        relaxed = {c: g.grant_id for c in bundle.categories if (g := self.grants.relaxing(grants, c)) is not None}
        remaining = [c for c in bundle.categories if c not in relaxed]
        risk = self._decayed(bundle.session_id, profile, now)
        if remaining:
            risk += SEVERITY_WEIGHT.get(bundle.severity, 0.5)
        self._risk[bundle.session_id] = (risk, now)
        self._risk.move_to_end(bundle.session_id)
        if len(self._risk) > self.max_sessions:
            self._risk.popitem(last=False)
        action, minutes, why = self._outcome(bundle, profile, remaining, risk)
        grant_id = None
        if relaxed:
            unrelaxed_risk = risk if remaining else risk + SEVERITY_WEIGHT.get(bundle.severity, 0.5)
            unrelaxed = self._outcome(bundle, profile, bundle.categories, unrelaxed_risk)
            if unrelaxed[0] is not action:
                grant_id = ",".join(sorted(set(relaxed.values())))
        if action is GuardAction.ALLOW or now + int(minutes * MINUTE_NS) <= current:
            if grant_id:
                log.info("session action relaxed by grant", extra={"session_id": bundle.session_id, "grant": grant_id})
            return None
        return SessionAction(
            record_id=action_record_id(bundle.session_id, bundle.bundle_id, action.value),
            session_id=bundle.session_id,
            tenant=bundle.tenant,
            service=bundle.service,
            action=action,
            reason=why,
            bundle_id=bundle.bundle_id,
            categories=tuple(remaining),
            grant_id=grant_id,
            profile=profile_name,
            policy_version=self.policy.version,
            issued_ns=now,
            expires_ns=now + int(minutes * MINUTE_NS),
        )


def _stricter(a: tuple[GuardAction, float, str], b: tuple[GuardAction, float, str]) -> tuple[GuardAction, float, str]:
    return max(a, b, key=lambda x: (x[0].rank, x[1]))


class ActionBook:
    """Per session, the actions in force. Bounded: the least recently touched sessions go first."""

    def __init__(self, *, max_sessions: int = 100_000, clock: Callable[[], int] = time.time_ns) -> None:
        self.max_sessions = max_sessions
        self.clock = clock
        self._by_session: OrderedDict[str, dict[str, SessionAction]] = OrderedDict()
        self._session_of: dict[str, str] = {}
        self.records = 0

    def apply(self, record: SessionAction) -> None:
        self.records += 1
        if record.kind is ActionKind.LIFT:
            session = self._session_of.pop(record.lifts or "", record.session_id)
            held = self._by_session.get(session)
            if held is not None:
                held.pop(record.lifts or "", None)
            return
        if not record.active(self.clock()):
            return
        held = self._by_session.setdefault(record.session_id, {})
        held[record.record_id] = record
        self._session_of[record.record_id] = record.session_id
        self._by_session.move_to_end(record.session_id)
        while len(self._by_session) > self.max_sessions:
            _, dropped = self._by_session.popitem(last=False)
            for record_id in dropped:
                self._session_of.pop(record_id, None)

    def active(self, session_id: str, now_ns: int | None = None) -> SessionAction | None:
        """The strictest action in force for the session now."""
        held = self._by_session.get(session_id)
        if not held:
            return None
        now = self.clock() if now_ns is None else now_ns
        for record_id in [r for r, a in held.items() if not a.active(now)]:
            del held[record_id]
            self._session_of.pop(record_id, None)
        if not held:
            return None
        top = strictest(*(a.action for a in held.values()))
        return max((a for a in held.values() if a.action is top), key=lambda a: a.expires_ns)

    def snapshot(self) -> dict[str, Any]:
        return {"sessions": len(self._by_session), "records": self.records}


async def follow_actions(
    bootstrap: str, topic: str, book: ActionBook, *, ready: asyncio.Event | None = None,
    options: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    """Keep `book` current from the actions topic until cancelled: every partition, from the
    start (records expire; a compacted topic keeps it short), reconnecting when the broker goes."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    delay = 0.5
    while True:
        consumer = AIOKafkaConsumer(
            **(options or {}), bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=100,
        )  # fmt: skip
        try:
            await consumer.start()
            await consumer.topics()  # a metadata read, so the topic's partitions are known
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                raise RuntimeError(f"topic {topic!r} has no partitions yet")
            consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
            await consumer.seek_to_beginning()
            if ready is not None:
                ready.set()
            delay = 0.5
            while True:
                polled = await consumer.getmany(timeout_ms=500, max_records=1000)
                for records in polled.values():
                    for record in records:
                        try:
                            book.apply(SessionAction.model_validate_json(record.value))
                        except ValueError:
                            log.warning("actions topic: not a SessionAction at offset %d; skipped", record.offset)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("following %s failed (%s: %s); retrying in %.1f s", topic, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        finally:
            await consumer.stop()

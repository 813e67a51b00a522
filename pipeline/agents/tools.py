"""tools: the tool registry and description pins, from tool definitions seen in spans.

The screen agent sends a sighting per tool identity (service, server, tool) when its
description is new to that worker or a minute has passed (`SightingFilter`). Sightings are
keyed by identity, so one worker owns each tool's pin whatever sessions showed it. The first
description seen is pinned; a different one later is a rug pull: an escalation carrying both
descriptions and their diff, raised once per new description. Registry rows (first seen, last
seen, hashes, declared scope and signer from signed manifests) go to the store.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from pipeline.agents.stage import Outbox
from pipeline.policy import RoutingPolicy
from schemas.envelope import EnvelopeCodec
from schemas.events import LLMEvent
from schemas.evidence import CategoryScore, Decision, Escalation, Screening, Severity
from schemas.tools import ToolPin, ToolRegistryRow, ToolSighting, description_diff, description_hash, tool_identity

STAGE = "tools"
RUG_PULL = "tool_rug_pull"
DETECTOR = "tool-pins"
REFRESH_NS = 60 * 1_000_000_000
SIGHTINGS = EnvelopeCodec(ToolSighting)
REGISTRY = EnvelopeCodec(ToolRegistryRow)
ESCALATIONS = EnvelopeCodec(Escalation)
#: (server, tool) -> (declared scope, signer key id), from verified signed manifests.
Declared = Mapping[tuple[str, str], tuple[str, str]]


class SightingFilter:
    """Tool definitions ride on every chat span of an agent; the registry needs one sighting per
    tool and description a minute, not one per call. Bounded: the oldest entries go first."""

    def __init__(self, every_ns: int = REFRESH_NS, max_entries: int = 100_000) -> None:
        self.every_ns = every_ns
        self.max_entries = max_entries
        self._sent: OrderedDict[tuple[str, str], int] = OrderedDict()

    def select(self, events: Sequence[LLMEvent], now_ns: int) -> list[ToolSighting]:
        sightings = []
        for event in events:
            for tool in event.tool_definitions:
                # The key is cheap; the sighting (schema JSON, the event copy) only when it is sent.
                key = (
                    tool_identity(event.service, tool.server or "", tool.name, event.drill_id),
                    description_hash(tool.description),
                )
                if now_ns - self._sent.get(key, -self.every_ns) < self.every_ns:
                    continue
                self._sent[key] = now_ns
                self._sent.move_to_end(key)
                if len(self._sent) > self.max_entries:
                    self._sent.popitem(last=False)
                sightings.append(ToolSighting.of(event, tool, now_ns))
        return sightings


class ToolPins:
    """Pins per tool identity in a table (a Faust table in the worker; values are JSON dicts)."""

    def __init__(self, policy: RoutingPolicy, declared: Declared | None = None) -> None:
        self.policy = policy
        self.declared = dict(declared or {})

    def observe(
        self, sightings: Sequence[ToolSighting], pins: MutableMapping[str, Any]
    ) -> tuple[list[ToolRegistryRow], list[Escalation]]:
        rows: list[ToolRegistryRow] = []
        escalations: list[Escalation] = []
        for sighting in sightings:
            stored = pins.get(sighting.identity)
            pin = ToolPin.model_validate(stored) if stored else None
            if pin is None:
                pin = ToolPin(
                    pinned_hash=sighting.description_hash, description=sighting.description,
                    first_seen_ns=sighting.seen_ns, last_seen_ns=sighting.seen_ns,
                )  # fmt: skip
                pins[sighting.identity] = pin.model_dump()
                rows += self._row(sighting, pin)
                continue
            changed = sighting.description_hash != pin.pinned_hash
            if changed and sighting.description_hash not in pin.alerted:
                escalations.append(self._rug_pull(sighting, pin))
                pin = pin.model_copy(update={"alerted": (*pin.alerted, sighting.description_hash)[-16:]})
            elif sighting.seen_ns - pin.last_seen_ns < REFRESH_NS:
                continue
            pin = pin.model_copy(update={"last_seen_ns": max(pin.last_seen_ns, sighting.seen_ns)})
            pins[sighting.identity] = pin.model_dump()
            rows += self._row(sighting, pin)
        return rows, escalations

    def _row(self, sighting: ToolSighting, pin: ToolPin) -> list[ToolRegistryRow]:
        """Drills test the pins in a namespace of their own; the registry holds real tools only."""
        if sighting.event.drill_id:
            return []
        scope, signer = self.declared.get((sighting.server, sighting.tool), ("", ""))
        return [ToolRegistryRow(
            service=sighting.service, server=sighting.server, tool=sighting.tool,
            description_hash=sighting.description_hash, description=sighting.description,
            input_schema=sighting.input_schema, scope=scope, signer=signer, pinned_hash=pin.pinned_hash,
            first_seen_ns=pin.first_seen_ns, last_seen_ns=max(pin.last_seen_ns, sighting.seen_ns),
        )]  # fmt: skip

    def _rug_pull(self, sighting: ToolSighting, pin: ToolPin) -> Escalation:
        """An escalation of its own (its own event id, so its bundle never collides with the
        screen agent's bundle for the same span, and a replay maps to the same bundle)."""
        digest = hashlib.blake2b(f"{sighting.identity}:{sighting.description_hash}".encode(), digest_size=16)
        event = sighting.event.model_copy(update={"event_id": f"rug-pull-{digest.hexdigest()}"})
        name = "/".join(part for part in (sighting.service, sighting.server, sighting.tool) if part)
        reasons = (
            f"{RUG_PULL}: the description of {name} changed since it was pinned "
            f"(pinned sha256 {pin.pinned_hash[:12]}…, now {sighting.description_hash[:12]}…)",
            "pinned description:\n" + pin.description,
            "diff:\n" + description_diff(pin.description, sighting.description),
        )
        screening = Screening(
            event_id=event.event_id, session_id=event.session_id, trace_id=event.trace_id, service=event.service,
            model=event.model, operation=event.operation,
            scores=(CategoryScore(category=RUG_PULL, score=1.0, threshold=0.5, detector=DETECTOR),),
            decision=Decision.ESCALATE, severity=Severity.HIGH, reasons=reasons, policy_version=self.policy.version,
            detector_versions={DETECTOR: "1"}, drill_id=event.drill_id, received_ns=event.received_ns,
            normalized_ns=event.normalized_ns, screened_ns=time.time_ns(),
        )  # fmt: skip
        return Escalation(event=event, screening=screening)


class ToolsStage:
    """Stage: sightings -> registry rows and rug-pull escalations. The pins table is written in
    `publish` (on the loop); `compute` has nothing to do but is where a bad sighting would fail."""

    name = STAGE
    codec = SIGHTINGS

    def __init__(self, pins: ToolPins, table: MutableMapping[str, Any], topics: Any) -> None:
        self.pins = pins
        self.table = table
        self.topics = topics

    async def compute(self, items: list[ToolSighting]) -> list[None]:
        return [None] * len(items)

    async def publish(self, items: list[ToolSighting], results: Sequence[Any], outbox: Outbox) -> None:
        rows, escalations = self.pins.observe(items, self.table)
        for row in rows:
            outbox.add(self.topics.tool_registry, REGISTRY, row.tool, row)
        for escalation in escalations:
            outbox.add(self.topics.escalations, ESCALATIONS, escalation.event.session_id, escalation)

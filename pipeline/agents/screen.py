"""screen: tier 1 on every event, micro-batched, inference off the event loop.

Detectors score a batch into one matrix [events, columns]; the policy, compiled once against
those columns, routes the matrix; score objects are made only for what is escalated (the
escalation carries a full screening). Every event's screening leaves as a row of a columnar
`ScreeningBatch`, one record per partition of the screenings topic.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import MutableMapping, Sequence
from concurrent.futures import Executor
from typing import Any, Literal

import numpy as np

from detectors.base import MatrixDetector
from detectors.output_profile import screening_fields
from detectors.text import screening_text
from pipeline.agents.common import TopicHandles, log
from pipeline.agents.stage import Outbox
from pipeline.agents.tools import SightingFilter
from pipeline.observability.metrics import StageMetrics
from pipeline.policy import CompiledRouting, RoutingPolicy, SessionRisk
from schemas.envelope import EnvelopeCodec
from schemas.events import LLMEvent
from schemas.evidence import Decision, Escalation, Screening, ScreeningBatch, ScreeningRow
from schemas.tools import ToolSighting
from schemas.trusted import construct

STAGE = "screen"
TextMode = Literal["truncated", "full", "hashed"]
EXCERPT_CHARS = 280
REFERENCE_CHARS = 2000  # beyond what MiniLM reads (256 tokens)

EVENTS = EnvelopeCodec(LLMEvent)
SCREENINGS = EnvelopeCodec(ScreeningBatch)
ESCALATIONS = EnvelopeCodec(Escalation)
SIGHTINGS = EnvelopeCodec(ToolSighting)


def detector_view(events: Sequence[LLMEvent]) -> list[LLMEvent]:
    """Events as detectors see them: without the drill id, so no detector can key on a drill."""
    return [e if e.drill_id is None else e.model_copy(update={"drill_id": None}) for e in events]


class ScoreObjectColumns(MatrixDetector):
    """A detector that still answers with score objects, seen as a matrix. Its columns are read
    once from a probe event (a detector scores the same categories for every event)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.version = inner.version
        probe = LLMEvent(event_id="probe", trace_id="probe", span_id="probe", session_id="probe")
        [scores] = inner.score([probe])
        self.categories = tuple(s.category for s in scores)
        self.thresholds = tuple(s.threshold for s in scores)
        self.detectors = tuple(s.detector for s in scores)

    def score_matrix(self, events: Sequence[LLMEvent]) -> np.ndarray:
        return np.array([[s.score for s in scores] for scores in self.inner.score(events)], dtype=np.float64).reshape(
            len(events), len(self.categories)
        )


def as_matrix(detector: Any) -> Any:
    return detector if callable(getattr(detector, "score_matrix", None)) else ScoreObjectColumns(detector)


class Screener:
    """The tier-1 hot path, built once per worker: detectors, their columns and the compiled policy.

    `score_matrix` is the heavy part and runs off the event loop; `route` reads and writes the
    session table, so it runs on the loop (Faust tables are not thread-safe). Table values are
    `[risk, at_ns]` lists, so they serialise as JSON."""

    def __init__(
        self, detectors: Sequence[Any], policy: RoutingPolicy, reference_sample_rate: float = 0.0,
        text_mode: TextMode = "truncated", text_chars: int = EXCERPT_CHARS, profile_outputs: bool = False,
        output_sample_rate: float = 0.0, output_sample_chars: int = 0,
    ) -> None:  # fmt: skip
        """`text_mode`: how much of each event's text its screening keeps (the store keeps it for
        the screenings' TTL): the last `text_chars` characters, all of it, or only its hash.
        Hashed keeps no text anywhere, so it samples nothing for the reference either.
        `profile_outputs`: every screening carries what version drift reads (output length, the
        refusal detector, tool-call scopes, a sampled output start)."""
        self.detectors = [as_matrix(d) for d in detectors]
        self.policy = policy
        self.versions = {d.name: d.version for d in self.detectors}
        columns = [
            (category, threshold, getattr(d, "detectors", (d.name,) * len(d.categories))[k])
            for d in self.detectors
            for k, (category, threshold) in enumerate(zip(d.categories, d.thresholds, strict=True))
        ]
        self.categories = tuple(c for c, _, _ in columns)
        self.thresholds = tuple(float(t) for _, t, _ in columns)
        self.column_detectors = tuple(d for _, _, d in columns)
        self.routing = CompiledRouting(policy, columns)
        self._sample_below = 0 if text_mode == "hashed" else int(reference_sample_rate * 2**32)
        self.text_mode = text_mode
        self.text_chars = text_chars
        self.profile_outputs = profile_outputs
        self.output_sample_rate = 0.0 if text_mode == "hashed" else output_sample_rate
        self.output_sample_chars = output_sample_chars

    def _excerpt(self, event: LLMEvent) -> str:
        if self.text_mode == "truncated":
            return screening_text(event, self.text_chars)
        text = screening_text(event, None)
        return text if self.text_mode == "full" else "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def _reference_text(self, event: LLMEvent, decision: Decision) -> str | None:
        """Clean live traffic, sampled by event id (so a replay samples the same events)."""
        if decision is not Decision.PASS or event.drill_id or not self._sample_below:
            return None
        if int.from_bytes(hashlib.blake2b(event.event_id.encode(), digest_size=4).digest()) >= self._sample_below:
            return None
        return screening_text(event, REFERENCE_CHARS) or None

    def score_matrix(self, events: Sequence[LLMEvent]) -> np.ndarray:
        visible = detector_view(events)
        if not self.detectors:
            return np.zeros((len(events), 0))
        return np.concatenate([d.score_matrix(visible) for d in self.detectors], axis=1)

    def route(
        self, events: Sequence[LLMEvent], scores: np.ndarray, sessions: MutableMapping[str, Any]
    ) -> tuple[ScreeningBatch, list[Escalation]]:
        """The batch's screenings, and the escalations (escalated and uncertain events) with their
        full screening."""
        screened_ns = time.time_ns()
        flagged, uncertain, high = self.routing.masks(scores)
        touched = np.asarray(flagged.any(axis=1) | uncertain.any(axis=1))
        rows: list[ScreeningRow] = []
        onward: list[int] = []
        reasons: tuple[str, ...]
        profiles = (
            screening_fields(events, sample_rate=self.output_sample_rate, sample_chars=self.output_sample_chars)
            if self.profile_outputs else [{}] * len(events)
        )  # fmt: skip
        for i, event in enumerate(events):
            stored = sessions.get(event.session_id)
            if not touched[i] and not stored:  # most traffic: nothing near a threshold, no history
                decision, severity, reasons = Decision.PASS, None, ()
            else:
                previous = SessionRisk(*stored) if stored else SessionRisk()
                routed = self.routing.decide_row(
                    scores[i], flagged[i], uncertain[i], high[i], previous, event.received_ns or screened_ns
                )
                if routed.session.risk > 0 or previous.risk > 0:  # benign sessions cost no table write
                    sessions[event.session_id] = [routed.session.risk, routed.session.at_ns]
                decision, severity, reasons = routed.decision, routed.severity, routed.reasons
            if decision is not Decision.PASS:
                onward.append(i)
            rows.append(
                construct(
                    ScreeningRow,
                    event_id=event.event_id, session_id=event.session_id, trace_id=event.trace_id,
                    span_id=event.span_id,
                    service=event.service, model=event.model, operation=event.operation,
                    scores=tuple(scores[i].tolist()), decision=decision, severity=severity, reasons=reasons,
                    drill_id=event.drill_id, excerpt=self._excerpt(event),
                    reference_text=self._reference_text(event, decision), received_ns=event.received_ns,
                    normalized_ns=event.normalized_ns, screened_ns=screened_ns, **profiles[i],
                )
            )  # fmt: skip
        batch = self.batch(rows)
        if not onward:
            return batch, []
        full = ScreeningBatch.model_construct(**{**dict(batch), "rows": tuple(rows[i] for i in onward)}).screenings()
        return batch, [Escalation(event=events[i], screening=s) for i, s in zip(onward, full, strict=True)]

    def batch(self, rows: Sequence[ScreeningRow]) -> ScreeningBatch:
        return ScreeningBatch.model_construct(
            categories=self.categories, thresholds=self.thresholds, detectors=self.column_detectors,
            policy_version=self.policy.version, detector_versions=self.versions, rows=tuple(rows),
        )  # fmt: skip

    def wrap_rows(self, rows: list[ScreeningRow]) -> list[ScreeningBatch]:
        """A partition's rows as the one record the screenings topic carries for them."""
        return [self.batch(rows)]

    def screen(self, events: Sequence[LLMEvent], sessions: MutableMapping[str, Any] | None = None) -> list[Any]:
        """Screenings as objects, for tests and tools outside the stream."""
        batch, _ = self.route(events, self.score_matrix(events), {} if sessions is None else sessions)
        return batch.screenings()


def top_category(screening: Screening) -> str:
    """The flagged category with the highest score, for the escalation counter; `session` when
    only the session's accumulated risk escalated it."""
    flagged = [s for s in screening.scores if s.flagged]
    return max(flagged, key=lambda s: s.score).category if flagged else "session"


class ScreenStage:
    """Stage: LLMEvents -> a columnar screenings record per partition, escalations, tool sightings."""

    name = STAGE
    codec = EVENTS

    def __init__(
        self, screener: Screener, topics: TopicHandles, executor: Executor, *,
        sessions: MutableMapping[str, Any] | None = None, sightings: SightingFilter | None = None,
    ) -> None:  # fmt: skip
        """`sessions` is the session-risk table (a Faust table in the worker); `sightings` picks the
        tool definitions to send on to the tools agent (keyed by tool identity)."""
        self.screener = screener
        self.topics = topics
        self.executor = executor
        self.sessions: MutableMapping[str, Any] = {} if sessions is None else sessions
        self.sightings = sightings
        self.metrics = StageMetrics(STAGE)

    async def compute(self, items: list[LLMEvent]) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.screener.score_matrix, items)

    async def publish(self, items: list[LLMEvent], results: Sequence[Any], outbox: Outbox) -> None:
        batch, escalations = self.screener.route(items, np.asarray(results), self.sessions)
        for row in batch.rows:
            outbox.add(self.topics.screenings, SCREENINGS, row.session_id, row, wrap=self.screener.wrap_rows)
            self.metrics.hop_ns("screen", row.normalized_ns, row.screened_ns)
        for escalation in escalations:
            outbox.add(self.topics.escalations, ESCALATIONS, escalation.event.session_id, escalation)
            event, screening = escalation.event, escalation.screening
            self.metrics.escalation("tier1", top_category(screening), screening.decision.value)
            log.info("escalated", extra={"event_id": event.event_id, "session_id": event.session_id})
        if self.sightings is not None:
            for sighting in self.sightings.select(items, time.time_ns()):
                outbox.add(self.topics.tool_sightings, SIGHTINGS, sighting.identity, sighting)

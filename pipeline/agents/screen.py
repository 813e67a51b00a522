"""screen: tier 1 on every event, micro-batched, inference off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import MutableMapping, Sequence
from concurrent.futures import Executor
from typing import Any, Literal

from detectors.base import Detector
from detectors.text import screening_text
from pipeline.agents.common import TopicHandles, dead_letter_batch, decode_batch, log
from pipeline.agents.tools import SightingFilter
from pipeline.observability.metrics import StageMetrics
from pipeline.policy import RoutingPolicy, SessionRisk
from schemas.events import LLMEvent
from schemas.evidence import CategoryScore, Decision, Escalation, Screening

STAGE = "screen"
TextMode = Literal["truncated", "full", "hashed"]
EXCERPT_CHARS = 280
REFERENCE_CHARS = 2000  # beyond what MiniLM reads (256 tokens)


def detector_view(events: Sequence[LLMEvent]) -> list[LLMEvent]:
    """Events as detectors see them: without the drill id, so no detector can key on a drill."""
    return [e if e.drill_id is None else e.model_copy(update={"drill_id": None}) for e in events]


class Screener:
    """The tier-1 hot path, built once per worker: detectors + policy over a batch.

    `score` is the heavy part and runs off the event loop; `route` reads and writes the
    session table, so it runs on the loop (Faust tables are not thread-safe). Table values
    are `[risk, at_ns]` lists, so they serialise as JSON."""

    def __init__(
        self, detectors: Sequence[Detector], policy: RoutingPolicy, reference_sample_rate: float = 0.0,
        text_mode: TextMode = "truncated", text_chars: int = EXCERPT_CHARS,
    ) -> None:  # fmt: skip
        """`text_mode`: how much of each event's text its screening keeps (the store keeps it for
        the screenings' TTL): the last `text_chars` characters, all of it, or only its hash.
        Hashed keeps no text anywhere, so it samples nothing for the reference either."""
        self.detectors = list(detectors)
        self.policy = policy
        self.versions = {d.name: d.version for d in self.detectors}
        self._sample_below = 0 if text_mode == "hashed" else int(reference_sample_rate * 2**32)
        self.text_mode = text_mode
        self.text_chars = text_chars

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

    def score(self, events: Sequence[LLMEvent]) -> list[list[CategoryScore]]:
        per_event: list[list[CategoryScore]] = [[] for _ in events]
        visible = detector_view(events)
        for detector in self.detectors:
            for scores, found in zip(per_event, detector.score(visible), strict=True):
                scores.extend(found)
        return per_event

    def route(
        self, events: Sequence[LLMEvent], scores: Sequence[list[CategoryScore]], sessions: MutableMapping[str, Any]
    ) -> list[Screening]:
        screened_ns = time.time_ns()
        screenings = []
        for event, event_scores in zip(events, scores, strict=True):
            stored = sessions.get(event.session_id)
            previous = SessionRisk(*stored) if stored else SessionRisk()
            routing = self.policy.decide(event_scores, previous, now_ns=event.received_ns or screened_ns)
            if routing.session.risk > 0 or previous.risk > 0:  # benign sessions cost no table write
                sessions[event.session_id] = [routing.session.risk, routing.session.at_ns]
            screenings.append(
                Screening(
                    event_id=event.event_id,
                    session_id=event.session_id,
                    trace_id=event.trace_id,
                    span_id=event.span_id,
                    service=event.service,
                    model=event.model,
                    operation=event.operation,
                    scores=tuple(event_scores),
                    decision=routing.decision,
                    severity=routing.severity,
                    reasons=routing.reasons,
                    policy_version=self.policy.version,
                    detector_versions=self.versions,
                    drill_id=event.drill_id,
                    excerpt=self._excerpt(event),
                    reference_text=self._reference_text(event, routing.decision),
                    received_ns=event.received_ns,
                    normalized_ns=event.normalized_ns,
                    screened_ns=screened_ns,
                )
            )
        return screenings

    def screen(self, events: Sequence[LLMEvent], sessions: MutableMapping[str, Any] | None = None) -> list[Screening]:
        return self.route(events, self.score(events), {} if sessions is None else sessions)


def top_category(screening: Screening) -> str:
    """The flagged category with the highest score, for the escalation counter; `session` when
    only the session's accumulated risk escalated it."""
    flagged = [s for s in screening.scores if s.flagged]
    return max(flagged, key=lambda s: s.score).category if flagged else "session"


async def screen_stream(
    stream: Any,
    topics: TopicHandles,
    screener: Screener,
    executor: Executor,
    *,
    batch_size: int,
    window_s: float,
    sessions: MutableMapping[str, Any] | None = None,
    sightings: SightingFilter | None = None,
) -> None:
    """`sessions` is the session-risk table (a Faust table in the worker); `sightings` picks the
    tool definitions to send on to the tools agent (keyed by tool identity)."""
    session_table: MutableMapping[str, Any] = {} if sessions is None else sessions
    loop = asyncio.get_running_loop()
    stage = StageMetrics(STAGE)
    async for batch in stream.take_events(batch_size, within=window_s):
        stage.records_in(len(batch))
        started = time.perf_counter()
        events, sources = await decode_batch(batch, LLMEvent, topics, STAGE)
        if not events:
            continue
        try:
            scores = await loop.run_in_executor(executor, screener.score, events)
        except Exception as exc:
            await dead_letter_batch(topics, STAGE, sources, exc)
            continue
        screenings = screener.route(events, scores, session_table)
        for llm_event, screening in zip(events, screenings, strict=True):
            key = screening.session_id.encode()
            await topics.screenings.send(key=key, value=screening.model_dump_json().encode())
            stage.hop_ns("screen", screening.normalized_ns, screening.screened_ns)
            if screening.decision is not Decision.PASS:  # uncertain ones get tier 2's second look
                escalation = Escalation(event=llm_event, screening=screening)
                await topics.escalations.send(key=key, value=escalation.model_dump_json().encode())
                stage.escalation("tier1", top_category(screening), screening.decision.value)
                log.info("escalated", extra={"event_id": screening.event_id, "session_id": screening.session_id})
        stage.events_out("screenings", len(screenings))
        stage.events_out("escalations", sum(s.decision is not Decision.PASS for s in screenings))
        stage.batch(len(events), time.perf_counter() - started)
        if sightings is not None:
            for sighting in sightings.select(events, time.time_ns()):
                value = sighting.model_dump_json().encode()
                await topics.tool_sightings.send(key=sighting.identity.encode(), value=value)

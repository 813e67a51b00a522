"""The guard's one contact with tier 1 and with the stream's record shapes: an adapter.

The guard screens an event itself, so the event must not be screened again downstream. It
therefore publishes what the screen stage would have published for it (its `Screening` to the
screenings topic; an `Escalation` to the escalations topic when it is not a pass; tool
sightings for the registry), keyed by session id, instead of sending the event through
`llm-events`. Only an event the guard could not screen (tier 1 failed, or the guard was
overloaded) goes to `llm-events`, so the stream screens it once.

The records are the one-item records the stream still reads beside envelopes; this module is the
only part of the guard that knows the screen stage's shapes.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from pipeline.agents.screen import Screener
from pipeline.agents.tools import SightingFilter
from pipeline.policy import RoutingPolicy
from pipeline.settings import Settings, Topics
from schemas.events import LLMEvent
from schemas.evidence import Decision, Escalation, Screening


class Record(NamedTuple):
    topic: str
    key: bytes
    value: bytes


class Tier1:
    """Tier 1 as a library: the same detectors and policy as the screen stage, built once."""

    def __init__(self, screener: Screener, topics: Topics) -> None:
        self.screener = screener
        self.topics = topics
        self._sightings = SightingFilter()

    @classmethod
    def from_settings(cls, settings: Settings) -> Tier1:
        from pipeline.app import build_screener

        return cls(build_screener(settings), settings.topics)

    @property
    def policy(self) -> RoutingPolicy:
        return self.screener.policy

    @property
    def detector_versions(self) -> dict[str, str]:
        return self.screener.versions

    def score(self, events: Sequence[LLMEvent]) -> np.ndarray:
        """The heavy part: detectors over a batch, one score matrix (run it off the event loop)."""
        return self.screener.score_matrix(events)

    def route(
        self, events: Sequence[LLMEvent], scores: np.ndarray, sessions: MutableMapping[str, Any]
    ) -> list[Screening]:
        """The routing policy with the guard's own session-risk table; screenings as objects (the
        guard decides per event over score objects)."""
        batch, _ = self.screener.route(events, scores, sessions)
        return batch.screenings()

    def stream_records(self, event: LLMEvent, screening: Screening | None, now_ns: int) -> list[Record]:
        """What enters the stream for one guarded event: the screen stage's outputs when the guard
        screened it, else the event itself on `llm-events` for the stream to screen."""
        key = event.session_id.encode()
        if screening is None:
            return [Record(self.topics.llm_events, key, event.model_dump_json().encode())]
        records = [Record(self.topics.screenings, key, screening.model_dump_json().encode())]
        if screening.decision is not Decision.PASS:
            escalation = Escalation(event=event, screening=screening)
            records.append(Record(self.topics.escalations, key, escalation.model_dump_json().encode()))
        for sighting in self._sightings.select([event], now_ns):
            records.append(
                Record(self.topics.tool_sightings, sighting.identity.encode(), sighting.model_dump_json().encode())
            )
        return records

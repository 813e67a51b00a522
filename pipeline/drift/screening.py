"""Interim wiring on the screen side: every screening carries what drift profiles read.

`detectors.output_profile.screening_fields` is the batch call the screen stage should make
when it builds screenings; until the stage loop does (issue 15 rewrites it), the worker wraps
its screener in `DriftFieldsScreener`, which adds the fields after routing.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

from detectors.output_profile import screening_fields
from pipeline.agents.screen import Screener
from pipeline.settings import Settings
from schemas.events import LLMEvent
from schemas.evidence import CategoryScore, Screening


class DriftFieldsScreener(Screener):
    def __init__(self, inner: Screener, *, sample_rate: float, sample_chars: int) -> None:
        self.__dict__.update(inner.__dict__)
        self.sample_rate = sample_rate
        self.sample_chars = sample_chars

    @classmethod
    def wrap(cls, inner: Screener, settings: Settings) -> DriftFieldsScreener:
        """No output text is sampled in the `hashed` text mode (no text is kept anywhere)."""
        hashed = settings.screening_text == "hashed" or not settings.drift.enabled
        rate = 0.0 if hashed else settings.drift.output_sample_rate
        return cls(inner, sample_rate=rate, sample_chars=settings.drift.output_sample_chars)

    def route(
        self, events: Sequence[LLMEvent], scores: Sequence[list[CategoryScore]], sessions: MutableMapping[str, Any]
    ) -> list[Screening]:
        screenings = super().route(events, scores, sessions)
        fields = screening_fields(events, sample_rate=self.sample_rate, sample_chars=self.sample_chars)
        return [s.model_copy(update=f) for s, f in zip(screenings, fields, strict=True)]

"""The batch-first detector protocol every tier implements.

A detector takes a batch of events and returns, per event, its calibrated category
scores (0..1) with the thresholds that judge them; one event is a batch of one.
Detectors load their models once, in their constructor; `score` never does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from schemas.events import LLMEvent
from schemas.evidence import CategoryScore


@runtime_checkable
class Detector(Protocol):
    name: str
    version: str

    def score(self, events: Sequence[LLMEvent]) -> list[tuple[CategoryScore, ...]]:
        """Scores for each event of the batch, in order."""
        ...

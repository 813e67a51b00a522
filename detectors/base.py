"""The batch-first detector protocol every tier-1 detector implements.

A detector names its columns once (`categories`, with the `thresholds` that judge them) and
scores a whole batch into a float matrix [events, columns]: the screen stage routes over the
matrix and makes score objects only for what it reports. `score` (score objects per event) is
the thin per-item view of the same numbers, for tier 2, the judge and tests.
Detectors load their models once, in their constructor; scoring never does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from schemas.events import LLMEvent
from schemas.evidence import CategoryScore


@runtime_checkable
class Detector(Protocol):
    name: str
    version: str

    @property
    def categories(self) -> tuple[str, ...]: ...

    @property
    def thresholds(self) -> tuple[float, ...]: ...

    def score_matrix(self, events: Sequence[LLMEvent]) -> np.ndarray:
        """float64 [len(events), len(categories)], rows in the batch's order."""
        ...

    def score(self, events: Sequence[LLMEvent]) -> list[tuple[CategoryScore, ...]]: ...


class MatrixDetector:
    """What a detector shares: the per-item view built from its matrix."""

    name: str
    version: str
    categories: tuple[str, ...]
    thresholds: tuple[float, ...]

    def score_matrix(self, events: Sequence[LLMEvent]) -> np.ndarray:
        raise NotImplementedError

    def score(self, events: Sequence[LLMEvent]) -> list[tuple[CategoryScore, ...]]:
        matrix = self.score_matrix(events)
        columns = list(zip(self.categories, self.thresholds, strict=True))
        return [
            tuple(
                CategoryScore(category=c, score=float(v), threshold=t, detector=self.name)
                for (c, t), v in zip(columns, row, strict=True)
            )
            for row in matrix
        ]

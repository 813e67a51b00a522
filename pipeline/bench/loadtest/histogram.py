"""A mergeable latency histogram (log-spaced buckets, ~2% relative error), so percentiles from
several generator processes combine exactly, as HDR histograms do."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

RATIO = 1.02
MIN_MS = 0.01


def _bucket(ms: float) -> int:
    return 0 if ms <= MIN_MS else int(math.log(ms / MIN_MS, RATIO)) + 1


def _value(bucket: int) -> float:
    return MIN_MS if bucket == 0 else MIN_MS * RATIO ** (bucket - 0.5)


@dataclass
class Histogram:
    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0

    def add(self, ms: float) -> None:
        key = _bucket(ms)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.total += 1

    def merge(self, other: Histogram) -> Histogram:
        for key, n in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        self.total += other.total
        return self

    def percentile(self, q: float) -> float:
        if not self.total:
            return 0.0
        rank = q * (self.total - 1)
        seen = 0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen > rank:
                return round(_value(key), 3)
        return round(_value(max(self.counts)), 3)

    def summary(self) -> dict[str, float]:
        return {f"p{int(q * 100)}_ms": self.percentile(q) for q in (0.5, 0.95, 0.99)}

"""Timing a batch-first scorer the same way everywhere: medians, never means or single runs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Speed:
    batch_size: int
    events_per_s: float
    p50_ms: float
    batch_p50_ms: float
    batches: int


def measure(score: Callable[[Sequence[Any]], Any], items: Sequence[Any], *, batch_size: int = 256,
            seconds: float = 3.0, singles: int = 500) -> Speed:  # fmt: skip
    """Batch throughput (median batch time, repeated for `seconds`) and per-item latency
    (median of `singles` one-item calls). One warm-up batch first."""
    batches = [items[i : i + batch_size] for i in range(0, len(items) - batch_size + 1, batch_size)]
    if not batches:
        raise ValueError(f"need at least {batch_size} items to time batches of {batch_size}")
    score(batches[0])
    batch_times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for batch in batches:
            t0 = time.perf_counter()
            score(batch)
            batch_times.append(time.perf_counter() - t0)
    single_times = []
    for item in items[:singles]:
        t0 = time.perf_counter()
        score([item])
        single_times.append(time.perf_counter() - t0)
    median_batch = statistics.median(batch_times)
    return Speed(
        batch_size=batch_size,
        events_per_s=round(batch_size / median_batch, 1),
        p50_ms=round(statistics.median(single_times) * 1000, 4),
        batch_p50_ms=round(median_batch * 1000, 3),
        batches=len(batch_times),
    )

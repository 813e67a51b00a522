"""A token bucket per tier: how much work a tier may take now. Callers never drop what it
refuses; they route it on with the reason."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.clock = clock
        self._tokens = burst
        self._at = clock()

    def take(self, wanted: int) -> int:
        """Grant up to `wanted` whole units now."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        granted = min(wanted, int(self._tokens))
        self._tokens -= granted
        return granted

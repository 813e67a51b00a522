"""What every agent shares: topic handles and clocks."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from schemas.wire import RECEIVED_HEADER

log = logging.getLogger("oodwatch.agents")


@dataclass(frozen=True)
class TopicHandles:
    llm_events: Any
    screenings: Any
    escalations: Any
    evidence: Any
    dead_letters: Any
    #: Bundles waiting for tier 3; the topic's lag is the judge's backlog.
    judge_requests: Any = None
    tool_sightings: Any = None
    tool_registry: Any = None


def received_ns(message: Any) -> int:
    """Receipt time from the receiver's header; records written by a Collector fall back to
    the Kafka record timestamp (ms)."""
    for key, value in message.headers or ():
        if key == RECEIVED_HEADER:
            try:
                return int(value)
            except ValueError:
                break
    return int(message.timestamp * 1_000_000_000) if message.timestamp else time.time_ns()

"""The guard's way into the stream: a bounded outbox drained by one producer task.

An inline answer never waits for Kafka. What the guard screened is queued here and sent in the
background; while the broker is away it stays queued (bounded by records and bytes) and is
retried with backoff. Past a bound an event is refused by the outbox, counted as not streamed
and logged with its ids, and the caller's answer says so: nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.guard.tier1 import Record
from schemas.events import LLMEvent
from schemas.evidence import Screening

log = logging.getLogger(__name__)

SEND_BATCH = 256
SEND_TIMEOUT_S = 10.0
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
LOG_EVERY_S = 10.0

#: An event with what the guard made of it (None: not screened), or a ready record (actions).
Item = tuple[LLMEvent, Screening | None] | Record


@dataclass
class OutboxCounters:
    queued: int = 0
    #: Events (and action records) the broker acknowledged.
    streamed: int = 0
    records_sent: int = 0
    #: Refused because the outbox was full: counted, logged, and said in the answer.
    not_streamed: int = 0
    send_failures: int = 0
    #: Left in the outbox when the guard stopped (also logged).
    unsent_at_stop: int = 0


class Outbox:
    def __init__(
        self, to_records: Callable[[LLMEvent, Screening | None, int], list[Record]], *, max_items: int,
        max_bytes: int,
    ) -> None:  # fmt: skip
        self.to_records = to_records
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.counters = OutboxCounters()
        self.held_bytes = 0
        self.broker_ok = False
        self._items: deque[tuple[Item, int]] = deque()
        self._inflight = 0
        self._wake = asyncio.Event()
        self._last_refusal_log = 0.0

    def __len__(self) -> int:
        """Items not yet acknowledged by the broker (queued or being sent)."""
        return len(self._items) + self._inflight

    def put(self, item: Item) -> bool:
        """Queue an item; False (counted, logged) when the outbox is full."""
        size = _estimate(item)
        if len(self._items) >= self.max_items or self.held_bytes + size > self.max_bytes:
            self.counters.not_streamed += 1
            now = time.monotonic()
            if now - self._last_refusal_log >= LOG_EVERY_S:
                self._last_refusal_log = now
                ids = (
                    {} if isinstance(item, Record) else {"event_id": item[0].event_id, "session_id": item[0].session_id}
                )
                log.error(
                    "guard outbox full (%d items, %d bytes held): not streamed; %d so far",
                    len(self._items), self.held_bytes, self.counters.not_streamed, extra=ids,
                )  # fmt: skip
            return False
        self._items.append((item, size))
        self.held_bytes += size
        self.counters.queued += 1
        self._wake.set()
        return True

    def _safe_records(self, item: Item) -> list[Record]:
        """An item that cannot be serialised is counted and logged, not allowed to stop the loop."""
        try:
            return self._records(item)
        except Exception:
            self.counters.not_streamed += 1
            log.exception("guard outbox: an item could not be serialised; not streamed")
            return []

    def _records(self, item: Item) -> list[Record]:
        if isinstance(item, Record):
            return [item]
        event, screening = item
        return self.to_records(event, screening, time.time_ns())

    async def run(self, producer: Any) -> None:
        """Send until cancelled. `producer` has aiokafka's `send(topic, value, key=)` (a future)."""
        delay = BACKOFF_MIN_S
        while True:
            if not self._items:
                self._wake.clear()
                await self._wake.wait()
            batch = [self._items.popleft() for _ in range(min(SEND_BATCH, len(self._items)))]
            self._inflight = len(batch)
            records = [r for item, _ in batch for r in self._safe_records(item)]
            try:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    futures = [await producer.send(r.topic, r.value, key=r.key) for r in records]
                    await asyncio.gather(*futures)
            except asyncio.CancelledError:
                self._items.extendleft(reversed(batch))
                self._inflight = 0
                raise
            except Exception as exc:  # broker away, timeout: keep the batch, back off
                self._items.extendleft(reversed(batch))
                self._inflight = 0
                self.counters.send_failures += 1
                if self.broker_ok:
                    log.warning("guard outbox: the broker did not take a batch (%s); retrying", type(exc).__name__)
                self.broker_ok = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            delay = BACKOFF_MIN_S
            self._inflight = 0
            self.held_bytes -= sum(size for _, size in batch)
            self.broker_ok = True
            self.counters.streamed += len(batch)
            self.counters.records_sent += len(records)

    def abandon(self) -> int:
        """At stop: what is still queued is counted and logged, never dropped unnoticed."""
        left = len(self._items)
        if left:
            self.counters.unsent_at_stop += left
            log.error("guard stopping with %d item(s) not streamed (the broker did not take them)", left)
        self._items.clear()
        self.held_bytes = 0
        return left

    def snapshot(self) -> dict[str, Any]:
        return {
            "broker": "ok" if self.broker_ok else "unavailable",
            "pending": len(self),
            "held_bytes": self.held_bytes,
            **{k: v for k, v in vars(self.counters).items()},
        }


def _estimate(item: Item) -> int:
    """Bytes an item will take on the wire, roughly (its text plus a fixed overhead): cheap
    enough for the answer path, close enough to bound memory."""
    if isinstance(item, Record):
        return len(item.value) + len(item.key)
    event = item[0]
    text = len(event.system_instructions) + sum(len(d) for d in event.retrieved_documents)
    text += sum(len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in event.input_messages)
    text += sum(len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in event.output_messages)
    text += sum(len(t.description) + 256 for t in event.tool_definitions)
    # The event rides twice when it escalates (the escalation carries it), JSON escapes grow it.
    return 2 * text + 2048

"""The one stage loop every agent runs: decode envelopes -> micro-batch -> compute -> publish.

A stage says what it reads (an envelope codec), how it computes one result per item (`compute`,
pure: the heavy part, off the event loop where it is CPU work) and what it publishes
(`publish`, on the loop: tables, topics). The loop owns everything else, once:

- envelopes in: a bad item is dead-lettered alone with its reason; its envelope goes on;
- the error policy: a batch whose compute raises is bisected until the items that fail alone are
  found; those are dead-lettered with the exception, the rest go on. If every item of a batch of
  two or more fails, or every item of STOP_AFTER_FAILED_BATCHES batches in a row, the failure is
  the stage's own (a corrupt model, a bug), not the data's: the worker logs why and exits with
  FATAL_EXIT_CODE without committing, instead of dead-lettering all traffic while looking healthy;
- envelopes out (`Outbox`): items grouped by destination partition (murmur2 of the key, what
  Kafka's default partitioner and the keyed tables use), one record per partition;
- counters.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

import numpy as np
from aiokafka.partitioner import murmur2
from pydantic import BaseModel

from pipeline.observability.metrics import StageMetrics
from schemas.dead_letter import DeadLetter
from schemas.envelope import EnvelopeCodec, envelope_headers

log = logging.getLogger("oodwatch.agents")

#: EX_SOFTWARE: the stage itself is broken; the supervisor must not restart it in a loop.
FATAL_EXIT_CODE = 70
STOP_AFTER_FAILED_BATCHES = 3

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)


def topic_name(topic: Any) -> str:
    """A Faust topic handle's name (for the events-out counter)."""
    names = getattr(topic, "topics", None)
    return str(names[0]) if names else type(topic).__name__


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (and Faust's keyed tables): murmur2 of the key bytes."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass
class StageCounters:
    records: int = 0
    items: int = 0
    batches: int = 0
    dead_letters: int = 0
    failed_batches_in_a_row: int = 0
    envelopes_out: int = 0
    items_out: int = 0
    unserialisable: int = 0


#: Kafka's default message size limit is about 1 MB; envelopes stay under it (split in halves).
ENVELOPE_MAX_BYTES = 900_000


class Outbox:
    """Items bound for topics, sent as one envelope per destination partition at `flush` (more
    than one where the items would make a record over `max_bytes`)."""

    def __init__(self, max_bytes: int = ENVELOPE_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._pending: dict[tuple[int, int], tuple[Any, Any, list[Any], bytes]] = {}
        self._wrappers: dict[int, Callable[[list[Any]], list[Any]]] = {}

    def add(
        self, topic: Any, codec: EnvelopeCodec[Any], key: str, item: Any,
        wrap: Callable[[list[Any]], list[Any]] | None = None,
    ) -> None:  # fmt: skip
        """`key` picks the partition (a session id, a tool identity); `wrap` turns a partition's
        items into the records' items (e.g. rows into one columnar batch)."""
        key_bytes = key.encode()
        partition = partition_for(key_bytes, topic.partitions)
        slot = self._pending.get((id(topic), partition))
        if slot is None:
            slot = self._pending[(id(topic), partition)] = (topic, codec, [], key_bytes)
        slot[2].append(item)
        if wrap is not None:
            self._wrappers[id(topic)] = wrap

    async def flush(self, counters: StageCounters | None = None, metrics: StageMetrics | None = None) -> None:
        pending, self._pending = self._pending, {}
        for (topic_id, partition), (topic, codec, items, key) in pending.items():
            wrap = self._wrappers.get(topic_id)
            try:
                chunks = self._encode(codec, wrap, items)
            except ValueError:  # PydanticSerializationError: the mapping bounds nesting, so never expected
                kept = self._serialisable(codec, items, counters)
                chunks = self._encode(codec, wrap, kept) if kept else []
            for count, value in chunks:
                await topic.send(key=key, value=value, partition=partition, headers=envelope_headers(count))
                if counters is not None:
                    counters.envelopes_out += 1
                    counters.items_out += count
                if metrics is not None:
                    metrics.events_out(topic_name(topic), count)

    def _encode(
        self, codec: EnvelopeCodec[Any], wrap: Callable[[list[Any]], list[Any]] | None, items: list[Any]
    ) -> list[tuple[int, bytes]]:
        """(items, value) per record: halves until each fits, or holds one item."""
        value = codec.encode(wrap(items) if wrap else items)
        if len(value) <= self.max_bytes or len(items) == 1:
            return [(len(items), value)]
        middle = len(items) // 2
        return self._encode(codec, wrap, items[:middle]) + self._encode(codec, wrap, items[middle:])

    @staticmethod
    def _serialisable(codec: EnvelopeCodec[Any], items: list[Any], counters: StageCounters | None) -> list[Any]:
        kept = []
        for item in items:
            try:
                codec.encode([item])
            except ValueError:
                name = getattr(item, "event_id", type(item).__name__)
                log.exception("an item cannot be serialised; dropped: %s", name)
                if counters is not None:
                    counters.unserialisable += 1
            else:
                kept.append(item)
        return kept


class Stage(Protocol[In]):
    name: str
    codec: EnvelopeCodec[In]

    async def compute(self, items: list[In]) -> Sequence[Any]:
        """One result per item, in order; may raise (the loop bisects the batch)."""
        ...

    async def publish(self, items: list[In], results: Sequence[Any], outbox: Outbox) -> None:
        """Side effects for a computed batch (tables, the outbox); runs on the event loop."""
        ...


@dataclass
class Failure:
    item: Any
    error: BaseException


@dataclass
class Source:
    """Where an item came from: its record (for dead letters and acks) and its place in it."""

    event: Any
    index: int


@dataclass
class Batch(Generic[In]):
    items: list[In] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)


def _concat(parts: list[Sequence[Any]]) -> Sequence[Any]:
    if parts and all(isinstance(p, np.ndarray) for p in parts):
        return cast(Sequence[Any], np.concatenate(parts))  # type: ignore[arg-type]
    return [result for part in parts for result in part]


async def compute_isolating(stage: Stage[In], items: list[In]) -> tuple[list[In], Sequence[Any], list[Failure]]:
    """Results for the items that compute, and the items that fail alone (bisection)."""
    try:
        return items, await stage.compute(items), []
    except Exception as exc:
        if len(items) == 1:
            return [], [], [Failure(items[0], exc)]
        middle = len(items) // 2
        left = await compute_isolating(stage, items[:middle])
        right = await compute_isolating(stage, items[middle:])
        return left[0] + right[0], _concat([left[1], right[1]]), left[2] + right[2]


class StageLoop(Generic[In]):
    """Runs a stage over a Faust stream of envelope records."""

    def __init__(
        self, stage: Stage[In], dead_letters: Any, *, batch_size: int, window_s: float,
        exit: Callable[[int], Any] = os._exit,
    ) -> None:  # fmt: skip
        """`exit` ends the process on a stage failure (os._exit: no clean-up that could commit)."""
        self.stage = stage
        self.exit = exit
        self.metrics = StageMetrics(stage.name)
        self.dead_letters = dead_letters
        self.batch_size = batch_size
        self.window_s = window_s
        self.counters = StageCounters()

    def decode(self, events: Sequence[Any], outbox: Outbox) -> Batch[In]:
        batch: Batch[In] = Batch()
        now = time.time_ns()
        for event in events:
            message = event.message
            decoded = self.stage.codec.decode(event.value, message.headers)
            self.counters.records += 1
            self.metrics.records_in()
            for index, item in enumerate(decoded.items):
                batch.items.append(item)
                batch.sources.append(Source(event, index))
            for bad in decoded.bad:
                self._dead_letter(outbox, message, bad.reason, bad.payload, bad.index, now, "invalid_record")
        self.counters.items += len(batch.items)
        self.metrics.items_in(len(batch.items))
        return batch

    async def process(self, batch: Batch[In], outbox: Outbox) -> None:
        """Compute (bisecting failures), publish, flush; exits the worker on a stage failure."""
        if not batch.items:
            await outbox.flush(self.counters, self.metrics)
            return
        started = time.perf_counter()
        ok, results, failed = await compute_isolating(self.stage, batch.items)
        if failed:
            self._check_systematic(len(batch.items), len(failed), failed[0].error)
            where = {id(item): source for item, source in zip(batch.items, batch.sources, strict=True)}
            now = time.time_ns()
            for failure in failed:
                source = where[id(failure.item)]
                reason = f"{self.stage.name} failed: {type(failure.error).__name__}: {failure.error}"
                log.warning("%s: one item failed alone and is dead-lettered: %s", self.stage.name, reason)
                payload = self.stage.codec.encode([failure.item])
                self._dead_letter(outbox, source.event.message, reason, payload, source.index, now, "stage_error")
        else:
            self.counters.failed_batches_in_a_row = 0
        if ok:
            try:
                await self.stage.publish(ok, results, outbox)
            except Exception as exc:  # our own bug on the event loop: stop, commit nothing
                self._stop(f"publishing a batch of {len(ok)} failed: {type(exc).__name__}: {exc}", exc)
        await outbox.flush(self.counters, self.metrics)
        self.counters.batches += 1
        self.metrics.batch(len(batch.items), time.perf_counter() - started)

    async def run(self, stream: Any) -> None:
        """Micro-batches of records; their events are acked once the batch is published."""
        outbox = Outbox()
        async for events in stream.take_events(self.batch_size, within=self.window_s):
            await self.process(self.decode(events, outbox), outbox)

    def _check_systematic(self, size: int, failed: int, error: BaseException) -> None:
        if failed < size:
            self.counters.failed_batches_in_a_row = 0
            return
        self.counters.failed_batches_in_a_row += 1
        if size >= 2 or self.counters.failed_batches_in_a_row >= STOP_AFTER_FAILED_BATCHES:
            self._stop(f"every item of the batch failed ({failed} of {size}): {type(error).__name__}: {error}", error)

    def _stop(self, why: str, error: BaseException) -> None:
        log.critical(
            "%s stage is failing on all input, not on bad items: %s. Stopping the worker without committing "
            "(exit %d); fix the cause (the model files, the last deploy) and restart it.",
            self.stage.name, why, FATAL_EXIT_CODE, exc_info=error,
        )  # fmt: skip
        for handler in logging.getLogger().handlers:
            handler.flush()
        self.exit(FATAL_EXIT_CODE)
        raise SystemExit(FATAL_EXIT_CODE)  # `exit` returned (a test's): nothing after this may run

    def _dead_letter(
        self, outbox: Outbox, message: Any, reason: str, payload: bytes, index: int, now: int, kind: str
    ) -> None:
        self.metrics.dead_letter(kind)
        dead_letter(outbox, self.dead_letters, self.stage.name, message, reason, payload, index, self.counters, now)


DEAD_LETTERS = EnvelopeCodec(DeadLetter)


def dead_letter(
    outbox: Outbox, topic: Any, stage: str, message: Any, reason: str, payload: bytes, index: int,
    counters: StageCounters, now: int | None = None,
) -> None:  # fmt: skip
    """Keep what a stage could not process, with the reason and its source position (the item's
    place in an envelope, -1 for a whole record); the stream goes on."""
    letter = DeadLetter.of(
        stage=stage, reason=reason, topic=str(message.topic), partition=int(message.partition),
        offset=int(message.offset), payload=payload, failed_ns=now or time.time_ns(), item=index,
    )  # fmt: skip
    log.warning(
        "dead letter",
        extra={"stage": stage, "reason": reason[:300], "topic": letter.source_topic, "offset": letter.source_offset,
               "item": index},
    )  # fmt: skip
    counters.dead_letters += 1
    outbox.add(topic, DEAD_LETTERS, letter.dead_letter_id, letter)

"""Produce and consume on the real broker from tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def produce(
    bootstrap: str, topic: str, values: list[bytes], key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:  # fmt: skip
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def consume_until(
    bootstrap: str, topics: list[str], done: Callable[[dict[str, list[Any]]], bool], timeout_s: float = 60.0
) -> dict[str, list[Any]]:
    """Read from the beginning (no group) until `done(records by topic)` or the timeout."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    seen: dict[str, list[Any]] = {t: [] for t in topics}
    deadline = time.monotonic() + timeout_s
    try:
        while not done(seen) and time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=200)
            for partition, records in polled.items():
                seen[partition.topic].extend(records)
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return seen


def decoded(records: list[Any], model: Any) -> list[Any]:
    """The items of `model` in topic records: envelopes (screenings as columnar batches) or the
    one-item records of the previous release."""
    from schemas.envelope import EnvelopeCodec, is_envelope
    from schemas.evidence import Screening, ScreeningBatch

    items: list[Any] = []
    for record in records:
        if model is Screening and is_envelope(record.headers):
            batches = EnvelopeCodec(ScreeningBatch).decode(record.value, record.headers).items
            items += [screening for batch in batches for screening in batch.screenings()]
        else:
            items += EnvelopeCodec(model).decode(record.value, record.headers).items
    return items

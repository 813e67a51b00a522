"""What every agent shares: topic handles, dead-lettering and clocks."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from pipeline.observability.metrics import metrics
from schemas.dead_letter import DeadLetter

log = logging.getLogger("oodwatch.agents")

#: Header the receiver stamps with its wall-clock receipt time (ns, ASCII digits).
RECEIVED_HEADER = "oodwatch-received-ns"


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


async def dead_letter(
    topics: TopicHandles, *, stage: str, reason: str, message: Any, payload: bytes, kind: str = "other"
) -> None:
    """Keep the bad record with its reason on the dead-letter topic; the stream goes on. `kind`
    is the reason's class for the dead-letter counter (the reason itself is free text)."""
    metrics().dead_letters.labels(stage=stage, reason=kind).inc()
    letter = DeadLetter.of(
        stage=stage,
        reason=reason,
        topic=str(message.topic),
        partition=int(message.partition),
        offset=int(message.offset),
        payload=payload,
        failed_ns=time.time_ns(),
    )
    log.warning(
        "dead letter",
        extra={"stage": stage, "reason": reason, "topic": letter.source_topic, "offset": letter.source_offset},
    )
    await topics.dead_letters.send(key=letter.dead_letter_id.encode(), value=letter.model_dump_json().encode())


Record = TypeVar("Record", bound=BaseModel)


async def decode_batch(
    batch: list[Any], record_type: type[Record], topics: TopicHandles, stage: str
) -> tuple[list[Record], list[Any]]:
    """Valid records and the stream events they came from; the rest become dead letters."""
    records: list[Record] = []
    sources: list[Any] = []
    for event in batch:
        try:
            records.append(record_type.model_validate_json(event.value))
            sources.append(event)
        except ValidationError as exc:
            await dead_letter(
                topics, stage=stage, reason=f"not a {record_type.__name__}: {exc.errors()[:3]}", message=event.message,
                payload=event.value or b"", kind="invalid_record",
            )  # fmt: skip
    return records, sources


async def dead_letter_batch(topics: TopicHandles, stage: str, sources: list[Any], exc: Exception) -> None:
    """A micro-batch is acked when the loop moves on, so a failed one is kept as dead letters."""
    log.exception("%s failed on a batch of %d", stage, len(sources))
    for event in sources:
        await dead_letter(
            topics, stage=stage, reason=f"{stage} failed: {type(exc).__name__}: {exc}", message=event.message,
            payload=event.value or b"", kind="stage_error",
        )  # fmt: skip


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

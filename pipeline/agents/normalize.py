"""normalize: OTLP trace requests -> LLMEvents keyed by session id."""

from __future__ import annotations

import time
from typing import Any

from pipeline.agents.common import Topics, dead_letter, log, received_ns
from schemas.otel_mapping import MalformedRecord, map_request, parse_trace_request

STAGE = "normalize"


class NormalizeCounters:
    def __init__(self) -> None:
        self.records = 0
        self.events = 0
        self.skipped_spans = 0
        self.dead_letters = 0


async def normalize_stream(stream: Any, topics: Topics, counters: NormalizeCounters) -> None:
    async for event in stream.events():
        message = event.message
        payload: bytes = event.value or b""
        counters.records += 1
        try:
            result = map_request(
                parse_trace_request(payload),
                received_ns=received_ns(message),
                normalized_ns=time.time_ns(),
            )
        except MalformedRecord as exc:
            counters.dead_letters += 1
            await dead_letter(topics, stage=STAGE, reason=str(exc), message=message, payload=payload)
            continue
        except Exception as exc:  # one bad record must not stop the worker
            log.exception("normalize failed on %s[%s]@%s", message.topic, message.partition, message.offset)
            counters.dead_letters += 1
            await dead_letter(
                topics,
                stage=STAGE,
                reason=f"internal error: {type(exc).__name__}: {exc}",
                message=message,
                payload=payload,
            )
            continue
        counters.skipped_spans += result.skipped_spans
        for llm_event in result.events:
            counters.events += 1
            await topics.llm_events.send(key=llm_event.session_id.encode(), value=llm_event.model_dump_json().encode())

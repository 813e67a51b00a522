"""normalize: OTLP trace and log records -> LLMEvents keyed by session id.

Spans are mapped to events; log-borne content is joined to its span (see log_join). The
stream does not auto-ack: a record is acked when all it contributed has been emitted.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline.agents.common import TopicHandles, dead_letter, log, received_ns
from pipeline.agents.log_join import JoinOutput, LogJoin
from pipeline.observability.metrics import StageMetrics
from schemas.otel_logs import content_by_span, parse_logs_request
from schemas.otel_mapping import MalformedRecord, map_request, parse_trace_request

STAGE = "normalize"


class NormalizeCounters:
    def __init__(self) -> None:
        self.metrics = StageMetrics(STAGE)
        self.records = 0
        self.events = 0
        self.skipped_spans = 0
        self.dead_letters = 0


async def emit(out: JoinOutput, topics: TopicHandles, counters: NormalizeCounters) -> None:
    for llm_event in out.events:
        try:
            value = llm_event.model_dump_json().encode()
        except ValueError:  # PydanticSerializationError; the mapping bounds nesting, so never expected
            log.exception("normalize: event %s cannot be serialised; dropped", llm_event.event_id)
            counters.dead_letters += 1
            continue
        counters.events += 1
        await topics.llm_events.send(key=llm_event.session_id.encode(), value=value)
        counters.metrics.events_out("llm_events")
        counters.metrics.hop_ns("normalize", llm_event.received_ns, llm_event.normalized_ns)
    for source in out.acks:
        source.ack()


async def normalize_stream(
    stream: Any, topics: TopicHandles, join: LogJoin, counters: NormalizeCounters, logs_topic: str
) -> None:
    async for event in stream.noack().events():
        message = event.message
        payload: bytes = event.value or b""
        counters.records += 1
        counters.metrics.records_in()
        try:
            if message.topic == logs_topic:
                out = join.add_logs(content_by_span(parse_logs_request(payload)), event)
            else:
                result = map_request(
                    parse_trace_request(payload), received_ns=received_ns(message), normalized_ns=time.time_ns()
                )
                counters.skipped_spans += result.skipped_spans
                out = join.add_events(result.events, event)
        except Exception as exc:  # one bad record must not stop the worker: it becomes a dead letter
            if not isinstance(exc, MalformedRecord):
                log.exception("normalize failed on %s[%s]@%s", message.topic, message.partition, message.offset)
            reason = str(exc) if isinstance(exc, MalformedRecord) else f"internal error: {type(exc).__name__}: {exc}"
            counters.dead_letters += 1
            kind = "malformed" if isinstance(exc, MalformedRecord) else "internal_error"
            await dead_letter(topics, stage=STAGE, reason=reason, message=message, payload=payload, kind=kind)
            event.ack()
            continue
        await emit(out, topics, counters)

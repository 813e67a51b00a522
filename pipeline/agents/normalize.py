"""normalize: OTLP trace and log records -> LLMEvent envelopes, one per partition of llm-events.

The entry stage reads what the receiver or a Collector wrote (a whole OTLP request per record,
not an envelope), so it has a loop of its own around the stage loop's parts: micro-batches of
records, the Outbox (one envelope per destination partition: the murmur2 partition of the
session id, the one the session table's changelog uses), dead letters per record.

Log-borne content is joined to its span (see log_join), so a record is acked only when all it
contributed has been sent: the batch's records whose events all went out are acked after the
flush, the others when the join releases them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.agents.common import TopicHandles, log, received_ns
from pipeline.agents.log_join import JoinOutput, LogJoin
from pipeline.agents.stage import Outbox, StageCounters, dead_letter
from pipeline.observability.metrics import StageMetrics
from schemas.envelope import EnvelopeCodec
from schemas.events import LLMEvent
from schemas.otel_logs import content_by_span, parse_logs_request
from schemas.otel_mapping import DEPLOYMENT_ATTRIBUTES, MalformedRecord, map_request, parse_trace_request

STAGE = "normalize"
EVENTS = EnvelopeCodec(LLMEvent)


@dataclass
class NormalizeCounters(StageCounters):
    skipped_spans: int = 0


class Normalizer:
    def __init__(
        self, topics: TopicHandles, join: LogJoin, logs_topic: str, *, batch_size: int, window_s: float,
        deployment_attributes: Sequence[str] = DEPLOYMENT_ATTRIBUTES,
    ) -> None:  # fmt: skip
        """`deployment_attributes`: the span attributes that name a deployment (version drift)."""
        self.deployment_attributes = tuple(deployment_attributes)
        self.topics = topics
        self.join = join
        self.logs_topic = logs_topic
        self.batch_size = batch_size
        self.window_s = window_s
        self.counters = NormalizeCounters()
        self.metrics = StageMetrics(STAGE)
        self.outbox = Outbox()

    def take(self, event: Any, out: JoinOutput) -> None:
        """One OTLP record into the join; a record that cannot be read is dead-lettered alone."""
        message = event.message
        payload: bytes = event.value or b""
        self.counters.records += 1
        self.metrics.records_in()
        try:
            if message.topic == self.logs_topic:
                joined = self.join.add_logs(content_by_span(parse_logs_request(payload)), event)
            else:
                result = map_request(
                    parse_trace_request(payload),
                    received_ns=received_ns(message),
                    normalized_ns=time.time_ns(),
                    deployment_attributes=self.deployment_attributes,
                )
                self.counters.skipped_spans += result.skipped_spans
                joined = self.join.add_events(result.events, event)
        except Exception as exc:  # one bad record must not stop the worker: it becomes a dead letter
            if not isinstance(exc, MalformedRecord):
                log.exception("normalize failed on %s[%s]@%s", message.topic, message.partition, message.offset)
            reason = str(exc) if isinstance(exc, MalformedRecord) else f"internal error: {type(exc).__name__}: {exc}"
            self.metrics.dead_letter("malformed" if isinstance(exc, MalformedRecord) else "internal_error")
            dead_letter(self.outbox, self.topics.dead_letters, STAGE, message, reason, payload, -1, self.counters)
            out.acks.append(event)
            return
        out.events.extend(joined.events)
        out.acks.extend(joined.acks)

    async def emit(self, out: JoinOutput) -> None:
        """Send the events as envelopes, then ack the records they came from."""
        for event in out.events:
            self.outbox.add(self.topics.llm_events, EVENTS, event.session_id, event)
            self.metrics.hop_ns("normalize", event.received_ns, event.normalized_ns)
        self.counters.items += len(out.events)
        await self.outbox.flush(self.counters, self.metrics)
        for source in out.acks:
            source.ack()

    async def process(self, records: Sequence[Any]) -> None:
        started = time.perf_counter()
        out = JoinOutput()
        for record in records:
            self.take(record, out)
        await self.emit(out)
        self.counters.batches += 1
        self.metrics.batch(len(records), time.perf_counter() - started)

    async def run(self, stream: Any) -> None:
        async for records in stream.noack_take(self.batch_size, within=self.window_s):
            await self.process(records)

    async def expire(self) -> None:
        """Spans that waited their time for log content go out without it; logs that never met
        their span are dropped (counted)."""
        await self.emit(self.join.expire())

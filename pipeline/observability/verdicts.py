"""Verdicts out as OpenTelemetry: `gen_ai.evaluation.result` log records, so a trace UI
(a Collector in front of Jaeger or Tempo, Langfuse, Phoenix) shows oodwatch's verdict on the
span it judged.

One record for every screening that escalates (tier 1's verdict) and one for every bundle's
final verdict (after tiers 2 and 3), each carrying the original trace and span ids and the
GenAI semantic-convention attributes (`gen_ai.evaluation.name`, `.score.value`, `.score.label`,
`.explanation`, `gen_ai.response.id` where the span carried one). The store process's sink
offers them after a batch is stored, so every verdict is exported once per fresh row.

Off unless `OODWATCH_OTLP_VERDICTS_ENDPOINT` is set. `offer` only appends to a bounded deque
(drop-oldest, counted): a slow or dead endpoint never slows the sink. A sender task posts
batches of OTLP/HTTP protobuf to `<endpoint>/v1/logs`, retrying a failed batch with backoff
while still bounded by the same queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, SeverityNumber

from pipeline.observability.metrics import metrics
from schemas.evidence import Decision, EvidenceBundle, Screening

log = logging.getLogger(__name__)

EVENT_NAME = "gen_ai.evaluation.result"
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
EXPLANATION_CHARS = 1000


def _attr(key: str, value: str | float | int | bool | Sequence[str]) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    any_value = AnyValue()
    any_value.array_value.values.extend(AnyValue(string_value=v) for v in value)
    return KeyValue(key=key, value=any_value)


def _record(at_ns: int, attributes: list[KeyValue], trace_id: str, span_id: str) -> LogRecord:
    """An event record pointing at its span: hex ids from the records become the 16 and 8
    bytes OTLP wants; malformed ones are left out rather than sent wrong."""
    record = LogRecord(
        time_unix_nano=at_ns, observed_time_unix_nano=time.time_ns(), event_name=EVENT_NAME,
        severity_number=SeverityNumber.SEVERITY_NUMBER_WARN, severity_text="WARN", attributes=attributes,
    )  # fmt: skip
    try:
        trace, span = bytes.fromhex(trace_id), bytes.fromhex(span_id)
    except ValueError:
        return record
    if len(trace) == 16:
        record.trace_id = trace
        if len(span) == 8:
            record.span_id = span
    return record


def screening_record(screening: Screening) -> LogRecord:
    """Tier 1's verdict on one event that escalated."""
    flagged = sorted((s for s in screening.scores if s.flagged), key=lambda s: -s.score)
    attributes = [
        _attr("gen_ai.evaluation.name", "oodwatch.tier1"),
        _attr("gen_ai.evaluation.score.value", float(screening.max_score)),
        _attr("gen_ai.evaluation.score.label", screening.decision.value),
        _attr("gen_ai.evaluation.explanation", "; ".join(screening.reasons)[:EXPLANATION_CHARS]),
        _attr("oodwatch.event_id", screening.event_id),
        _attr("oodwatch.session_id", screening.session_id),
        _attr("oodwatch.categories", [s.category for s in flagged]),
        _attr("oodwatch.policy_version", screening.policy_version),
    ]
    if screening.severity is not None:
        attributes.append(_attr("oodwatch.severity", screening.severity.value))
    if screening.drill_id:
        attributes.append(_attr("oodwatch.drill_id", screening.drill_id))
    return _record(screening.screened_ns, attributes, screening.trace_id, screening.span_id)


def bundle_record(bundle: EvidenceBundle) -> LogRecord:
    """The bundle's final verdict: severity and queue state after tiers 2 and 3, the judge's
    rationale when it judged, else what the cheaper tiers said."""
    event = bundle.events[0] if bundle.events else None
    verdict = bundle.tier3.verdict if bundle.tier3 is not None else None
    explanation = verdict.rationale if verdict is not None else "; ".join(h.note for h in bundle.hops if h.note)
    attributes = [
        _attr("gen_ai.evaluation.name", "oodwatch.verdict"),
        _attr("gen_ai.evaluation.score.value", float(verdict.confidence if verdict else bundle.max_score)),
        _attr("gen_ai.evaluation.score.label", bundle.severity.value),
        _attr("gen_ai.evaluation.explanation", explanation[:EXPLANATION_CHARS]),
        _attr("oodwatch.bundle_id", bundle.bundle_id),
        _attr("oodwatch.session_id", bundle.session_id),
        _attr("oodwatch.categories", list(bundle.categories)),
        _attr("oodwatch.queue_state", bundle.queue_state.value),
        _attr("oodwatch.judge_status", bundle.judge_status.value),
        _attr("oodwatch.policy_version", bundle.policy_version),
    ]
    if event is not None and event.attributes.get("gen_ai.response.id"):
        attributes.append(_attr("gen_ai.response.id", event.attributes["gen_ai.response.id"]))
    if bundle.tier3 is not None and bundle.tier3.error:
        attributes.append(_attr("error.type", bundle.judge_status.value))
    if bundle.drill_id:
        attributes.append(_attr("oodwatch.drill_id", bundle.drill_id))
    return _record(bundle.created_ns, attributes, event.trace_id if event else "", event.span_id if event else "")


def request_for(records: Iterable[LogRecord]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(
        [_attr("service.name", "oodwatch"), _attr("service.namespace", "oodwatch")]
    )
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = "oodwatch.verdicts"
    scope_logs.log_records.extend(records)
    return request


class VerdictExporter:
    """Bounded, drop-oldest queue of verdict records and the task that sends them."""

    def __init__(
        self, endpoint: str, *, max_queue: int = 10_000, batch_size: int = 512, timeout_s: float = 5.0
    ) -> None:
        self.url = endpoint.rstrip("/") + "/v1/logs"
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.queue: deque[LogRecord] = deque()
        self.exported = 0
        self.dropped = 0
        self._wake = asyncio.Event()
        self._instruments = metrics()

    def offer(self, screenings: Iterable[Screening], bundles: Iterable[EvidenceBundle]) -> None:
        """Never blocks: records past the bound push the oldest out (counted)."""
        records = [screening_record(s) for s in screenings if s.decision is Decision.ESCALATE]
        records += [bundle_record(b) for b in bundles]
        if not records:
            return
        self.queue.extend(records)
        self._trim()
        self._wake.set()

    def _trim(self) -> None:
        excess = len(self.queue) - self.max_queue
        for _ in range(max(0, excess)):
            self.queue.popleft()
        if excess > 0:
            self.dropped += excess
            self._instruments.verdicts_dropped.labels(reason="queue_full").inc(excess)
            log.warning("verdict export queue full: dropped the %d oldest records", excess)
        self._instruments.verdicts_queued.set(len(self.queue))

    async def run(self) -> None:
        """Send until cancelled; a failed batch goes back to the front of the queue and is tried
        again after a backoff (the bound still holds: newer records push the oldest out)."""
        import httpx

        delay = BACKOFF_MIN_S
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while True:
                if not self.queue:
                    self._wake.clear()
                    await self._wake.wait()
                batch = [self.queue.popleft() for _ in range(min(self.batch_size, len(self.queue)))]
                body = request_for(batch).SerializeToString()
                try:
                    response = await client.post(
                        self.url, content=body, headers={"Content-Type": "application/x-protobuf"}
                    )
                except httpx.HTTPError as exc:
                    status, error = 0, f"{type(exc).__name__}: {exc}"
                else:
                    status, error = response.status_code, f"HTTP {response.status_code}"
                if 200 <= status < 300:
                    self.exported += len(batch)
                    self._instruments.verdicts_exported.inc(len(batch))
                    self._instruments.verdicts_queued.set(len(self.queue))
                    delay = BACKOFF_MIN_S
                    continue
                self._instruments.verdict_export_failures.inc()
                if status and status not in (408, 429) and status < 500:  # refused for good: retrying cannot help
                    self.dropped += len(batch)
                    self._instruments.verdicts_dropped.labels(reason="rejected").inc(len(batch))
                    log.warning("verdict export refused (%s): %d records dropped", error, len(batch))
                    continue
                log.warning("verdict export failed (%s); retrying in %.1f s", error, delay)
                self.queue.extendleft(reversed(batch))
                self._trim()
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)


def exporter_from(endpoint: str, max_queue: int, batch_size: int) -> VerdictExporter | None:
    return VerdictExporter(endpoint, max_queue=max_queue, batch_size=batch_size) if endpoint else None

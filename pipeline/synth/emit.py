"""Send synthetic sessions through the real ingest path: the OpenTelemetry SDK's own
OTLP/HTTP exporter, pointed at the receiver."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipeline.synth.traffic import Session, SpanSpec

_KINDS = {k.name: k for k in trace.SpanKind}


class AcknowledgedExporter(SpanExporter):
    """The SDK's OTLP/HTTP exporter, counting the spans the receiver acknowledged and those given up on.

    The SDK drops a batch after six tries (about 5 s against the receiver's `Retry-After: 1`), so a
    sender that must ride out a broker restart keeps retrying a refused batch for `retry_for_s`,
    as a Collector's `retry_on_failure` does; 0 keeps the SDK's own behaviour. A dropped span is the
    sender's loss, never acknowledged: counting it apart keeps a fault test's "lost" honest.
    """

    def __init__(self, inner: SpanExporter, retry_for_s: float = 0.0, pause_s: float = 1.0) -> None:
        self.inner = inner
        self.retry_for_s = retry_for_s
        self.pause_s = pause_s
        self.acknowledged = 0
        self.dropped = 0
        self._stopping = False

    def export(self, spans: Any) -> SpanExportResult:
        deadline = time.monotonic() + self.retry_for_s
        while True:
            result = self.inner.export(spans)
            if result is SpanExportResult.SUCCESS:
                self.acknowledged += len(spans)
                return result
            if self._stopping or time.monotonic() + self.pause_s > deadline:
                self.dropped += len(spans)
                return result
            time.sleep(self.pause_s)

    def shutdown(self) -> None:
        self._stopping = True
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


def otlp_http_processor(
    endpoint: str, *, max_queue: int = 100_000, exporter: SpanExporter | None = None
) -> SpanProcessor:
    return BatchSpanProcessor(
        exporter or OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=30),
        max_queue_size=max_queue,
        max_export_batch_size=256,
        schedule_delay_millis=50,
    )


def sessions_to_request(
    sessions: Iterable[Session], extra_attributes: dict[str, Any] | None = None
) -> ExportTraceServiceRequest:
    """The exact ExportTraceServiceRequest the SDK exporter would send (and a Collector would
    write to Kafka), built without a network."""
    memory = InMemorySpanExporter()
    emitter = SessionEmitter(processor=lambda: SimpleSpanProcessor(memory))
    emitter.emit(sessions, extra_attributes)
    request: ExportTraceServiceRequest = encode_spans(memory.get_finished_spans())
    emitter.shutdown()
    return request


class SessionEmitter:
    """One tracer provider per service (service.name is a resource attribute).

    `processor` makes the span processor for a provider: by default a batch processor
    with the SDK's OTLP/HTTP exporter, as an instrumented app would have.
    """

    def __init__(
        self, endpoint: str = "", *, processor: Callable[[], SpanProcessor] | None = None, retry_for_s: float = 0.0
    ) -> None:
        self._exporters: list[AcknowledgedExporter] = []

        def counted() -> SpanProcessor:
            exporter = AcknowledgedExporter(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=30), retry_for_s)
            self._exporters.append(exporter)
            return otlp_http_processor(endpoint, exporter=exporter)

        self._make_processor = processor or counted
        self._providers: dict[str, TracerProvider] = {}
        self.spans = 0

    @property
    def spans_acknowledged(self) -> int:
        """Spans the receiver answered 200 for (the default OTLP/HTTP processor only)."""
        return sum(e.acknowledged for e in self._exporters)

    @property
    def spans_dropped(self) -> int:
        """Spans the exporter gave up on: never acknowledged, so never the pipeline's to lose."""
        return sum(e.dropped for e in self._exporters)

    def _tracer(self, service: str) -> Any:
        provider = self._providers.get(service)
        if provider is None:
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            provider.add_span_processor(self._make_processor())
            self._providers[service] = provider
        return provider.get_tracer("oodwatch.traffic")

    def emit(self, sessions: Iterable[Session], extra_attributes: dict[str, Any] | None = None) -> None:
        for session in sessions:
            tracer = self._tracer(session.service)
            for root in session.roots:
                self._span(tracer, root, extra_attributes or {}, time.time_ns())

    def _span(self, tracer: Any, spec: SpanSpec, extra: dict[str, Any], start_ns: int) -> int:
        span = tracer.start_span(
            spec.name, kind=_KINDS[spec.kind], attributes={**spec.attributes, **extra}, start_time=start_ns
        )
        self.spans += 1
        if spec.timing is not None:
            return self._timed(tracer, span, spec, extra, start_ns)
        token = context.attach(trace.set_span_in_context(span))
        try:
            end_ns = start_ns + 1_000_000
            for child in spec.children:
                end_ns = self._span(tracer, child, extra, end_ns) + 100_000
        finally:
            context.detach(token)
        span.end(end_time=end_ns + 5_000_000)
        return end_ns + 5_000_000

    def _timed(self, tracer: Any, span: Any, spec: SpanSpec, extra: dict[str, Any], start_ns: int) -> int:
        """A span with a realistic duration: its first chunk as an event, children one after
        another from its offset (a retried attempt, then the server's own span)."""
        timing = spec.timing
        assert timing is not None
        end_ns = start_ns + int(timing.duration_ms * 1e6)
        if timing.first_chunk_ms is not None:
            span.add_event("gen_ai.content.completion.chunk", timestamp=start_ns + int(timing.first_chunk_ms * 1e6))
        if timing.error:
            span.set_status(trace.Status(trace.StatusCode.ERROR, timing.error))
        token = context.attach(trace.set_span_in_context(span))
        try:
            child_ns = start_ns + int(timing.child_offset_ms * 1e6)
            for child in spec.children:
                child_ns = self._span(tracer, child, extra, child_ns)
        finally:
            context.detach(token)
        span.end(end_time=max(end_ns, child_ns))
        return max(end_ns, child_ns)

    def flush(self, timeout_s: float = 60.0) -> bool:
        return all(p.force_flush(int(timeout_s * 1000)) for p in self._providers.values())

    def shutdown(self) -> None:
        for provider in self._providers.values():
            provider.shutdown()

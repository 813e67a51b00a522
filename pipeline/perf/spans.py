"""Per-request timings from spans, as real instrumentations record them.

What each source gives (checked against the installed libraries, see docs/perf.md):
- OpenLLMetry (`opentelemetry-instrumentation-openai`): a CLIENT span over the whole call (its
  duration is the client's e2e) and, when streaming, one `gen_ai.content.completion.chunk` event
  per chunk: the first one's offset is the TTFT. Usage on the span.
- OpenTelemetry's own OpenAI instrumentation (`-openai-v2`): a CLIENT span with usage, no chunk
  events: e2e only (TTFT comes from its `time_to_first_chunk` metric where it records one).
- OpenInference: a "First Token Stream Event" on the span.
- vLLM: a SERVER span `llm_request`, child of the caller's span (it extracts `traceparent`), with
  `gen_ai.latency.{e2e,time_to_first_token,time_in_queue,time_in_model_prefill,...}` in seconds.
HTTP client spans under an LLM span are its attempts: more than one is a retry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from schemas.events import DRILL_ATTRIBUTE
from schemas.otel_mapping import attributes_dict
from schemas.perf import RequestTiming, request_id_for

#: Operations that are one model request (not agents, tools, workflows or retrieval).
INFERENCE_OPERATIONS = frozenset(
    {"chat", "text_completion", "completion", "generate_content", "llm", "responses", "chat.completions"}
)
FIRST_CHUNK_EVENTS = frozenset(
    {"gen_ai.content.completion.chunk", "llm.content.completion.chunk", "First Token Stream Event"}
)
VLLM_LATENCY = "gen_ai.latency."
_SPAN_KIND_SERVER = Span.SPAN_KIND_SERVER
_SPAN_KIND_CLIENT = Span.SPAN_KIND_CLIENT
MAX_MS = 86_400_000.0  # a day: anything longer is not a request timing


def _seconds_ms(value: Any) -> float:
    """Seconds (as instrumentations record latencies) -> ms; NaN for what is not a sane duration."""
    try:
        ms = float(value) * 1000.0
    except (TypeError, ValueError):
        return math.nan
    return ms if 0.0 <= ms <= MAX_MS else math.nan


def _count(value: Any) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError, OverflowError):
        return -1
    return count if 0 <= count < 2**62 else -1


def operation_of(attrs: Mapping[str, Any]) -> str:
    operation = attrs.get("gen_ai.operation.name") or attrs.get("llm.request.type")
    if operation:
        return str(operation).lower()
    kind = attrs.get("openinference.span.kind")
    if kind:
        return "llm" if str(kind).upper() == "LLM" else str(kind).lower()
    return ""


def is_inference(span: Span, attrs: Mapping[str, Any]) -> bool:
    if any(key.startswith(VLLM_LATENCY) for key in attrs):
        return True
    return operation_of(attrs) in INFERENCE_OPERATIONS


def timings_from_request(request: ExportTraceServiceRequest) -> list[RequestTiming]:
    """Every model request in an OTLP trace request, client and server side."""
    rows: list[RequestTiming] = []
    for resource_spans in request.resource_spans:
        resource = attributes_dict(resource_spans.resource.attributes)
        spans = [s for scope in resource_spans.scope_spans for s in scope.spans]
        rows.extend(timings_from_spans(spans, resource))
    return rows


def timings_from_spans(spans: Iterable[Span], resource: Mapping[str, Any]) -> list[RequestTiming]:
    spans = list(spans)
    # HTTP client spans by parent: the attempts of the LLM span above them.
    attempts: dict[bytes, list[Span]] = {}
    for span in spans:
        if span.kind == _SPAN_KIND_CLIENT and span.parent_span_id and _is_http(span):
            attempts.setdefault(span.parent_span_id, []).append(span)
    rows = []
    for span in spans:
        if len(span.trace_id) != 16 or len(span.span_id) != 8 or span.kind == Span.SPAN_KIND_PRODUCER:
            continue
        if not span.attributes:
            continue
        attrs = attributes_dict(span.attributes)
        if not is_inference(span, attrs):
            continue
        row = timing_of(span, attrs, resource)
        if row is None:
            continue
        tries = attempts.get(span.span_id, [])
        if tries:
            row.attempt_span_ids = [t.span_id.hex() for t in tries]
            resends = max(_count(attributes_dict(t.attributes).get("http.request.resend_count")) for t in tries)
            row.retries = max(len(tries) - 1, resends, 0)
        rows.append(row)
    return rows


def _is_http(span: Span) -> bool:
    return any(kv.key in ("http.request.method", "http.method") for kv in span.attributes)


def timing_of(span: Span, attrs: Mapping[str, Any], resource: Mapping[str, Any]) -> RequestTiming | None:
    duration_ms = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
    if not span.start_time_unix_nano or not 0 <= duration_ms <= MAX_MS:
        return None
    vllm = any(key.startswith(VLLM_LATENCY) for key in attrs)
    side = "server" if span.kind == _SPAN_KIND_SERVER or vllm else "client"
    trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
    service = str(resource.get("service.name") or attrs.get("service.name") or "")
    model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model") or attrs.get("llm.model_name")
    provider = (
        attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system") or attrs.get("llm.provider")
        or attrs.get("llm.system") or ("vllm" if vllm else "")
    )  # fmt: skip
    finish = attrs.get("gen_ai.response.finish_reasons") or attrs.get("gen_ai.response.finish_reason") or ""
    if isinstance(finish, list):
        finish = finish[0] if finish else ""
    error_type = str(attrs.get("error.type") or "")
    error = span.status.code == Status.STATUS_CODE_ERROR or bool(error_type)
    if error and not error_type:
        error_type = span.status.message[:200] or "error"
    row = RequestTiming(
        request_id=request_id_for(trace_id, span_id),
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=span.parent_span_id.hex(),
        tenant=str(resource.get("tenant.id") or attrs.get("tenant.id") or service),
        service=service,
        provider=str(provider),
        model=str(model or "unknown"),
        operation=operation_of(attrs) or "chat",
        side=side,
        source="vllm" if vllm else _source(attrs),
        start_ns=span.start_time_unix_nano,
        e2e_ms=duration_ms,
        input_tokens=_count(
            attrs.get("gen_ai.usage.input_tokens")
            or attrs.get("gen_ai.usage.prompt_tokens")
            or attrs.get("llm.token_count.prompt")
        ),
        output_tokens=_count(
            attrs.get("gen_ai.usage.output_tokens")
            or attrs.get("gen_ai.usage.completion_tokens")
            or attrs.get("llm.token_count.completion")
        ),
        streaming=bool(attrs.get("gen_ai.is_streaming") or attrs.get("llm.is_streaming")),
        error=error,
        error_type=error_type,
        finish_reason=str(finish)[:64],
        drill_id=str(attrs.get(DRILL_ATTRIBUTE) or resource.get(DRILL_ATTRIBUTE) or ""),
    )
    if vllm:
        e2e = _seconds_ms(attrs.get("gen_ai.latency.e2e"))
        row.e2e_ms = duration_ms if math.isnan(e2e) else e2e
        row.ttft_ms = _seconds_ms(attrs.get("gen_ai.latency.time_to_first_token"))
        row.queue_ms = _seconds_ms(attrs.get("gen_ai.latency.time_in_queue"))
        row.prefill_ms = _seconds_ms(attrs.get("gen_ai.latency.time_in_model_prefill"))
        row.decode_ms = _seconds_ms(attrs.get("gen_ai.latency.time_in_model_decode"))
    else:
        row.ttft_ms = _ttft_ms(span, attrs)
    if not math.isnan(row.ttft_ms):
        row.streaming = True
    return row.derive()


def _ttft_ms(span: Span, attrs: Mapping[str, Any]) -> float:
    for key in ("gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token"):
        if key in attrs:
            return _seconds_ms(attrs[key])
    first = min((e.time_unix_nano for e in span.events if e.name in FIRST_CHUNK_EVENTS and e.time_unix_nano), default=0)
    if first and first >= span.start_time_unix_nano:
        return (first - span.start_time_unix_nano) / 1e6
    return math.nan


def _source(attrs: Mapping[str, Any]) -> str:
    if "openinference.span.kind" in attrs:
        return "openinference"
    if "gen_ai.openai.api_base" in attrs or "traceloop.span.kind" in attrs or "llm.request.type" in attrs:
        return "openllmetry"
    return "genai"

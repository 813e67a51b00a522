"""OTLP log records -> message content for the span they belong to.

Some instrumentations (OpenTelemetry's own OpenAI instrumentation among them) send prompts,
completions and tool calls as log records carrying the span's ids, and leave the span with
only model and usage. These helpers read those records; the normalize stage joins them to
their span.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from schemas.events import LLMEvent
from schemas.otel_mapping import Content, any_value, attributes_dict, parse_otlp, read_message_event

GENAI_PREFIX = "gen_ai."


def parse_logs_request(payload: bytes) -> ExportLogsServiceRequest:
    return parse_otlp(payload, ExportLogsServiceRequest)


def event_name(record: LogRecord) -> str:
    """`event_name` (current proto) or the older `event.name` attribute."""
    if record.event_name:
        return record.event_name
    for kv in record.attributes:
        if kv.key == "event.name":
            return str(kv.value.string_value)
    return ""


def is_genai_record(record: LogRecord) -> bool:
    """Only GenAI events tied to a span can be joined; everything else is not ours."""
    return len(record.span_id) == 8 and len(record.trace_id) == 16 and event_name(record).startswith(GENAI_PREFIX)


def genai_records(request: ExportLogsServiceRequest) -> Iterator[LogRecord]:
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                if is_genai_record(record):
                    yield record


def content_by_span(request: ExportLogsServiceRequest) -> dict[str, Content]:
    """Content per span id (hex) from the request's GenAI log records, in record order."""
    found: dict[str, Content] = {}
    for record in genai_records(request):
        content = found.setdefault(record.span_id.hex(), Content())
        read_message_event(event_name(record), attributes_dict(record.attributes), any_value(record.body), content)
    return found


def merge_content(into: Content, more: Content) -> Content:
    return replace(
        into,
        system=into.system + more.system,
        inputs=into.inputs + more.inputs,
        outputs=into.outputs + more.outputs,
        tools=into.tools + more.tools,
        tool_calls=into.tool_calls + more.tool_calls,
        documents=into.documents + more.documents,
    )


def with_content(event: LLMEvent, content: Content) -> LLMEvent:
    """The event with log-borne content filled in where the span had none."""
    update: dict[str, object] = {}
    if content.system and not event.system_instructions:
        update["system_instructions"] = "\n".join(content.system)
    if content.inputs and not event.input_messages:
        update["input_messages"] = tuple(content.inputs)
    if content.outputs and not event.output_messages:
        update["output_messages"] = tuple(content.outputs)
    if content.tools and not event.tool_definitions:
        update["tool_definitions"] = tuple(content.tools)
    if content.tool_calls and not event.tool_calls:
        update["tool_calls"] = tuple(content.tool_calls)
    return event.model_copy(update=update) if update else event


def lacks_content(event: LLMEvent) -> bool:
    """An inference span with no messages: its content may still come as log records."""
    return not (event.input_messages or event.output_messages or event.tool_calls or event.retrieved_documents)

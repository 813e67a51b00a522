import json

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from schemas.events import LLMEvent, Message
from schemas.otel_logs import content_by_span, event_name, lacks_content, parse_logs_request, with_content
from schemas.otel_mapping import MalformedRecord
from tests.helpers import any_value

SPAN = b"\x05" * 8


def record(name, *, body=None, attrs=None, span_id=SPAN, as_attribute=False):
    result = LogRecord(trace_id=b"\x01" * 16, span_id=span_id)
    if as_attribute:
        result.attributes.add(key="event.name", value=AnyValue(string_value=name))
    else:
        result.event_name = name
    for key, value in (attrs or {}).items():
        result.attributes.add(key=key, value=any_value(value))
    if body is not None:
        result.body.CopyFrom(kvlist(body))
    return result


def kvlist(mapping):
    values = []
    for key, value in mapping.items():
        values.append(KeyValue(key=key, value=kvlist(value) if isinstance(value, dict) else any_value(value)))
    return AnyValue(kvlist_value=KeyValueList(values=values))


def logs(*records):
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.extend(records)
    return request


def test_operation_details_record_carries_current_semconv_content():
    found = content_by_span(
        logs(
            record(
                "gen_ai.client.inference.operation.details",
                attrs={
                    "gen_ai.input.messages": json.dumps(
                        [
                            {"role": "system", "parts": [{"type": "text", "content": "sys"}]},
                            {"role": "user", "parts": [{"type": "text", "content": "hi"}]},
                        ]
                    ),
                    "gen_ai.output.messages": json.dumps(
                        [{"role": "assistant", "parts": [{"type": "text", "content": "yo"}]}]
                    ),
                    "gen_ai.tool.definitions": json.dumps([{"type": "function", "name": "t", "description": "d"}]),
                },
            )
        )
    )
    content = found[SPAN.hex()]
    assert content.system == ["sys"]
    assert [(m.role, m.content) for m in content.inputs] == [("user", "hi")]
    assert content.outputs[0].content == "yo" and content.tools[0].name == "t"


def test_older_per_message_events_with_bodies_and_event_name_attribute():
    found = content_by_span(
        logs(
            record("gen_ai.system.message", body={"content": "be kind"}, as_attribute=True),
            record("gen_ai.user.message", body={"content": "question"}),
            record("gen_ai.tool.message", body={"content": "42", "id": "call_1"}),
            record(
                "gen_ai.choice",
                body={
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "tool_calls": [{"id": "c2", "function": {"name": "f", "arguments": "{}"}}],
                    },
                },
            ),
        )
    )
    content = found[SPAN.hex()]
    assert content.system == ["be kind"]
    assert [(m.role, m.content, m.tool_call_id) for m in content.inputs] == [
        ("user", "question", None),
        ("tool", "42", "call_1"),
    ]
    assert content.outputs[0].tool_calls[0].name == "f" and content.tool_calls[0].id == "c2"


def test_records_without_span_or_not_genai_are_ignored():
    found = content_by_span(logs(record("gen_ai.user.message", body={"content": "x"}, span_id=b""), record("app.log")))
    assert found == {}


def test_event_name_prefers_the_field_then_the_attribute():
    assert event_name(record("a.b")) == "a.b"
    assert event_name(record("c.d", as_attribute=True)) == "c.d"


def test_with_content_fills_only_what_the_span_lacked():
    bare = LLMEvent(event_id="e", trace_id="t", span_id="s", session_id="x", operation="chat")
    assert lacks_content(bare)
    found = content_by_span(logs(record("gen_ai.user.message", body={"content": "from logs"})))[SPAN.hex()]
    joined = with_content(bare, found)
    assert joined.input_messages[0].content == "from logs" and not lacks_content(joined)
    on_span = bare.model_copy(update={"input_messages": (Message(role="user", content="on span"),)})
    assert with_content(on_span, found).input_messages[0].content == "on span"


def test_garbage_logs_payload_is_malformed():
    with pytest.raises(MalformedRecord, match="ExportLogsServiceRequest"):
        parse_logs_request(b"\xff\xff\xff")

import json

import pytest

from pipeline.synth.emit import sessions_to_request
from pipeline.synth.traffic import TrafficGenerator
from schemas.events import DRILL_ATTRIBUTE, event_id_for
from schemas.otel_mapping import MalformedRecord, map_request, parse_trace_request
from tests.helpers import request, span


def one(attrs, **kwargs):
    result = map_request(request(span(attrs, **kwargs)))
    assert len(result.events) == 1, result
    return result.events[0]


def test_genai_current_messages_tools_and_usage():
    event = one(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.conversation.id": "conv-1",
            "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
            "gen_ai.input.messages": json.dumps(
                [
                    {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
                    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "rainy"}]},
                ]
            ),
            "gen_ai.output.messages": json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [
                            {"type": "tool_call", "id": "c2", "name": "get_weather", "arguments": {"city": "Paris"}}
                        ],
                    }
                ]
            ),
            "gen_ai.tool.definitions": json.dumps(
                [{"type": "function", "name": "get_weather", "description": "Weather by city"}]
            ),
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 3,
        }
    )
    assert event.convention == "genai"
    assert event.session_id == "conv-1"
    assert event.provider == "openai" and event.model == "gpt-4o-mini" and event.operation == "chat"
    assert event.system_instructions == "Be brief."
    assert [(m.role, m.content) for m in event.input_messages] == [("user", "Weather in Paris?"), ("tool", "rainy")]
    assert event.input_messages[1].tool_call_id == "c1"
    assert event.output_messages[0].tool_calls[0].name == "get_weather"
    assert json.loads(event.tool_calls[0].arguments) == {"city": "Paris"}
    assert event.tool_definitions[0].description == "Weather by city"
    assert (event.usage.input_tokens, event.usage.output_tokens) == (12, 3)
    assert event.event_id == event_id_for("01" * 16, "02" * 8)


def test_genai_legacy_indexed_prompt_and_completion():
    event = one(
        {
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-3.5-turbo",
            "gen_ai.prompt.0.role": "system",
            "gen_ai.prompt.0.content": "You are terse.",
            "gen_ai.prompt.1.role": "user",
            "gen_ai.prompt.1.content": "hello",
            "gen_ai.prompt.10.role": "user",
            "gen_ai.prompt.10.content": "eleventh",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": "hi",
            "gen_ai.completion.0.tool_calls.0.name": "lookup",
            "gen_ai.completion.0.tool_calls.0.arguments": '{"q": 1}',
            "gen_ai.usage.prompt_tokens": 5,
            "gen_ai.usage.completion_tokens": 1,
        }
    )
    assert event.convention == "genai-legacy"
    assert event.provider == "openai"
    assert event.system_instructions == "You are terse."
    assert [m.content for m in event.input_messages] == ["hello", "eleventh"]  # numeric, not lexical, order
    assert event.output_messages[0].content == "hi"
    assert event.tool_calls[0].name == "lookup"
    assert (event.usage.input_tokens, event.usage.output_tokens) == (5, 1)


def test_openllmetry_functions_and_session():
    event = one(
        {
            "llm.request.type": "chat",
            "traceloop.span.kind": "task",
            "gen_ai.request.model": "m",
            "session.id": "s-9",
            "gen_ai.prompt.0.content": "book a flight",
            "llm.request.functions.0.name": "search_flights",
            "llm.request.functions.0.description": "Search flights",
            "llm.request.functions.0.parameters": json.dumps({"type": "object"}),
        }
    )
    assert event.session_id == "s-9"
    assert event.operation == "chat"
    assert event.tool_definitions[0].name == "search_flights"
    assert event.tool_definitions[0].parameters == {"type": "object"}


def test_openinference_messages_documents_and_tokens():
    event = one(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "llama-3",
            "llm.provider": "meta",
            "session.id": "oi-1",
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "ctx",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.contents.0.message_content.text": "part one",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "answer",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "f",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": "{}",
            "llm.tools.0.tool.json_schema": json.dumps(
                {"type": "function", "function": {"name": "f", "description": "does f"}}
            ),
            "llm.token_count.prompt": 7,
            "llm.token_count.completion": 2,
        }
    )
    assert event.convention == "openinference"
    assert event.operation == "llm"
    assert event.model == "llama-3" and event.provider == "meta"
    assert event.system_instructions == "ctx"
    assert event.input_messages[0].content == "part one"
    assert event.output_messages[0].tool_calls[0].name == "f"
    assert event.tool_definitions[0].description == "does f"
    assert (event.usage.input_tokens, event.usage.output_tokens) == (7, 2)


def test_openinference_retriever_and_plain_values():
    event = one(
        {
            "openinference.span.kind": "RETRIEVER",
            "input.value": "refund policy?",
            "retrieval.documents.0.document.content": "doc A",
            "retrieval.documents.1.document.content": "doc B",
        }
    )
    assert event.input_messages[0].content == "refund policy?"
    assert event.retrieved_documents == ("doc A", "doc B")


def test_execute_tool_span_and_mcp_call():
    tool = one(
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "get_order",
            "gen_ai.tool.description": "Find an order",
            "gen_ai.tool.call.id": "c7",
            "gen_ai.tool.call.arguments": '{"id": 1}',
            "gen_ai.tool.call.result": "shipped",
        }
    )
    assert tool.operation == "execute_tool"
    assert tool.tool_calls[0].result == "shipped" and tool.tool_calls[0].id == "c7"
    assert tool.tool_definitions[0].description == "Find an order"
    mcp = one({"mcp.method.name": "tools/call", "gen_ai.tool.name": "read_file", "mcp.session.id": "m1"})
    assert mcp.operation == "tools/call" and mcp.convention == "mcp"
    assert mcp.tool_calls[0].name == "read_file"


def test_an_mcp_tools_list_answer_becomes_the_servers_tool_definitions():
    answer = {"result": {"tools": [
        {"name": "fetch", "description": "Fetches a URL from the internet.",
         "inputSchema": {"type": "object", "properties": {"url": {"type": "string"}}}},
        {"name": "broken"}, {"description": "no name"}, "not a tool",
    ]}}  # fmt: skip
    listed = one({"mcp.method.name": "tools/list", "mcp.session.id": "m1", "mcp.server.name": "fetch-server",
                  "output.value": json.dumps(answer)})  # fmt: skip
    assert listed.operation == "tools/list"
    tools = [(t.name, t.server) for t in listed.tool_definitions]
    assert tools == [("fetch", "fetch-server"), ("broken", "fetch-server")]
    assert listed.tool_definitions[0].parameters == {"type": "object", "properties": {"url": {"type": "string"}}}


def test_span_events_carry_messages_in_older_conventions():
    event = one(
        {"gen_ai.system": "openai"},
        events=[
            ("gen_ai.system.message", {"content": "sys"}),
            ("gen_ai.user.message", {"content": "from event"}),
            ("gen_ai.choice", {"message": json.dumps({"role": "assistant", "content": "reply"})}),
        ],
    )
    assert event.system_instructions == "sys"
    assert event.input_messages[0].content == "from event"
    assert event.output_messages[0].content == "reply"


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"gen_ai.conversation.id": "a", "session.id": "b", "langfuse.session.id": "c"}, "a"),
        ({"session.id": "b", "langfuse.session.id": "c"}, "b"),
        ({"langfuse.session.id": "c"}, "c"),
        ({}, "01" * 16),
    ],
)
def test_session_id_precedence(attrs, expected):
    assert one({"gen_ai.operation.name": "chat", **attrs}).session_id == expected


def test_session_id_inherited_from_parent_span_of_same_trace():
    parent = span({"gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "conv-p"}, span_id=b"\x0a" * 8)
    child = span({"gen_ai.operation.name": "chat"}, span_id=b"\x0b" * 8, parent=b"\x0a" * 8)
    other_trace = span({"gen_ai.operation.name": "chat"}, trace_id=b"\x09" * 16, span_id=b"\x0c" * 8)
    events = map_request(request(child, parent, other_trace)).events
    assert [e.session_id for e in events] == ["conv-p", "conv-p", "09" * 16]


def test_non_llm_spans_are_skipped_and_counted():
    result = map_request(
        request(span({"http.request.method": "GET"}), span({"db.system": "postgresql"}, span_id=b"\x03" * 8))
    )
    assert result.events == [] and result.skipped_spans == 2


def test_drill_id_is_moved_out_of_what_detectors_see():
    event = one({"gen_ai.operation.name": "chat", DRILL_ATTRIBUTE: "drill-42"})
    assert event.drill_id == "drill-42"
    assert DRILL_ATTRIBUTE not in event.attributes
    assert "drill-42" not in event.model_dump_json(exclude={"drill_id"})


def test_service_and_tenant_come_from_the_resource():
    event = map_request(
        request(span({"gen_ai.operation.name": "chat"}), service="billing", resource={"tenant.id": "acme"})
    ).events[0]
    assert (event.service, event.tenant) == ("billing", "acme")


def test_malformed_json_attribute_stays_text():
    event = one({"gen_ai.operation.name": "chat", "gen_ai.input.messages": "[not json"})
    assert event.input_messages[0].content == "[not json"


@pytest.mark.parametrize("payload", [b"\xff\xff\xff\xff", b"\x0a\x05garbage-that-is-not-a-message"])
def test_garbage_bytes_are_malformed(payload):
    with pytest.raises(MalformedRecord):
        map_request(parse_trace_request(payload))


def test_wrong_sized_ids_are_malformed():
    with pytest.raises(MalformedRecord, match="16 and 8"):
        map_request(request(span({"gen_ai.operation.name": "chat"}, trace_id=b"\x01" * 3)))


def test_sdk_emitted_traffic_maps_every_llm_span():
    """Spans as the real OpenTelemetry SDK encodes them, not hand-built protobuf."""
    sessions = list(TrafficGenerator(seed=3).sessions(60))
    result = map_request(sessions_to_request(sessions))
    assert len(result.events) == sum(s.llm_spans() for s in sessions)

    def http_spans(specs):  # chat sessions' HTTP server spans, and retried calls' HTTP attempts
        return sum(bool(x.attributes.get("http.request.method")) + http_spans(x.children) for x in specs)

    assert result.skipped_spans == sum(http_spans(s.roots) for s in sessions)
    conventions = {e.convention for e in result.events}
    assert {"genai", "genai-legacy", "openinference"} <= conventions
    agents = [e for e in result.events if e.operation == "execute_tool"]
    assert agents and all(e.session_id != e.trace_id for e in agents)  # inherited from invoke_agent

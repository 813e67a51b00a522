"""Fuzzing the normalize step: hostile OTLP records through the pure mapping, in-process.

Every record either maps to valid events (each one serialises and reads back as an LLMEvent) or
raises MalformedRecord, whose message is the dead letter's reason. Any other exception is a bug:
the worker would still dead-letter it, but as an "internal error" with a stack trace in its log.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.agents.common import TopicHandles
from pipeline.agents.log_join import LogJoin
from pipeline.agents.normalize import Normalizer
from schemas.dead_letter import DeadLetter
from schemas.envelope import ENVELOPE_HEADERS, EnvelopeCodec
from schemas.events import LLMEvent
from schemas.otel_logs import content_by_span, parse_logs_request
from schemas.otel_mapping import MAX_ATTRIBUTE_CHARS, MAX_JSON_DEPTH, MalformedRecord, map_request, parse_trace_request

FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

# Attribute keys the mapping reads, so that fuzzed values reach its parsing code, not just a dict.
KEYS = [
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions", "gen_ai.tool.definitions",
    "gen_ai.operation.name", "gen_ai.prompt.0.content", "gen_ai.prompt.0.role", "gen_ai.completion.0.content",
    "gen_ai.completion.0.tool_calls.0.name", "gen_ai.completion.0.tool_calls.0.arguments",
    "gen_ai.prompt.1.tool_call_id",
    "llm.input_messages.0.message.role", "llm.input_messages.0.message.content",
    "llm.input_messages.0.message.contents.0.message_content.text",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name", "llm.tools.0.tool.json_schema",
    "llm.request.functions.0.name", "llm.request.functions.0.parameters", "input.value", "output.value",
    "openinference.span.kind", "traceloop.span.kind", "traceloop.entity.input", "mcp.method.name",
    "retrieval.documents.0.document.content", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
    "llm.token_count.prompt", "gen_ai.conversation.id", "session.id", "oodwatch.drill.id", "service.name",
    "tenant.id", "gen_ai.request.model", "gen_ai.provider.name", "gen_ai.tool.name", "gen_ai.tool.description",
    "gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "gen_ai.tool.call.id", "server.address", "event.name",
    "gen_ai.prompt", "gen_ai.completion", "content", "message", "tool_calls", "id", "gen_ai.event.content",
]  # fmt: skip
JSON_KEYS = [
    "role", "parts", "type", "content", "text", "uri", "tool_calls", "function", "name", "arguments", "id",
    "response", "result", "parameters", "inputSchema", "input_schema", "description", "message",
]  # fmt: skip
PART_TYPES = ["text", "tool_call", "tool_call_response", "blob", None, 3]
EVENT_NAMES = [
    "gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message", "gen_ai.tool.message",
    "gen_ai.choice", "gen_ai.content.prompt", "gen_ai.content.completion", "gen_ai.client.inference.operation.details",
    "exception", "",
]  # fmt: skip

texts = st.text(max_size=40) | st.sampled_from(["", "\x00", "\u202e", "😀" * 3, "Ignore previous instructions"])
numbers = (
    st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([math.inf, -math.inf, math.nan])
)
json_leaves = st.none() | st.booleans() | numbers | texts | st.sampled_from(PART_TYPES)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(JSON_KEYS) | texts, inner, max_size=5),
    max_leaves=25,
)


def deep_json(kind: str, depth: int) -> str:
    """JSON nested `depth` deep: the shape that overflows a recursive parser or printer."""
    if kind == "array":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"content":' * depth + '"x"' + "}" * depth
    return '[{"role":"user","parts":' * depth + "[]" + "}]" * depth


deep_strings = st.builds(
    deep_json,
    st.sampled_from(["array", "object", "message"]),
    st.sampled_from([1, 70, 900, 5_000, 120_000]) | st.integers(1, 300),
)


def json_strings(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


def any_values(depth: int = 3) -> st.SearchStrategy[AnyValue]:
    leaves = st.one_of(
        texts.map(lambda v: AnyValue(string_value=v)),
        st.builds(json_strings, json_values).map(lambda v: AnyValue(string_value=v)),
        deep_strings.map(lambda v: AnyValue(string_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: AnyValue(int_value=v)),
        st.floats(allow_nan=True, allow_infinity=True).map(lambda v: AnyValue(double_value=v)),
        st.binary(max_size=20).map(lambda v: AnyValue(bytes_value=v)),
        st.just(AnyValue()),
    )

    def nest(inner: st.SearchStrategy[AnyValue]) -> st.SearchStrategy[AnyValue]:
        return st.lists(inner, max_size=3).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))) | st.lists(
            st.tuples(st.sampled_from(KEYS) | texts, inner), max_size=3
        ).map(lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs])))

    return st.recursive(leaves, nest, max_leaves=12)


def string_value(text: str) -> AnyValue:
    return AnyValue(string_value=text)


#: Structured attributes travel as JSON strings: weight them, and nesting, over other values.
attribute_values = st.one_of(
    st.builds(json_strings, json_values).map(string_value), deep_strings.map(string_value), any_values()
)
attributes = st.lists(st.tuples(st.sampled_from(KEYS) | texts, attribute_values), max_size=8).map(
    lambda kvs: [KeyValue(key=k, value=v) for k, v in kvs]
)
valid_ids16 = st.sampled_from([b"\x01" * 16, b"\x02" * 16])
valid_ids8 = st.sampled_from([b"\x03" * 8, b"\x04" * 8])
any_ids = st.binary(min_size=0, max_size=20)


@st.composite
def spans(draw: st.DrawFn, broken_ids: bool = False) -> Span:
    span = Span(
        trace_id=draw(any_ids if broken_ids else valid_ids16),
        span_id=draw(any_ids if broken_ids else valid_ids8),
        parent_span_id=draw(st.sampled_from([b"", b"\x05" * 8, b"\x06"])),
        name=draw(texts),
        start_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
        end_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
        attributes=draw(attributes),
    )
    for name, attrs in draw(st.lists(st.tuples(st.sampled_from(EVENT_NAMES) | texts, attributes), max_size=3)):
        span.events.add(name=name).attributes.extend(attrs)
    return span


@st.composite
def trace_requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(draw(attributes))
        broken_ids = draw(st.integers(0, 9)) == 0  # mostly well-formed, so the content is reached
        resource_spans.scope_spans.add().spans.extend(draw(st.lists(spans(broken_ids), min_size=1, max_size=3)))
    return request


@st.composite
def logs_requests(draw: st.DrawFn) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for _ in range(draw(st.integers(1, 4))):
        scope.log_records.append(
            LogRecord(
                trace_id=draw(valid_ids16 | any_ids),
                span_id=draw(valid_ids8 | any_ids),
                event_name=draw(st.sampled_from(EVENT_NAMES) | texts),
                attributes=draw(attributes),
                body=draw(any_values()),
            )
        )
    return request


def normalize_spans(payload: bytes) -> list[LLMEvent] | MalformedRecord:
    """What the normalize agent does with an otlp_spans record, checked: valid events or a reason."""
    try:
        result = map_request(parse_trace_request(payload), received_ns=1, normalized_ns=2)
    except MalformedRecord as exc:
        assert str(exc), "a dead letter needs a reason"
        return exc
    for event in result.events:  # what goes on llm-events reads back as the same record
        record = event.model_dump_json()
        assert LLMEvent.model_validate_json(record).model_dump_json() == record
        assert all(len(v) <= MAX_ATTRIBUTE_CHARS for v in event.attributes.values())
    return result.events


def normalize_logs(payload: bytes) -> None:
    try:
        found = content_by_span(parse_logs_request(payload))
    except MalformedRecord as exc:
        assert str(exc)
        return
    for content in found.values():  # what the join puts on the event must serialise
        LLMEvent(
            event_id="e",
            trace_id="t",
            span_id="s",
            session_id="x",
            input_messages=tuple(content.inputs),
            output_messages=tuple(content.outputs),
            tool_definitions=tuple(content.tools),
            tool_calls=tuple(content.tool_calls),
        ).model_dump_json()


@FUZZ
@given(trace_requests())
def test_fuzzed_trace_requests_map_to_valid_events_or_a_malformed_reason(request: ExportTraceServiceRequest) -> None:
    normalize_spans(request.SerializeToString())


@FUZZ
@given(logs_requests())
def test_fuzzed_log_records_give_valid_content_or_a_malformed_reason(request: ExportLogsServiceRequest) -> None:
    normalize_logs(request.SerializeToString())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_malformed_or_empty(payload: bytes) -> None:
    normalize_spans(payload)
    normalize_logs(payload)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=4), st.integers(0, 400))
def test_a_valid_record_with_bytes_flipped_or_cut(noise: bytes, at: int) -> None:
    """Mutations of a real record: truncated, with garbage spliced in."""
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="chat")
    span.attributes.add(key="gen_ai.input.messages", value=AnyValue(string_value='[{"role":"user","parts":[]}]'))
    good = ExportTraceServiceRequest()
    good.resource_spans.add().scope_spans.add().spans.append(span)
    payload = good.SerializeToString()
    at %= len(payload)
    normalize_spans(payload[:at])
    normalize_spans(payload[:at] + noise + payload[at:])


#: Spans of each convention the mapping knows, to put a hostile value into.
CONTEXTS = [
    {"gen_ai.operation.name": "chat"},
    {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "t", "gen_ai.tool.description": "d"},
    {"openinference.span.kind": "TOOL", "input.value": "{}"},
    {"mcp.method.name": "tools/call"},
    {"traceloop.span.kind": "tool"},
    {"gen_ai.prompt.0.role": "user", "llm.input_messages.0.message.role": "user"},
]
HOSTILE = [
    AnyValue(double_value=math.inf), AnyValue(double_value=-math.inf), AnyValue(double_value=math.nan),
    AnyValue(double_value=1e300), AnyValue(int_value=2**63 - 1), AnyValue(int_value=-(2**63)),
    AnyValue(bool_value=True), AnyValue(bytes_value=b"\xff\xfe\x00"), AnyValue(), AnyValue(array_value=ArrayValue()),
    AnyValue(kvlist_value=KeyValueList()),
    AnyValue(array_value=ArrayValue(values=[AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="role")]))])),
    *(
        AnyValue(string_value=text)
        for text in [
            "", "9" * 5000, "1e999", "-1", "NaN", "null", "true", "[]", "{}", '"text"', "[1, 2]", '{"role": 5}',
            '[{"role": ["x"], "parts": {"type": "text"}}]', '[{"parts": [{"type": "tool_call", "arguments": {}}]}]',
            '[{"parts": [{"type": "tool_call_response", "response": [[]]}]}]', '{"function": 3, "name": {}}',
            '[{"function": {"name": 1, "parameters": [1]}, "id": {}}]', '{"message": {"tool_calls": "x"}}',
            deep_json("array", 100_000), deep_json("object", 65), deep_json("message", 2_000), "[" * 10, "\ud7ff",
        ]
    ),
]  # fmt: skip


def test_every_key_the_mapping_reads_with_every_wrong_type() -> None:
    """Exhaustive where the fuzzer is thin: each known key, in each convention's span, with
    each hostile value (ints and doubles where text is expected, lists where objects are,
    non-finite numbers, deep JSON). Found: inf as a token count raised OverflowError."""
    for context in CONTEXTS:
        for key in KEYS:
            for value in HOSTILE:
                request = ExportTraceServiceRequest()
                span = (
                    request.resource_spans.add().scope_spans.add().spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
                )
                for context_key, text in context.items():
                    span.attributes.add(key=context_key, value=AnyValue(string_value=text))
                span.attributes.add(key=key, value=value)
                span.events.add(name="gen_ai.choice").attributes.add(key=key, value=value)
                outcome = normalize_spans(request.SerializeToString())
                assert isinstance(outcome, list) and len(outcome) == 1, (context, key, value)


def one_span_request(**attrs: AnyValue) -> bytes:
    request = ExportTraceServiceRequest()
    span = (
        request.resource_spans.add()
        .scope_spans.add()
        .spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="chat")
    )
    span.attributes.add(key="gen_ai.operation.name", value=AnyValue(string_value="chat"))
    for key, value in attrs.items():
        span.attributes.add(key=key.replace("__", ".")).value.MergeFrom(value)
    return request.SerializeToString()


def nested_attribute_request(depth: int) -> bytes:
    """A span whose gen_ai.input.messages is a kvlist/array AnyValue nested `depth` deep, built in
    place (protobuf refuses to copy a message deeper than its parse limit of 100 messages)."""
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    span.attributes.add(key="gen_ai.operation.name", value=AnyValue(string_value="chat"))
    value = span.attributes.add(key="gen_ai.input.messages").value
    for level in range(depth):
        value = value.array_value.values.add() if level % 2 else value.kvlist_value.values.add(key="k").value
    value.string_value = "leaf"
    return request.SerializeToString()


def test_deeply_nested_json_in_messages_stays_text_and_is_screened() -> None:
    """Found by the fuzzer: json.loads raised RecursionError (the worker dead-lettered the
    span as an 'internal error'); nesting past MAX_JSON_DEPTH is now kept as text."""
    for depth in (MAX_JSON_DEPTH + 1, 5_000, 200_000):
        deep = '[{"role":"user","parts":' * depth + "[]" + "}]" * depth
        [event] = normalize_spans(one_span_request(gen_ai__input__messages=AnyValue(string_value=deep)))
        assert event.input_messages[0].content == deep[:MAX_ATTRIBUTE_CHARS]


def test_non_finite_token_counts_are_dropped() -> None:
    """Found by the fuzzer: a token count of inf (a double attribute, or OTLP/JSON's "Infinity")
    raised OverflowError in int()."""
    for value in (math.inf, -math.inf, math.nan, 1e300, -1.0):
        [event] = normalize_spans(one_span_request(gen_ai__usage__input_tokens=AnyValue(double_value=value)))
        assert event.usage.input_tokens is None, value  # not a count: dropped, never kept or clamped
    [event] = normalize_spans(one_span_request(gen_ai__usage__input_tokens=AnyValue(double_value=1e6)))
    assert event.usage.input_tokens == 1_000_000  # a real count stays


def test_nesting_past_the_protobuf_limit_is_malformed() -> None:
    [event] = normalize_spans(nested_attribute_request(30))
    assert "leaf" in event.attributes["gen_ai.input.messages"]
    for depth in (40, 1_000):
        outcome = normalize_spans(nested_attribute_request(depth))
        assert isinstance(outcome, MalformedRecord) and "MaxDepth" in str(outcome)


def test_huge_attribute_value_is_truncated_on_the_event() -> None:
    big = "A" * (10 * 1024 * 1024)
    payload = one_span_request(
        gen_ai__input__messages=AnyValue(string_value=json.dumps([{"role": "user", "content": big}])),
        input__value=AnyValue(string_value=big),
    )
    [event] = normalize_spans(payload)
    assert len(event.input_messages[0].content) == MAX_ATTRIBUTE_CHARS


def test_huge_span_count_maps() -> None:
    request = ExportTraceServiceRequest()
    spans_out = request.resource_spans.add().scope_spans.add().spans
    for n in range(20_000):
        spans_out.add(trace_id=n.to_bytes(16, "big"), span_id=b"\x02" * 8, name="GET").attributes.add(
            key="http.method", value=AnyValue(string_value="GET")
        )
    result = map_request(parse_trace_request(request.SerializeToString()))
    assert result.skipped_spans == 20_000 and result.events == []


# -- the agent loop itself: hostile records in, dead letters with reasons out -----------------


class FakeTopic:
    partitions = 1

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    async def send(self, *, key: bytes, value: bytes, partition: int, headers: Any) -> None:
        self.sent.append((key, value))

    def items(self, model: Any) -> list[Any]:
        return [item for _, value in self.sent for item in EnvelopeCodec(model).decode(value, ENVELOPE_HEADERS).items]


class FakeMessage:
    def __init__(self, topic: str, offset: int) -> None:
        self.topic, self.partition, self.offset, self.headers, self.timestamp = topic, 0, offset, [], 1.0


class FakeEvent:
    def __init__(self, topic: str, offset: int, value: bytes) -> None:
        self.message, self.value, self.acked = FakeMessage(topic, offset), value, False

    def ack(self) -> None:
        self.acked = True


class FakeStream:
    def __init__(self, events: list[FakeEvent]) -> None:
        self._events = events

    async def noack_take(self, size: int, within: float) -> Any:
        yield self._events


async def test_the_normalize_agent_dead_letters_hostile_records_with_reasons_and_goes_on() -> None:
    deep = "[" * 50_000 + "]" * 50_000
    records = [
        ("otlp_spans", b"\xff\xfe garbage"),
        ("otlp_spans", nested_attribute_request(200)),
        ("otlp_logs", b"\x0a\x05\x0a\x03\xff\xff\xff"),
        ("otlp_spans", Span(trace_id=b"\x01", span_id=b"\x02" * 8).SerializeToString()),
        ("otlp_spans", one_span_request(gen_ai__input__messages=AnyValue(string_value=deep))),
        (
            "otlp_spans",
            one_span_request(
                gen_ai__usage__input_tokens=AnyValue(double_value=math.inf), input__value=AnyValue(string_value="hi")
            ),
        ),
    ]
    stream = FakeStream([FakeEvent(topic, offset, value) for offset, (topic, value) in enumerate(records)])
    topics = TopicHandles(FakeTopic(), FakeTopic(), FakeTopic(), FakeTopic(), FakeTopic())
    normalizer = Normalizer(topics, LogJoin(span_wait_s=0, log_wait_s=0), "otlp_logs", batch_size=8, window_s=0.01)
    await normalizer.run(stream)
    counters = normalizer.counters
    letters = topics.dead_letters.items(DeadLetter)
    assert all(letter.stage == "normalize" and letter.reason for letter in letters)
    assert not [letter.reason for letter in letters if letter.reason.startswith("internal error")]
    assert counters.records == len(records) and counters.dead_letters == len(letters) >= 2
    assert counters.items == len(topics.llm_events.items(LLMEvent)) == 2  # the deep JSON and inf-token spans
    assert all(event.acked for event in stream._events)


def test_tool_schemas_nested_too_deep_stay_text() -> None:
    """Found by the fuzzer: a tool definition whose JSON schema nested ~300 deep parsed, but the
    event then failed to serialise (PydanticSerializationError) in emit(), outside the agent's
    dead-letter guard: the normalize agent crashed, and the unacked record would crash it again."""
    schema = '{"a":' * 300 + "1" + "}" * 300
    tools = AnyValue(string_value=f'[{{"name": "t", "parameters": {schema}}}]')
    [event] = normalize_spans(one_span_request(gen_ai__tool__definitions=tools))
    assert event.tool_definitions == ()  # the definition stays text, in the attributes
    assert event.attributes["gen_ai.tool.definitions"].startswith('[{"name": "t"')


async def test_emit_drops_an_event_that_cannot_be_serialised_instead_of_crashing() -> None:
    from pipeline.agents.log_join import JoinOutput
    from schemas.events import ToolDefinition

    deep: dict[str, Any] = {}
    node = deep
    for _ in range(300):
        node["a"] = node = {}
    bad = LLMEvent(event_id="e1", trace_id="t", span_id="s", session_id="x",
                   tool_definitions=(ToolDefinition(name="t", parameters=deep),))  # fmt: skip
    good = LLMEvent(event_id="e2", trace_id="t", span_id="s2", session_id="x")
    topics = TopicHandles(FakeTopic(), FakeTopic(), FakeTopic(), FakeTopic(), FakeTopic())
    normalizer = Normalizer(topics, LogJoin(), "otlp_logs", batch_size=8, window_s=0.01)
    source = FakeEvent("otlp_spans", 0, b"")
    await normalizer.emit(JoinOutput(events=[bad, good], acks=[source]))
    assert [e.event_id for e in topics.llm_events.items(LLMEvent)] == ["e2"]
    assert normalizer.counters.unserialisable == 1 and source.acked

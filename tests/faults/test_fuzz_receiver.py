"""Fuzzing the OTLP receiver: hostile bodies over HTTP get a 4xx with a reason, never a 5xx; what
it accepts flows through the normalize step as events or as a dead letter with a reason.

Most cases run against the receiver app in-process (a real aiohttp server on 127.0.0.1, a
recording producer), thousands of requests in seconds. The last test sends a handful of
hostile payloads through the real path: a receiver process, tansu, and the normalize agent's
loop reading the real topic and writing events and dead letters back to it.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.rpc.status_pb2 import Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from pipeline.agents.common import TopicHandles
from pipeline.agents.log_join import LogJoin
from pipeline.agents.normalize import Normalizer
from pipeline.ingest.receiver import create_receiver_app
from pipeline.perf.metrics import KNOWN, MetricDecoder
from pipeline.perf.spans import timings_from_request
from pipeline.settings import Settings, Topics
from pipeline.stack.topics import ensure_topics
from schemas.dead_letter import DeadLetter
from schemas.events import LLMEvent
from schemas.otel_logs import content_by_span, parse_logs_request
from schemas.otel_mapping import MalformedRecord, map_request, parse_otlp, parse_trace_request
from tests.faults.ledger import record as ledger_record
from tests.faults.test_receiver_overload import running_broker, running_receiver
from tests.helpers import request, span, test_settings
from tests.integration.kafka_io import consume_until, decoded, produce

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
FUZZ = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
LIMIT = 256 * 1024
MAX_ITEMS = 1_000


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]) -> Any:
        self.sent.append((topic, value))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class InProcessReceiver:
    """The receiver app on a real socket, driven from synchronous (hypothesis) tests."""

    def __init__(self, settings: Settings) -> None:
        self.producer = RecordingProducer()
        self.loop = asyncio.new_event_loop()
        self.client: TestClient[Any, Any] = self.loop.run_until_complete(self._start(settings))

    async def _start(self, settings: Settings) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(TestServer(create_receiver_app(settings, self.producer)))
        await client.start_server()
        return client

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str, list[tuple[str, bytes]]]:
        """(status, reply body, reply content type, records produced)."""
        self.producer.sent.clear()

        async def call() -> tuple[int, bytes, str]:
            async with self.client.post(path, data=body, headers=headers) as response:
                return response.status, await response.read(), response.content_type

        status, reply, reply_type = self.loop.run_until_complete(call())
        return status, reply, reply_type, list(self.producer.sent)

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessReceiver]:
    app = InProcessReceiver(
        Settings(
            data_dir=tmp_path_factory.mktemp("receiver"),
            max_request_bytes=LIMIT,
            receiver_max_items_per_request=MAX_ITEMS,
        )
    )
    yield app
    app.close()


def check(receiver: InProcessReceiver, path: str, body: bytes, content_type: str, **headers: str) -> int:
    """The fuzzing oracle: a 4xx with a reason, or a 200 whose records the normalize step maps to
    valid events or rejects with MalformedRecord. A 5xx, or any other exception, fails."""
    status, reply, reply_type, sent = receiver.post(path, body, {"Content-Type": content_type, **headers})
    assert status in (200, 400, 413, 415), (status, reply[:300])
    if status != 200:
        assert sent == []
        if reply_type == "text/plain":  # aiohttp's own 400: a body it cannot decompress at all
            assert status == 400 and headers.get("Content-Encoding") in ("br", "deflate", "gzip", "zstd")
            return status
        message = json.loads(reply)["message"] if content_type != PROTOBUF else Status.FromString(reply).message
        assert message, "a rejection carries its reason"
        return status
    for topic, value in sent:
        try:
            if topic == "otlp_logs":
                content_by_span(parse_logs_request(value))
            elif topic == "otlp_metrics":  # the perf consumer: points refused with reasons, never raised
                result = PERF_DECODER.decode(parse_otlp(value, ExportMetricsServiceRequest))
                assert all(reason for reason in result.refused)
                assert all(d.count > 0 and sum(d.counts) in (0, d.count) for d in result.deltas)
            else:
                traces = parse_trace_request(value)
                for event in map_request(traces).events:
                    LLMEvent.model_validate_json(event.model_dump_json())
                for timing in timings_from_request(traces):  # the perf consumer reads the same records
                    assert timing.e2e_ms >= 0 and not timing.ttft_ms < 0
        except MalformedRecord as exc:  # would be a dead letter with this reason
            assert str(exc)
    return status


#: One decoder across examples, as in the store process: cumulative state carries over requests.
PERF_DECODER = MetricDecoder()


# -- strategies: OTLP/JSON-shaped documents with wrong types anywhere ------------------------

KEYS = ["gen_ai.input.messages", "gen_ai.operation.name", "gen_ai.usage.input_tokens", "gen_ai.tool.definitions",
        "input.value", "service.name", "x"]  # fmt: skip
junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
hex_ids = st.sampled_from(["5b8efff798038103d269b633813fc60c", "", "zz", "5b8e", "0" * 32]) | st.text(max_size=34)
span_hex = st.sampled_from(["eee19b7ec3c1b174", "", "e" * 15, "E" * 16]) | st.text(max_size=18)


def any_value_json(depth: int = 2) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.builds(lambda v: {"stringValue": v}, st.text(max_size=20) | junk),
        st.builds(lambda v: {"intValue": v}, st.integers() | st.text(max_size=25) | st.floats()),
        st.builds(
            lambda v: {"doubleValue": v}, st.floats() | st.sampled_from(["Infinity", "NaN", "-Infinity", "1e999"])
        ),
        st.builds(lambda v: {"boolValue": v}, st.booleans() | st.text(max_size=5)),
        st.builds(
            lambda v: {"bytesValue": v}, st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode()) | junk
        ),
        junk,
    )
    return st.recursive(
        leaves,
        lambda inner: (
            st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(inner, max_size=3))
            | st.builds(
                lambda kvs: {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kvs]}},
                st.lists(st.tuples(st.sampled_from(KEYS), inner), max_size=3),
            )
        ),
        max_leaves=10,
    )


attributes_json = (
    st.lists(
        st.builds(lambda k, v: {"key": k, "value": v}, st.sampled_from(KEYS) | junk, any_value_json()) | junk,
        max_size=4,
    )
    | junk
)
span_json = st.fixed_dictionaries(
    {"traceId": hex_ids | junk, "spanId": span_hex | junk, "name": st.text(max_size=10) | junk},
    optional={
        "parentSpanId": span_hex | junk,
        "kind": st.integers(-2, 9) | st.sampled_from(["SPAN_KIND_CLIENT", "NOPE"]),
        "startTimeUnixNano": st.integers(-1, 2**64) | st.text(max_size=22) | st.floats(),
        "attributes": attributes_json,
        "events": st.lists(
            st.fixed_dictionaries({"name": st.text(max_size=20) | junk}, optional={"attributes": attributes_json}),
            max_size=2,
        )
        | junk,
        "status": st.fixed_dictionaries({"code": st.integers(-1, 3) | junk, "message": st.text(max_size=5) | junk}),
    },
)
trace_json = (
    st.fixed_dictionaries(
        {
            "resourceSpans": st.lists(
                st.fixed_dictionaries(
                    {
                        "scopeSpans": st.lists(
                            st.fixed_dictionaries({"spans": st.lists(span_json, max_size=3) | junk}), max_size=2
                        )
                        | junk
                    },
                    optional={"resource": st.fixed_dictionaries({"attributes": attributes_json}) | junk},
                )
                | junk,
                max_size=2,
            )
            | junk
        }
    )
    | junk
)


#: Well-formed OTLP/JSON down to the span, hostile only in attribute values: most of these are
#: accepted, so the fuzzed values reach the normalize step.
valid_span_json = st.fixed_dictionaries(
    {
        "traceId": st.sampled_from(["5b8efff798038103d269b633813fc60c", "0af7651916cd43dd8448eb211c80319c"]),
        "spanId": st.sampled_from(["eee19b7ec3c1b174", "b7ad6b7169203331"]),
        "name": st.text(max_size=10),
        "attributes": st.lists(st.builds(lambda k, v: {"key": k, "value": v}, st.sampled_from(KEYS), any_value_json())),
    },
    optional={"events": st.lists(st.fixed_dictionaries({"name": st.text(max_size=20), "attributes": attributes_json}))},
)
valid_trace_json = st.builds(
    lambda spans, resource: {
        "resourceSpans": [{"resource": {"attributes": resource}, "scopeSpans": [{"spans": spans}]}]
    },
    st.lists(valid_span_json, min_size=1, max_size=3),
    attributes_json,
)


# -- OTLP/JSON metrics: GenAI histograms with hostile numbers, buckets and temporalities ------

number = (
    st.integers(-5, 2**64) | st.floats() | st.text(max_size=6) | st.sampled_from(["NaN", "Infinity", "-1", "1e999"])
)
small = st.integers(0, 50)
point_json = st.fixed_dictionaries(
    {},
    optional={
        "startTimeUnixNano": st.sampled_from(["1700000000000000000", "1700000060000000000", "0"]) | number,
        "timeUnixNano": st.integers(1_700_000_000, 1_700_000_600).map(lambda s: str(s * 10**9)) | number,
        "count": small | number,
        "sum": st.floats(0, 100) | number,
        "bucketCounts": st.lists(small | number, max_size=5) | junk,
        "explicitBounds": st.lists(st.floats(0, 10) | number, max_size=5) | junk,
        "attributes": st.lists(
            st.builds(lambda k, v: {"key": k, "value": {"stringValue": v}},
                      st.sampled_from(["gen_ai.request.model", "gen_ai.token.type", "x"]), st.sampled_from(["m", "o"])),
            max_size=2,
        ) | attributes_json,
        "min": number,
        "max": number,
    },
)  # fmt: skip
metric_json = st.fixed_dictionaries(
    {"name": st.sampled_from([*KNOWN, "gen_ai.client.generation.choices", "x.y", ""]) | junk},
    optional={
        "unit": st.sampled_from(["s", "ms", "{token}", "", "h"]) | junk,
        "histogram": st.fixed_dictionaries(
            {"dataPoints": st.lists(point_json, max_size=3) | junk},
            optional={"aggregationTemporality": st.integers(-1, 3) | st.just("AGGREGATION_TEMPORALITY_DELTA")},
        ) | junk,
        "sum": st.fixed_dictionaries({"dataPoints": st.lists(st.fixed_dictionaries({"asInt": number}), max_size=2)}),
        "exponentialHistogram": st.fixed_dictionaries({"dataPoints": st.lists(point_json, max_size=1)}),
    },
)  # fmt: skip
metrics_json = (
    st.fixed_dictionaries(
        {
            "resourceMetrics": st.lists(
                st.fixed_dictionaries(
                    {"scopeMetrics": st.lists(
                        st.fixed_dictionaries(
                            {"metrics": st.lists(metric_json, max_size=3) | junk},
                            optional={"scope": st.fixed_dictionaries(
                                {"name": st.sampled_from(["opentelemetry.instrumentation.openai.v1", "vllm", ""])})},
                        ), max_size=2) | junk},
                    optional={"resource": st.fixed_dictionaries({"attributes": attributes_json}) | junk},
                ) | junk,
                max_size=2,
            ) | junk
        }
    )
    | junk
)  # fmt: skip


@FUZZ
@given(metrics_json)
def test_fuzzed_otlp_metrics_get_4xx_or_decode_with_reasons(receiver: InProcessReceiver, document: Any) -> None:
    check(receiver, "/v1/metrics", json.dumps(document).encode(), JSON)


def test_huge_metric_point_counts_get_413_past_the_limit(receiver: InProcessReceiver) -> None:
    def many(count: int) -> bytes:
        metrics = ExportMetricsServiceRequest()
        metric = metrics.resource_metrics.add().scope_metrics.add().metrics.add(name="gen_ai.client.operation.duration")
        metric.histogram.data_points.add(count=1, bucket_counts=[1])
        metric.histogram.data_points.extend([metric.histogram.data_points[0]] * (count - 1))
        return metrics.SerializeToString()

    assert check(receiver, "/v1/metrics", many(MAX_ITEMS), PROTOBUF) == 200
    assert check(receiver, "/v1/metrics", many(MAX_ITEMS + 1), PROTOBUF) == 413


def valid_trace(**attributes: Any) -> bytes:
    return request(span({"gen_ai.operation.name": "chat", **attributes})).SerializeToString()


@FUZZ
@given(valid_trace_json | trace_json, st.sampled_from(["/v1/traces", "/v1/logs", "/v1/metrics"]))
def test_fuzzed_otlp_json_gets_4xx_or_maps(receiver: InProcessReceiver, document: Any, path: str) -> None:
    check(receiver, path, json.dumps(document).encode(), JSON)


@FUZZ
@given(st.binary(max_size=2_000), st.sampled_from([PROTOBUF, JSON]), st.sampled_from(["/v1/traces", "/v1/logs",
                                                                                        "/v1/metrics"]))  # fmt: skip
def test_random_bytes_get_4xx_or_map(receiver: InProcessReceiver, body: bytes, content_type: str, path: str) -> None:
    check(receiver, path, body, content_type)


@FUZZ
@given(st.integers(0, 10_000), st.binary(min_size=1, max_size=8), st.booleans())
def test_mutated_protobuf_gets_4xx_or_maps(receiver: InProcessReceiver, at: int, noise: bytes, cut: bool) -> None:
    body = valid_trace(**{"gen_ai.input.messages": json.dumps([{"role": "user", "content": "hi"}])})
    at %= len(body)
    check(receiver, "/v1/traces", body[:at] if cut else body[:at] + noise + body[at:], PROTOBUF)


@FUZZ
@given(trace_json, st.integers(0, 10_000), st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\\ud800"]))
def test_invalid_utf8_in_json_gets_4xx_or_maps(receiver: InProcessReceiver, document: Any, at: int, bad: bytes) -> None:
    body = json.dumps(document).encode()
    at %= len(body) + 1
    check(receiver, "/v1/traces", body[:at] + bad + body[at:], JSON)


@FUZZ
@given(
    st.binary(max_size=500) | st.builds(valid_trace),
    st.sampled_from(["gzip", "deflate", "br", "zstd", "identity", "x"]),
)
def test_content_encodings_that_lie_get_4xx(receiver: InProcessReceiver, body: bytes, encoding: str) -> None:
    """A body that is not what its Content-Encoding says (or says an encoding nobody sent) gets a
    4xx; only the truthful pairs (and identity, which says nothing) may be accepted."""
    truthful = {("raw", "identity"), ("gzip", "identity"), ("zlib", "identity"), ("gzip", "gzip"), ("zlib", "deflate")}
    for kind, sent in (("raw", body), ("gzip", gzip.compress(body)), ("zlib", zlib.compress(body))):
        status = check(receiver, "/v1/traces", sent, PROTOBUF, **{"Content-Encoding": encoding})
        if (kind, encoding) not in truthful and (kind != "raw" or body):
            assert 400 <= status < 500, (kind, encoding, status)


def deep_json_body(depth: int) -> bytes:
    """OTLP/JSON with a kvlist AnyValue nested `depth` deep (written out: json.dumps would recurse)."""
    value = '{"kvlistValue":{"values":[{"key":"k","value":' * depth + '{"stringValue":"leaf"}' + "}]}}" * depth
    span_doc = (
        '{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"chat",'
        f'"attributes":[{{"key":"gen_ai.input.messages","value":{value}}}]}}'
    )
    return f'{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span_doc}]}}]}}]}}'.encode()


def test_deep_nesting_gets_400_not_500(receiver: InProcessReceiver) -> None:
    """Found by the fuzzer: JSON nested past the interpreter's recursion limit raised
    RecursionError in json.loads (a 500); and hex-id rewriting recursed over the document."""
    assert check(receiver, "/v1/traces", b"[" * 100_000, JSON) == 400
    assert check(receiver, "/v1/traces", b'{"resourceSpans":' * 10_000 + b"1" + b"}" * 10_000, JSON) == 400
    assert check(receiver, "/v1/traces", deep_json_body(20), JSON) == 200
    for depth in (40, 500, 4_000):  # past protobuf's recursion limit (100 messages), then json's
        assert check(receiver, "/v1/traces", deep_json_body(depth), JSON) == 400
    request_bytes = ExportTraceServiceRequest()
    value = (
        request_bytes.resource_spans.add()
        .scope_spans.add()
        .spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
        .attributes.add(key="gen_ai.input.messages")
        .value
    )
    for level in range(2_000):  # built in place; protobuf refuses to copy it
        value = value.array_value.values.add() if level % 2 else value.kvlist_value.values.add(key="k").value
    assert check(receiver, "/v1/traces", request_bytes.SerializeToString(), PROTOBUF) == 400
    deep_string = '[{"role":"user","parts":' * 10_000 + "[]" + "}]" * 10_000  # JSON inside an attribute string
    assert check(receiver, "/v1/traces", valid_trace(**{"gen_ai.input.messages": deep_string}), PROTOBUF) == 200


def test_wrong_types_in_known_attributes_are_accepted_and_map(receiver: InProcessReceiver) -> None:
    """Found by the fuzzer: a token count of inf (OTLP/JSON "Infinity" or 1e400 as a double) was
    accepted and then raised OverflowError in the normalize step."""
    for value in (
        {"doubleValue": "Infinity"},
        {"doubleValue": "NaN"},
        {"doubleValue": "1" * 400},
        {"arrayValue": {"values": [{"intValue": "5"}]}},
        {"kvlistValue": {"values": []}},
    ):
        span_doc = {
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "name": "chat",
            "attributes": [
                {"key": "gen_ai.usage.input_tokens", "value": value},
                {"key": "gen_ai.input.messages", "value": value},
            ],
        }
        body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span_doc]}]}]}).encode()
        assert check(receiver, "/v1/traces", body, JSON) == 200


def test_huge_span_counts_get_413_past_the_limit(receiver: InProcessReceiver) -> None:
    def many(count: int) -> bytes:
        spans = [span({}, trace_id=n.to_bytes(16, "big"), span_id=b"\x02" * 8) for n in range(count)]
        return request(*spans).SerializeToString()

    assert check(receiver, "/v1/traces", many(MAX_ITEMS), PROTOBUF) == 200
    assert check(receiver, "/v1/traces", many(MAX_ITEMS + 1), PROTOBUF) == 413
    logs = ExportLogsServiceRequest()
    logs.resource_logs.add().scope_logs.add().log_records.extend([LogRecord(event_name="gen_ai.x")] * (MAX_ITEMS + 1))
    assert check(receiver, "/v1/logs", logs.SerializeToString(), PROTOBUF) == 413


def test_bodies_past_the_limit_get_413_however_they_come(receiver: InProcessReceiver) -> None:
    big = b"\x00" * (LIMIT + 1)
    assert check(receiver, "/v1/traces", big, PROTOBUF) == 413  # Content-Length says so
    assert (
        check(receiver, "/v1/traces", gzip.compress(b"\x00" * (64 * LIMIT)), PROTOBUF, **{"Content-Encoding": "gzip"})
        == 413
    )  # a gzip bomb, refused once decoded past it

    async def chunked() -> Any:
        for _ in range(64):
            yield b"\x00" * (LIMIT // 8)

    async def call() -> int:
        async with receiver.client.post("/v1/traces", data=chunked(), headers={"Content-Type": PROTOBUF}) as response:
            return response.status

    assert receiver.loop.run_until_complete(call()) == 413  # no Content-Length: refused once past it


def test_a_10_mib_attribute_is_accepted_under_the_size_setting_and_413_over_it(tmp_path: Path) -> None:
    body = valid_trace(**{"input.value": "A" * (10 * 1024 * 1024)})
    for limit, expected in ((16 * 1024 * 1024, 200), (1024 * 1024, 413)):
        app = InProcessReceiver(Settings(data_dir=tmp_path, max_request_bytes=limit))
        try:
            assert check(app, "/v1/traces", body, PROTOBUF) == expected
        finally:
            app.close()


# -- the real path: receiver process -> tansu -> the normalize agent's loop -------------------


class KafkaTopic:
    partitions = 2

    def __init__(self, producer: Any, name: str) -> None:
        self.producer, self.name = producer, name

    async def send(self, *, key: bytes, value: bytes, partition: int, headers: Any) -> None:
        await self.producer.send_and_wait(self.name, value, key=key, partition=partition, headers=headers)


class RecordEvent:
    """A consumed record as the normalize agent's stream hands it over (Faust's message shape)."""

    def __init__(self, record: Any) -> None:
        self.value = record.value
        self.message = SimpleNamespace(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            headers=record.headers,
            timestamp=record.timestamp / 1000,
        )

    def ack(self) -> None:
        pass


class Stream:
    def __init__(self, events: list[RecordEvent]) -> None:
        self._events = events

    async def noack_take(self, size: int, within: float) -> Any:
        yield self._events


async def test_hostile_payloads_through_receiver_broker_and_normalize(tmp_path: Path) -> None:
    deep_params = '[{"name": "t", "parameters": ' + '{"a":' * 300 + "1" + "}" * 300 + "}]"
    accepted = {  # hostile but well-formed: each must come out as an event
        "deep-json": {"gen_ai.input.messages": "[" * 50_000 + "]" * 50_000},
        "deep-tool-schema": {"gen_ai.tool.definitions": deep_params},  # used to crash the agent in emit()
        "inf-tokens": {"gen_ai.usage.input_tokens": math.inf, "input.value": "hi"},
        "huge-value": {"input.value": "B" * (2 * 1024 * 1024)},
        "wrong-types": {"gen_ai.input.messages": [1, 2], "gen_ai.system_instructions": 7, "input.value": True},
    }
    rejected = [  # (body, content type): each must get a 4xx
        (b"\xff\xfe garbage", PROTOBUF), (b"[" * 100_000, JSON), (b'{"resourceSpans": "\xff"}', JSON),
        (deep_json_body(500), JSON), (b"{}" * 10, JSON), (b'{"resourceSpans": [{"scopeSpans": 5}]}', JSON),
    ]  # fmt: skip
    with running_broker(tmp_path) as (bootstrap, _):
        settings = test_settings(tmp_path, kafka_bootstrap=bootstrap, topics=Topics(otlp_spans="hostile-spans"))
        ensure_topics(settings)
        names = settings.topics
        with running_receiver(settings) as receiver:
            url = f"{settings.receiver_url}/v1/traces"
            async with aiohttp.ClientSession() as session:
                for n, attributes in enumerate(accepted.values(), start=1):
                    body = request(
                        span(
                            {"gen_ai.operation.name": "chat", **attributes},
                            trace_id=bytes([n]) * 16,
                            span_id=bytes([n]) * 8,
                        )
                    ).SerializeToString()
                    async with session.post(url, data=body, headers={"Content-Type": PROTOBUF}) as response:
                        assert response.status == 200, await response.text()
                for body, content_type in rejected:
                    async with session.post(url, data=body, headers={"Content-Type": content_type}) as response:
                        assert 400 <= response.status < 500, (body[:40], response.status)
            assert receiver.poll() is None
        # The Collector's path skips the receiver: garbage can reach the topic directly.
        await produce(bootstrap, names.otlp_spans, [b"\xff\xfe not otlp", b"\x0a\x05\x0a\x03\xff\xff\xff"])
        seen = await consume_until(bootstrap, [names.otlp_spans], lambda s: len(s[names.otlp_spans]) >= 7)
        records = seen[names.otlp_spans]
        assert len(records) == 7

        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 * 1024 * 1024)
        await producer.start()
        try:
            out = TopicHandles(
                *(
                    KafkaTopic(producer, name)
                    for name in (
                        names.llm_events,
                        names.screenings,
                        names.escalations,
                        names.evidence,
                        names.dead_letters,
                    )
                )
            )
            normalizer = Normalizer(out, LogJoin(span_wait_s=0, log_wait_s=0), names.otlp_logs, batch_size=16,
                                    window_s=0.01)  # fmt: skip
            await normalizer.run(Stream([RecordEvent(r) for r in records]))
            await normalizer.expire()  # the worker's timer: content-less spans go on
            counters = normalizer.counters
        finally:
            await producer.stop()
        seen = await consume_until(
            bootstrap,
            [names.llm_events, names.dead_letters],
            lambda s: len(decoded(s[names.llm_events], LLMEvent)) >= len(accepted) and len(s[names.dead_letters]) >= 2,
        )
    events = decoded(seen[names.llm_events], LLMEvent)
    letters = decoded(seen[names.dead_letters], DeadLetter)
    print(
        f"\nreal path: {len(accepted)} hostile spans accepted -> {len(events)} events; {len(rejected)} bodies 4xx; "
        f"2 garbage records -> dead letters {[letter.reason[:70] for letter in letters]}"
    )
    ledger_record({"fault": "hostile payloads via receiver, broker, normalize", "in": len(accepted) + len(rejected) + 2,
                   "screened": None, "bundles": None, "events": len(events), "rejected_4xx": len(rejected),
                   "dead_letters": len(letters), "duplicates": None, "lost": len(accepted) - len(events)})  # fmt: skip
    assert counters.items == len(events) == len(accepted) and counters.dead_letters == len(letters) == 2
    assert all(letter.stage == "normalize" and "ExportTraceServiceRequest" in letter.reason for letter in letters)
    by_span = {event.span_id: event for event in events}
    assert by_span[(bytes([3]) * 8).hex()].usage.input_tokens is None  # inf is not a count
    assert len(by_span[(bytes([4]) * 8).hex()].input_messages[0].content) == 32_768  # cut on the event

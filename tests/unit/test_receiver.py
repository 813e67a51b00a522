import asyncio
import gzip
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.ingest.receiver import TRACES, BadRequest, create_receiver_app, parse_body
from pipeline.settings import Settings
from schemas.wire import RECEIVED_HEADER
from tests.helpers import request, span


class RecordingProducer:
    """Unit tier: stands in for the broker; the integration tier uses a real one."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, list]] = []
        self.keys: list[bytes] = []

    async def send(self, topic, value, *, key, headers):
        self.sent.append((topic, value, headers))
        self.keys.append(key)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.fixture
async def client(tmp_path):
    producer = RecordingProducer()
    app = create_receiver_app(Settings(data_dir=tmp_path, max_request_bytes=4096), producer)
    async with TestClient(TestServer(app)) as test_client:
        test_client.producer = producer
        yield test_client


OTLP_JSON = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js-app"}}]},
            "scopeSpans": [
                {
                    "spans": [
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b174",
                            "parentSpanId": "",
                            "name": "chat",
                            "kind": 3,
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": "1544712661000000000",
                            "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}],
                        }
                    ]
                }
            ],
        }
    ]
}


async def test_single_trace_protobuf_request_is_forwarded_as_the_same_message(client):
    original = request(span({"gen_ai.operation.name": "chat"}))
    response = await client.post(
        "/v1/traces", data=original.SerializeToString(), headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status == 200
    topic, value, headers = client.producer.sent[0]
    assert topic == "otlp_spans" and ExportTraceServiceRequest.FromString(value) == original
    assert int(dict(headers)[RECEIVED_HEADER]) > 0


async def test_gzip_protobuf_is_accepted(client):
    body = request(span({"gen_ai.operation.name": "chat"})).SerializeToString()
    response = await client.post(
        "/v1/traces",
        data=gzip.compress(body),
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert response.status == 200
    assert ExportTraceServiceRequest.FromString(client.producer.sent[0][1]) == ExportTraceServiceRequest.FromString(
        body
    )


async def test_json_request_with_hex_ids_becomes_protobuf(client):
    response = await client.post("/v1/traces", data=json.dumps(OTLP_JSON), headers={"Content-Type": "application/json"})
    assert response.status == 200
    forwarded = ExportTraceServiceRequest.FromString(client.producer.sent[0][1])
    forwarded_span = forwarded.resource_spans[0].scope_spans[0].spans[0]
    assert forwarded_span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert forwarded_span.span_id.hex() == "eee19b7ec3c1b174"


async def test_garbage_protobuf_is_400_with_reason_and_nothing_sent(client):
    response = await client.post("/v1/traces", data=b"\xff\xff\xff", headers={"Content-Type": "application/x-protobuf"})
    assert response.status == 400
    assert "ExportTraceServiceRequest" in Status.FromString(await response.read()).message
    assert client.producer.sent == []


async def test_bad_json_ids_are_400(client):
    bad = json.loads(json.dumps(OTLP_JSON))
    bad["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "zz"
    response = await client.post("/v1/traces", data=json.dumps(bad), headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert "traceId" in (await response.json())["message"]


async def test_wrong_content_type_is_415(client):
    response = await client.post("/v1/traces", data=b"x", headers={"Content-Type": "text/plain"})
    assert response.status == 415


async def test_oversized_body_is_413(client):
    response = await client.post("/v1/traces", data=b"\x00" * 5000, headers={"Content-Type": "application/x-protobuf"})
    assert response.status == 413


async def test_bad_gzip_is_400(client):
    response = await client.post(
        "/v1/traces", data=b"not gzip", headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    )
    assert response.status == 400


def test_parse_json_rejects_non_object():
    with pytest.raises(BadRequest):
        parse_body(TRACES, b"[1, 2]", "application/json")


async def test_a_request_is_split_into_one_record_per_trace_keyed_by_trace_id(client):
    a1 = span({"gen_ai.operation.name": "chat"}, trace_id=b"\xaa" * 16, span_id=b"\x01" * 8)
    b1 = span({"gen_ai.operation.name": "chat"}, trace_id=b"\xbb" * 16, span_id=b"\x02" * 8)
    a2 = span({"http.request.method": "GET"}, trace_id=b"\xaa" * 16, span_id=b"\x03" * 8)
    body = request(a1, b1, a2, service="shop").SerializeToString()
    response = await client.post("/v1/traces", data=body, headers={"Content-Type": "application/x-protobuf"})
    assert response.status == 200
    assert client.producer.keys == [b"\xaa" * 16, b"\xbb" * 16]
    parts = [ExportTraceServiceRequest.FromString(value) for _, value, _ in client.producer.sent]
    spans_per_part = [[s.span_id for rs in p.resource_spans for ss in rs.scope_spans for s in ss.spans] for p in parts]
    assert spans_per_part == [[b"\x01" * 8, b"\x03" * 8], [b"\x02" * 8]]
    assert all(p.resource_spans[0].resource.attributes[0].value.string_value == "shop" for p in parts)


def log_record(event_name, span_id=b"\x05" * 8, trace_id=b"\xcc" * 16, **attrs):
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    from tests.helpers import any_value

    record = LogRecord(trace_id=trace_id, span_id=span_id, event_name=event_name)
    for key, value in attrs.items():
        record.attributes.add(key=key, value=any_value(value))
    return record


async def test_logs_endpoint_forwards_only_genai_records_tied_to_a_span(client):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    logs = ExportLogsServiceRequest()
    scope = logs.resource_logs.add().scope_logs.add()
    scope.log_records.extend(
        [
            log_record("gen_ai.client.inference.operation.details", **{"gen_ai.input.messages": "[]"}),
            log_record("app.startup"),  # not GenAI
            log_record("gen_ai.user.message", span_id=b""),  # not tied to a span
        ]
    )
    response = await client.post(
        "/v1/logs", data=logs.SerializeToString(), headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status == 200
    [(topic, value, _)] = client.producer.sent
    forwarded = ExportLogsServiceRequest.FromString(value)
    assert topic == "otlp_logs" and client.producer.keys == [b"\xcc" * 16]
    assert [r.event_name for r in forwarded.resource_logs[0].scope_logs[0].log_records] == [
        "gen_ai.client.inference.operation.details"
    ]


async def test_logs_endpoint_rejects_garbage(client):
    response = await client.post("/v1/logs", data=b"\xff\xff", headers={"Content-Type": "application/x-protobuf"})
    assert response.status == 400


# -- bounded admission: 429 past the caps, 503 while the broker fails, each with Retry-After ------


class GatedProducer(RecordingProducer):
    """Deliveries wait for `release` (a slow broker); or fail with `error`; or never complete."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.error: Exception | None = None
        self.hang = False

    async def send(self, topic, value, *, key, headers):
        self.sent.append((topic, value, headers))
        if self.error is not None:
            raise self.error
        delivered = asyncio.get_running_loop().create_future()
        if not self.hang:

            async def deliver():
                await self.release.wait()
                delivered.set_result(None)

            asyncio.get_running_loop().create_task(deliver())
        return delivered


async def gated_client(tmp_path, **overrides):
    producer = GatedProducer()
    settings = Settings(**{"data_dir": tmp_path, "max_request_bytes": 4096, "receiver_retry_after_s": 2, **overrides})
    test_client = TestClient(TestServer(create_receiver_app(settings, producer)))
    await test_client.start_server()
    test_client.producer = producer
    return test_client


PB = {"Content-Type": "application/x-protobuf"}


async def test_past_the_inflight_request_cap_the_answer_is_429_with_retry_after(tmp_path):
    client = await gated_client(tmp_path, receiver_max_inflight_requests=2)
    try:
        body = request(span({"gen_ai.operation.name": "chat"})).SerializeToString()
        waiting = [asyncio.create_task(client.post("/v1/traces", data=body, headers=PB)) for _ in range(2)]
        while len(client.producer.sent) < 2:
            await asyncio.sleep(0.01)
        refused = await client.post("/v1/traces", data=body, headers=PB)
        assert refused.status == 429 and refused.headers["Retry-After"] == "2"
        assert Status.FromString(await refused.read()).code == 8  # RESOURCE_EXHAUSTED
        client.producer.release.set()
        assert [(await w).status for w in waiting] == [200, 200]
        health = await (await client.get("/healthz")).json()
        assert health["receiver"]["rejected"]["overloaded_429"] == 1 and health["receiver"]["inflight_requests"] == 0
        assert health["receiver"]["inflight_bytes"] == 0 and health["receiver"]["items_accepted"] == 2
    finally:
        await client.close()


async def test_past_the_inflight_bytes_cap_the_answer_is_429(tmp_path):
    client = await gated_client(tmp_path, receiver_max_inflight_bytes=100)
    try:
        body = request(span({"input.value": "x" * 200})).SerializeToString()
        first = asyncio.create_task(client.post("/v1/traces", data=body, headers=PB))  # alone: let in
        while not client.producer.sent:
            await asyncio.sleep(0.01)
        refused = await client.post("/v1/traces", data=body, headers=PB)
        assert refused.status == 429 and "bytes await the broker" in Status.FromString(await refused.read()).message
        client.producer.release.set()
        assert (await first).status == 200
    finally:
        await client.close()


async def test_a_broker_that_does_not_acknowledge_gets_503_then_fail_fast_then_a_probe(tmp_path):
    client = await gated_client(tmp_path, receiver_send_timeout_s=0.2, receiver_retry_after_s=1)
    try:
        body = request(span({"gen_ai.operation.name": "chat"})).SerializeToString()
        client.producer.hang = True
        timed_out = await client.post("/v1/traces", data=body, headers=PB)
        assert timed_out.status == 503 and timed_out.headers["Retry-After"] == "1"
        assert "did not acknowledge" in Status.FromString(await timed_out.read()).message
        sent = len(client.producer.sent)
        fast = await client.post("/v1/traces", data=json.dumps(OTLP_JSON), headers={"Content-Type": "application/json"})
        assert fast.status == 503 and (await fast.json())["code"] == 14  # UNAVAILABLE, without trying the broker
        assert len(client.producer.sent) == sent
        assert (await client.get("/readyz")).status == 503
        health = await (await client.get("/healthz")).json()
        assert health["receiver"]["broker"] == "unavailable" and health["receiver"]["inflight_bytes"] > 0
        client.producer.hang = False
        client.producer.release.set()
        await asyncio.sleep(1.05)  # Retry-After has passed: the next request probes the broker
        assert (await client.post("/v1/traces", data=body, headers=PB)).status == 200
        assert (await client.get("/readyz")).status == 200
    finally:
        await client.close()


async def test_broker_errors_are_503_and_a_record_too_large_for_it_413(tmp_path):
    from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

    client = await gated_client(tmp_path)
    try:
        body = request(span({"gen_ai.operation.name": "chat"})).SerializeToString()
        client.producer.error = MessageSizeTooLargeError()
        assert (await client.post("/v1/traces", data=body, headers=PB)).status == 413
        client.producer.error = KafkaConnectionError()
        response = await client.post("/v1/traces", data=body, headers=PB)
        assert response.status == 503 and response.headers["Retry-After"] == "2"
    finally:
        await client.close()


async def test_a_json_string_with_a_lone_surrogate_is_400(client):
    """Found by fuzzing: an escaped lone surrogate made protobuf's JSON parser raise SystemError (500)."""
    for bad in ('{"\\ud800": 1}', '{"resourceSpans": [{"resource": {"attributes": [{"key": "\\udfff"}]}}]}'):
        response = await client.post("/v1/traces", data=bad, headers={"Content-Type": "application/json"})
        assert response.status == 400 and "surrogate" in (await response.json())["message"]


async def test_json_nested_too_deep_is_400(tmp_path):
    """Found by fuzzing: json.loads raised RecursionError (500)."""
    app = create_receiver_app(Settings(data_dir=tmp_path), RecordingProducer())
    async with TestClient(TestServer(app)) as test_client:
        response = await test_client.post(
            "/v1/traces", data="[" * 100_000, headers={"Content-Type": "application/json"}
        )
        assert response.status == 400 and "nested too deeply" in (await response.json())["message"]


async def test_too_many_spans_in_one_request_is_413(tmp_path):
    app = create_receiver_app(Settings(data_dir=tmp_path, receiver_max_items_per_request=2), RecordingProducer())
    async with TestClient(TestServer(app)) as test_client:
        spans = [span({}, span_id=bytes([n]) * 8) for n in range(1, 4)]
        response = await test_client.post("/v1/traces", data=request(*spans).SerializeToString(), headers=PB)
        assert response.status == 413 and "over the limit of 2" in Status.FromString(await response.read()).message


async def test_a_chunked_body_past_the_limit_is_413(client):
    async def chunks():
        for _ in range(100):
            yield b"\x00" * 1024

    response = await client.post("/v1/traces", data=chunks(), headers=PB)
    assert response.status == 413


# -- /v1/metrics (issue 17) -------------------------------------------------------------------


def _metrics_request(*services):
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    req = ExportMetricsServiceRequest()
    for service in services:
        rm = req.resource_metrics.add()
        rm.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
        metric = rm.scope_metrics.add().metrics.add(name="gen_ai.client.operation.duration", unit="s")
        metric.histogram.aggregation_temporality = 2
        metric.histogram.data_points.add(count=1, sum=0.2, explicit_bounds=[0.1, 0.5], bucket_counts=[0, 1, 0])
    return req


async def test_metrics_are_split_per_resource_onto_the_metrics_topic(client):
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    original = _metrics_request("a", "b", "a")
    response = await client.post(
        "/v1/metrics", data=original.SerializeToString(), headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status == 200
    assert [topic for topic, _, _ in client.producer.sent] == ["otlp_metrics", "otlp_metrics"]
    parts = [ExportMetricsServiceRequest.FromString(value) for _, value, _ in client.producer.sent]
    assert sorted(len(p.resource_metrics) for p in parts) == [1, 2]  # both "a" resources share a record
    assert len(set(client.producer.keys)) == 2


async def test_metrics_json_is_accepted_and_malformed_metrics_get_400_with_a_reason(client):
    point = {"count": "1", "bucketCounts": ["1"]}
    metric = {
        "name": "gen_ai.client.operation.duration",
        "histogram": {"aggregationTemporality": 1, "dataPoints": [point]},
    }
    document = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [metric]}]}]}
    assert (
        await client.post("/v1/metrics", data=json.dumps(document), headers={"Content-Type": "application/json"})
    ).status == 200
    bad = await client.post("/v1/metrics", data=b"\x0a\xff", headers={"Content-Type": "application/x-protobuf"})
    assert bad.status == 400 and "ExportMetricsServiceRequest" in Status.FromString(await bad.read()).message
    big = _metrics_request(*["x" * 200] * 30).SerializeToString()
    too_big = await client.post("/v1/metrics", data=big, headers={"Content-Type": "application/x-protobuf"})
    assert too_big.status == 413

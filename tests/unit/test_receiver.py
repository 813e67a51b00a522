import asyncio
import gzip
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.agents.common import RECEIVED_HEADER
from pipeline.receiver import TRACES, BadRequest, create_receiver_app, parse_body
from pipeline.settings import Settings
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

import gzip
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.agents.common import RECEIVED_HEADER
from pipeline.receiver import BadRequest, create_receiver_app, parse_json
from pipeline.settings import Settings
from tests.helpers import request, span


class RecordingProducer:
    """Unit tier: stands in for the broker; the integration tier uses a real one."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, list]] = []

    async def send_and_wait(self, topic, value, headers=None):
        self.sent.append((topic, value, headers or []))


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


async def test_protobuf_request_is_forwarded_byte_for_byte(client):
    body = request(span({"gen_ai.operation.name": "chat"})).SerializeToString()
    response = await client.post("/v1/traces", data=body, headers={"Content-Type": "application/x-protobuf"})
    assert response.status == 200
    topic, value, headers = client.producer.sent[0]
    assert topic == "otlp_spans" and value == body
    assert int(dict(headers)[RECEIVED_HEADER]) > 0


async def test_gzip_protobuf_is_accepted(client):
    body = request(span({"gen_ai.operation.name": "chat"})).SerializeToString()
    response = await client.post(
        "/v1/traces",
        data=gzip.compress(body),
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert response.status == 200 and client.producer.sent[0][1] == body


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
        parse_json(b"[1, 2]")

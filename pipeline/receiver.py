"""OTLP/HTTP receiver: `POST /v1/traces` (protobuf or JSON, optionally gzip) -> `otlp_spans`.

Records are ExportTraceServiceRequest protobuf bytes, the same as the OpenTelemetry
Collector's kafkaexporter writes by default, so a Collector can feed the topic directly.
A request is acknowledged only after the broker has it. gzip/deflate bodies are accepted.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any, Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from pipeline.agents.common import RECEIVED_HEADER
from pipeline.settings import Settings

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ID_FIELDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


class Producer(Protocol):
    async def send_and_wait(self, topic: str, value: bytes, *, headers: list[tuple[str, bytes]]) -> Any: ...


PRODUCER_KEY = web.AppKey("producer", Producer)
SETTINGS_KEY = web.AppKey("settings", Settings)


class BadRequest(ValueError):
    pass


def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise BadRequest(f"body is not an OTLP ExportTraceServiceRequest protobuf: {exc}") from exc
    return request


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """OTLP/JSON differs from protobuf's JSON mapping: ids are hex, not base64."""
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise BadRequest("body must be a JSON object with resourceSpans")
    _hex_ids_to_base64(document)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise BadRequest(f"body is not an OTLP/JSON ExportTraceServiceRequest: {exc}") from exc
    return request


def _hex_ids_to_base64(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                node[key] = _hex_to_base64(key, value)
            else:
                _hex_ids_to_base64(value)


def _hex_to_base64(field: str, value: str) -> str:
    if value == "":
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise BadRequest(f"{field} {value[:40]!r} is not hex") from exc
    if len(raw) != _ID_FIELDS[field]:
        raise BadRequest(f"{field} must be {_ID_FIELDS[field]} bytes of hex, got {len(raw)}")
    return base64.b64encode(raw).decode()


def validate(request: ExportTraceServiceRequest) -> int:
    """Count spans, rejecting ids of the wrong size (what the normaliser would dead-letter)."""
    spans = 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise BadRequest(f"span {span.name[:80]!r}: trace id must be 16 bytes and span id 8")
                spans += 1
    return spans


def _reply(content_type: str, status: int, message: str = "") -> web.Response:
    """Protobuf in, protobuf out; JSON in, JSON out (OTLP/HTTP spec)."""
    if status == 200:
        if content_type == JSON:
            return web.json_response({}, status=200)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(), content_type=PROTOBUF)
    from google.rpc.status_pb2 import Status

    status_message = Status(code=3, message=message)  # 3 = INVALID_ARGUMENT
    if content_type == JSON:
        return web.json_response({"code": 3, "message": message}, status=status)
    return web.Response(body=status_message.SerializeToString(), status=status, content_type=PROTOBUF)


async def traces(request: web.Request) -> web.Response:
    received_ns = time.time_ns()
    settings = request.app[SETTINGS_KEY]
    content_type = (request.content_type or "").lower()
    if content_type not in (PROTOBUF, JSON):
        return _reply(JSON, 415, f"Content-Type must be {PROTOBUF} or {JSON}, got {content_type or 'none'!r}")
    if request.content_length is not None and request.content_length > settings.max_request_bytes:
        return _reply(content_type, 413, f"body over {settings.max_request_bytes} bytes")
    try:
        try:
            body = await request.read()  # aiohttp undoes gzip/deflate Content-Encoding itself
        except web.HTTPRequestEntityTooLarge:
            return _reply(content_type, 413, f"body over {settings.max_request_bytes} bytes")
        except RequestPayloadError as exc:
            raise BadRequest(f"unreadable body: {exc}") from exc
        if len(body) > settings.max_request_bytes:
            raise BadRequest(f"decoded body over {settings.max_request_bytes} bytes")
        parsed = parse_json(body) if content_type == JSON else parse_protobuf(body)
        spans = validate(parsed)
    except BadRequest as exc:
        log.info("rejected OTLP request: %s", exc)
        return _reply(content_type, 400, str(exc))
    if spans:
        payload = body if content_type == PROTOBUF else parsed.SerializeToString()
        await request.app[PRODUCER_KEY].send_and_wait(
            settings.topics.otlp_spans, payload, headers=[(RECEIVED_HEADER, str(received_ns).encode())]
        )
    return _reply(content_type, 200)


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_receiver_app(settings: Settings, producer: Producer) -> web.Application:
    app = web.Application(client_max_size=settings.max_request_bytes + 1024)
    app[SETTINGS_KEY] = settings
    app[PRODUCER_KEY] = producer
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    return app


async def serve_receiver(settings: Settings) -> None:
    """Run until cancelled: producer first, then the listener."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, linger_ms=2, max_request_size=settings.max_request_bytes + 4096
    )
    await producer.start()
    runner = web.AppRunner(create_receiver_app(settings, producer), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.receiver_port)
    await site.start()
    log.info("OTLP receiver on %s/v1/traces", settings.receiver_url)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await producer.stop()

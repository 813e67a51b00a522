"""OTLP/HTTP receiver: `POST /v1/traces` -> `otlp_spans`, `POST /v1/logs` -> `otlp_logs`.

Bodies are protobuf or JSON (gzip/deflate accepted), exactly as the OpenTelemetry SDK
exporters send them. Each request is split per trace and written as one record per trace,
keyed by trace id: the records are ExportTraceServiceRequest / ExportLogsServiceRequest
protobuf, as the Collector's kafkaexporter writes them (`otlp_proto`), and a trace's spans
and log records land on the same partition number, hence on the same worker. Only GenAI
log records tied to a span are forwarded. A request is acknowledged once the broker has it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from pipeline.agents.common import RECEIVED_HEADER
from pipeline.settings import Settings
from schemas.otel_logs import is_genai_record

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ID_FIELDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}
INVALID_ARGUMENT = 3


class Producer(Protocol):
    async def send(self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]) -> Any: ...


PRODUCER_KEY = web.AppKey("producer", Producer)
SETTINGS_KEY = web.AppKey("settings", Settings)


class BadRequest(ValueError):
    pass


def _split(
    request: Any, new: Callable[[], Any], names: tuple[str, str, str], keep: Callable[[Any], bool]
) -> dict[bytes, Any]:
    """Group a request's items by trace id, keeping each item's resource and scope.
    names: the request's (resource list, scope list, item list) field names."""
    resources_field, scopes_field, items_field = names
    per_trace: dict[bytes, Any] = {}
    for resource_group in getattr(request, resources_field):
        for scope_group in getattr(resource_group, scopes_field):
            by_trace: dict[bytes, list[Any]] = {}
            for item in getattr(scope_group, items_field):
                if keep(item):
                    by_trace.setdefault(item.trace_id, []).append(item)
            for trace_id, items in by_trace.items():
                part = per_trace.setdefault(trace_id, new())
                target_resource = getattr(part, resources_field).add(schema_url=resource_group.schema_url)
                if resource_group.HasField("resource"):  # keep presence as sent
                    target_resource.resource.CopyFrom(resource_group.resource)
                target_scope = getattr(target_resource, scopes_field).add(schema_url=scope_group.schema_url)
                if scope_group.HasField("scope"):
                    target_scope.scope.CopyFrom(scope_group.scope)
                getattr(target_scope, items_field).extend(items)
    return per_trace


def _valid_span(span: Any) -> bool:
    if len(span.trace_id) != 16 or len(span.span_id) != 8:
        raise BadRequest(f"span {span.name[:80]!r}: trace id must be 16 bytes and span id 8")
    return True


def split_traces(request: ExportTraceServiceRequest) -> dict[bytes, ExportTraceServiceRequest]:
    """One request per trace id; a span with malformed ids rejects the whole request."""
    return _split(request, ExportTraceServiceRequest, ("resource_spans", "scope_spans", "spans"), _valid_span)


def split_logs(request: ExportLogsServiceRequest) -> dict[bytes, ExportLogsServiceRequest]:
    """GenAI log records tied to a span, one request per trace id; the rest is not ours."""
    return _split(request, ExportLogsServiceRequest, ("resource_logs", "scope_logs", "log_records"), is_genai_record)


@dataclass(frozen=True)
class Signal:
    name: str
    request_type: type[Message]
    response_type: type[Message]
    topic: Callable[[Settings], str]
    split: Callable[[Any], dict[bytes, Any]]


TRACES = Signal(
    "traces", ExportTraceServiceRequest, ExportTraceServiceResponse, lambda s: s.topics.otlp_spans, split_traces
)
LOGS = Signal("logs", ExportLogsServiceRequest, ExportLogsServiceResponse, lambda s: s.topics.otlp_logs, split_logs)


def parse_body(signal: Signal, body: bytes, content_type: str) -> Any:
    request = signal.request_type()
    if content_type == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise BadRequest(f"body is not an OTLP {signal.request_type.__name__} protobuf: {exc}") from exc
        return request
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise BadRequest(f"body must be a JSON object (an OTLP/JSON {signal.request_type.__name__})")
    _hex_ids_to_base64(document)  # OTLP/JSON ids are hex, not protobuf-JSON's base64
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise BadRequest(f"body is not an OTLP/JSON {signal.request_type.__name__}: {exc}") from exc
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


def _reply(signal: Signal, content_type: str, status: int, message: str = "") -> web.Response:
    """Protobuf in, protobuf out; JSON in, JSON out. Errors carry a google.rpc.Status."""
    if status == 200:
        if content_type == JSON:
            return web.json_response({}, status=200)
        return web.Response(body=signal.response_type().SerializeToString(), content_type=PROTOBUF)
    if content_type == JSON:
        return web.json_response({"code": INVALID_ARGUMENT, "message": message}, status=status)
    body = Status(code=INVALID_ARGUMENT, message=message).SerializeToString()
    return web.Response(body=body, status=status, content_type=PROTOBUF)


def export_handler(signal: Signal) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        received_ns = time.time_ns()
        settings = request.app[SETTINGS_KEY]
        content_type = (request.content_type or "").lower()
        if content_type not in (PROTOBUF, JSON):
            return _reply(
                signal, JSON, 415, f"Content-Type must be {PROTOBUF} or {JSON}, got {content_type or 'none'!r}"
            )
        too_big = f"body over {settings.max_request_bytes} bytes"
        if request.content_length is not None and request.content_length > settings.max_request_bytes:
            return _reply(signal, content_type, 413, too_big)
        try:
            try:
                body = await request.read()  # aiohttp undoes gzip/deflate Content-Encoding itself
            except web.HTTPRequestEntityTooLarge:
                return _reply(signal, content_type, 413, too_big)
            except RequestPayloadError as exc:
                raise BadRequest(f"unreadable body: {exc}") from exc
            parts = signal.split(parse_body(signal, body, content_type))
        except BadRequest as exc:
            log.info("rejected OTLP %s request: %s", signal.name, exc)
            return _reply(signal, content_type, 400, str(exc))
        producer = request.app[PRODUCER_KEY]
        headers = [(RECEIVED_HEADER, str(received_ns).encode())]
        topic = signal.topic(settings)
        deliveries = [
            await producer.send(topic, part.SerializeToString(), key=trace_id, headers=headers)
            for trace_id, part in parts.items()
        ]
        await asyncio.gather(*deliveries)
        return _reply(signal, content_type, 200)

    return handle


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_receiver_app(settings: Settings, producer: Producer) -> web.Application:
    app = web.Application(client_max_size=settings.max_request_bytes + 1024)
    app[SETTINGS_KEY] = settings
    app[PRODUCER_KEY] = producer
    app.router.add_post("/v1/traces", export_handler(TRACES))
    app.router.add_post("/v1/logs", export_handler(LOGS))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    return app


async def serve_receiver(settings: Settings) -> None:
    """Run until cancelled: producer first, then the listener."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, linger_ms=2, max_request_size=settings.max_request_bytes + 4096
    )
    await producer.start()
    runner = web.AppRunner(create_receiver_app(settings, producer), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.receiver_port)
    await site.start()
    log.info("OTLP receiver on %s/v1/traces and /v1/logs", settings.receiver_url)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await producer.stop()

"""OTLP/HTTP receiver: `POST /v1/traces` -> `otlp_spans`, `POST /v1/logs` -> `otlp_logs`,
`POST /v1/metrics` -> `otlp_metrics` (one record per resource, keyed by it, so a series stays on
one partition and in order).

Bodies are protobuf or JSON (gzip/deflate accepted), exactly as the OpenTelemetry SDK
exporters send them. Each request is split per trace and written as one record per trace,
keyed by trace id: the records are ExportTraceServiceRequest / ExportLogsServiceRequest
protobuf, as the Collector's kafkaexporter writes them (`otlp_proto`), and a trace's spans
and log records land on the same partition number, hence on the same worker. Only GenAI
log records tied to a span are forwarded. A request is acknowledged once the broker has it.

Admission is bounded (OTLP/HTTP's retryable answers, each with Retry-After): past the cap on
requests in flight, or on body bytes the broker has not yet acknowledged, a request gets 429;
when the broker does not acknowledge within `receiver_send_timeout_s`, or fails, 503, and
for `receiver_retry_after_s` after that every new request gets 503 at once, then one probe
goes through. A body is read in chunks and refused with 413 as soon as it passes
`max_request_bytes` (after gzip/deflate are undone), so neither a flood nor a big or
compressed body grows memory without bound. `/healthz` counts the answers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from pipeline.observability.http import metrics_body
from pipeline.observability.metrics import metrics
from pipeline.settings import Settings
from schemas.otel_logs import is_genai_record
from schemas.wire import RECEIVED_HEADER

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ID_FIELDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}
#: google.rpc.Code values carried in error bodies.
INVALID_ARGUMENT = 3
RESOURCE_EXHAUSTED = 8
UNAVAILABLE = 14
_RPC_CODES = {413: RESOURCE_EXHAUSTED, 429: RESOURCE_EXHAUSTED, 503: UNAVAILABLE}
RETRYABLE = frozenset({429, 503})
#: Longest that bytes of a request given up on (503) stay counted while the producer still holds
#: its records: past aiokafka's request timeout (40 s), which fails them.
HOLD_LIMIT_S = 60.0


class Producer(Protocol):
    async def send(self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]) -> Any: ...


class BadRequest(ValueError):
    pass


class UnreadableBody(BadRequest):
    """The body cannot be decoded (bad gzip/deflate, truncated): the connection is closed after
    the 400, since the rest of the body on it cannot be framed."""


class Refused(Exception):
    """A request answered with `status` (413, 429, 503) before or instead of reaching the broker."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        #: Deliveries still in the producer when the request was given up on.
        self.pending: list[asyncio.Future[Any]] = []


@dataclass
class Ticket:
    """One admitted request: the body bytes it holds, and whether it probes a down broker."""

    probe: bool = False
    bytes: int = 0


class Admission:
    """The receiver's bounds: requests in flight, body bytes not yet acknowledged by the broker,
    and whether the broker is taken to be unavailable (after a failed or timed-out delivery).
    Counts every answer by status, for /healthz."""

    def __init__(self, settings: Settings) -> None:
        self.max_requests = settings.receiver_max_inflight_requests
        self.max_bytes = settings.receiver_max_inflight_bytes
        self.retry_after_s = settings.receiver_retry_after_s
        self.requests = 0
        self.bytes = 0
        self.responses: Counter[int] = Counter()
        self.items_accepted = 0
        self._down_until: float | None = None  # monotonic; None: the broker is taken to be up
        self._probing = False

    def admit(self, expected_bytes: int) -> Ticket:
        """A request slot, or Refused(503) while the broker is down (once the back-off has passed,
        one probe at a time goes through), or Refused(429) past a bound."""
        probe = False
        if self._down_until is not None:
            if self._probing or time.monotonic() < self._down_until:
                raise Refused(503, "the broker is unavailable; retry later")
            probe = self._probing = True
        elif self.requests >= self.max_requests:
            raise Refused(429, f"{self.requests} requests in flight, the limit; retry later")
        elif self.bytes and self.bytes + expected_bytes > self.max_bytes:
            raise Refused(429, f"{self.bytes} bytes await the broker (limit {self.max_bytes}); retry later")
        self.requests += 1
        return Ticket(probe=probe)

    def take_bytes(self, ticket: Ticket, count: int) -> None:
        """Reserve body bytes as they are read. While no other bytes are held any request gets
        through, so a body larger than the in-flight bound is still served on its own."""
        if self.bytes > ticket.bytes and self.bytes + count > self.max_bytes:
            raise Refused(429, f"{self.bytes} bytes await the broker (limit {self.max_bytes}); retry later")
        self.bytes += count
        ticket.bytes += count

    def leave(self, ticket: Ticket, pending: list[asyncio.Future[Any]]) -> None:
        """The request is answered; its bytes stay held until the producer settles `pending` (it
        fails what the broker has not taken within its request timeout), or HOLD_LIMIT_S at most."""
        self.requests -= 1
        if ticket.probe:
            self._probing = False
        if not pending:
            self.bytes -= ticket.bytes
            return
        left = len(pending)
        release = asyncio.get_running_loop().call_later(HOLD_LIMIT_S, self._release, ticket)

        def settled(future: asyncio.Future[Any]) -> None:
            nonlocal left
            if not future.cancelled():
                future.exception()  # retrieved: the request was already answered with a 503
            left -= 1
            if left == 0:
                release.cancel()
                self._release(ticket)

        for future in pending:
            future.add_done_callback(settled)

    def _release(self, ticket: Ticket) -> None:
        self.bytes -= ticket.bytes
        ticket.bytes = 0

    def broker_failed(self) -> None:
        self._down_until = time.monotonic() + max(1, self.retry_after_s)

    def broker_ok(self) -> None:
        self._down_until = None

    @property
    def broker_available(self) -> bool:
        return self._down_until is None

    def snapshot(self) -> dict[str, Any]:
        return {
            "broker": "ok" if self.broker_available else "unavailable",
            "inflight_requests": self.requests,
            "inflight_bytes": self.bytes,
            "items_accepted": self.items_accepted,
            "responses": {str(status): count for status, count in sorted(self.responses.items())},
            "rejected": {
                "overloaded_429": self.responses[429],
                "unavailable_503": self.responses[503],
                "too_large_413": self.responses[413],
                "bad_request_400": self.responses[400],
                "media_type_415": self.responses[415],
            },
        }


PRODUCER_KEY = web.AppKey("producer", Producer)
#: What aiohttp decodes (zstd and br only where their libraries are installed: it answers 400 then).
CONTENT_ENCODINGS = frozenset({"identity", "gzip", "deflate", "br", "zstd"})
SETTINGS_KEY = web.AppKey("settings", Settings)
ADMISSION_KEY = web.AppKey("admission", Admission)


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


def split_metrics(request: ExportMetricsServiceRequest) -> dict[bytes, ExportMetricsServiceRequest]:
    """One request per resource, keyed by a hash of it: every series of one resource lands on one
    partition, so its cumulative points arrive in order."""
    per_resource: dict[bytes, ExportMetricsServiceRequest] = {}
    for resource_metrics in request.resource_metrics:
        key = hashlib.blake2b(resource_metrics.resource.SerializeToString(deterministic=True), digest_size=16).digest()
        per_resource.setdefault(key, ExportMetricsServiceRequest()).resource_metrics.append(resource_metrics)
    return per_resource


def count_metric_points(request: ExportMetricsServiceRequest) -> int:
    total = 0
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total


@dataclass(frozen=True)
class Signal:
    name: str
    request_type: type[Message]
    response_type: type[Message]
    topic: Callable[[Settings], str]
    split: Callable[[Any], dict[bytes, Any]]
    count: Callable[[Any], int]


def count_spans(request: ExportTraceServiceRequest) -> int:
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


def count_log_records(request: ExportLogsServiceRequest) -> int:
    return sum(len(scope.log_records) for resource in request.resource_logs for scope in resource.scope_logs)


TRACES = Signal(
    "traces", ExportTraceServiceRequest, ExportTraceServiceResponse, lambda s: s.topics.otlp_spans, split_traces,
    count_spans,
)  # fmt: skip
LOGS = Signal(
    "logs", ExportLogsServiceRequest, ExportLogsServiceResponse, lambda s: s.topics.otlp_logs, split_logs,
    count_log_records,
)  # fmt: skip

METRICS = Signal(
    "metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse, lambda s: s.topics.otlp_metrics,
    split_metrics, count_metric_points,
)  # fmt: skip


def parse_body(signal: Signal, body: bytes, content_type: str) -> Any:
    """The OTLP request in `body`, or BadRequest with the reason. Nesting is bounded by the
    parsers: protobuf's and json_format's recursion limits (100), json's the interpreter's."""
    request = signal.request_type()
    if content_type == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise BadRequest(f"body is not an OTLP {signal.request_type.__name__} protobuf: {exc}") from exc
        return request
    try:
        document = json.loads(body)
    except ValueError as exc:  # UnicodeDecodeError included
        raise BadRequest(f"body is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest("body is JSON nested too deeply") from exc
    if not isinstance(document, dict):
        raise BadRequest(f"body must be a JSON object (an OTLP/JSON {signal.request_type.__name__})")
    _prepare_json(document)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise BadRequest(f"body is not an OTLP/JSON {signal.request_type.__name__}: {exc}") from exc
    return request


def _prepare_json(document: Any) -> None:
    """In place, without recursion (the document may be nested as deep as json allows): OTLP/JSON
    ids are hex, not protobuf-JSON's base64; and a lone surrogate (an escaped "\\ud800") is not
    text, and makes the protobuf library fail with a SystemError instead of a ParseError."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                _check_text(key)
                if key in _ID_FIELDS and isinstance(value, str):
                    node[key] = _hex_to_base64(key, value)
                else:
                    stack.append(value)
        elif isinstance(node, str):
            _check_text(node)


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise BadRequest(f"JSON string {text[:40]!r} is not valid Unicode (a lone surrogate)") from exc


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


def _reply(
    signal: Signal, content_type: str, status: int, message: str = "", *, retry_after_s: int | None = None
) -> web.Response:
    """Protobuf in, protobuf out; JSON in, JSON out. Errors carry a google.rpc.Status;
    retryable ones (429, 503) a Retry-After header."""
    if status == 200:
        if content_type == JSON:
            return web.json_response({}, status=200)
        return web.Response(body=signal.response_type().SerializeToString(), content_type=PROTOBUF)
    code = _RPC_CODES.get(status, INVALID_ARGUMENT)
    headers = {"Retry-After": str(retry_after_s)} if status in RETRYABLE and retry_after_s is not None else None
    if content_type == JSON:
        return web.json_response({"code": code, "message": message}, status=status, headers=headers)
    body = Status(code=code, message=message).SerializeToString()
    return web.Response(body=body, status=status, content_type=PROTOBUF, headers=headers)


async def read_body(request: web.Request, limit: int, admission: Admission, ticket: Ticket) -> bytes:
    """The (decoded) body, read in chunks: Refused(413) once past `limit`, Refused(429) once past
    the in-flight bytes bound; nothing beyond the chunk that crossed a bound is read."""
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"body over {limit} bytes")
            admission.take_bytes(ticket, len(chunk))
            chunks.append(chunk)
    except (RequestPayloadError, HttpProcessingError) as exc:  # bad gzip/deflate, truncated body
        request.content.feed_eof()  # nothing left to drain: aiohttp would re-raise it while lingering
        raise UnreadableBody(f"unreadable body: {exc}") from exc
    return b"".join(chunks)


async def deliver(
    producer: Producer, topic: str, parts: dict[bytes, Any], headers: list[tuple[str, bytes]], timeout_s: float
) -> None:
    """Send one record per trace and wait for the broker's acknowledgement of all of them, at
    most `timeout_s`. Raises Refused: 503 (timeout, broker error) or 413 (record too large);
    the deliveries still in the producer then are on the exception (`pending`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    futures: list[asyncio.Future[Any]] = []
    try:
        async with asyncio.timeout_at(deadline):  # cancelling send() drops that record
            for trace_id, part in parts.items():
                futures.append(await producer.send(topic, part.SerializeToString(), key=trace_id, headers=headers))
        if futures:  # waiting does not cancel: a late acknowledgement still releases the bytes
            done, _ = await asyncio.wait(futures, timeout=max(0.0, deadline - loop.time()))
            errors = [f.exception() for f in done if not f.cancelled() and f.exception() is not None]
            if errors:
                raise errors[0]  # type: ignore[misc]
            if len(done) < len(futures):
                raise TimeoutError
    except TimeoutError:
        raise _with_pending(Refused(503, f"the broker did not acknowledge within {timeout_s:g} s"), futures) from None
    except MessageSizeTooLargeError as exc:
        raise _with_pending(Refused(413, f"a trace's record is too large for the broker: {exc}"), futures) from exc
    except KafkaError as exc:
        raise _with_pending(Refused(503, f"the broker is unavailable: {exc}"), futures) from exc


def _with_pending(refused: Refused, futures: list[asyncio.Future[Any]]) -> Refused:
    refused.pending = [f for f in futures if not f.done()]
    return refused


def export_handler(signal: Signal) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        received_ns = time.time_ns()
        settings = request.app[SETTINGS_KEY]
        admission = request.app[ADMISSION_KEY]
        content_type = (request.content_type or "").lower()
        ticket: Ticket | None = None
        pending: list[asyncio.Future[Any]] = []

        def answer(status: int, message: str = "") -> web.Response:
            admission.responses[status] += 1
            metrics().receiver_requests.labels(signal=signal.name, status=str(status)).inc()
            reply_type = content_type if content_type in (PROTOBUF, JSON) else JSON
            return _reply(signal, reply_type, status, message, retry_after_s=admission.retry_after_s)

        if content_type not in (PROTOBUF, JSON):
            return answer(415, f"Content-Type must be {PROTOBUF} or {JSON}, got {content_type or 'none'!r}")
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
        if encoding not in CONTENT_ENCODINGS:
            # aiohttp passes an encoding it does not know through undecoded: the body would be read
            # as if it were plain (found by the fuzzer).
            supported = ", ".join(sorted(CONTENT_ENCODINGS))
            return answer(415, f"Content-Encoding {encoding!r} is not supported; use one of {supported}")
        try:
            length = request.content_length
            if length is not None and length > settings.max_request_bytes:
                raise Refused(413, f"body over {settings.max_request_bytes} bytes")
            ticket = admission.admit(length or 0)
            body = await read_body(request, settings.max_request_bytes, admission, ticket)
            if not body and encoding != "identity" and (length or 0) > 0:
                # aiohttp's decoders return nothing, without an error, for a stub of a stream.
                raise UnreadableBody(f"the body is not {encoding}: {length} bytes decode to nothing")
            parsed = parse_body(signal, body, content_type)
            items = signal.count(parsed)
            if items > settings.receiver_max_items_per_request:
                limit = settings.receiver_max_items_per_request
                raise Refused(413, f"{items} {signal.name} items in one request, over the limit of {limit}")
            parts = signal.split(parsed)
            headers = [(RECEIVED_HEADER, str(received_ns).encode())]
            topic = signal.topic(settings)
            await deliver(request.app[PRODUCER_KEY], topic, parts, headers, settings.receiver_send_timeout_s)
        except BadRequest as exc:
            log.info("rejected OTLP %s request: %s", signal.name, exc)
            response = answer(400, str(exc))
            if isinstance(exc, UnreadableBody):
                response.force_close()
            return response
        except Refused as exc:
            pending = exc.pending
            if exc.status == 503 and ticket is not None:  # a delivery failed or timed out: back off
                if admission.broker_available:
                    log.warning("OTLP %s: %s; answering 503 for %d s", signal.name, exc, admission.retry_after_s)
                admission.broker_failed()
            elif exc.status == 429:
                log.debug("OTLP %s: %s", signal.name, exc)
            return answer(exc.status, str(exc))
        finally:
            if ticket is not None:
                admission.leave(ticket, pending)
        admission.broker_ok()
        admission.items_accepted += items
        metrics().receiver_items.labels(signal=signal.name).inc(items)
        return answer(200)

    return handle


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "receiver": request.app[ADMISSION_KEY].snapshot()})


async def readyz(request: web.Request) -> web.Response:
    """Ready while the broker is taken to be available."""
    admission = request.app[ADMISSION_KEY]
    status = 200 if admission.broker_available else 503
    return web.json_response({"status": "ok" if status == 200 else "broker unavailable"}, status=status)


async def metrics_endpoint(_: web.Request) -> web.Response:
    body, content_type = metrics_body()
    return web.Response(body=body, headers={"Content-Type": content_type})


def create_receiver_app(settings: Settings, producer: Producer) -> web.Application:
    # Bodies are read in chunks against max_request_bytes (read_body); this is aiohttp's own bound.
    app = web.Application(client_max_size=settings.max_request_bytes + 1)
    app[SETTINGS_KEY] = settings
    app[PRODUCER_KEY] = producer
    app[ADMISSION_KEY] = Admission(settings)
    app.router.add_post("/v1/traces", export_handler(TRACES))
    app.router.add_post("/v1/logs", export_handler(LOGS))
    app.router.add_post("/v1/metrics", export_handler(METRICS))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app


async def serve_receiver(settings: Settings) -> None:
    """Run until cancelled: producer first, then the listener."""
    from aiokafka import AIOKafkaProducer

    from pipeline.kafka_security import aiokafka_options
    from pipeline.observability.process import start_observability

    observability = start_observability(settings, "receiver")
    # acks=all: a 200 means the broker made the records durable. With acks=1 the embedded noida
    # acknowledged records it then lost across a restart (docs/reliability.md).
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, linger_ms=settings.receiver_linger_ms,
        max_request_size=settings.max_request_bytes + 4096, acks="all",
        enable_idempotence=settings.kafka_idempotent_producer, **aiokafka_options(settings),
    )  # fmt: skip
    await producer.start()
    runner = web.AppRunner(create_receiver_app(settings, producer), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.receiver_port)
    await site.start()
    log.info("OTLP receiver on %s/v1/traces, /v1/logs and /v1/metrics", settings.receiver_url)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await producer.stop()
        observability.stop()

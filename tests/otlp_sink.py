"""A real OTLP/HTTP endpoint for tests: an aiohttp server on 127.0.0.1 (its own thread) that
decodes the protobuf it is sent (`/v1/logs`, `/v1/metrics`) and keeps what it decoded. It can
answer slowly or with an error status, to stand in for a slow or failing Collector."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from tests.helpers import free_port


class OtlpSink:
    def __init__(self, *, delay_s: float = 0.0, status: int = 200) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.delay_s = delay_s
        self.status = status
        self.logs: list[ExportLogsServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.requests = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        ready = threading.Event()

        async def handle(request: web.Request) -> web.Response:
            self.requests += 1
            body = await request.read()
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.status != 200:
                return web.Response(status=self.status)
            assert request.content_type == "application/x-protobuf", request.content_type
            if request.path == "/v1/logs":
                parsed: Any = ExportLogsServiceRequest.FromString(body)
                self.logs.append(parsed)
                reply = ExportLogsServiceResponse()
            else:
                parsed = ExportMetricsServiceRequest.FromString(body)
                self.metrics.append(parsed)
                reply = ExportMetricsServiceResponse()
            return web.Response(body=reply.SerializeToString(), content_type="application/x-protobuf")

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_post("/v1/logs", handle)
            app.router.add_post("/v1/metrics", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            ready.set()
            await self._stop.wait()
            await runner.cleanup()

        self._thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
        self._thread.start()
        assert ready.wait(10), "OTLP sink did not start"

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def log_records(self) -> list[Any]:
        return [r for req in self.logs for rl in req.resource_logs for sl in rl.scope_logs for r in sl.log_records]

    def metric_names(self) -> set[str]:
        return {
            m.name for req in self.metrics for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        }

    def wait(self, done: Any, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


def attributes(record: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in record.attributes:
        kind = kv.value.WhichOneof("value")
        value = getattr(kv.value, kind)
        out[kv.key] = [v.string_value for v in value.values] if kind == "array_value" else value
    return out

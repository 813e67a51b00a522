"""Shared test helpers: span builders, free ports, settings for a throwaway data dir."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from detectors.base import MatrixDetector
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = Path(os.environ.get("OODWATCH_TEST_MODEL_DIR", REPO / ".oodwatch" / "models"))


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(string_value=json.dumps(value))
    return AnyValue(string_value=str(value))


def span(
    attributes: dict[str, Any],
    *,
    trace_id: bytes = b"\x01" * 16,
    span_id: bytes = b"\x02" * 8,
    parent: bytes = b"",
    name: str = "chat",
    events: list[tuple[str, dict[str, Any]]] | None = None,
) -> Span:
    result = Span(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name,
        start_time_unix_nano=1_700_000_000_000_000_000, end_time_unix_nano=1_700_000_000_500_000_000,
        attributes=[KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()],
    )  # fmt: skip
    for event_name, event_attrs in events or []:
        event = result.events.add()
        event.name = event_name
        event.attributes.extend([KeyValue(key=k, value=any_value(v)) for k, v in event_attrs.items()])
    return result


def request(*spans: Span, service: str = "svc", resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    resource_spans = req.resource_spans.add()
    attrs = {"service.name": service, **(resource or {})}
    resource_spans.resource.attributes.extend([KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()])
    resource_spans.scope_spans.add().spans.extend(spans)
    return req


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "model_dir": MODEL_DIR,
        "broker_port": free_port(),
        "receiver_port": free_port(),
        "api_port": free_port(),
        "guard_port": free_port(),
        "guard_proxy_port": free_port(),
        "worker_metrics_port": free_port(),
        "topic_partitions": 2,
        # Stacks in tests start the guard only where a test exercises it (it loads tier 1 and 2).
        "guard_enabled": False,
        **overrides,
    }
    return Settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]


class FixedDetector(MatrixDetector):
    """A detector with known scores (cycled over the batch), to test plumbing around detectors."""

    name = "fixed"
    version = "1"
    categories = ("injection",)
    thresholds = (0.5,)

    def __init__(self, *values: float) -> None:
        self.values = values

    def score_matrix(self, events: list[Any]) -> np.ndarray:
        return np.array([[self.values[i % len(self.values)]] for i in range(len(events))], dtype=np.float64).reshape(
            len(events), 1
        )


async def serve_posts(path: str, handler: Any) -> tuple[Any, str]:
    """A real HTTP server on 127.0.0.1 answering POSTs to `path`: (runner to clean up, base URL)."""
    from aiohttp import web

    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"

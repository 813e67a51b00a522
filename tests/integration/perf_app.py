"""An app calling a local streaming OpenAI-compatible stub with known delays, through the real
`openai` client and a real instrumentation library (metrics on), exporting spans and metrics
over OTLP/HTTP with the SDK's own exporters. The stub plays a vLLM server: it continues the
caller's trace from `traceparent` and exports a SERVER span `llm_request` with vLLM's
`gen_ai.latency.*` attributes. Run as a script (instrumentors patch globally):

    python -m tests.integration.perf_app INSTRUMENTOR ENDPOINT REQUESTS OUT_JSON

OUT_JSON gets the programmed delays and what each side measured, for the test to compare.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHUNKS = 16
CHUNK_GAP_S = 0.012
QUEUE_S = 0.03


def ttft_s(i: int) -> float:
    """Programmed time to first token of request i: 150..340 ms in 10 ms steps."""
    return 0.150 + (i % 20) * 0.010


def e2e_s(i: int) -> float:
    return ttft_s(i) + (CHUNKS - 1) * CHUNK_GAP_S


def make_stub(tracer: Any, truth: list[dict[str, float]]) -> type[BaseHTTPRequestHandler]:
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    class Stub(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        count = 0

        def do_POST(self) -> None:
            arrived = time.time_ns()
            index = Stub.count
            Stub.count += 1
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            context = TraceContextTextMapPropagator().extract({k.lower(): v for k, v in self.headers.items()})
            model = request["model"]
            time.sleep(QUEUE_S)
            self.send_response(200)
            stream = bool(request.get("stream"))
            self.send_header("Content-Type", "text/event-stream" if stream else "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            first = 0
            for n in range(CHUNKS):
                # Against absolute deadlines, so a late wake-up on a busy machine does not add up.
                due = arrived / 1e9 + ttft_s(index) + n * CHUNK_GAP_S
                time.sleep(max(0.0, due - time.time_ns() / 1e9))
                delta = {"role": "assistant", "content": "tok "} if n == 0 else {"content": "tok "}
                self._send({"id": f"c{index}", "object": "chat.completion.chunk", "created": 1, "model": model,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})  # fmt: skip
                first = first or time.time_ns()
            self._send({"id": f"c{index}", "object": "chat.completion.chunk", "created": 1, "model": model,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 12, "completion_tokens": CHUNKS,
                                  "total_tokens": 12 + CHUNKS}})  # fmt: skip
            self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            done = time.time_ns()
            span = tracer.start_span("llm_request", context=context, kind=SpanKind.SERVER, start_time=arrived)
            span.set_attributes({
                "gen_ai.response.model": model, "gen_ai.request.id": f"c{index}",
                "gen_ai.usage.prompt_tokens": 12, "gen_ai.usage.completion_tokens": CHUNKS,
                "gen_ai.latency.time_in_queue": QUEUE_S, "gen_ai.latency.time_to_first_token": (first - arrived) / 1e9,
                "gen_ai.latency.e2e": (done - arrived) / 1e9,
                "gen_ai.latency.time_in_model_prefill": (first - arrived) / 1e9 - QUEUE_S,
                "gen_ai.latency.time_in_model_decode": (done - first) / 1e9,
            })  # fmt: skip
            span.end(end_time=done)
            truth.append({"server_ttft_ms": (first - arrived) / 1e6, "server_e2e_ms": (done - arrived) / 1e6})

        def _send(self, obj: dict[str, Any]) -> None:
            self._chunk(("data: " + json.dumps(obj) + "\n\n").encode())

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def log_message(self, *args: object) -> None:
            pass

    return Stub


def main(instrumentor: str, endpoint: str, requests: int, out: Path) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    server_provider = TracerProvider(resource=Resource.create({"service.name": "llm-server"}))
    server_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    truth: list[dict[str, float]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_stub(server_provider.get_tracer("stub"), truth))
    threading.Thread(target=server.serve_forever, daemon=True).start()

    resource = Resource.create({"service.name": f"perf-{instrumentor}"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"), export_interval_millis=1000
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    if instrumentor == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    elif instrumentor == "otel-genai":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(
            tracer_provider=tracer_provider, meter_provider=meter_provider, logger_provider=LoggerProvider()
        )
    else:
        raise SystemExit(f"unknown instrumentor {instrumentor}")

    import openai

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="test-key", max_retries=0)
    measured = []
    for i in range(requests):
        started = time.perf_counter()
        first = 0.0
        stream = client.chat.completions.create(
            model="stub-model", messages=[{"role": "user", "content": f"question {i}"}], stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        for chunk in stream:
            if not first and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
        done = time.perf_counter()
        measured.append({"client_ttft_ms": (first - started) * 1000, "client_e2e_ms": (done - started) * 1000})
    server.shutdown()
    assert tracer_provider.force_flush(30_000) and server_provider.force_flush(30_000)
    meter_provider.shutdown()
    out.write_text(
        json.dumps(
            {
                "programmed_ttft_ms": [ttft_s(i) * 1000 for i in range(requests)],
                "programmed_e2e_ms": [e2e_s(i) * 1000 for i in range(requests)],
                "client": measured,
                "server": truth,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))

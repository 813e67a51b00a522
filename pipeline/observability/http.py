"""`/metrics`, `/healthz` and `/readyz` for a process that has no web server of its own (the
Faust workers run with Faust's web server off). A daemon thread, so it never competes with
the worker's event loop; the receiver and the store serve the same paths from their own apps."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.observability.metrics import registry


def metrics_body() -> tuple[bytes, str]:
    """The Prometheus text exposition of this process's instruments, and its content type."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST


class HealthServer:
    """Serves until `stop()`; `ready` says whether `/readyz` answers 200 (else 503)."""

    def __init__(self, host: str, port: int, ready: Callable[[], bool]) -> None:
        self.ready = ready
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, content_type = metrics_body()
                    self._send(200, body, content_type)
                elif path == "/healthz":
                    self._send(200, b'{"status":"ok"}', "application/json")
                elif path == "/readyz":
                    ok = outer.ready()
                    status = b'{"status":"ready"}' if ok else b'{"status":"not ready: no partitions assigned yet"}'
                    self._send(200 if ok else 503, status, "application/json")
                else:
                    self._send(404, b'{"detail":"not found"}', "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:  # scrapes are not worth a log line each
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

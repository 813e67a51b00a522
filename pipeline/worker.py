"""`oodwatch worker`: one Faust worker process running the normalize/screen/investigate agents."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pipeline.app import create_app
from pipeline.logs import logging_config
from pipeline.settings import Settings


def run_worker(settings: Settings, *, ready_file: Path | None = None, loglevel: str = "info") -> None:
    """Metrics are set up before the app is built (stages take their instruments when built);
    `/metrics`, `/healthz` and `/readyz` (ready once partitions are assigned) are served on
    `worker_metrics_port` unless it is 0."""
    import faust

    from pipeline.observability.http import HealthServer
    from pipeline.observability.process import start_observability

    observability = start_observability(settings, "worker")
    assigned = threading.Event()
    app = create_app(settings)

    @app.on_rebalance_complete.connect  # type: ignore[misc,arg-type]
    async def _mark_ready(sender: Any, **_: Any) -> None:
        assigned.set()
        if ready_file is not None:
            ready_file.parent.mkdir(parents=True, exist_ok=True)
            ready_file.touch()

    watchdog = getattr(app, "stall_watchdog", None)
    if watchdog is not None:
        watchdog.guard_joins()
    server = None
    if settings.worker_metrics_port:
        server = HealthServer(settings.host, settings.worker_metrics_port, assigned.is_set).start()
    worker = faust.Worker(app, loglevel=loglevel, logging_config=logging_config(loglevel.upper()), quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        if server is not None:
            server.stop()
        observability.stop()

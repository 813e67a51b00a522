"""`oodwatch worker`: one Faust worker process running the normalize/screen/investigate agents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.app import build_screener, create_app
from pipeline.drift.screening import DriftFieldsScreener
from pipeline.logs import logging_config
from pipeline.settings import Settings


def run_worker(settings: Settings, *, ready_file: Path | None = None, loglevel: str = "info") -> None:
    import faust

    # Interim (issue 18): screenings carry the drift fields until the screen stage adds them itself.
    app = create_app(settings, screener=DriftFieldsScreener.wrap(build_screener(settings), settings))
    if ready_file is not None:

        @app.on_rebalance_complete.connect  # type: ignore[misc,arg-type]
        async def _mark_ready(sender: Any, **_: Any) -> None:
            ready_file.parent.mkdir(parents=True, exist_ok=True)
            ready_file.touch()

    worker = faust.Worker(app, loglevel=loglevel, logging_config=logging_config(loglevel.upper()), quiet=True)
    worker.execute_from_commandline()

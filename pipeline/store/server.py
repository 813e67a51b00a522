"""The store process: the only opener of the store; runs the sink and serves the triage API."""

from __future__ import annotations

import asyncio
import logging

from pipeline.drift.wiring import ObservedStore, build_tracker
from pipeline.settings import Settings
from pipeline.store.alerts import Alerter
from pipeline.store.api import create_api
from pipeline.store.auth import Authenticator, api_token, load_tokens
from pipeline.store.sink import Sink
from schemas.evidence import EvidenceBundle

log = logging.getLogger(__name__)

SINK_RETRY_S = 2.0


async def serve_store(settings: Settings) -> None:
    import uvicorn

    store = ObservedStore.open_observed(settings.store_dsn)
    store.apply_retention(settings.screening_ttl_days)
    alerts = Alerter.from_settings(settings)
    drift = await asyncio.to_thread(build_tracker, settings, store, alerts.submit_drift if alerts else None)
    store.tracker = drift

    def on_bundles(bundles: list[EvidenceBundle]) -> None:
        if alerts:
            alerts.submit(bundles)
        if drift:
            drift.observe_bundles(bundles)

    sink = Sink(settings, store, on_bundles=on_bundles)

    async def keep_sinking() -> None:
        """The API stays up while the broker is away; the sink reconnects on its own."""
        while True:
            try:
                await sink.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                sink.ready.clear()
                log.exception("sink stopped; retrying in %.0fs", SINK_RETRY_S)
                await asyncio.sleep(SINK_RETRY_S)

    async def background() -> None:
        tasks = [asyncio.create_task(keep_sinking())]
        if alerts:
            tasks.append(asyncio.create_task(alerts.run()))
        if drift:
            tasks.append(asyncio.create_task(drift.run()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    authenticator = Authenticator(load_tokens(settings, api_token(settings, create=True)))
    app = create_api(
        store,
        authenticator,
        background=background,
        is_ready=sink.ready.is_set,
        secure_cookies=settings.ui_secure_cookies,
        drift_settings=settings.drift,
    )
    config = uvicorn.Config(app, host=settings.host, port=settings.api_port, log_level="warning", access_log=False)
    try:
        await uvicorn.Server(config).serve()
    finally:
        if drift:
            await asyncio.to_thread(drift.flush)
        store.close()

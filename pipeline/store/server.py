"""The store process: the only opener of the store; runs the sink and serves the triage API."""

from __future__ import annotations

import asyncio
import logging

from pipeline.settings import Settings
from pipeline.store.api import create_api
from pipeline.store.auth import api_token
from pipeline.store.clickhouse import Store
from pipeline.store.sink import Sink

log = logging.getLogger(__name__)

SINK_RETRY_S = 2.0


async def serve_store(settings: Settings) -> None:
    import uvicorn

    store = Store.open(settings.store_dsn)
    sink = Sink(settings, store)

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

    app = create_api(store, api_token(settings, create=True), background=keep_sinking, is_ready=sink.ready.is_set)
    config = uvicorn.Config(app, host=settings.host, port=settings.api_port, log_level="warning", access_log=False)
    try:
        await uvicorn.Server(config).serve()
    finally:
        store.close()

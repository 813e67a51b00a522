"""The store process: the only opener of the store; runs the sink and serves the triage API."""

from __future__ import annotations

import asyncio
import logging

from pipeline.drift.wiring import ObservedStore, build_tracker
from pipeline.guard.desk_api import GuardDesk
from pipeline.perf.service import PerfService
from pipeline.perf.slo import load_slo_file
from pipeline.perf.store import PerfStore
from pipeline.settings import Settings
from pipeline.store.alerts import Alerter
from pipeline.store.api import create_api
from pipeline.store.auth import Authenticator, api_token, load_tokens
from pipeline.store.clickhouse import Store, connect
from pipeline.store.sink import Sink
from schemas.evidence import EvidenceBundle

log = logging.getLogger(__name__)


def guard_desk(settings: Settings, store: Store, alerts: Alerter | None) -> GuardDesk:
    """Grants and session actions on the desk; their policy is the one the guard runs."""
    from pipeline.guard.ledger import GuardLedger
    from pipeline.policy import RoutingPolicy

    policy = RoutingPolicy.load(settings.policy_file)
    return GuardDesk(GuardLedger(store, policy.guard), settings, on_actions=alerts.submit_actions if alerts else None)


SINK_RETRY_S = 2.0


async def serve_store(settings: Settings) -> None:
    import uvicorn

    from pipeline.observability.lag import LagReader
    from pipeline.observability.process import start_observability
    from pipeline.observability.verdicts import exporter_from

    observability = start_observability(settings, "store")
    store = ObservedStore(connect(settings.store_dsn, settings.clickhouse_cluster), settings.clickhouse_cluster)
    store.migrate()
    store.apply_retention(settings.screening_ttl_days)
    alerts = Alerter.from_settings(settings)
    drift = await asyncio.to_thread(build_tracker, settings, store, alerts.submit_drift if alerts else None)
    store.tracker = drift

    def on_bundles(bundles: list[EvidenceBundle]) -> None:
        if alerts:
            alerts.submit(bundles)
        if drift:
            drift.observe_bundles(bundles)

    verdicts = exporter_from(
        settings.otlp_verdicts_endpoint, settings.verdicts_queue_size, settings.verdicts_batch_size
    )
    sink = Sink(settings, store, on_bundles=on_bundles, verdicts=verdicts)
    lag = LagReader(settings).start() if settings.metrics_enabled else None
    guard = guard_desk(settings, store, alerts)
    perf = PerfService(
        settings, PerfStore(store, load_slo_file(settings.slo_file)), send_alert=alerts.submit_slo if alerts else None
    )

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
        tasks = [asyncio.create_task(keep_sinking()), asyncio.create_task(guard.run()), asyncio.create_task(perf.run())]
        if alerts:
            tasks.append(asyncio.create_task(alerts.run()))
        if verdicts:
            tasks.append(asyncio.create_task(verdicts.run()))
        if drift:
            tasks.append(asyncio.create_task(drift.run()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await guard.close()

    authenticator = Authenticator(load_tokens(settings, api_token(settings, create=True)))
    app = create_api(
        store,
        authenticator,
        background=background,
        is_ready=sink.ready.is_set,
        secure_cookies=settings.ui_secure_cookies,
        guard=guard,
        perf=perf,
        drift_settings=settings.drift,
    )
    config = uvicorn.Config(app, host=settings.host, port=settings.api_port, log_level="warning", access_log=False)
    try:
        await uvicorn.Server(config).serve()
    finally:
        if lag is not None:
            lag.stop()
        observability.stop()
        if drift:
            await asyncio.to_thread(drift.flush)
        store.close()

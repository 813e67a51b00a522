"""Alerts from the whole stack: live high-severity bundles reach a real webhook on 127.0.0.1,
one per group; drill bundles never do."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from pipeline.stack.supervisor import Stack
from pipeline.synth.emit import SessionEmitter
from pipeline.synth.traffic import TrafficGenerator
from schemas.events import DRILL_ATTRIBUTE
from tests.e2e.conftest import wait_for
from tests.helpers import MODEL_DIR, free_port, test_settings


class Webhook:
    """A real HTTP receiver on its own thread and loop."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)

    def _serve(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            self.received.append(await request.json())
            return web.json_response({"ok": True})

        async def start() -> None:
            app = web.Application()
            app.router.add_post("/hook", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()


@pytest.fixture(scope="module")
def webhook() -> Webhook:
    return Webhook()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, webhook: Webhook) -> Iterator[Stack]:
    if not (MODEL_DIR / "tier1.onnx").exists():
        pytest.fail(f"no models in {MODEL_DIR}: run `make setup` first")
    settings = test_settings(
        tmp_path_factory.mktemp("alerts"),
        alert_webhook_url=f"http://127.0.0.1:{webhook.port}/hook",
        alert_min_severity="medium",
    )
    running = Stack(settings, workers=1)
    running.start()
    yield running
    running.stop()


def emit(settings, sessions, extra=None):
    emitter = SessionEmitter(settings.receiver_url)
    emitter.emit(sessions, extra_attributes=extra)
    assert emitter.flush()
    emitter.shutdown()


def test_live_escalations_alert_once_per_group_and_drills_never(settings, client, webhook):
    attacks = [s for s in TrafficGenerator(seed=9, attack_ratio=0.6).sessions(200) if s.attack]
    emit(settings, attacks[:8], {DRILL_ATTRIBUTE: "drill-e2e"})
    wait_for(lambda: client.escalations(limit=200, origin="drill"), lambda q: len(q) > 0)
    emit(settings, attacks[8:16])
    wait_for(lambda: webhook.received, lambda r: len(r) > 0)
    # Snapshot the alerts before reading the queue: an alert is sent only after its bundle is
    # stored, so every bundle alerted so far must already be listed (later ones may not be).
    received = list(webhook.received)
    alerted = {a["bundle_id"] for a in received}
    live = client.escalations(limit=500, origin="live")
    drills = client.escalations(limit=500, origin="drill")
    assert alerted and alerted <= {row["bundle_id"] for row in live}
    assert not alerted & {row["bundle_id"] for row in drills}
    groups = [a["group_key"] for a in received]
    assert len(groups) == len(set(groups))  # one alert per group within the window
    assert all(a["type"] == "oodwatch.escalation" and a["url"].endswith(a["bundle_id"]) for a in received)

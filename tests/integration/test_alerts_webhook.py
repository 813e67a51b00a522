"""Alerts leave for real HTTP webhooks on 127.0.0.1, in both shapes; a dead one costs nothing else."""

import asyncio

from aiohttp import web

from pipeline.store.alerts import Alerter
from schemas.evidence import Severity
from tests.helpers import free_port, serve_posts
from tests.unit.test_judge import bundle


async def receiver(received):
    async def handle(request):
        received.append((request.path, await request.json()))
        return web.json_response({"ok": True})

    return await serve_posts("/{name}", handle)


def test_generic_and_slack_webhooks_receive_one_alert_per_group():
    received = []

    async def go():
        runner, url = await receiver(received)
        alerter = Alerter(webhook_url=f"{url}/generic", slack_url=f"{url}/slack")
        task = asyncio.create_task(alerter.run())
        high = bundle(severity=Severity.HIGH)
        alerter.submit([high, high.model_copy(update={"bundle_id": "again"})])  # same group: one alert
        for _ in range(100):
            if len(received) >= 2:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        await runner.cleanup()
        return alerter

    alerter = asyncio.run(go())
    by_path = dict(received)
    assert set(by_path) == {"/generic", "/slack"} and len(received) == 2
    assert by_path["/generic"]["type"] == "oodwatch.escalation" and by_path["/generic"]["severity"] == "high"
    assert "high escalation" in by_path["/slack"]["text"]
    assert alerter.counters.sent == 2 and alerter.counters.suppressed == 1


def test_a_dead_webhook_is_counted_and_does_not_raise():
    async def go():
        alerter = Alerter(webhook_url=f"http://127.0.0.1:{free_port()}/gone")
        task = asyncio.create_task(alerter.run())
        alerter.submit([bundle(severity=Severity.HIGH)])
        for _ in range(100):
            if alerter.counters.failed:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        return alerter

    alerter = asyncio.run(go())
    assert alerter.counters.failed == 1 and alerter.counters.sent == 0

"""Faults on the whole stack under load: workers killed with SIGKILL, the broker restarted, the
store stopped for a minute, the judge down or slow. Each counts events in, screened, bundles,
duplicates and lost from the store; nothing may be lost or stored twice."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest
from aiohttp import web

from pipeline.cli.client import TriageClient
from tests.e2e.conftest import wait_for
from tests.faults.ledger import (
    Feeder,
    events_kept_by_broker,
    ledger,
    llm_events,
    running_stack,
    topic_records,
    traffic,
    wait_screened,
)
from tests.helpers import free_port

STORE_OUTAGE_S = 60.0


def batches(service: str, n: int, events_each: int, seed: int) -> list[list]:
    return [traffic(service, events_each, seed + i) for i in range(n)]


def sent(groups: list[list]) -> int:
    return sum(llm_events(batch) for batch in groups)


def test_kill_9_a_worker_three_times_mid_stream_loses_and_duplicates_nothing(tmp_path):
    service = "fault-kill9"
    with running_stack(tmp_path, workers=2) as stack:
        settings, client = stack.settings, TriageClient.from_settings(stack.settings)
        load = batches(service, 24, 40, seed=100)
        with Feeder(settings, load, every_s=0.6) as feeder:
            for _ in range(3):
                time.sleep(3.0)
                stack.kill("worker-0", signal.SIGKILL)
                time.sleep(1.0)
                stack.restart("worker-0")
        assert feeder.flushed == [True]
        expected = sent(load)
        screened = wait_screened(client, settings, service, expected, timeout_s=180)
        on_topic = topic_records(settings, service, expected)
        client.close()
    row = ledger(settings, "kill -9 a worker, 3 times", service, expected, on_topic)
    assert screened == expected
    assert row["lost"] == 0 and row["duplicates"] == 0 and row["bundles"] > 0, row


def test_broker_restart_with_a_durable_broker_loses_nothing_and_agents_resume(tmp_path):
    """The receiver answers 200 only for what the broker acknowledged with acks=all, and the sender
    retries what it refused while the broker is away (as a Collector's retry queue does). What the
    broker kept must all be screened, once. A broker that loses what it acknowledged is the
    broker's defect, not the pipeline's: it is counted apart (`lost_by_broker`), and the test
    says so instead of passing."""
    service = "fault-broker"
    # Faust can stay wedged after the broker returns, and noida can leave the restarted worker in a
    # join that never ends: the stall watchdog restarts it; 20 s (not 60) keeps the test short.
    with running_stack(tmp_path, embedded_broker="noida", worker_stall_timeout_s=20.0) as stack:
        settings, client = stack.settings, TriageClient.from_settings(stack.settings)
        before, during, after = (batches(service, 1, n, seed) for n, seed in ((120, 200), (60, 300), (120, 400)))
        with Feeder(settings, before, every_s=0.0) as feeder_before:
            pass
        assert wait_screened(client, settings, service, sent(before), timeout_s=90) == sent(before)
        stack.kill("broker", signal.SIGTERM)
        # The receiver answers 503 with Retry-After while the broker is away; the sender retries.
        with Feeder(settings, during, every_s=0.0, retry_for_s=120) as feeder_during:
            time.sleep(2.0)
            stack.restart("broker")
        with Feeder(settings, after, every_s=0.0, retry_for_s=120) as feeder_after:
            pass
        feeders = (feeder_before, feeder_during, feeder_after)
        assert all(f.flushed == [True] for f in feeders)
        assert sum(f.emitter.spans_dropped for f in feeders) == 0, "the sender gave up on spans the receiver refused"
        acknowledged = sent(before) + sent(during) + sent(after)
        kept = events_kept_by_broker(settings, service, acknowledged)
        screened = wait_screened(client, settings, service, kept, timeout_s=180)
        on_topic = topic_records(settings, service, kept)
        client.close()
        rejoins_refused = stack.child("worker-0").log_path.read_text().count("has not assigned it partitions")
    row = ledger(settings, "broker restart (noida, durable)", service, kept, on_topic, acknowledged=acknowledged,
                 lost_by_broker=acknowledged - kept, worker_restarts=stack.restarts.get("worker-0", 0),
                 rejoins_refused=rejoins_refused)  # fmt: skip
    assert kept == acknowledged, f"the broker lost {acknowledged - kept} events it acknowledged (acks=all): {row}"
    assert row["duplicates"] == 0, row
    if screened < kept and rejoins_refused >= 2:
        # noida 0.2.3 can refuse a restarted member's join forever (tests/faults/test_noida_rebalance.py):
        # the unscreened events are on the topic, waiting for a worker the broker will not seat.
        pytest.xfail(f"noida never seated the restarted worker ({rejoins_refused} joins refused): {row}")
    assert screened == kept and row["lost"] == 0, row


def test_store_down_for_a_minute_under_load_catches_up_without_loss_or_duplicates(tmp_path):
    service = "fault-store"
    with running_stack(tmp_path) as stack:
        settings, client = stack.settings, TriageClient.from_settings(stack.settings)
        load = batches(service, 40, 30, seed=500)
        with Feeder(settings, load, every_s=STORE_OUTAGE_S / 40) as feeder:
            time.sleep(2.0)
            stack.kill("store", signal.SIGKILL)
            down_at = time.monotonic()
            time.sleep(STORE_OUTAGE_S)
            stack.restart("store")
            outage_s = time.monotonic() - down_at
        assert feeder.flushed == [True]
        expected = sent(load)
        screened = wait_screened(client, settings, service, expected, timeout_s=180)
        on_topic = topic_records(settings, service, expected)
        client.close()
    row = ledger(settings, f"store process killed for {outage_s:.0f} s under load", service, expected, on_topic)
    assert screened == expected
    assert row["lost"] == 0 and row["duplicates"] == 0 and row["bundles"] > 0, row


class SlowJudge:
    """An OpenAI-compatible endpoint that never answers in time."""

    def __init__(self, delay_s: float) -> None:
        self.port = free_port()
        self.calls = 0
        ready = threading.Event()

        async def handle(request: web.Request) -> web.Response:
            self.calls += 1
            await asyncio.sleep(delay_s)
            return web.json_response({"choices": []})

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/v1/chat/completions", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            ready.set()
            await asyncio.Event().wait()

        threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
        ready.wait(10)


@pytest.mark.parametrize("judge", ["down", "slow"])
def test_judge_down_or_slow_opens_the_breaker_queues_for_humans_and_screening_goes_on(tmp_path, judge):
    service = f"fault-judge-{judge}"
    slow = SlowJudge(5.0) if judge == "slow" else None
    url = f"http://127.0.0.1:{free_port()}/v1" if slow is None else f"http://127.0.0.1:{slow.port}/v1"
    overrides = {"judge_base_url": url, "judge_model": "m", "judge_timeout_s": 1.0, "judge_breaker_failures": 3,
                 "judge_breaker_cooldown_s": 600.0}  # fmt: skip
    with running_stack(tmp_path, **overrides) as stack:
        settings, client = stack.settings, TriageClient.from_settings(stack.settings)
        load = batches(service, 6, 60, seed=700)
        with Feeder(settings, load, every_s=0.3) as feeder:
            pass
        assert feeder.flushed == [True]
        expected = sent(load)
        screened = wait_screened(client, settings, service, expected, timeout_s=120)

        # Bundles bound for the judge are stored once it has answered, failed or been skipped; the
        # first failures (timeouts) are stored before the bundles the open breaker turned away.
        def failed() -> list[dict]:
            queue = client.escalations(limit=500, service=service, status="all")
            return [client.bundle(b["bundle_id"]) for b in queue if b["judge_status"] == "judge_error"]

        def breaker_errors(judged: list[dict]) -> list[str]:
            return [b["tier3"]["error"] for b in judged if b.get("tier3")]

        # The breaker itself: after 3 failures it opens and later bundles never reach the endpoint.
        judged = wait_for(failed, lambda j: any(e.startswith("circuit breaker open") for e in breaker_errors(j)),
                          timeout_s=90)  # fmt: skip
        bundles = client.escalations(limit=500, service=service, status="all")
        on_topic = topic_records(settings, service, expected)
        client.close()
    errors = breaker_errors(judged)
    statuses = {b["judge_status"] for b in bundles}
    row = ledger(settings, f"judge {judge}", service, expected, on_topic,
                 judge_statuses=sorted(statuses))  # fmt: skip
    assert screened == expected and row["lost"] == 0 and row["duplicates"] == 0
    assert bundles and statuses <= {"judge_error", "skipped", "unjudged"}, statuses
    assert all(b["queue_state"] in ("open", "needs_human_review") for b in bundles)
    assert "judge_error" in statuses or "skipped" in statuses
    assert any(error.startswith("circuit breaker open") for error in errors), errors[:5]
    if judge == "slow":
        assert slow is not None and slow.calls <= 3 + 4, slow.calls  # failures to open + calls already in flight

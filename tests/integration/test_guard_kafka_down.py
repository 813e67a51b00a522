"""With the broker away the guard still answers within its budget (real tier 1, real producer
loop against a port nobody listens on); what it screened waits in the bounded outbox, and past
the bound is counted as not streamed and said so in the answer, never dropped unnoticed."""

from __future__ import annotations

import asyncio
import time

from pipeline.guard.contract import GuardRequest
from pipeline.guard.server import _produce, build_guard
from schemas.events import Message
from tests.helpers import free_port, test_settings


async def test_the_guard_answers_in_budget_and_holds_or_counts_events_while_kafka_is_down(tmp_path) -> None:
    settings = test_settings(
        tmp_path, kafka_bootstrap=f"127.0.0.1:{free_port()}", api_token="admin-token-0123456789",
        guard_outbox_max_records=5, kafka_idempotent_producer=False,
    )  # fmt: skip
    guard, _ = build_guard(settings)
    guard.start()
    producer = asyncio.create_task(_produce(settings, guard.outbox))
    try:
        answers, elapsed = [], []
        for i in range(8):
            request = GuardRequest(session_id=f"s-{i}", service="docs-assistant",
                                   messages=[Message(role="user", content=f"where is order {i}?")])  # fmt: skip
            started = time.perf_counter()
            answers.append(await guard.check(request, started, time.time_ns()))
            elapsed.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(1.0)  # the producer keeps trying meanwhile
        assert all(a.failure is None and a.tiers_run == ["tier1"] for a in answers)
        assert max(a.budget_used_ms for a in answers) < answers[0].budget_ms
        assert max(elapsed) < answers[0].budget_ms + 20
        assert [a.streamed for a in answers] == ["queued"] * 5 + ["not_streamed"] * 3
        snapshot = guard.outbox.snapshot()
        assert snapshot["broker"] == "unavailable" and snapshot["pending"] == 5 and snapshot["not_streamed"] == 3
        assert snapshot["streamed"] == 0
    finally:
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
        await guard.stop()
    assert guard.outbox.abandon() == 5 and guard.outbox.counters.unsent_at_stop == 5

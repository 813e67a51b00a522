"""The load harness on real processes: its ceiling against the no-op sink, and a drain baseline
on the real broker (small, so the suite stays fast; `oodwatch bench --stage pipeline` runs it big)."""

import sys

from pipeline.bench.loadtest.harness import _events, drain, harness_ceiling
from pipeline.bench.loadtest.openloop import Payloads
from pipeline.stack.supervisor import child_env


def test_the_harness_keeps_its_schedule_against_a_no_op_sink():
    result = harness_ceiling(Payloads.build(templates=4), rate=200, duration_s=3, generators=2)
    assert result["ok"] and result["errors"] == 0
    assert 0.9 * 200 <= result["sustained_eps"] <= 1.2 * 200  # open loop: it offers what it was told
    assert result["send_latency"]["p50_ms"] > 0


def test_a_drain_counts_every_record_through_a_kafka_pass_through(settings):
    records = _events(500)
    command = [sys.executable, "-m", "pipeline.bench.loadtest.passthrough", "kafka", "drain-in", "drain-out"]
    result = drain(settings, "kafka", command, child_env(settings), "drain-in", "drain-out", records)
    assert result["complete"] and result["seen"] == 500 and result["eps"] > 0


def test_the_collector_path_produces_every_send_to_the_topic(settings):
    import asyncio

    from pipeline.bench.loadtest.harness import _count, target_url
    from pipeline.bench.loadtest.openloop import constant, run_open_loop

    result = run_open_loop(target_url(settings, "kafka"), Payloads.build(templates=4), constant(150), duration_s=2,
                           processes=1, poisson=False)  # fmt: skip
    assert result.ok == result.sent > 0 and result.errors == 0
    seen, _ = asyncio.run(_count(settings.bootstrap, settings.topics.otlp_spans, result.sent, timeout_s=20))
    assert seen == result.sent

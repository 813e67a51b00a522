"""Scale-out under load with 8 partitions: start 2 workers, add a third mid-stream, `kill -9`
one, add it back. Nothing may be lost or stored twice, and each membership change's rebalance
pause is measured: the longest time after the change in which no event was screened although
traffic kept arriving, next to the longest such gap before any change (the steady state's own
rhythm).

The broker is tansu: noida 0.2.3, the durable embedded broker, never completes a consumer
group's rebalance when a member joins a live group (its JoinGroup answer names a leader no
member holds, and every SyncGroup then fails, round after round; reproduced below with plain
aiokafka consumers, no Faust). No broker restart happens here, so durability is not what this
test needs; the broker-restart fault test keeps noida. tansu in turn reports wrong high-water
marks for batched records, which makes Faust's table recovery after a rebalance stop the
worker (ConsistencyError on the session-risk changelog, seen in this test): the workers here
send each record alone (`worker_producer_max_batch_bytes=1`), the workaround PLATFORM.md
records."""

from __future__ import annotations

import itertools
import re
import signal
import time
from typing import Any

import httpx
import pytest

from pipeline.cli.client import TriageClient
from pipeline.settings import Settings
from pipeline.store.clickhouse import Store
from tests.faults.ledger import Feeder, ledger, llm_events, running_stack, topic_records, traffic, wait_screened

PARTITIONS = 8
#: A change's pause is looked for in this window after it.
WINDOW_S = 30.0
#: A join waits for every member to rejoin; on a busy 2-core machine that can take a while.
JOIN_TIMEOUT_S = 180.0
KILL_TO_RETURN_S = 15.0


def longest_gap_s(stamps_ns: list[int], start_ns: int, end_ns: int) -> float:
    """The longest interval in [start, end] without a screening (the window's edges included)."""
    inside = [start_ns, *sorted(t for t in stamps_ns if start_ns <= t <= end_ns), end_ns]
    return max((b - a) / 1e9 for a, b in itertools.pairwise(inside))


def screened_rows(settings: Settings, service: str) -> list[tuple[int, int]]:
    """(received, first screened) in ns, one per event."""
    store = Store.open(settings.store_dsn)
    try:
        rows = store.query(
            "SELECT toUnixTimestamp64Nano(min(received_at)) AS received, toUnixTimestamp64Nano(min(screened_at)) AS at "
            "FROM screenings WHERE service = {s:String} GROUP BY event_id",
            {"s": service},
        )
    finally:
        store.close()
    return [(int(r["received"]), int(r["at"])) for r in rows]


def pause(rows: list[tuple[int, int]], mark_ns: int, until_ns: int) -> dict[str, float]:
    """What one membership change cost: the longest screening gap after it (while traffic still
    arrived), and the longest an event that arrived in that window waited to be screened."""
    end = min(mark_ns + int(WINDOW_S * 1e9), until_ns)
    waits = [(at - received) / 1e9 for received, at in rows if mark_ns <= received <= end]
    return {
        "gap_s": round(longest_gap_s([at for _, at in rows], mark_ns, end), 2),
        "max_wait_s": round(max(waits, default=0.0), 2),
    }


def consumer_lag(settings: Settings) -> dict[str, float]:
    """Non-zero lag per group/topic/partition, from the store's own /metrics."""
    text = httpx.get(f"{settings.api_url}/metrics", timeout=10).text
    pattern = r'^oodwatch_consumer_lag\{group="([^"]+)",partition="(\d+)",topic="([^"]+)"\} (\S+)$'
    found = re.findall(pattern, text, re.M)
    return {f"{g}/{t}/{p}": float(v) for g, p, t, v in found if float(v) > 0}


def settled_lag(settings: Settings, timeout_s: float = 20.0) -> dict[str, float]:
    """The lag once the last offsets are committed (Faust commits every few seconds)."""
    deadline = time.monotonic() + timeout_s
    lag = consumer_lag(settings)
    while lag and time.monotonic() < deadline:
        time.sleep(1.0)
        lag = consumer_lag(settings)
    return lag


@pytest.mark.timeout(900)
def test_scale_out_add_a_worker_kill_one_and_add_it_back_loses_and_duplicates_nothing(tmp_path):
    service = "fault-scale-out"
    marks: dict[str, int] = {}
    with running_stack(
        tmp_path,
        workers=2,
        embedded_broker="tansu",
        topic_partitions=PARTITIONS,
        worker_producer_max_batch_bytes=1,
        lag_interval_s=2.0,
    ) as stack:
        settings, client = stack.settings, TriageClient.from_settings(stack.settings)
        load = [traffic(service, 8, 900 + i) for i in range(150)]  # ~80 s: past the last change
        started_ns = time.time_ns()
        with Feeder(settings, load, every_s=0.5) as feeder:
            time.sleep(6.0)
            marks["add"] = time.time_ns()
            added = stack.add_worker(timeout_s=JOIN_TIMEOUT_S)
            marks["add_ready"] = time.time_ns()
            time.sleep(5.0)
            marks["kill"] = time.time_ns()
            stack.kill("worker-0", signal.SIGKILL)
            time.sleep(KILL_TO_RETURN_S)  # as a supervisor restarting a crashed pod would
            marks["back"] = time.time_ns()
            stack.restart("worker-0", timeout_s=JOIN_TIMEOUT_S)
            marks["back_ready"] = time.time_ns()
        fed_until_ns = time.time_ns()
        assert feeder.flushed == [True]
        expected = sum(llm_events(batch) for batch in load)
        screened = wait_screened(client, settings, service, expected, timeout_s=180)
        on_topic = topic_records(settings, service, expected)
        lag = settled_lag(settings)
        workers = sorted(c.name for c in stack.children if c.name.startswith("worker-"))
        client.close()
    rows = screened_rows(settings, service)
    last_received = max(received for received, _ in rows)
    first = min(at for _, at in rows)
    pauses: dict[str, Any] = {
        "steady_state": pause(rows, first, marks["add"]),
        "add_third_worker": pause(rows, marks["add"], marks["kill"]),
        "kill_9_one": pause(rows, marks["kill"], marks["back"]),
        "add_it_back": pause(rows, marks["back"], last_received),
        "join_wait_s": {
            "added": round((marks["add_ready"] - marks["add"]) / 1e9, 1),
            "returned": round((marks["back_ready"] - marks["back"]) / 1e9, 1),
        },
    }
    row = ledger(
        settings, f"scale out, {PARTITIONS} partitions: 2 workers, +1 ({added}), kill -9 one, back",
        service, expected, on_topic, rebalance_pause=pauses, workers=workers,
        load_s=round((fed_until_ns - started_ns) / 1e9, 1), lag_at_end=lag,
    )  # fmt: skip
    print(row)
    assert workers == ["worker-0", "worker-1", "worker-2"]
    assert screened == expected
    assert row["lost"] == 0 and row["duplicates"] == 0 and row["bundles"] > 0, row
    # Every change was followed by screening again within its window.
    assert all(pauses[k]["gap_s"] < WINDOW_S for k in ("add_third_worker", "kill_9_one", "add_it_back")), pauses
    assert last_received > marks["back_ready"], "traffic must outlast the last change"
    assert not lag, f"offsets left uncommitted after everything was stored: {lag}"

"""The stall watchdog (a worker Faust left wedged exits to restart from its committed offsets) and
the embedded supervisor restarting a worker that exited for that reason."""

from __future__ import annotations

import sys
import time

from pipeline.agents.watchdog import STALL_EXIT_CODE, StallTracker
from pipeline.stack.supervisor import Stack
from tests.helpers import test_settings


def test_a_partition_behind_with_an_unmoving_committed_offset_is_stalled_only_after_the_timeout():
    tracker = StallTracker(stall_after_s=60)
    assert tracker.observe(0, {"p0": 10}, {"p0": 20}) == []
    assert tracker.observe(59, {"p0": 10}, {"p0": 25}) == []
    assert tracker.observe(60, {"p0": 10}, {"p0": 25}) == ["p0"]


def test_progress_or_catching_up_starts_the_clock_again():
    tracker = StallTracker(stall_after_s=60)
    tracker.observe(0, {"p0": 10, "p1": 5}, {"p0": 20, "p1": 9})
    tracker.observe(50, {"p0": 11, "p1": 9}, {"p0": 20, "p1": 9})  # p0 moved, p1 caught up
    assert tracker.observe(100, {"p0": 11, "p1": 9}, {"p0": 20, "p1": 12}) == []
    assert tracker.observe(110, {"p0": 11, "p1": 9}, {"p0": 20, "p1": 12}) == ["p0"]
    assert tracker.observe(170, {"p0": 11, "p1": 9}, {"p0": 20, "p1": 12}) == ["p0", "p1"]


def test_no_committed_offset_counts_from_zero_and_a_partition_no_longer_owned_is_forgotten():
    tracker = StallTracker(stall_after_s=10)
    tracker.observe(0, {}, {"p0": 3})
    assert tracker.observe(10, {"p0": None}, {"p0": 3}) == ["p0"]
    tracker.observe(11, {}, {})  # revoked
    assert tracker.observe(12, {}, {"p0": 3}) == []


def test_time_the_broker_could_not_be_asked_is_not_a_stall():
    tracker = StallTracker(stall_after_s=10)
    tracker.observe(0, {"p0": 1}, {"p0": 3})
    tracker.reset()
    assert tracker.observe(10, {"p0": 1}, {"p0": 3}) == []


#: First run: exit as a stalled worker would; later runs: become ready and stay up.
FAKE_WORKER = (
    "import pathlib, sys, time\n"
    "runs = pathlib.Path(sys.argv[1]); n = int(runs.read_text()) if runs.exists() else 0\n"
    "runs.write_text(str(n + 1))\n"
    f"sys.exit({STALL_EXIT_CODE}) if n == 0 else None\n"
    "pathlib.Path(sys.argv[2]).touch(); time.sleep(60)\n"
)


def test_the_supervisor_restarts_a_worker_its_watchdog_stopped_and_does_not_call_it_failed(tmp_path):
    stack = Stack(test_settings(tmp_path))
    stack.run_dir.mkdir(parents=True)
    stack.log_dir.mkdir(parents=True)
    runs = tmp_path / "runs"
    stack._spawn("worker-0", [sys.executable, "-c", FAKE_WORKER, str(runs), str(stack.run_dir / "worker-0.ready")])
    stack.start_healing()
    try:
        deadline = time.monotonic() + 30
        while stack.restarts.get("worker-0") != 1 or not (stack.run_dir / "worker-0.ready").exists():
            assert stack.failed() is None
            assert time.monotonic() < deadline, "the stalled worker was not restarted"
            time.sleep(0.1)
        assert runs.read_text() == "2" and stack.failed() is None
    finally:
        stack.stop()


def test_a_worker_that_fails_otherwise_is_left_failed(tmp_path):
    stack = Stack(test_settings(tmp_path))
    stack.run_dir.mkdir(parents=True)
    stack.log_dir.mkdir(parents=True)
    stack._spawn("worker-0", [sys.executable, "-c", "raise SystemExit(3)"])
    stack.start_healing()
    try:
        deadline = time.monotonic() + 10
        while stack.failed() is None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)
        assert stack.restarts == {} and stack.failed().process.returncode == 3
    finally:
        stack.stop()


def test_a_worker_whose_group_join_never_completes_exits_and_one_that_joined_does_not(monkeypatch):
    """noida can leave a restarted worker in a join that never ends: it owns nothing, and Faust's
    timers have not started, so a thread of its own watches the join. Time the broker does not
    accept connections does not count."""
    from pipeline.agents import watchdog as module

    exits = []
    monkeypatch.setattr(module.os, "_exit", exits.append)
    broker = {"up": True}
    dog = module.StallWatchdog("127.0.0.1:1", "g", ["llm-events"], stall_after_s=60)
    monkeypatch.setattr(dog, "_broker_accepts", lambda: broker["up"])
    dog.rebalancing(0)
    dog.check_join(30)
    broker["up"] = False
    dog.check_join(70)  # the broker is away: the clock starts again when it is back
    broker["up"] = True
    dog.check_join(100)
    assert exits == []
    dog.check_join(130)
    assert exits == [STALL_EXIT_CODE]
    exits.clear()
    dog.rebalancing(200)
    dog.joined()
    dog.check_join(500)
    assert exits == []


def test_the_join_guard_asks_the_broker_for_a_connection():
    """Its own probe: a TCP connect to the bootstrap servers (the worker's client may be wedged)."""
    import socket

    from pipeline.agents.watchdog import StallWatchdog

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert StallWatchdog(f"127.0.0.1:1,127.0.0.1:{port}", "g", [], 60)._broker_accepts()
    assert not StallWatchdog(f"127.0.0.1:{port}", "g", [], 60)._broker_accepts()

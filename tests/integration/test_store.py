import time

import pytest

from pipeline.agents.investigate import assemble_bundle
from pipeline.agents.screen import Screener
from pipeline.policy import RoutingPolicy
from pipeline.store.clickhouse import Store, migrations
from pipeline.store.desk import Desk, QueueFilter
from schemas.events import LLMEvent, Message
from schemas.evidence import Escalation
from tests.helpers import FixedDetector


def event(n, text="hello"):
    now = time.time_ns()
    return LLMEvent(
        event_id=f"ev-{n}", trace_id=f"t{n}", span_id="s", session_id=f"sess-{n}", service="svc", operation="chat",
        input_messages=(Message(role="user", content=text),), received_ns=now - 2_000_000, normalized_ns=now,
    )  # fmt: skip


def bundle_for(n, value):
    ev = event(n)
    [screening] = Screener([FixedDetector(value)], RoutingPolicy.load()).screen([ev])
    return assemble_bundle(Escalation(event=ev, screening=screening), time.time_ns() + n)


@pytest.fixture
def store(tmp_path):
    opened = Store.open(f"chdb://{tmp_path / 'store'}")
    yield opened
    opened.close()


def test_migrations_apply_once_and_record_their_version(store):
    latest = migrations()[-1][0]
    assert store.migrate() == latest
    assert store.migrate() == latest
    assert store.query("SELECT count() AS n FROM schema_migrations")[0]["n"] == len(migrations())


def test_same_batch_twice_stores_one_set_of_rows(store):
    """Screenings are written without a look-up: the table folds a replay onto its event id, so
    readers (FINAL) see one row each. Bundles are looked up first (a replay must not alert twice)."""
    screenings = Screener([FixedDetector(0.1)], RoutingPolicy.load()).screen([event(i) for i in range(50)])
    bundles = [bundle_for(i, 0.9) for i in range(5)]
    assert store.insert_screenings(screenings, time.time_ns()) == 50
    assert len(store.insert_bundles(bundles, time.time_ns())) == 5
    store.insert_screenings(screenings + screenings[:3], time.time_ns())
    assert store.insert_bundles(bundles, time.time_ns()) == []
    raw = store.query("SELECT (SELECT count() FROM screenings FINAL) AS s, (SELECT count() FROM evidence_bundles) AS b")
    assert (raw[0]["s"], raw[0]["b"]) == (50, 5)  # bundles: no duplicate rows at all
    store.query("OPTIMIZE TABLE screenings FINAL")
    assert store.query("SELECT count() AS n FROM screenings")[0]["n"] == 50  # folded on merge
    stats = store.stats()
    assert (stats["screenings"], stats["evidence_bundles"]) == (50, 5)
    assert 1.0 <= stats["e2e_p50_ms"] < 60_000


def test_queue_ranks_by_severity_then_age_and_reads_bundles_back(store):
    medium_old, high_new, medium_new = bundle_for(1, 0.6), bundle_for(2, 0.99), bundle_for(3, 0.7)
    store.insert_bundles([medium_new, high_new, medium_old], time.time_ns())
    desk = Desk(store)
    queue = desk.queue(QueueFilter())
    assert [row["bundle_id"] for row in queue] == [high_new.bundle_id, medium_old.bundle_id, medium_new.bundle_id]
    bundle = desk.bundle(high_new.bundle_id)
    assert bundle is not None and bundle["events"][0]["input_messages"][0]["content"] == "hello"
    assert bundle["policy_version"] == RoutingPolicy.load().version and bundle["hops"][0]["stage"] == "received"


def test_hostile_ids_are_bound_not_interpolated(store):
    store.insert_bundles([bundle_for(1, 0.9)], time.time_ns())
    desk = Desk(store)
    assert desk.bundle("x' OR 1=1 --") is None
    assert desk.bundle("'; DROP TABLE evidence_bundles; --") is None
    assert len(desk.queue(QueueFilter())) == 1


def test_second_opener_of_a_chdb_store_gets_a_clear_error(tmp_path):
    path = tmp_path / "locked"
    first = Store.open(f"chdb://{path}")
    try:
        import subprocess
        import sys

        code = (
            "from pipeline.store.clickhouse import Store, StoreError\n"
            f"try:\n    Store.open('chdb://{path}')\nexcept StoreError as e:\n    print('STORE-ERROR', e)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert "STORE-ERROR" in out.stdout, out.stdout + out.stderr
    finally:
        first.close()


def test_stats_since_counts_only_records_received_after_it(store):
    old = Screener([FixedDetector(0.1)], RoutingPolicy.load()).screen([event(i) for i in range(3)])
    store.insert_screenings(old, time.time_ns())
    since = time.time_ns()
    time.sleep(0.01)
    new = Screener([FixedDetector(0.9)], RoutingPolicy.load()).screen([event(i) for i in range(10, 15)])
    store.insert_screenings(new, time.time_ns())
    store.insert_bundles([bundle_for(20, 0.9)], time.time_ns())
    assert store.stats()["screenings"] == 8
    windowed = store.stats(since_ns=since)
    assert (windowed["screenings"], windowed["escalated"], windowed["evidence_bundles"]) == (5, 5, 1)


def test_queue_since_shows_only_bundles_created_after_it(store):
    older = bundle_for(1, 0.99)
    store.insert_bundles([older], time.time_ns())
    since = time.time_ns() + 1000
    newer = bundle_for(2, 0.6).model_copy(update={"created_ns": since + 5})
    store.insert_bundles([newer], time.time_ns())
    desk = Desk(store)
    assert [r["bundle_id"] for r in desk.queue(QueueFilter())] == [older.bundle_id, newer.bundle_id]
    assert [r["bundle_id"] for r in desk.queue(QueueFilter(since_ns=since))] == [newer.bundle_id]


def test_clean_traffic_is_sampled_for_the_reference_and_read_back(store):
    screener = Screener([FixedDetector(0.1, 0.1, 0.9)], RoutingPolicy.load(), reference_sample_rate=1.0)
    events = [event(n, text=f"benign question {n}") for n in range(3)]
    screenings = screener.screen(events)
    store.insert_screenings(screenings, time.time_ns())
    store.insert_screenings(screenings, time.time_ns())  # a replay adds no second sample
    assert sorted(store.reference_samples()) == ["benign question 0", "benign question 1"]  # not the escalated one


def test_screening_ttl_is_a_setting_applied_to_the_table(store):
    store.apply_retention(7)
    ddl = store.query("SELECT create_table_query AS q FROM system.tables WHERE name = 'screenings'")[0]["q"]
    assert "TTL" in ddl and "toIntervalDay(7)" in ddl
    store.apply_retention(0)
    ddl = store.query("SELECT create_table_query AS q FROM system.tables WHERE name = 'screenings'")[0]["q"]
    assert "TTL" not in ddl


def test_the_store_bench_loads_what_it_says_and_reports_its_keys():
    from pipeline.bench.store import bench_store

    result = bench_store(screenings=20_000, bundles=2_000, repeats=3)
    assert (result["screenings"], result["bundles"]) == (20_000, 2_000)
    assert (
        0 < result["queue_p50_ms"] <= result["queue_p95_ms"] and 0 < result["bundle_p50_ms"] <= result["bundle_p95_ms"]
    )
    assert set(result["queue_p95_ms_by_filter"]) >= {"open_first_page", "high_and_above", "tenant", "category"}

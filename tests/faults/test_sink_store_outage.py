"""A store (ClickHouse) that refuses writes for a while: the sink backs off, commits nothing it
has not stored, and catches up afterwards; nothing lost, nothing twice. The store is real
(chdb); its writes fail, as a remote server's would while it is down, for the outage window."""

from __future__ import annotations

import asyncio
import time

from pipeline.agents.screen import Screener
from pipeline.policy import RoutingPolicy
from pipeline.store.clickhouse import Store, StoreError
from pipeline.store.sink import Sink
from tests.faults.ledger import record
from tests.helpers import FixedDetector
from tests.integration.conftest import broker, settings  # noqa: F401 - fixtures
from tests.integration.kafka_io import produce
from tests.integration.test_store import event

OUTAGE_S = 8.0


class Outage:
    """Writes and reads fail with a connection error until `until`, as a server that is down would."""

    def __init__(self, store: Store, seconds: float) -> None:
        self.store = store
        self.until = time.monotonic() + seconds
        self.refused = 0

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def _down(self) -> None:
        if time.monotonic() < self.until:
            self.refused += 1
            raise StoreError("Connection refused (store outage)")

    def insert_screenings(self, *args, **kwargs):
        self._down()
        return self.store.insert_screenings(*args, **kwargs)

    def insert_bundles(self, *args, **kwargs):
        self._down()
        return self.store.insert_bundles(*args, **kwargs)

    def query(self, *args, **kwargs):
        self._down()
        return self.store.query(*args, **kwargs)


class Poison:
    """A store that answers and stores everything but one record, which it always refuses."""

    def __init__(self, store: Store, poison_event_id: str) -> None:
        self.store = store
        self.poison = poison_event_id

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def insert_screenings(self, screenings, stored_ns):
        if any(s.event_id == self.poison for s in screenings):
            raise StoreError("Code: 27. Cannot parse input: value out of range")
        return self.store.insert_screenings(screenings, stored_ns)


async def test_sink_backs_off_while_the_store_is_down_then_stores_everything_once(settings):  # noqa: F811
    store = Store.open(settings.store_dsn)
    outage = Outage(store, OUTAGE_S)
    screenings = Screener([FixedDetector(0.2)], RoutingPolicy.load()).screen([event(i) for i in range(300)])
    sink = Sink(settings, outage)  # type: ignore[arg-type]
    task = asyncio.create_task(sink.run())
    try:
        for start in range(0, 300, 30):  # under load: records keep arriving through the outage
            await produce(settings.bootstrap, settings.topics.screenings,
                          [s.model_dump_json().encode() for s in screenings[start:start + 30]])  # fmt: skip
            await asyncio.sleep(OUTAGE_S / 12)
        deadline = time.monotonic() + 60
        while sink.counters.screenings < 300:
            assert time.monotonic() < deadline, f"stored {sink.counters.screenings} of 300"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    [counts] = store.query("SELECT count() AS rows, uniqExact(event_id) AS events FROM screenings FINAL")
    store.close()
    # Each failed batch write was probed (a refused query too) before it backed off.
    assert sink.counters.store_failures >= 3 and outage.refused == 2 * sink.counters.store_failures
    assert sink.counters.failing_since == 0.0  # recovered
    assert (counts["rows"], counts["events"]) == (300, 300)
    row = {"fault": f"store refuses writes for {OUTAGE_S:.0f} s under load (sink keeps running)", "in": 300,
           "screened": counts["events"], "bundles": 0, "duplicates": counts["rows"] - counts["events"],
           "lost": 300 - counts["events"], "refused_writes": sink.counters.store_failures}  # fmt: skip
    record(row)


async def test_a_record_the_answering_store_refuses_becomes_a_dead_letter_and_the_rest_are_stored(settings):  # noqa: F811
    store = Store.open(settings.store_dsn)
    screenings = Screener([FixedDetector(0.2)], RoutingPolicy.load()).screen([event(i) for i in range(50)])
    sink = Sink(settings, Poison(store, screenings[17].event_id))  # type: ignore[arg-type]
    await produce(settings.bootstrap, settings.topics.screenings, [s.model_dump_json().encode() for s in screenings])
    task = asyncio.create_task(sink.run())
    try:
        deadline = time.monotonic() + 30
        while sink.counters.screenings < 49 or sink.counters.dead_letters < 1:
            assert time.monotonic() < deadline, (sink.counters.screenings, sink.counters.dead_letters)
            await asyncio.sleep(0.2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    stored = {row["event_id"] for row in store.query("SELECT event_id FROM screenings")}
    [letter] = store.dead_letters()
    store.close()
    assert stored == {s.event_id for s in screenings} - {screenings[17].event_id}
    assert letter["stage"] == "sink" and "the store refused it" in letter["reason"] and "Code: 27" in letter["reason"]
    assert sink.counters.refused == 1
    record({"fault": "one record the store refuses (store up)", "in": 50, "screened": len(stored), "bundles": 0,
            "duplicates": 0, "lost": 50 - len(stored) - 1, "dead_letters": 1})  # fmt: skip

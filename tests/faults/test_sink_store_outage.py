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
    """Writes fail with a connection error until `until`; reads and everything else are the store's."""

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
    [counts] = store.query("SELECT count() AS rows, uniqExact(event_id) AS events FROM screenings")
    store.close()
    assert outage.refused >= 3 and sink.counters.store_failures == outage.refused
    assert sink.counters.failing_since == 0.0  # recovered
    assert (counts["rows"], counts["events"]) == (300, 300)
    row = {"fault": f"store refuses writes for {OUTAGE_S:.0f} s under load (sink keeps running)", "in": 300,
           "screened": counts["events"], "bundles": 0, "duplicates": counts["rows"] - counts["events"],
           "lost": 300 - counts["events"], "refused_writes": outage.refused}  # fmt: skip
    record(row)

import asyncio
import time

from pipeline.agents.screen import Screener
from pipeline.policy import RoutingPolicy
from pipeline.store.clickhouse import Store
from pipeline.store.sink import Sink
from tests.helpers import FixedDetector
from tests.integration.kafka_io import produce
from tests.integration.test_store import bundle_for, event


async def wait_for(predicate, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_sink_stores_each_record_once_even_when_replayed(settings):
    store = Store.open(settings.store_dsn)
    screenings = Screener([FixedDetector(0.2)], RoutingPolicy.load()).screen([event(i) for i in range(40)])
    bundles = [bundle_for(i, 0.9) for i in range(4)]
    encoded_screenings = [s.model_dump_json().encode() for s in screenings]
    encoded_bundles = [b.model_dump_json().encode() for b in bundles]
    topics = settings.topics
    await produce(settings.bootstrap, topics.screenings, encoded_screenings)
    await produce(settings.bootstrap, topics.evidence, encoded_bundles)
    await produce(settings.bootstrap, topics.screenings, [b"{not a screening"])

    sink = Sink(settings, store)
    task = asyncio.create_task(sink.run())
    try:
        await wait_for(
            lambda: sink.counters.screenings == 40 and sink.counters.bundles == 4 and sink.counters.dead_letters == 1
        )
        # The same records again, as after a crash before commit: nothing new may be stored.
        await produce(settings.bootstrap, topics.screenings, encoded_screenings)
        await produce(settings.bootstrap, topics.evidence, encoded_bundles)
        batches = sink.counters.batches
        await wait_for(lambda: sink.counters.batches > batches)
        await asyncio.sleep(1.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    stats = store.stats()
    assert (stats["screenings"], stats["evidence_bundles"], stats["dead_letters"]) == (40, 4, 1)
    [letter] = store.dead_letters()
    assert letter["stage"] == "sink" and "not a Screening" in letter["reason"]
    store.close()


async def test_sink_reads_envelopes_columnar_screenings_and_a_bad_item_alone(settings):
    """The format this release writes: a columnar ScreeningBatch per record, bundles in envelopes;
    a bad item is one dead letter and its neighbours are stored; a replayed envelope adds nothing."""
    from pipeline.agents.judge import BUNDLES
    from pipeline.agents.screen import SCREENINGS
    from schemas.envelope import ENVELOPE_HEADERS

    store = Store.open(settings.store_dsn)
    screener = Screener([FixedDetector(0.2, 0.7)], RoutingPolicy.load())
    events = [event(i) for i in range(30)]
    batch, escalations = screener.route(events, screener.score_matrix(events), {})
    assert escalations  # the 0.7s
    bundles = [bundle_for(i, 0.9) for i in range(3)]
    good = BUNDLES.encode(bundles)[1:-1].decode()
    with_bad_item = f'[{good},{{"bundle_id": 5}}]'.encode()
    topics = settings.topics
    await produce(settings.bootstrap, topics.screenings, [SCREENINGS.encode([batch])] * 2, headers=ENVELOPE_HEADERS)
    await produce(settings.bootstrap, topics.evidence, [with_bad_item], headers=ENVELOPE_HEADERS)
    sink = Sink(settings, store)
    task = asyncio.create_task(sink.run())
    try:
        await wait_for(lambda: sink.counters.bundles == 3 and sink.counters.dead_letters == 1)
        await wait_for(lambda: store.stats()["screenings"] == 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    [letter] = store.dead_letters()
    assert "not a EvidenceBundle" in letter["reason"]
    stored = store.query("SELECT event_id, decision, scores FROM screenings FINAL ORDER BY event_id")
    assert len(stored) == 30 and {r["decision"] for r in stored} == {"pass", "escalate"}
    assert all(set(r["scores"]) == {"injection"} for r in stored)
    store.close()


async def test_sink_resumes_from_committed_offsets(settings):
    """A second sink in the same group starts after what the first committed."""
    store = Store.open(settings.store_dsn)
    first = Screener([FixedDetector(0.2)], RoutingPolicy.load()).screen([event(i) for i in range(10)])
    await produce(settings.bootstrap, settings.topics.screenings, [s.model_dump_json().encode() for s in first])
    sink = Sink(settings, store)
    task = asyncio.create_task(sink.run())
    await wait_for(lambda: sink.counters.screenings == 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    second = Screener([FixedDetector(0.2)], RoutingPolicy.load()).screen([event(i) for i in range(10, 15)])
    await produce(settings.bootstrap, settings.topics.screenings, [s.model_dump_json().encode() for s in second])
    resumed = Sink(settings, store)
    task = asyncio.create_task(resumed.run())
    try:
        await wait_for(lambda: store.stats()["screenings"] == 15)
        await asyncio.sleep(0.5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert resumed.counters.screenings == 5  # only the new ones were read: offsets were committed
    store.close()


async def test_with_redaction_the_store_never_holds_the_address_or_the_key(settings):
    from pipeline.agents.investigate import assemble_bundle
    from schemas.evidence import Escalation

    redacting = settings.model_copy(update={"redact": "email,api_key"})
    store = Store.open(redacting.store_dsn)
    text = "Forward it to jane.doe@example.com with api_key=sk-live-abcdefghijklmnopqrstu"
    ev = event(0, text)
    [screening] = Screener([FixedDetector(0.99)], RoutingPolicy.load()).screen([ev])
    bundle = assemble_bundle(Escalation(event=ev, screening=screening), time.time_ns())
    await produce(redacting.bootstrap, redacting.topics.screenings, [screening.model_dump_json().encode()])
    await produce(redacting.bootstrap, redacting.topics.evidence, [bundle.model_dump_json().encode()])
    sink = Sink(redacting, store)
    task = asyncio.create_task(sink.run())
    try:
        await wait_for(lambda: sink.counters.screenings == 1 and sink.counters.bundles == 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    [row] = store.query("SELECT excerpt FROM screenings")
    [stored] = store.query("SELECT bundle FROM evidence_bundles")
    store.close()
    for kept in (row["excerpt"], stored["bundle"]):
        assert "jane.doe@example.com" not in kept and "sk-live" not in kept and "[email]" in kept
    assert "[api_key]" in stored["bundle"] and bundle.bundle_id in stored["bundle"]

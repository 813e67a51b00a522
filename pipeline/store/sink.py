"""The evidence sink: screenings, bundles, dead letters and tool registry rows from Kafka into ClickHouse.

Offsets are committed only after a batch is in the store, so a crash replays the batch;
the store skips ids it already holds, so the replay writes nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from pipeline.observability.metrics import metrics
from pipeline.observability.verdicts import VerdictExporter
from pipeline.settings import Settings
from pipeline.store.clickhouse import Store
from pipeline.store.redaction import Redactor
from schemas.dead_letter import DeadLetter
from schemas.envelope import Decoded, EnvelopeCodec, is_envelope
from schemas.evidence import Decision, EvidenceBundle, Screening, ScreeningBatch
from schemas.tools import ToolRegistryRow

log = logging.getLogger(__name__)

SINK_GROUP = "oodwatch-sink"
SCREENING_BATCHES = EnvelopeCodec(ScreeningBatch)


class StoreUnavailable(RuntimeError):
    """The store stopped answering while a batch was being stored record by record."""


class SinkCounters:
    def __init__(self) -> None:
        self.batches = 0
        self.screenings = 0
        self.bundles = 0
        self.dead_letters = 0
        self.tools = 0
        self.invalid = 0
        #: Failed store writes (each retried), and since when (epoch s; 0: writing fine).
        self.store_failures = 0
        #: Records an answering store refused on their own (kept as dead letters).
        self.refused = 0
        self.failing_since = 0.0


class Sink:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        on_bundles: Callable[[list[EvidenceBundle]], None] | None = None,
        verdicts: VerdictExporter | None = None,
    ) -> None:
        """`on_bundles` hears of newly stored bundles after their offsets are committed (the alerts);
        `verdicts` gets the escalating screenings and the new bundles then too (OTLP export)."""
        self.settings = settings
        self.store = store
        self.on_bundles = on_bundles
        self.verdicts = verdicts
        self.metrics = metrics()
        self._escalated: list[Screening] = []
        self.counters = SinkCounters()
        self.redactor = Redactor.from_setting(settings.redact)
        topics = settings.topics
        self._codecs: dict[str, EnvelopeCodec[Any]] = {
            topics.screenings: EnvelopeCodec(Screening),
            topics.evidence: EnvelopeCodec(EvidenceBundle),
            topics.dead_letters: EnvelopeCodec(DeadLetter),
            topics.tool_registry: EnvelopeCodec(ToolRegistryRow),
        }
        self._consumer: Any = None
        self.ready = asyncio.Event()

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer

        from pipeline.kafka_security import aiokafka_options

        self._consumer = AIOKafkaConsumer(
            *self._codecs,
            **aiokafka_options(self.settings),
            bootstrap_servers=self.settings.bootstrap,
            group_id=SINK_GROUP,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.settings.faust_session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.settings.faust_heartbeat_interval_s * 1000),
            max_poll_records=self.settings.sink_batch_size,
            fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
        )
        try:
            await self._consumer.start()
            self.ready.set()
            delay = self.settings.sink_backoff_min_s
            while True:
                polled = await self._consumer.getmany(
                    timeout_ms=int(self.settings.sink_batch_window_s * 1000), max_records=self.settings.sink_batch_size
                )
                if not polled:
                    continue
                for partition, records in polled.items():
                    self.metrics.sink_records.labels(topic=partition.topic).inc(len(records))
                fresh = await self._store(polled)
                if fresh is None:  # the store is down: the batch goes back to the broker, polling goes on
                    self._hold_back(polled, delay)
                    delay = min(delay * 2, self.settings.sink_backoff_max_s)
                    continue
                delay = self.settings.sink_backoff_min_s
                await self._consumer.commit()
                if fresh and self.on_bundles is not None:
                    self.on_bundles(fresh)
                if self.verdicts is not None:
                    self.verdicts.offer(self._escalated, fresh)
                self._escalated = []
        finally:
            await self._consumer.stop()

    async def _store(self, polled: dict[Any, list[Any]]) -> list[EvidenceBundle] | None:
        """The new bundles of a stored batch, or None when the store is down. A store that answers
        but refuses the batch is refusing some record in it: the batch is stored record by record,
        and what the store refuses alone is dead-lettered."""
        try:
            fresh = await asyncio.to_thread(self._store_batch, polled)
        except Exception as exc:
            self.counters.store_failures += 1
            self.metrics.store_write_failures.inc()
            self._escalated = []  # the batch comes again
            self.counters.failing_since = self.counters.failing_since or time.time()
            if not await asyncio.to_thread(self._store_answers):
                log.warning("store write failed (%s: %s); offsets not committed", type(exc).__name__, str(exc)[:200])
                return None
            try:
                fresh = await asyncio.to_thread(self._store_isolating, polled, exc)
            except StoreUnavailable:
                return None  # it went down meanwhile: back off like any outage
        if self.counters.failing_since:
            log.info("store writes recovered after %.0f s", time.time() - self.counters.failing_since)
            self.counters.failing_since = 0.0
        return fresh

    def _hold_back(self, polled: dict[Any, list[Any]], delay: float) -> None:
        """Backpressure without blocking the poll loop (quix-streams' SinkBackpressureError): pause
        the batch's partitions, seek them back to its first records, and resume after `delay`;
        the broker hands the batch out again. Nothing is committed meanwhile, so nothing is skipped
        and a retry of a partly stored batch folds onto the same ids."""
        consumer = self._consumer
        partitions = list(polled)
        consumer.pause(*partitions)
        for partition, records in polled.items():
            consumer.seek(partition, records[0].offset)
        log.warning("store unavailable: %d partitions paused for %.1f s, then the batch again", len(partitions), delay)
        asyncio.get_running_loop().call_later(delay, self._resume, partitions)

    def _resume(self, partitions: list[Any]) -> None:
        """Only what is still assigned (a rebalance may have moved a partition meanwhile)."""
        owned = self._consumer.assignment()
        self._consumer.resume(*(p for p in partitions if p in owned))

    def _store_answers(self) -> bool:
        try:
            self.store.query("SELECT 1")
        except Exception:
            return False
        return True

    def _store_isolating(self, polled: dict[Any, list[Any]], batch_error: Exception) -> list[EvidenceBundle]:
        """One record at a time; a record the answering store refuses becomes a dead letter."""
        log.warning("the store answers but refused a batch (%s): storing it record by record", batch_error)
        fresh: list[EvidenceBundle] = []
        for partition, records in polled.items():
            for record in records:
                try:
                    fresh += self._store_batch({partition: [record]})
                except Exception as exc:
                    if not self._store_answers():
                        raise StoreUnavailable(str(exc)) from exc
                    self.counters.refused += 1
                    letter = DeadLetter.of(
                        stage="sink", reason=f"the store refused it: {type(exc).__name__}: {str(exc)[:300]}",
                        topic=partition.topic, partition=partition.partition, offset=record.offset,
                        payload=record.value or b"", failed_ns=time.time_ns(),
                    )  # fmt: skip
                    self.counters.dead_letters += self.store.insert_dead_letters([letter], time.time_ns())
        return fresh

    def _decode(self, partition: Any, record: Any) -> Decoded[Any]:
        """Envelopes (screenings as columnar batches) or, for one release, the one-item records
        of the previous one."""
        if partition.topic == self.settings.topics.screenings and is_envelope(record.headers):
            batches = SCREENING_BATCHES.decode(record.value, record.headers)
            return Decoded([s for batch in batches.items for s in batch.screenings()], batches.bad)
        return self._codecs[partition.topic].decode(record.value, record.headers)

    def _store_batch(self, polled: dict[Any, list[Any]]) -> list[EvidenceBundle]:
        """Stores a polled batch; returns the bundles that were new."""
        topics = self.settings.topics
        decoded: dict[str, list[Any]] = {topic: [] for topic in self._codecs}
        for partition, records in polled.items():
            for record in records:
                found = self._decode(partition, record)
                decoded[partition.topic].extend(found.items)
                for bad in found.bad:
                    # Nothing downstream can use it; keep it as a dead letter rather than drop it.
                    self.counters.invalid += 1
                    decoded[topics.dead_letters].append(
                        DeadLetter.of(
                            stage="sink", reason=bad.reason, topic=partition.topic, partition=partition.partition,
                            offset=record.offset, payload=bad.payload, failed_ns=time.time_ns(), item=bad.index,
                        )
                    )  # fmt: skip
        if self.redactor is not None:
            decoded[topics.screenings] = [self.redactor.screening(s) for s in decoded[topics.screenings]]
            decoded[topics.evidence] = [self.redactor.bundle(b) for b in decoded[topics.evidence]]
        stored_ns = time.time_ns()
        started = time.perf_counter()
        screenings = self.store.insert_screenings(decoded[topics.screenings], stored_ns)
        fresh = self.store.insert_bundles(decoded[topics.evidence], stored_ns)
        letters = self.store.insert_dead_letters(decoded[topics.dead_letters], stored_ns)
        tools = self.store.upsert_tools(decoded[topics.tool_registry])
        self.counters.screenings += screenings
        self.counters.bundles += len(fresh)
        self.counters.dead_letters += letters
        self.counters.tools += tools
        self.counters.batches += 1
        self._observe(decoded[topics.screenings], stored_ns, time.perf_counter() - started,
                      {"screenings": screenings, "evidence_bundles": len(fresh), "dead_letters": letters,
                       "tool_registry": tools})  # fmt: skip
        return fresh

    def _observe(self, screenings: list[Screening], stored_ns: int, seconds: float, rows: dict[str, int]) -> None:
        """Store metrics for a stored batch; escalating screenings wait for the verdict export,
        which runs once the batch's offsets are committed."""
        m = self.metrics
        m.store_insert_seconds.observe(seconds)
        for table, count in rows.items():
            if count:
                m.store_rows.labels(table=table).inc(count)
        hop = m.hop_latency.labels(hop="store")
        for screening in screenings:
            hop.observe(max(0.0, (stored_ns - screening.screened_ns) / 1e9))
        if self.verdicts is not None:
            self._escalated += [s for s in screenings if s.decision is Decision.ESCALATE]

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

from pydantic import BaseModel, ValidationError

from pipeline.observability.metrics import metrics
from pipeline.observability.verdicts import VerdictExporter
from pipeline.settings import Settings
from pipeline.store.clickhouse import Store
from pipeline.store.redaction import Redactor
from schemas.dead_letter import DeadLetter
from schemas.evidence import Decision, EvidenceBundle, Screening
from schemas.tools import ToolRegistryRow

log = logging.getLogger(__name__)

SINK_GROUP = "oodwatch-sink"
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 15.0


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
        self, settings: Settings, store: Store, on_bundles: Callable[[list[EvidenceBundle]], None] | None = None,
        verdicts: VerdictExporter | None = None,
    ) -> None:  # fmt: skip
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
        self._parsers: dict[str, type[BaseModel]] = {
            topics.screenings: Screening,
            topics.evidence: EvidenceBundle,
            topics.dead_letters: DeadLetter,
            topics.tool_registry: ToolRegistryRow,
        }
        self._consumer: Any = None
        self.ready = asyncio.Event()

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer

        from pipeline.kafka_security import aiokafka_options

        self._consumer = AIOKafkaConsumer(
            *self._parsers,
            bootstrap_servers=self.settings.bootstrap,
            group_id=SINK_GROUP,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=2000,
            max_poll_records=self.settings.sink_batch_size,
            fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
            **aiokafka_options(self.settings),
        )
        try:
            await self._consumer.start()
            self.ready.set()
            while True:
                polled = await self._consumer.getmany(
                    timeout_ms=int(self.settings.sink_batch_window_s * 1000), max_records=self.settings.sink_batch_size
                )
                if polled:
                    for partition, records in polled.items():
                        self.metrics.sink_records.labels(topic=partition.topic).inc(len(records))
                    fresh = await self._store_until_stored(polled)
                    await self._consumer.commit()
                    if fresh and self.on_bundles is not None:
                        self.on_bundles(fresh)
                    if self.verdicts is not None:
                        self.verdicts.offer(self._escalated, fresh)
                    self._escalated = []
        finally:
            await self._consumer.stop()

    async def _store_until_stored(self, polled: dict[Any, list[Any]]) -> list[EvidenceBundle]:
        """A store that is down holds the batch: retried with backoff, its offsets uncommitted, so
        nothing is skipped; a retry of a partly stored batch stores the rest (ids already held
        are skipped). A store that answers but refuses the batch is refusing some record in it:
        the batch is stored record by record, and what the store refuses alone is dead-lettered."""
        delay = BACKOFF_MIN_S
        while True:
            try:
                fresh = await asyncio.to_thread(self._store_batch, polled)
            except Exception as exc:
                self.counters.store_failures += 1
                self.metrics.store_write_failures.inc()
                self.counters.failing_since = self.counters.failing_since or time.time()
                if await asyncio.to_thread(self._store_answers):
                    try:
                        fresh = await asyncio.to_thread(self._store_isolating, polled, exc)
                    except StoreUnavailable:
                        pass  # it went down meanwhile: back off like any outage
                    else:
                        self.counters.failing_since = 0.0
                        return fresh
                log.warning(
                    "store write failed (%s: %s): retrying the batch in %.1f s; offsets not committed",
                    type(exc).__name__, str(exc)[:200], delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            if self.counters.failing_since:
                log.info("store writes recovered after %.0f s", time.time() - self.counters.failing_since)
                self.counters.failing_since = 0.0
            return fresh

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

    def _store_batch(self, polled: dict[Any, list[Any]]) -> list[EvidenceBundle]:
        """Stores a polled batch; returns the bundles that were new."""
        decoded: dict[str, list[Any]] = {topic: [] for topic in self._parsers}
        for partition, records in polled.items():
            parser = self._parsers[partition.topic]
            for record in records:
                try:
                    decoded[partition.topic].append(parser.model_validate_json(record.value))
                except ValidationError as exc:
                    # Nothing downstream can use it; keep it as a dead letter rather than drop it.
                    self.counters.invalid += 1
                    decoded[self.settings.topics.dead_letters].append(
                        DeadLetter.of(
                            stage="sink",
                            reason=f"invalid {parser.__name__}: {exc.errors()[:3]}",
                            topic=partition.topic,
                            partition=partition.partition,
                            offset=record.offset,
                            payload=record.value or b"",
                            failed_ns=time.time_ns(),
                        )
                    )
        topics = self.settings.topics
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

"""The performance path in the store process, beside the sink and apart from the safety path.

Its own consumer group reads `otlp_spans` (the same records the normalise stage reads) and
`otlp_metrics`, turns them into request rows and histogram deltas, stores them, rolls the
touched minutes up, and commits offsets only after that (at-least-once; replays fold, see
`pipeline.perf.store`). A metrics record that cannot be read, or points that cannot become
correct deltas, go to the dead-letter topic with the reason; a span record that cannot be read
is only counted here, since normalize reads the same record and dead-letters it (one letter per
bad record). A second task evaluates the SLOs' burn rates and raises alerts (recorded always;
sent through the webhooks for live traffic only).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.kafka_security import aiokafka_options
from pipeline.perf.metrics import MetricDecoder
from pipeline.perf.slo import BURN_PAIRS, WINDOWS_S, AlertLatch, Burn, evaluate, fingerprint, objectives
from pipeline.perf.spans import timings_from_request
from pipeline.perf.store import PerfStore, minute_of
from pipeline.settings import Settings
from schemas.dead_letter import DeadLetter
from schemas.otel_mapping import MalformedRecord, parse_otlp
from schemas.perf import HistogramDelta, RequestTiming

log = logging.getLogger(__name__)

PERF_GROUP = "oodwatch-perf"
BACKOFF_MAX_S = 15.0


@dataclass
class PerfCounters:
    records: int = 0
    requests: int = 0
    points: int = 0
    deltas: int = 0
    dead_letters: int = 0
    refused_points: int = 0
    #: Span records no one can read: normalize dead-letters them (one letter per bad record).
    unreadable_spans: int = 0
    stale_points: int = 0
    resets: int = 0
    baselined: int = 0
    rolls: int = 0
    evaluations: int = 0
    alerts_raised: int = 0
    alerts_sent: int = 0
    store_failures: int = 0
    unknown_metrics: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, Any]:
        values = {k: v for k, v in self.__dict__.items() if k != "unknown_metrics"}
        return {**values, "unknown_metrics": dict(self.unknown_metrics.most_common(20))}


@dataclass
class Decoded:
    rows: list[RequestTiming] = field(default_factory=list)
    deltas: list[HistogramDelta] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)


class PerfIngest:
    """Records -> rows -> store, with no Kafka: what the consumer runs per batch and what the
    bench measures."""

    def __init__(self, settings: Settings, perf: PerfStore) -> None:
        self.settings = settings
        self.perf = perf
        self.decoder = MetricDecoder(perf.load_series())
        self.counters = PerfCounters()
        self.touched_requests: set[int] = set()
        self.touched_hist: set[int] = set()

    def decode(self, topic: str, partition: int, offset: int, value: bytes) -> Decoded:
        out = Decoded()
        self.counters.records += 1
        try:
            if topic == self.settings.topics.otlp_metrics:
                result = self.decoder.decode(parse_otlp(value, ExportMetricsServiceRequest))
                out.deltas = result.deltas
                c = self.counters
                c.points += result.points
                c.refused_points += len(result.refused)
                c.stale_points += result.stale
                c.resets += result.resets
                c.baselined += result.baselined
                c.unknown_metrics.update(result.unknown)
                reasons = result.refused
            else:
                out.rows = timings_from_request(parse_otlp(value, ExportTraceServiceRequest))
                reasons = []
        except MalformedRecord as exc:
            if topic != self.settings.topics.otlp_metrics:
                self.counters.unreadable_spans += 1
                return out
            reasons = [str(exc)]
        if reasons:
            more = f" (and {len(reasons) - 5} more)" if len(reasons) > 5 else ""
            out.letters.append(
                DeadLetter.of(
                    stage="perf",
                    reason="; ".join(reasons[:5]) + more,
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    payload=value,
                    failed_ns=time.time_ns(),
                )
            )
        return out

    def store(self, decoded: list[Decoded]) -> None:
        """Blocking (run it in a thread): rows, deltas and series states into the store."""
        rows = [r for d in decoded for r in d.rows]
        deltas = [x for d in decoded for x in d.deltas]
        self.perf.insert_requests(rows)
        self.perf.insert_deltas(deltas)
        touched = self.decoder.take_touched()
        if touched:
            self.perf.save_series(touched)
        self.counters.requests += len(rows)
        self.counters.deltas += len(deltas)
        self.touched_requests.update(minute_of(r.start_ns) for r in rows)
        self.touched_hist.update(minute_of(d.time_ns) for d in deltas)

    def roll(self) -> None:
        requests, hist = self.touched_requests, self.touched_hist
        self.touched_requests, self.touched_hist = set(), set()
        if requests or hist:
            self.perf.roll(requests, hist)
            self.counters.rolls += 1


class PerfService:
    def __init__(
        self, settings: Settings, perf: PerfStore, *, send_alert: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.settings = settings
        self.perf = perf
        self.ingest = PerfIngest(settings, perf)
        self.send_alert = send_alert
        self.latch = AlertLatch(rearm_s=settings.alert_group_window_s)
        self.ready = asyncio.Event()
        self.last_burns: list[Burn] = []
        self.last_summary: list[dict[str, Any]] = []
        self.slo_version = f"{perf.slo_file.version}/{fingerprint(perf.slo_file)}"

    @property
    def counters(self) -> PerfCounters:
        return self.ingest.counters

    async def run(self) -> None:
        await asyncio.gather(self._consume_forever(), self._evaluate_forever())

    async def _consume_forever(self) -> None:
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.ready.clear()
                log.exception("perf consumer stopped; retrying in 2 s")
                await asyncio.sleep(2.0)

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        topics = self.settings.topics
        consumer = AIOKafkaConsumer(
            topics.otlp_spans, topics.otlp_metrics, **aiokafka_options(self.settings),
            bootstrap_servers=self.settings.bootstrap, group_id=PERF_GROUP,
            enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=6000,
            heartbeat_interval_ms=2000, max_poll_records=self.settings.sink_batch_size,
            fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
        )  # fmt: skip
        producer = AIOKafkaProducer(
            **aiokafka_options(self.settings), bootstrap_servers=self.settings.bootstrap, acks="all"
        )
        await consumer.start()
        await producer.start()
        last_roll = 0.0
        try:
            self.ready.set()
            while True:
                polled = await consumer.getmany(timeout_ms=500, max_records=self.settings.sink_batch_size)
                if polled:
                    decoded = [
                        self.ingest.decode(tp.topic, tp.partition, record.offset, record.value or b"")
                        for tp, records in polled.items()
                        for record in records
                    ]
                    letters = [letter for d in decoded for letter in d.letters]
                    await self._store_until_stored(decoded)
                    for letter in letters:
                        await producer.send_and_wait(
                            topics.dead_letters, letter.model_dump_json().encode(), key=letter.dead_letter_id.encode()
                        )
                    self.ingest.counters.dead_letters += len(letters)
                if time.monotonic() - last_roll >= self.settings.perf_roll_interval_s:
                    await asyncio.to_thread(self.ingest.roll)
                    last_roll = time.monotonic()
                if polled:
                    # Committed after the rows are stored; the roll of what is stored but not yet
                    # rolled is redone from the raw rows if this process dies before it.
                    await consumer.commit()
        finally:
            await consumer.stop()
            await producer.stop()

    async def _store_until_stored(self, decoded: list[Decoded]) -> None:
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(self.ingest.store, decoded)
                return
            except Exception as exc:
                self.ingest.counters.store_failures += 1
                log.warning("perf store write failed (%s); retrying in %.1f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)

    async def _evaluate_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.perf_eval_interval_s)
            try:
                await asyncio.to_thread(self.evaluate_once, time.time())
            except Exception:
                log.exception("SLO evaluation failed; trying again next interval")

    def burns(self, as_of_s: float, *, drill_prefix: str | None = None) -> list[Burn]:
        """Every objective's burn rates at `as_of` (live traffic, and each drill case)."""
        refs = objectives(self.perf.slo_file)
        now = int(as_of_s)
        windows = self.perf.window_counts(now, WINDOWS_S, drill_prefix=drill_prefix)
        budgets: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
        for window_s in sorted({ref.slo.window_s for ref in refs}):
            for group, (valid, bad) in self.perf.budget_counts(now - window_s, now + 60,
                                                               drill_prefix=drill_prefix).items():  # fmt: skip
                held = budgets.setdefault(group, ({}, {}))
                keys = {ref.key for ref in refs if ref.slo.window_s == window_s}
                held[0].update({k: v for k, v in valid.items() if k in keys})
                held[1].update({k: v for k, v in bad.items() if k in keys})
        return evaluate(refs, windows, budgets)

    def evaluate_once(self, now_s: float) -> list[dict[str, Any]]:
        burns = self.burns(now_s)
        self.last_burns = burns
        self.last_summary = self.perf.summary(int(now_s) - 300, int(now_s) + 60)
        self.ingest.counters.evaluations += 1
        raised = []
        for burn, severity in self.latch.step(burns, time.monotonic()):
            pair = next(p for p in BURN_PAIRS if p.severity == severity)
            alert = {
                "alert_id": uuid.uuid4().hex, "slo": burn.slo, "objective": burn.objective,
                "objective_key": burn.key, "slo_version": self.slo_version, "drill_id": burn.drill_id,
                "severity": severity, "burn_long": round(burn.rate(pair.long_s), 3),
                "burn_short": round(burn.rate(pair.short_s), 3), "long_window_s": pair.long_s,
                "short_window_s": pair.short_s, "budget_left": round(burn.budget_left, 4),
                "fired_at": int(now_s * 1000), "sent": bool(self.send_alert and not burn.drill_id),
            }  # fmt: skip
            self.perf.record_alert(alert)
            self.ingest.counters.alerts_raised += 1
            if alert["sent"] and self.send_alert is not None:
                self.send_alert(alert)
                self.ingest.counters.alerts_sent += 1
            log.warning(
                "SLO burn alert (%s): %s %s burning %.1fx over %ds and %.1fx over %ds%s", severity, burn.slo,
                burn.objective, alert["burn_long"], pair.long_s, alert["burn_short"], pair.short_s,
                f" [drill {burn.drill_id}]" if burn.drill_id else "",
            )  # fmt: skip
            raised.append(alert)
        return raised

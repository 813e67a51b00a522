"""The process's instruments: one Prometheus registry per process, built on first use.

Stages report through `StageMetrics(stage)` (records in, events out, dead letters by reason,
batch sizes and times, per-hop latency, escalations, budget rejections); the receiver, store,
judge, lag reader and verdict exporter use the named instruments on `metrics()`. With metrics
off (`OODWATCH_METRICS_ENABLED=false`) every instrument is a shared no-op object, so a call
costs one attribute lookup and an empty method.

The same registry is what `/metrics` serves and what `otlp_push` sends over OTLP.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Seconds: from a millisecond hop to a minute-long stall.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class Instruments:
    """Every instrument oodwatch exports, on a private registry (no process or GC collectors
    from the default one: the exposition stays ours)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.records_in = Counter(
            "oodwatch_stage_records_in", "Records a stage took from its input topic.", ["stage"], registry=r
        )
        self.items_in = Counter(
            "oodwatch_stage_items_in", "Items (events, screenings, escalations) unpacked from a stage's input records.",
            ["stage"], registry=r,
        )  # fmt: skip
        self.events_out = Counter(
            "oodwatch_stage_events_out", "Items a stage emitted, by output topic.", ["stage", "topic"], registry=r
        )
        self.dead_letters = Counter(
            "oodwatch_dead_letters", "Records set aside as dead letters, by stage and reason.", ["stage", "reason"],
            registry=r,
        )  # fmt: skip
        self.escalations = Counter(
            "oodwatch_escalations",
            "Escalations by tier, category and reason (tier1: decision; tier2: flagged or why skipped; tier3: status).",
            ["tier", "category", "reason"],
            registry=r,
        )
        self.hop_latency = Histogram(
            "oodwatch_hop_latency_seconds", "Server-side latency of one hop, from the stamps in the records.", ["hop"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "oodwatch_batch_size", "Records per micro-batch.", ["stage"], buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "oodwatch_batch_seconds", "Time to process one micro-batch.", ["stage"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.budget_rejections = Counter(
            "oodwatch_budget_rejections", "Items a tier's budget did not admit (they go on without it).", ["tier"],
            registry=r,
        )  # fmt: skip
        self.judge_calls = Counter(
            "oodwatch_judge_calls", "Tier-3 judge outcomes: judged, judge_error, skipped.", ["status"], registry=r
        )
        self.judge_breaker_open = Gauge(
            "oodwatch_judge_breaker_open", "1 while the judge's circuit breaker is open or half-open.", registry=r
        )
        self.consumer_lag = Gauge(
            "oodwatch_consumer_lag", "End offset minus committed offset, per consumer group and partition.",
            ["group", "topic", "partition"], registry=r,
        )  # fmt: skip
        self.lag_reads = Counter(
            "oodwatch_consumer_lag_reads", "Lag readings taken, by outcome (ok, error).", ["outcome"], registry=r
        )
        self.receiver_requests = Counter(
            "oodwatch_receiver_requests", "OTLP requests answered, by signal and HTTP status (admission included).",
            ["signal", "status"], registry=r,
        )  # fmt: skip
        self.receiver_items = Counter(
            "oodwatch_receiver_items", "Spans or log records accepted, by signal.", ["signal"], registry=r
        )
        self.sink_records = Counter(
            "oodwatch_sink_records", "Kafka records the sink took, by topic (an envelope holds many items).",
            ["topic"], registry=r,
        )  # fmt: skip
        self.store_rows = Counter(
            "oodwatch_store_rows", "Rows inserted into the store (replays skipped), by table.", ["table"], registry=r
        )
        self.store_insert_seconds = Histogram(
            "oodwatch_store_insert_seconds", "Time to store one sink batch.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.store_write_failures = Counter(
            "oodwatch_store_write_failures", "Failed store writes (each retried).", registry=r
        )
        self.verdicts_exported = Counter(
            "oodwatch_verdicts_exported", "gen_ai.evaluation.result records the OTLP endpoint accepted.", registry=r
        )
        self.verdicts_dropped = Counter(
            "oodwatch_verdicts_dropped", "Verdict records dropped: queue_full (oldest dropped) or rejected.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.verdict_export_failures = Counter(
            "oodwatch_verdict_export_failures", "Failed verdict export requests (retried).", registry=r
        )
        self.verdicts_queued = Gauge("oodwatch_verdicts_queued", "Verdict records waiting to be sent.", registry=r)


class _Null:
    """Stands in for any instrument, or any of its labelled children, when metrics are off."""

    def labels(self, *_: Any, **__: Any) -> _Null:
        return self

    def inc(self, *_: Any) -> None:
        pass

    def dec(self, *_: Any) -> None:
        pass

    def set(self, *_: Any) -> None:
        pass

    def observe(self, *_: Any) -> None:
        pass


class NullInstruments:
    """Every attribute is the shared no-op instrument."""

    @property
    def registry(self) -> CollectorRegistry:
        return CollectorRegistry(auto_describe=False)  # nothing registered: an empty exposition

    def __getattr__(self, _: str) -> Any:
        return _NULL


_NULL = _Null()
_state: dict[str, Any] = {"enabled": True, "instruments": None}


def configure(enabled: bool) -> None:
    """Called once at process start, from the settings."""
    _state["enabled"] = enabled


def metrics() -> Any:
    """The process's instruments (built on first use), or the no-op stand-in when off."""
    if not _state["enabled"]:
        return _NULL_INSTRUMENTS
    if _state["instruments"] is None:
        _state["instruments"] = Instruments()
    return _state["instruments"]


def registry() -> CollectorRegistry:
    return metrics().registry  # type: ignore[no-any-return]


class StageMetrics:
    """What one pipeline stage reports; the interface the stage loop calls.

    Labelled children are cached per stage, so a hot-path call is a dict lookup and an add."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._m = metrics()
        self._in = self._m.records_in.labels(stage=stage)
        self._items_in = self._m.items_in.labels(stage=stage)
        self._batch_size = self._m.batch_size.labels(stage=stage)
        self._batch_seconds = self._m.batch_seconds.labels(stage=stage)
        self._out: dict[str, Any] = {}
        self._hops: dict[str, Any] = {}

    def records_in(self, n: int = 1) -> None:
        self._in.inc(n)

    def items_in(self, n: int) -> None:
        """An envelope record holds many items: records and items in tell them apart."""
        self._items_in.inc(n)

    def events_out(self, topic: str, n: int = 1) -> None:
        child = self._out.get(topic)
        if child is None:
            child = self._out[topic] = self._m.events_out.labels(stage=self.stage, topic=topic)
        child.inc(n)

    def dead_letter(self, reason: str, n: int = 1) -> None:
        """`reason` is a short kind (invalid_record, malformed, stage_error, ...), never free text."""
        self._m.dead_letters.labels(stage=self.stage, reason=reason).inc(n)

    def batch(self, size: int, seconds: float) -> None:
        self._batch_size.observe(size)
        self._batch_seconds.observe(seconds)

    def hop(self, hop: str, seconds: float) -> None:
        child = self._hops.get(hop)
        if child is None:
            child = self._hops[hop] = self._m.hop_latency.labels(hop=hop)
        child.observe(max(0.0, seconds))

    def hop_ns(self, hop: str, start_ns: int | None, end_ns: int | None) -> None:
        """A hop from two wall-clock stamps; records missing a stamp are not counted."""
        if start_ns and end_ns:
            self.hop(hop, (end_ns - start_ns) / 1e9)

    def escalation(self, tier: str, category: str, reason: str, n: int = 1) -> None:
        self._m.escalations.labels(tier=tier, category=category, reason=reason).inc(n)

    def budget_rejection(self, tier: str, n: int = 1) -> None:
        if n:
            self._m.budget_rejections.labels(tier=tier).inc(n)


_NULL_INSTRUMENTS = NullInstruments()

"""GenAI metrics from OTLP: histogram points -> per-series deltas, checked before they count.

Cumulative series become deltas against the series' previous point (kept in memory and in the
store, so a restart resumes them); a new start time is a reset, and the point itself is the
delta. What cannot be turned into a correct delta is refused with a reason and never reaches a
percentile: bucket counts that do not match the bounds or the count, bounds that are not
increasing, a cumulative series that went down without a new start time, bounds that changed
within one series. Unknown metric names are counted and skipped.

A metric's nominal side (client/server) comes from its name, except that instrumentation
libraries in the client record what they measure: OpenLLMetry records the client-observed time
to first token as `gen_ai.server.time_to_first_token`; its scope says client.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, HistogramDataPoint

from schemas.events import DRILL_ATTRIBUTE
from schemas.otel_mapping import any_value
from schemas.perf import HistogramDelta

CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA

#: OTLP metric name -> (our metric, nominal side). Durations are converted to ms.
KNOWN: dict[str, tuple[str, str]] = {
    "gen_ai.client.operation.duration": ("e2e", "client"),
    "gen_ai.client.token.usage": ("tokens", "client"),
    "gen_ai.client.operation.time_to_first_chunk": ("ttft", "client"),
    "gen_ai.client.operation.time_per_output_chunk": ("tpoc", "client"),
    "gen_ai.server.request.duration": ("e2e", "server"),
    "gen_ai.server.time_to_first_token": ("ttft", "server"),
    "gen_ai.server.time_per_output_token": ("tpot", "server"),
    # OpenLLMetry: first token to the last, client side.
    "llm.chat_completions.streaming_time_to_generate": ("generate", "client"),
}
#: Instrumentation scopes that run inside the calling application.
CLIENT_SCOPES = ("opentelemetry.instrumentation.", "openinference.instrumentation.", "opentelemetry.util.genai")
_UNIT_MS = {"s": 1000.0, "ms": 1.0, "us": 0.001, "ns": 1e-6}
MAX_SERIES = 200_000
#: A cumulative series' first point counts as a delta only if it covers at most this span.
FIRST_POINT_MAX_SPAN_NS = 10 * 60 * 10**9


class BadPoint(ValueError):
    """A point that cannot become a correct delta; the message is the dead letter's reason."""


@dataclass(slots=True)
class SeriesState:
    start_ns: int
    time_ns: int
    count: int
    sum: float
    bounds: list[float]
    counts: list[int]


@dataclass(frozen=True, slots=True)
class SeriesIdentity:
    """What a series' labels say, decoded once per series (the hot path is the counts)."""

    series_id: str
    service: str
    tenant: str
    provider: str
    model: str
    operation: str
    token_type: str
    drill_id: str


@dataclass
class DecodeResult:
    deltas: list[HistogramDelta] = field(default_factory=list)
    #: Reasons for points refused (one line each); the record becomes one dead letter.
    refused: list[str] = field(default_factory=list)
    unknown: Counter[str] = field(default_factory=Counter)
    #: Cumulative points at or before the series' last one (a replay): already counted.
    stale: int = 0
    resets: int = 0
    baselined: int = 0
    points: int = 0


def _side(nominal: str, scope_name: str) -> str:
    return "client" if scope_name.startswith(CLIENT_SCOPES) else nominal


class MetricDecoder:
    """Keeps each cumulative series' last point. One decoder per process: every series of a
    deployment reaches the one store process, whatever partition it came on."""

    def __init__(self, states: Mapping[str, SeriesState] | None = None) -> None:
        self.series: dict[str, SeriesState] = dict(states or {})
        self.touched: dict[str, SeriesState] = {}
        self.unknown_total: Counter[str] = Counter()
        self.refused_total = 0
        self.resets_total = 0
        self.stale_total = 0
        self._labels: dict[bytes, dict[str, Any]] = {}
        self._layouts: dict[tuple[tuple[float, ...], float], list[float]] = {}
        self._identities: dict[tuple[bytes, str, str, bytes], SeriesIdentity] = {}

    def decode(self, request: ExportMetricsServiceRequest) -> DecodeResult:
        result = DecodeResult()
        for resource_metrics in request.resource_metrics:
            resource_key = resource_metrics.resource.SerializeToString(deterministic=True)
            resource = self._attrs(resource_key, resource_metrics.resource.attributes)
            for scope_metrics in resource_metrics.scope_metrics:
                scope_name = scope_metrics.scope.name
                for metric in scope_metrics.metrics:
                    known = KNOWN.get(metric.name)
                    kind = metric.WhichOneof("data")
                    if known is None:
                        result.unknown[metric.name[:120]] += 1
                        continue
                    if kind != "histogram":
                        result.refused.append(f"{metric.name}: a {kind or 'metric with no data'}, not a histogram")
                        continue
                    scale = 1.0 if known[0] == "tokens" else _UNIT_MS.get(metric.unit.strip("{}"), 0.0)
                    if not scale:
                        result.refused.append(f"{metric.name}: unit {metric.unit[:20]!r} is not a duration unit")
                        continue
                    temporality = metric.histogram.aggregation_temporality
                    if temporality not in (CUMULATIVE, DELTA):
                        result.refused.append(f"{metric.name}: aggregation temporality unspecified")
                        continue
                    side = _side(known[1], scope_name)
                    for point in metric.histogram.data_points:
                        result.points += 1
                        try:
                            delta = self._point(
                                point, metric.name, known[0], side, scale, temporality, resource_key, scope_name,
                                resource, result,
                            )  # fmt: skip
                        except BadPoint as exc:
                            result.refused.append(f"{metric.name}: {exc}")
                            continue
                        if delta is not None:
                            result.deltas.append(delta)
        self.refused_total += len(result.refused)
        self.unknown_total.update(result.unknown)
        self.resets_total += result.resets
        self.stale_total += result.stale
        return result

    def _attrs(self, key: bytes, attributes: Iterable[KeyValue]) -> dict[str, Any]:
        found = self._labels.get(key)
        if found is None:
            if len(self._labels) > 10_000:
                self._labels.clear()
            found = self._labels[key] = {kv.key: any_value(kv.value) for kv in attributes}
        return found

    def _point(
        self, point: HistogramDataPoint, name: str, metric: str, side: str, scale: float, temporality: int,
        resource_key: bytes, scope_name: str, resource: Mapping[str, Any], result: DecodeResult,
    ) -> HistogramDelta | None:  # fmt: skip
        counts = list(point.bucket_counts)
        bounds = self._bounds(tuple(point.explicit_bounds), scale, len(counts))
        if counts and sum(counts) != point.count:
            raise BadPoint(f"bucket counts add up to {sum(counts)}, the point's count is {point.count}")
        if not math.isfinite(point.sum):
            raise BadPoint("the sum is not finite")
        labels_key = _labels_key(point.attributes)
        identity = self._identity(resource_key, scope_name, name, labels_key, point, metric, side, resource)
        sid = identity.series_id
        count, total = point.count, point.sum * scale
        start_ns = point.start_time_unix_nano
        if temporality == CUMULATIVE:
            previous = self.series.get(sid)
            state = SeriesState(start_ns, point.time_unix_nano, count, total, bounds, counts)
            if previous is not None and start_ns < previous.start_ns:
                result.stale += 1  # a replayed point of an epoch before the last reset
                return None
            if previous is not None and previous.start_ns == start_ns:
                if point.time_unix_nano <= previous.time_ns:
                    result.stale += 1
                    return None
                if previous.bounds != bounds:
                    self._keep(sid, state)  # the next point diffs against these bounds
                    raise BadPoint("bucket bounds changed within one cumulative series")
                moved = [c - p for c, p in zip(counts, previous.counts, strict=True)]
                if count < previous.count or min(moved, default=0) < 0:
                    self._keep(sid, state)  # re-baselined: what happened in between is unknown
                    raise BadPoint(
                        f"cumulative series went down ({previous.count} -> {count}) without a new start time"
                    )
                start_ns, counts, count, total = previous.time_ns, moved, count - previous.count, total - previous.sum
            else:
                result.resets += previous is not None
                if point.time_unix_nano - start_ns > FIRST_POINT_MAX_SPAN_NS:
                    # A series first seen long after it started: its counts are history we cannot
                    # place in time. It is the baseline; the next point's delta counts.
                    result.baselined += 1
                    self._keep(sid, state)
                    return None
            self._keep(sid, state)
            if count == 0:
                return None
        elif count == 0:
            return None
        i = identity
        return HistogramDelta(
            series_id=sid, metric=metric, side=side, tenant=i.tenant, service=i.service, provider=i.provider,
            model=i.model, operation=i.operation, token_type=i.token_type, start_ns=start_ns,
            time_ns=point.time_unix_nano, count=count, sum=total, bounds=bounds, counts=counts,
            min=point.min * scale if point.HasField("min") and temporality == DELTA else math.nan,
            max=point.max * scale if point.HasField("max") and temporality == DELTA else math.nan,
            drill_id=i.drill_id,
        )  # fmt: skip

    def _bounds(self, raw: tuple[float, ...], scale: float, buckets: int) -> list[float]:
        """Checked and scaled once per bucket layout (a deployment has a handful)."""
        key = (raw, scale)
        found = self._layouts.get(key)
        if found is None:
            _check_bounds(raw)
            if len(self._layouts) > 1_000:
                self._layouts.clear()
            found = self._layouts[key] = [b * scale for b in raw]
        if buckets and buckets != len(found) + 1:
            raise BadPoint(f"{buckets} bucket counts for {len(found)} bounds (want bounds + 1)")
        if not buckets and found:
            raise BadPoint("explicit bounds without bucket counts")
        return found

    def _identity(
        self, resource_key: bytes, scope_name: str, name: str, labels_key: bytes, point: HistogramDataPoint,
        metric: str, side: str, resource: Mapping[str, Any],
    ) -> SeriesIdentity:  # fmt: skip
        key = (resource_key, scope_name, name, labels_key)
        found = self._identities.get(key)
        if found is None:
            labels = {kv.key: any_value(kv.value) for kv in point.attributes}
            service = str(resource.get("service.name") or labels.get("service.name") or "")
            digest = hashlib.blake2b(b"\x00".join((resource_key, scope_name.encode(), name.encode(), labels_key)),
                                     digest_size=12)  # fmt: skip
            found = SeriesIdentity(
                series_id=digest.hexdigest(), service=service,
                tenant=str(resource.get("tenant.id") or labels.get("tenant.id") or service),
                provider=str(labels.get("gen_ai.provider.name") or labels.get("gen_ai.system") or ""),
                model=str(labels.get("gen_ai.response.model") or labels.get("gen_ai.request.model") or "unknown"),
                operation=str(labels.get("gen_ai.operation.name") or ""),
                token_type=str(labels.get("gen_ai.token.type") or ""),
                drill_id=str(labels.get(DRILL_ATTRIBUTE) or resource.get(DRILL_ATTRIBUTE) or ""),
            )  # fmt: skip
            if len(self._identities) >= MAX_SERIES:
                self._identities.clear()
            self._identities[key] = found
        return found

    def _keep(self, sid: str, state: SeriesState) -> None:
        if sid not in self.series and len(self.series) >= MAX_SERIES:
            self.series.pop(next(iter(self.series)))
        self.series[sid] = state
        self.touched[sid] = state

    def take_touched(self) -> dict[str, SeriesState]:
        touched, self.touched = self.touched, {}
        return touched


def _labels_key(attributes: Iterable[KeyValue]) -> bytes:
    return b"".join(kv.SerializeToString() for kv in attributes)


def _check_bounds(bounds: tuple[float, ...]) -> None:
    if any(not math.isfinite(b) for b in bounds) or any(b >= c for b, c in itertools.pairwise(bounds)):
        raise BadPoint("bucket bounds are not finite and strictly increasing")


def histogram_quantile(q: float, bounds: list[float], counts: list[int], lo: float = 0.0) -> tuple[float, float]:
    """(value, resolution): the q-quantile interpolated inside its bucket, as Prometheus does, and
    that bucket's width, the figure's honest uncertainty. The overflow bucket has no upper bound:
    the value is its lower bound and the resolution infinite."""
    total = sum(counts)
    if total <= 0:
        return math.nan, math.nan
    rank = q * total
    seen = 0.0
    for i, c in enumerate(counts):
        if c and seen + c >= rank:
            lower = bounds[i - 1] if i > 0 else min(lo, bounds[0]) if bounds else lo
            if i >= len(bounds):
                return lower, math.inf
            upper = bounds[i]
            return lower + (upper - lower) * (rank - seen) / c, upper - lower
        seen += c
    return (bounds[-1] if bounds else math.nan), math.inf

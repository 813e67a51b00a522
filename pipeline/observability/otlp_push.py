"""The same instruments pushed over OTLP/HTTP (`OODWATCH_OTLP_METRICS_ENDPOINT`).

The Prometheus registry is the one source: every interval it is read and turned into the
OpenTelemetry SDK's metrics data model (counters as cumulative monotonic sums, gauges as
gauges, histograms with their explicit bounds), which the SDK's own OTLP/HTTP exporter encodes
and sends. Metric names and labels are the ones `/metrics` shows, so dashboards built on either
path agree. Runs on a daemon thread: a slow collector never touches the event loop.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from typing import Any

from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

SCOPE = "oodwatch"


def metrics_data(registry: CollectorRegistry, resource_attributes: dict[str, str]) -> Any:
    """A snapshot of `registry` as the SDK's MetricsData."""
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        Histogram,
        HistogramDataPoint,
        Metric,
        MetricsData,
        NumberDataPoint,
        ResourceMetrics,
        ScopeMetrics,
        Sum,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    now = time.time_ns()
    cumulative = AggregationTemporality.CUMULATIVE
    out: list[Any] = []
    for family in registry.collect():
        created: dict[tuple[tuple[str, str], ...], int] = {}
        for sample in family.samples:
            if sample.name.endswith("_created"):
                created[_key(sample.labels)] = int(sample.value * 1e9)
        if family.type == "counter":
            points = [
                NumberDataPoint(dict(s.labels), created.get(_key(s.labels), now), now, s.value)
                for s in family.samples
                if s.name.endswith("_total")
            ]
            data: Any = Sum(points, cumulative, is_monotonic=True)
        elif family.type == "gauge":
            data = Gauge([NumberDataPoint(dict(s.labels), now, now, s.value) for s in family.samples])
        elif family.type == "histogram":
            data = Histogram(_histogram_points(family.samples, created, now, HistogramDataPoint), cumulative)
        else:
            continue
        if data.data_points:
            out.append(Metric(family.name, family.documentation, family.unit or None, data))
    scope = ScopeMetrics(InstrumentationScope(SCOPE), out, "")
    return MetricsData([ResourceMetrics(Resource.create(resource_attributes), [scope], "")])


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "le"))


def _histogram_points(samples: list[Any], created: dict[Any, int], now: int, point: type) -> list[Any]:
    """Prometheus buckets are cumulative (`le`); OTLP's are per bucket, with +Inf implied."""
    buckets: dict[Any, list[tuple[float, float]]] = defaultdict(list)
    counts: dict[Any, float] = {}
    sums: dict[Any, float] = {}
    for sample in samples:
        key = _key(sample.labels)
        if sample.name.endswith("_bucket"):
            buckets[key].append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_count"):
            counts[key] = sample.value
        elif sample.name.endswith("_sum"):
            sums[key] = sample.value
    points = []
    for key, cumulative in buckets.items():
        cumulative.sort()
        per_bucket, previous = [], 0.0
        for _, total in cumulative:
            per_bucket.append(int(total - previous))
            previous = total
        bounds = [le for le, _ in cumulative if not math.isinf(le)]
        points.append(
            point(
                attributes=dict(key),
                start_time_unix_nano=created.get(key, now),
                time_unix_nano=now,
                count=int(counts.get(key, previous)),
                sum=sums.get(key, 0.0),
                bucket_counts=per_bucket,
                explicit_bounds=bounds,
                min=None,
                max=None,
            )
        )
    return points


class OtlpMetricsPusher:
    """Every `interval_s`, the registry to `<endpoint>/v1/metrics`; failures are logged and the
    next interval tries again (cumulative values lose nothing by a missed push)."""

    def __init__(
        self, registry: CollectorRegistry, endpoint: str, interval_s: float, resource_attributes: dict[str, str]
    ) -> None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        self.registry = registry
        self.interval_s = interval_s
        self.resource_attributes = resource_attributes
        self.exporter = OTLPMetricExporter(endpoint=endpoint.rstrip("/") + "/v1/metrics", timeout=10)
        self.pushed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otlp-metrics", daemon=True)

    def start(self) -> OtlpMetricsPusher:
        self._thread.start()
        return self

    def push(self) -> bool:
        from opentelemetry.sdk.metrics.export import MetricExportResult

        result = self.exporter.export(metrics_data(self.registry, self.resource_attributes))
        ok = result is MetricExportResult.SUCCESS
        self.pushed += ok
        if not ok:
            log.warning("OTLP metrics push failed; the next interval tries again")
        return ok

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.push()
            except Exception:  # a metrics push must never take the process down
                log.exception("OTLP metrics push failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.push()  # the last values on the way out
        except Exception:
            log.warning("final OTLP metrics push failed")
        self.exporter.shutdown()

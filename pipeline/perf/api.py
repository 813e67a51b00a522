"""The performance routes of the triage API: `/api/perf/*` (viewer), the `/ui/perf` page, and
and the perf figures on the process's Prometheus registry (served at the store's `/metrics`).

No `from __future__ import annotations`: FastAPI reads the dependency aliases passed in.
"""

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request, Response
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline.observability.metrics import registry
from pipeline.perf.report import SINCE_PATTERN, build_report, parse_since
from pipeline.perf.service import PerfService
from pipeline.store.api import error_responses

READ_Q = error_responses(401, 403, 422)
#: The window back from now; outside 1 minute to 400 days, the nearest bound.
Since = Annotated[str, Query(pattern=SINCE_PATTERN, max_length=32)]


def _since(text: str) -> int:
    try:
        return parse_since(text, clamp=True)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


_registered: dict[int, "PerfCollector"] = {}


def add_perf_routes(app: FastAPI, service: PerfService, viewer: Any, page: Callable[[Request, str], Response]) -> None:
    perf = service.perf
    # On the process registry, so the store's one `/metrics` serves these beside its own counters;
    # an app built again in the same process (tests) replaces the collector rather than doubling it.
    target = registry()
    if (previous := _registered.pop(id(target), None)) is not None:
        target.unregister(previous)
    _registered[id(target)] = collector = PerfCollector(service)
    target.register(collector)

    @app.get("/api/perf/report", responses=READ_Q)
    async def perf_report(
        _: viewer, since: Since = "1h", service_name: Annotated[str | None, Query(alias="service")] = None,
        model: str | None = None, drills: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """Per model and side: p50/p95/p99 latency, TTFT, TPOT, errors; metrics; client vs server; SLOs."""
        seconds = _since(since)
        return await asyncio.to_thread(
            build_report, perf, service, since_s=seconds, service=service_name, model=model, drills=drills
        )

    @app.get("/api/perf/series", responses=READ_Q)
    async def perf_series(
        _: viewer, since: Since = "1h", service_name: Annotated[str | None, Query(alias="service")] = None,
        model: str | None = None, drills: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """p50/p95/p99 e2e and TTFT over time per model and side, for the charts."""
        seconds = _since(since)
        now = int(time.time())
        return await asyncio.to_thread(
            perf.series, now - seconds, now + 60, service=service_name, model=model, drills=drills
        )

    @app.get("/api/perf/slos", responses=READ_Q)
    async def perf_slos(
        _: viewer, as_of_s: Annotated[float | None, Query(ge=0)] = None, drill_prefix: str | None = None
    ) -> dict[str, Any]:
        """Each objective's error budget and burn rates, now or at `as_of_s` (drills replay their past)."""
        at = as_of_s if as_of_s is not None else time.time()
        burns = await asyncio.to_thread(service.burns, at, drill_prefix=drill_prefix)
        return {
            "slo_version": service.slo_version,
            "as_of_s": at,
            "objectives": [b.as_dict() for b in burns if drill_prefix is None or b.drill_id],
        }

    @app.get("/api/perf/alerts", responses=READ_Q)
    async def perf_alerts(
        _: viewer, limit: Annotated[int, Query(ge=1, le=1000)] = 100, drill_prefix: str | None = None
    ) -> list[dict[str, Any]]:
        """Burn-rate alerts raised, newest first (live ones; a drill's with its prefix)."""
        return await asyncio.to_thread(perf.alerts, limit=limit, drill_prefix=drill_prefix)

    @app.get("/api/perf/status", responses=READ_Q)
    async def perf_status(_: viewer) -> dict[str, Any]:
        """The perf consumer's counters: records, points refused, unknown metric names, alerts."""
        return {"ready": service.ready.is_set(), "counters": service.counters.snapshot()}

    @app.get("/ui/perf", include_in_schema=False)
    async def ui_perf(request: Request) -> Response:
        return page(request, "perf.html")


class PerfCollector(Collector):
    """The perf figures for a scrape: last five minutes' quantiles per model and side (from the
    latest evaluation, so a scrape costs no store query), SLO burn rates and budgets, and the
    consumer's counters. Register it in any prometheus_client registry."""

    def __init__(self, service: PerfService) -> None:
        self.service = service

    def collect(self) -> Iterator[Any]:
        latency = GaugeMetricFamily(
            "oodwatch_perf_latency_ms", "Quantiles over the last 5 minutes, per model and side.",
            labels=["service", "model", "side", "timing", "quantile"],
        )  # fmt: skip
        requests = GaugeMetricFamily(
            "oodwatch_perf_requests_5m", "Requests in the last 5 minutes.", labels=["service", "model", "side"]
        )
        errors = GaugeMetricFamily(
            "oodwatch_perf_errors_5m", "Failed requests in the last 5 minutes.", labels=["service", "model", "side"]
        )
        for row in self.service.last_summary:
            labels = [row["service"], row["model"], row["side"]]
            requests.add_metric(labels, row["requests"])
            errors.add_metric(labels, row["errors"])
            for timing in ("e2e", "ttft", "tpot", "queue"):
                for q, name in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")):
                    value = row.get(f"{timing}_{name}_ms")
                    if value is not None:
                        latency.add_metric([*labels, timing, q], value)
        burn = GaugeMetricFamily(
            "oodwatch_slo_burn_rate", "Error-budget burn rate per SLO objective and window.",
            labels=["slo", "objective", "window"],
        )  # fmt: skip
        budget = GaugeMetricFamily(
            "oodwatch_slo_error_budget_remaining", "Share of the error budget left over the SLO window.",
            labels=["slo", "objective"],
        )  # fmt: skip
        firing = GaugeMetricFamily(
            "oodwatch_slo_alert_firing", "1 while a burn-rate pair is over its factor.",
            labels=["slo", "objective", "severity"],
        )  # fmt: skip
        for b in self.service.last_burns:
            if b.drill_id:
                continue
            data = b.as_dict()
            for window, rate in data["burn"].items():
                burn.add_metric([b.slo, b.objective, window], rate)
            budget.add_metric([b.slo, b.objective], data["budget_left"])
            for severity in ("page", "ticket"):
                firing.add_metric([b.slo, b.objective, severity], 1.0 if severity in b.firing else 0.0)
        counters = self.service.counters
        ingest = CounterMetricFamily(
            "oodwatch_perf_ingest", "What the perf consumer read and did with it.", labels=["what"]
        )
        for what in ("records", "requests", "points", "deltas", "refused_points", "unreadable_spans",
                     "stale_points", "resets", "dead_letters", "alerts_raised", "alerts_sent"):  # fmt: skip
            ingest.add_metric([what], getattr(counters, what))
        unknown = CounterMetricFamily(
            "oodwatch_perf_unknown_metric_points", "Metric points skipped: name not a GenAI metric we read.",
            labels=["metric"],
        )  # fmt: skip
        for name, count in counters.unknown_metrics.most_common(50):
            unknown.add_metric([name], count)
        yield from (latency, requests, errors, burn, budget, firing, ingest, unknown)

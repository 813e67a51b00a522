"""The performance tables: raw rows in, per-minute/hour/day states rolled from them, reads for
the report, the page, the SLO evaluator and the drill.

Rolling, not incrementing: a touched minute's state is recomputed from that minute's
deduplicated raw rows (`FINAL`) and replaces the previous state (ReplacingMergeTree on a
version); its hour is recomputed from its minutes and its day from its hours. A replay, a late
span or a re-delivered batch therefore never counts twice. A window is read from the coarsest
tier that covers each part of it (weeks, then days, hours, and minutes at the edge), so 30 days
of 50 models is about a thousand states to merge, not two million.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.perf.metrics import SeriesState
from pipeline.perf.slo import rollup_expressions
from pipeline.store.clickhouse import Store
from schemas.perf import HistogramDelta, RequestTiming, SloFile

MINUTE, HOUR, DAY, WEEK = 60, 3600, 86400, 7 * 86400
TIERS = {"minute": MINUTE, "hour": HOUR, "day": DAY, "week": WEEK}
#: Each tier's bucket start in SQL (weeks: 7-day buckets from the epoch, as `cover` counts them).
_START_OF = {
    "hour": "toStartOfHour(bucket)",
    "day": "toStartOfDay(bucket)",
    "week": f"toDateTime(intDiv(toUnixTimestamp(bucket), {WEEK}) * {WEEK}, 'UTC')",
}
QUANTILES = (0.5, 0.95, 0.99)
TIMINGS = ("e2e", "ttft", "tpot", "ntpot", "queue", "tokens_per_s")
REQUEST_COLUMNS = [
    "request_id", "trace_id", "span_id", "parent_span_id", "attempt_span_ids", "tenant", "service", "provider",
    "model", "operation", "side", "source", "drill_id", "start_at", "e2e_ms", "ttft_ms", "tpot_ms", "ntpot_ms",
    "tokens_per_s", "queue_ms", "prefill_ms", "decode_ms", "input_tokens", "output_tokens", "streaming", "error",
    "error_type", "finish_reason", "retries", "stored_at",
]  # fmt: skip
HIST_COLUMNS = [
    "series_id", "metric", "side", "tenant", "service", "provider", "model", "operation", "token_type", "drill_id",
    "start_at", "time_at", "count", "sum", "bounds", "counts", "stored_at",
]  # fmt: skip
REQ_KEYS = "service, model, side, tenant, provider, drill_id"
HIST_KEYS = "metric, service, model, side, tenant, provider, token_type, drill_id, bounds"
_STATE = "quantilesTDigest(0.5, 0.95, 0.99)"


def minute_of(ns: int) -> int:
    return ns // 1_000_000_000 // MINUTE * MINUTE


@dataclass(frozen=True)
class Segment:
    tier: str
    lo: int  # epoch s, inclusive
    hi: int  # epoch s, exclusive


def cover(start_s: int, end_s: int) -> list[Segment]:
    """Tier segments that cover [start, end): minutes up to the first whole hour, hours up to the
    first whole day, days up to the first whole week, whole weeks after. A tier's latest bucket
    is kept current by the rollup, so the open end needs no finer tier."""
    start_s = start_s // MINUTE * MINUTE
    if end_s <= start_s:
        return []
    segments: list[Segment] = []
    hour = -(-start_s // HOUR) * HOUR
    day = -(-start_s // DAY) * DAY
    if end_s - start_s < 2 * HOUR:
        return [Segment("minute", start_s, end_s)]
    if hour > start_s:
        segments.append(Segment("minute", start_s, hour))
    if end_s - hour < 2 * DAY:
        return [*segments, Segment("hour", hour, end_s)]
    if day > hour:
        segments.append(Segment("hour", hour, day))
    week = -(-day // WEEK) * WEEK
    if end_s - week < 2 * WEEK:
        return [*segments, Segment("day", day, end_s)]
    if week > day:
        segments.append(Segment("day", day, week))
    return [*segments, Segment("week", week, end_s)]


def _nan_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else round(float(value), 3)


class PerfStore:
    def __init__(self, store: Store, slo_file: SloFile) -> None:
        self.store = store
        self.set_slos(slo_file)

    def set_slos(self, slo_file: SloFile) -> None:
        self.slo_file = slo_file
        self._slo_valid, self._slo_bad, self._slo_params = rollup_expressions(slo_file)

    # -- writes ---------------------------------------------------------------------------

    def insert_requests(self, rows: Sequence[RequestTiming]) -> None:
        if not rows:
            return
        stored = time.time_ns() // 1_000_000  # DateTime64 columns take ticks of their precision
        columns: list[list[Any]] = [[] for _ in REQUEST_COLUMNS]
        for r in rows:
            values = (
                r.request_id, r.trace_id, r.span_id, r.parent_span_id, r.attempt_span_ids, r.tenant, r.service,
                r.provider, r.model, r.operation, r.side, r.source, r.drill_id, r.start_ns // 1000, r.e2e_ms,
                r.ttft_ms, r.tpot_ms, r.ntpot_ms, r.tokens_per_s, r.queue_ms, r.prefill_ms, r.decode_ms,
                r.input_tokens, r.output_tokens, r.streaming, r.error, r.error_type, r.finish_reason,
                min(r.retries, 65535), stored,
            )  # fmt: skip
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        self.store.insert_columns("perf_requests", columns, REQUEST_COLUMNS)

    def insert_deltas(self, deltas: Sequence[HistogramDelta]) -> None:
        if not deltas:
            return
        stored = time.time_ns() // 1_000_000
        columns: list[list[Any]] = [[] for _ in HIST_COLUMNS]
        for d in deltas:
            values = (
                d.series_id, d.metric, d.side, d.tenant, d.service, d.provider, d.model, d.operation, d.token_type,
                d.drill_id, d.start_ns, d.time_ns, d.count, d.sum, d.bounds, d.counts, stored,
            )  # fmt: skip
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        self.store.insert_columns("perf_hist_points", columns, HIST_COLUMNS)

    def save_series(self, states: dict[str, SeriesState]) -> None:
        rows = [[sid, s.start_ns, s.time_ns, s.count, s.sum, s.bounds, s.counts] for sid, s in states.items()]
        self.store.insert_rows(
            "perf_metric_series", rows, ["series_id", "start_ns", "time_ns", "count", "sum", "bounds", "counts"]
        )

    def load_series(self) -> dict[str, SeriesState]:
        rows = self.store.query(
            "SELECT series_id, start_ns, time_ns, count, sum, bounds, counts FROM perf_metric_series FINAL"
        )
        return {
            r["series_id"]: SeriesState(
                int(r["start_ns"]),
                int(r["time_ns"]),
                int(r["count"]),
                float(r["sum"]),
                list(r["bounds"]),
                list(r["counts"]),
            )
            for r in rows
        }

    # -- rollup ---------------------------------------------------------------------------

    def roll(self, request_minutes: Iterable[int], hist_minutes: Iterable[int]) -> None:
        """Recompute the states of the touched minutes (epoch s), then their hours, days and weeks."""
        for base, minutes in (("req", set(request_minutes)), ("hist", set(hist_minutes))):
            if not minutes:
                continue
            for lo, hi in _runs(minutes, MINUTE):
                self._roll_minutes(base, lo, hi)
            hours = {m // HOUR * HOUR for m in minutes}
            for lo, hi in _runs(hours, HOUR):
                self._roll_up(base, "hour", "minute", lo, hi)
            days = {h // DAY * DAY for h in hours}
            for lo, hi in _runs(days, DAY):
                self._roll_up(base, "day", "hour", lo, hi)
            for lo, hi in _runs({d // WEEK * WEEK for d in days}, WEEK):
                self._roll_up(base, "week", "day", lo, hi)

    def _roll_minutes(self, base: str, lo: int, hi: int) -> None:
        version = time.time_ns()
        if base == "req":
            states = ", ".join(f"{_STATE.replace('(', 'StateIf(', 1)}({t}_ms, NOT isNaN({t}_ms)) AS {t}"
                               for t in TIMINGS if t != "tokens_per_s")  # fmt: skip
            sql = (
                f"INSERT INTO perf_req_minute SELECT toStartOfMinute(start_at) AS bucket, {REQ_KEYS}, "
                f"{{version:UInt64}} AS version, count() AS requests, countIf(error) AS errors, "
                f"sum(retries) AS retries, "
                f"countIf(streaming) AS streamed, sumIf(output_tokens, output_tokens > 0) AS output_tokens, "
                f"sum(e2e_ms) AS e2e_sum, {states}, "
                f"quantilesTDigestStateIf(0.5, 0.95, 0.99)(tokens_per_s, NOT isNaN(tokens_per_s)) AS tokens_per_s, "
                f"{self._slo_valid} AS slo_valid, {self._slo_bad} AS slo_bad "
                f"FROM perf_requests FINAL WHERE start_at >= toDateTime64({{lo:Int64}}, 6, 'UTC') "
                f"AND start_at < toDateTime64({{hi:Int64}}, 6, 'UTC') GROUP BY bucket, {REQ_KEYS}"
            )
            params = {**self._slo_params, "version": version, "lo": lo, "hi": hi}
        else:
            sql = (
                f"INSERT INTO perf_hist_minute SELECT toStartOfMinute(time_at) AS bucket, {HIST_KEYS}, "
                f"{{version:UInt64}} AS version, sum(count) AS count, sum(sum) AS sum, sumForEach(counts) AS counts "
                f"FROM perf_hist_points FINAL WHERE time_at >= toDateTime64({{lo:Int64}}, 9, 'UTC') "
                f"AND time_at < toDateTime64({{hi:Int64}}, 9, 'UTC') GROUP BY bucket, {HIST_KEYS}"
            )
            params = {"version": version, "lo": lo, "hi": hi}
        self.store.command(sql, params)

    def _roll_up(self, base: str, tier: str, finer: str, lo: int, hi: int) -> None:
        if base == "req":
            merged = ", ".join(f"{_STATE.replace('(', 'MergeState(', 1)}({t}) AS {t}" for t in TIMINGS)
            columns = (
                f"{REQ_KEYS}, {{version:UInt64}} AS version, sum(requests) AS requests, sum(errors) AS errors, "
                f"sum(retries) AS retries, sum(streamed) AS streamed, sum(output_tokens) AS output_tokens, "
                f"sum(e2e_sum) AS e2e_sum, {merged}, sumMap(slo_valid) AS slo_valid, sumMap(slo_bad) AS slo_bad"
            )
            keys = REQ_KEYS
        else:
            columns = f"{HIST_KEYS}, {{version:UInt64}} AS version, sum(count) AS count, sum(sum) AS sum, " \
                      "sumForEach(counts) AS counts"  # fmt: skip
            keys = HIST_KEYS
        self.store.command(
            f"INSERT INTO perf_{base}_{tier} SELECT {_START_OF[tier]} AS b, {columns} FROM perf_{base}_{finer} FINAL "
            f"WHERE bucket >= toDateTime({{lo:Int64}}, 'UTC') AND bucket < toDateTime({{hi:Int64}}, 'UTC') "
            f"GROUP BY b, {keys}",
            {"version": time.time_ns(), "lo": lo, "hi": hi},
        )

    # -- reads ----------------------------------------------------------------------------

    def _union(self, base: str, columns: str, segments: list[Segment], where: str) -> str:
        parts = [
            f"SELECT {columns} FROM perf_{base}_{s.tier} FINAL WHERE bucket >= toDateTime({s.lo}, 'UTC') "
            f"AND bucket < toDateTime({s.hi}, 'UTC') AND {where}"
            for s in segments
        ]
        return " UNION ALL ".join(parts)

    @staticmethod
    def _filters(
        service: str | None, model: str | None, drills: bool, tenant: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        clauses = ["drill_id != ''" if drills else "drill_id = ''"]
        params: dict[str, Any] = {}
        for name, value in (("service", service), ("model", model), ("tenant", tenant)):
            if value is not None:
                clauses.append(f"{name} = {{{name}:String}}")
                params[name] = value
        return " AND ".join(clauses), params

    def summary(
        self, start_s: int, end_s: int, *, service: str | None = None, model: str | None = None, drills: bool = False
    ) -> list[dict[str, Any]]:
        """Per (service, model, side): requests, errors, retries, and p50/p95/p99 of each timing."""
        segments = cover(start_s, end_s)
        if not segments:
            return []
        where, params = self._filters(service, model, drills)
        columns = "service, model, side, requests, errors, retries, streamed, output_tokens, e2e_sum, " + ", ".join(
            TIMINGS
        )
        merged = ", ".join(f"quantilesTDigestMerge(0.5, 0.95, 0.99)({t}) AS {t}" for t in TIMINGS)
        rows = self.store.query(
            f"SELECT service, model, side, sum(requests) AS requests, sum(errors) AS errors, sum(retries) AS retries, "
            f"sum(streamed) AS streamed, sum(output_tokens) AS output_tokens, sum(e2e_sum) AS e2e_sum, {merged} "
            f"FROM ({self._union('req', columns, segments, where)}) GROUP BY service, model, side "
            f"ORDER BY service, model, side",
            params,
        )
        out = []
        for r in rows:
            requests = int(r["requests"])
            entry: dict[str, Any] = {
                "service": r["service"], "model": r["model"], "side": r["side"], "requests": requests,
                "errors": int(r["errors"]), "error_rate": round(int(r["errors"]) / requests, 5) if requests else 0.0,
                "retries": int(r["retries"]), "streamed": int(r["streamed"]),
                "output_tokens": int(r["output_tokens"]),
                "e2e_mean_ms": _nan_none(r["e2e_sum"] / requests) if requests else None,
            }  # fmt: skip
            for t in TIMINGS:
                unit = "" if t == "tokens_per_s" else "_ms"
                for q, value in zip(("p50", "p95", "p99"), r[t], strict=True):
                    entry[f"{t}_{q}{unit}"] = _nan_none(value)
            out.append(entry)
        return out

    def series(
        self, start_s: int, end_s: int, *, service: str | None = None, model: str | None = None, drills: bool = False
    ) -> dict[str, Any]:
        """Quantiles over time per (service, model, side), at a resolution the window allows."""
        span = end_s - start_s
        tier = "minute" if span <= 3 * HOUR else "hour" if span <= 3 * DAY else "day"
        step = TIERS[tier]
        lo = start_s // step * step
        where, params = self._filters(service, model, drills)
        merged = ", ".join(f"quantilesTDigestMerge(0.5, 0.95, 0.99)({t}) AS {t}" for t in ("e2e", "ttft"))
        rows = self.store.query(
            f"SELECT toUnixTimestamp(bucket) AS t, service, model, side, sum(requests) AS requests, "
            f"sum(errors) AS errors, {merged} FROM perf_req_{tier} FINAL "
            f"WHERE bucket >= toDateTime({{lo:Int64}}, 'UTC') AND bucket < toDateTime({{hi:Int64}}, 'UTC') "
            f"AND {where} GROUP BY t, service, model, side ORDER BY service, model, side, t",
            {**params, "lo": lo, "hi": end_s},
        )
        lines: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in rows:
            line = lines.setdefault(
                (r["service"], r["model"], r["side"]),
                {"service": r["service"], "model": r["model"], "side": r["side"], "points": []},
            )
            line["points"].append(
                {
                    "t": int(r["t"]),
                    "requests": int(r["requests"]),
                    "errors": int(r["errors"]),
                    **{
                        f"{m}_{q}": _nan_none(v)
                        for m in ("e2e", "ttft")
                        for q, v in zip(("p50", "p95", "p99"), r[m], strict=True)
                    },
                }
            )
        return {"step_s": step, "tier": tier, "from": lo, "to": end_s, "lines": list(lines.values())}

    def histograms(
        self, start_s: int, end_s: int, *, service: str | None = None, model: str | None = None, drills: bool = False
    ) -> list[dict[str, Any]]:
        """Merged OTLP histograms per (service, model, side, metric, token type, bucket layout)."""
        segments = cover(start_s, end_s)
        if not segments:
            return []
        where, params = self._filters(service, model, drills)
        columns = "metric, service, model, side, token_type, bounds, count, sum, counts"
        return self.store.query(
            f"SELECT service, model, side, metric, token_type, bounds, sum(count) AS count, sum(sum) AS sum, "
            f"sumForEach(counts) AS counts FROM ({self._union('hist', columns, segments, where)}) "
            f"GROUP BY service, model, side, metric, token_type, bounds ORDER BY service, model, side, metric",
            params,
        )

    def window_counts(
        self, as_of_s: int, windows_s: Sequence[int], *, drill_prefix: str | None = None
    ) -> dict[str, dict[int, tuple[dict[str, int], dict[str, int]]]]:
        """Per group (drill id; '' for live traffic) and window: the SLO maps summed over the
        minutes ending with the one that holds `as_of` (so the open minute counts)."""
        last = as_of_s // MINUTE * MINUTE
        longest = max(windows_s)
        picks = ", ".join(
            f"sumMapIf(slo_valid, bucket > toDateTime({{w{w}:Int64}}, 'UTC')) AS v{w}, "
            f"sumMapIf(slo_bad, bucket > toDateTime({{w{w}:Int64}}, 'UTC')) AS b{w}"
            for w in windows_s
        )
        params: dict[str, Any] = {f"w{w}": last - w for w in windows_s}
        drill = ""
        if drill_prefix is not None:
            drill = "AND startsWith(drill_id, {prefix:String})"
            params["prefix"] = drill_prefix
        rows = self.store.query(
            f"SELECT drill_id, {picks} FROM perf_req_minute FINAL WHERE bucket > toDateTime({{lo:Int64}}, 'UTC') "
            f"AND bucket <= toDateTime({{hi:Int64}}, 'UTC') {drill} GROUP BY drill_id",
            {**params, "lo": last - longest, "hi": last},
        )
        return {r["drill_id"]: {w: (dict(r[f"v{w}"]), dict(r[f"b{w}"])) for w in windows_s} for r in rows}

    def budget_counts(
        self, start_s: int, end_s: int, *, drill_prefix: str | None = None
    ) -> dict[str, tuple[dict[str, int], dict[str, int]]]:
        segments = cover(start_s, end_s)
        if not segments:
            return {}
        params: dict[str, Any] = {}
        where = "1"
        if drill_prefix is not None:
            where = "startsWith(drill_id, {prefix:String})"
            params["prefix"] = drill_prefix
        rows = self.store.query(
            f"SELECT drill_id, sumMap(slo_valid) AS v, sumMap(slo_bad) AS b FROM "
            f"({self._union('req', 'drill_id, slo_valid, slo_bad', segments, where)}) GROUP BY drill_id",
            params,
        )
        return {r["drill_id"]: (dict(r["v"]), dict(r["b"])) for r in rows}

    def gap(
        self, start_s: int, end_s: int, *, service: str | None = None, model: str | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Client and server rows of the same request (same trace; the server's parent is the client
        span or one of its HTTP attempts): per model, and per class of the client's concurrency
        (client requests of its service in flight when it started, from a running sum of +1 at
        each start and -1 at each end; ends sort first at equal times)."""
        where, params = self._filters(service, model, False)
        params.update({"lo": start_s, "hi": end_s})
        # One scan of the client rows: each becomes a start (+1) and an end (-1) event, and the
        # running sum over its service gives the in-flight count at each start.
        clients = (
            "SELECT trace_id, span_id, attempt_span_ids, service, model, e2e_ms, "
            "toUnixTimestamp64Nano(start_at) AS t0 FROM perf_requests FINAL WHERE side = 'client' "
            "AND start_at >= toDateTime64({lo:Int64}, 6, 'UTC') AND start_at < toDateTime64({hi:Int64}, 6, 'UTC') "
            f"AND {where}"
        )
        paired = (
            "WITH inflight AS (SELECT * FROM (SELECT trace_id, span_id, attempt_span_ids, service, model, e2e_ms, "
            "ev.2 AS kind, sum(ev.3) OVER (PARTITION BY service ORDER BY ev.1, ev.2 "
            "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS n "
            f"FROM ({clients}) ARRAY JOIN [(t0, 1, 1), (t0 + toInt64(e2e_ms * 1e6), 0, -1)] AS ev) "
            "WHERE kind = 1), "
            "pairs AS (SELECT c.service AS service, c.model AS model, c.n AS n, "
            "c.e2e_ms AS client_ms, s.e2e_ms AS server_ms, s.queue_ms AS queue_ms, c.e2e_ms - s.e2e_ms AS gap_ms "
            "FROM inflight AS c ARRAY JOIN arrayConcat([c.span_id], c.attempt_span_ids) AS pid "
            "INNER JOIN (SELECT trace_id, parent_span_id, e2e_ms, queue_ms FROM perf_requests FINAL "
            "WHERE side = 'server' AND start_at >= toDateTime64({lo:Int64} - 600, 6, 'UTC')) AS s "
            "ON s.trace_id = c.trace_id AND s.parent_span_id = pid) "
        )
        rows = self.store.query(
            paired + "SELECT service, model, toUInt32(pow(2, floor(log2(greatest(n, 1))))) AS level, count() AS pairs, "
            "quantiles(0.5, 0.95)(client_ms) AS client, quantiles(0.5, 0.95)(server_ms) AS server, "
            "quantiles(0.5, 0.95)(gap_ms) AS gap, quantilesIf(0.5, 0.95)(queue_ms, NOT isNaN(queue_ms)) AS queue, "
            "grouping(service, model) AS per_level FROM pairs "
            "GROUP BY GROUPING SETS ((service, model), (level)) ORDER BY service, model, level",
            params,
        )
        by_model = [r for r in rows if not r["per_level"]]
        by_level = [r for r in rows if r["per_level"]]
        return by_model, by_level

    def alerts(self, *, limit: int = 100, drill_prefix: str | None = None) -> list[dict[str, Any]]:
        where, params = "drill_id = ''", dict[str, Any](limit=limit)
        if drill_prefix is not None:
            where, params["prefix"] = "startsWith(drill_id, {prefix:String})", drill_prefix
        return self.store.query(
            "SELECT alert_id, slo, objective, objective_key, slo_version, drill_id, severity, burn_long, burn_short, "
            "long_window_s, short_window_s, budget_left, fired_at, sent FROM perf_alerts FINAL "
            f"WHERE {where} ORDER BY fired_at DESC LIMIT {{limit:UInt32}}",
            params,
        )

    def record_alert(self, row: dict[str, Any]) -> None:
        columns = list(row)
        self.store.insert_rows("perf_alerts", [[row[c] for c in columns]], columns)


def _runs(points: set[int], step: int) -> list[tuple[int, int]]:
    """Contiguous runs of aligned points as [lo, hi) ranges."""
    runs: list[tuple[int, int]] = []
    for p in sorted(points):
        if runs and runs[-1][1] == p:
            runs[-1] = (runs[-1][0], p + step)
        else:
            runs.append((p, p + step))
    return runs

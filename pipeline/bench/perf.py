"""`oodwatch bench --stage perf`: the performance path's two speed targets, on a fresh chdb store.

- ingest: OTLP metric records (the Collector's / receiver's `otlp_metrics` payloads: 50 models x
  GenAI histograms, cumulative, 14 buckets, one record per resource and export round) through
  the perf consumer's own code (decode, cumulative -> delta, store, roll up), without Kafka:
  `ingest_points_per_s` (target >= 20,000), median over rounds.
- report: 30 days of per-minute states for 50 models (client and server), rolled up to hours
  and days by the store's own rollup, plus a day of raw paired requests; then the whole
  `perf report --since 30d` (models, metrics, client vs server, SLOs) timed as the API runs it:
  `report_p95_ms` (target <= 200).
"""

from __future__ import annotations

import math
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.perf.slo import load_slo_file
from pipeline.settings import Settings
from schemas.perf import RequestTiming, request_id_for

MODELS = [f"model-{i:02d}" for i in range(50)]
SERVICES = ["support-bot", "docs-assistant", "travel-agent", "code-helper", "search"]
DURATION_BOUNDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96]
TOKEN_BOUNDS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216]
SLO_YAML = """version: bench
slos:
  - name: support-bot
    selector: {service: support-bot}
    objectives:
      - {metric: ttft, percentile: 95, threshold_ms: 800}
      - {metric: error_rate, max: 0.01}
  - name: all-e2e
    objectives:
      - {metric: e2e, percentile: 99, threshold_ms: 5000}
"""


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def metric_records(rounds: int, rng: random.Random, start_ns: int, instances: int = 10) -> list[list[bytes]]:
    """Per export round (a minute), one record per (service, instance): every model's GenAI
    histograms, cumulative. 5 services x 10 instances x 50 models x 4 series = 10,000 points."""
    cumulative: dict[tuple[int, int, str, str], list[int]] = {}
    out = []
    for r in range(rounds):
        records = []
        for s, service in enumerate(SERVICES * instances):
            request = ExportMetricsServiceRequest()
            rm = request.resource_metrics.add()
            rm.resource.attributes.extend([_kv("service.name", service), _kv("service.instance.id", f"{s}")])
            sm = rm.scope_metrics.add()
            sm.scope.name = "opentelemetry.util.genai.handler"
            time_ns = start_ns + (r + 1) * 60 * 10**9
            for name, unit, bounds, kinds in (
                ("gen_ai.client.operation.duration", "s", DURATION_BOUNDS, ("",)),
                ("gen_ai.client.operation.time_to_first_chunk", "s", DURATION_BOUNDS, ("",)),
                ("gen_ai.client.token.usage", "{token}", TOKEN_BOUNDS, ("input", "output")),
            ):
                metric = sm.metrics.add(name=name, unit=unit)
                metric.histogram.aggregation_temporality = 2
                for model in MODELS:
                    for kind in kinds:
                        key = (s, MODELS.index(model), name, kind)
                        counts = cumulative.setdefault(key, [0] * (len(bounds) + 1))
                        for _ in range(rng.randint(1, 6)):
                            counts[min(len(bounds), int(rng.random() * 8) + 2)] += 1
                        point = metric.histogram.data_points.add(
                            start_time_unix_nano=start_ns, time_unix_nano=time_ns, count=sum(counts),
                            sum=float(sum(counts)) * 0.7, explicit_bounds=bounds, bucket_counts=counts,
                        )  # fmt: skip
                        point.attributes.extend(
                            [_kv("gen_ai.request.model", model), _kv("gen_ai.provider.name", "openai"),
                             _kv("gen_ai.operation.name", "chat")] + ([_kv("gen_ai.token.type", kind)] if kind else [])
                        )  # fmt: skip
            records.append(request.SerializeToString())
        out.append(records)
    return out


def bench_ingest(settings: Settings, rounds: int = 6) -> dict[str, Any]:
    from pipeline.perf.service import PerfIngest
    from pipeline.perf.store import PerfStore
    from pipeline.store.clickhouse import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"chdb://{Path(tmp) / 'store'}")
        ingest = PerfIngest(settings, PerfStore(store, load_slo_file(None)))
        start_ns = time.time_ns() - (rounds + 2) * 60 * 10**9
        batches = metric_records(rounds, random.Random(5), start_ns)
        rates, decode_rates, cpu_rates = [], [], []
        points_per_round = 0
        for r, records in enumerate(batches):
            t0, c0 = time.perf_counter(), time.process_time()
            decoded = [ingest.decode(settings.topics.otlp_metrics, 0, r * 100 + i, v) for i, v in enumerate(records)]
            t1 = time.perf_counter()
            ingest.store(decoded)
            ingest.roll()
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            points = sum(len(d.deltas) for d in decoded)
            rates.append(points / elapsed)
            cpu_rates.append(points / cpu)
            decode_rates.append(points / (t1 - t0))
            points_per_round = max(points_per_round, points)
            assert not any(d.letters for d in decoded), "bench records must all be valid"
        stored = store.query("SELECT count() AS n FROM perf_hist_points FINAL")[0]["n"]
        store.close()
    return {
        "ingest_points_per_s": round(statistics.median(rates)),
        "ingest_decode_only_points_per_s": round(statistics.median(decode_rates)),
        # Points per second of this process's CPU time (engine threads included): the figure a
        # quiet core would reach; wall-clock figures on a shared, loaded machine are lower.
        "ingest_points_per_cpu_s": round(statistics.median(cpu_rates)),
        "points_per_round": points_per_round,
        "rounds": rounds,
        "points_stored": int(stored),
    }


def load_month(store: Any, perf: Any, days: int, now_s: int) -> int:
    """30 days of per-minute states for 50 models x 2 sides x 5 services (a model per service),
    built in the engine (one value per minute state: the report reads hour, day and week states,
    which the store's own rollup merges from them), then rolled up to hours, days and weeks."""
    start = (now_s - days * 86400) // 60 * 60
    minutes = days * 1440
    keys = len(MODELS) * 2
    for day in range(days):
        _load_day(store, start + day * 86400, keys)
    for day in range(start // 86400 * 86400, now_s + 86400, 86400):
        perf._roll_up("req", "hour", "minute", day, day + 86400)
    perf._roll_up("req", "day", "hour", start // 86400 * 86400, now_s + 86400)
    perf._roll_up("req", "week", "day", start // (7 * 86400) * 7 * 86400, now_s + 7 * 86400)
    return minutes * keys


def _load_day(store: Any, start: int, keys: int) -> None:
    """One day of minute states, one state per row (a day at a time bounds the engine's memory)."""
    store.command(
        "INSERT INTO perf_req_minute SELECT toDateTime({start:Int64} + intDiv(number, {keys:UInt32}) * 60, 'UTC') "
        "AS bucket, service, model, side, service AS tenant, 'openai' AS provider, '' AS drill_id, 1 AS version, "
        "20 AS requests, number % 97 = 0 AS errors, 0 AS retries, 20 AS streamed, 2000 AS output_tokens, "
        "20 * 900.0 AS e2e_sum, "
        "quantilesTDigestState(0.5, 0.95, 0.99)(800 + (cityHash64(number, 1) % 400) * 1.0) AS e2e, "
        "quantilesTDigestState(0.5, 0.95, 0.99)(200 + (cityHash64(number, 2) % 300) * 1.0) AS ttft, "
        "quantilesTDigestState(0.5, 0.95, 0.99)(8 + (cityHash64(number, 3) % 10) * 1.0) AS tpot, "
        "quantilesTDigestState(0.5, 0.95, 0.99)(9 + (cityHash64(number, 4) % 10) * 1.0) AS ntpot, "
        "quantilesTDigestState(0.5, 0.95, 0.99)(if(side = 'server', 20 + (cityHash64(number, 5) % 50) * 1.0, nan)) "
        "AS queue, quantilesTDigestState(0.5, 0.95, 0.99)(80 + (cityHash64(number, 6) % 40) * 1.0) AS tokens_per_s, "
        "map('support-bot#0', 20, 'support-bot#1', 20, 'all-e2e#0', 20) AS slo_valid, "
        "map('support-bot#0', toUInt64(number % 13 = 0), 'all-e2e#0', toUInt64(number % 31 = 0)) AS slo_bad "
        "FROM (SELECT number, ['client', 'server'][number % 2 + 1] AS side, "
        "{models:Array(String)}[intDiv(number % {keys:UInt32}, 2) + 1] AS model, "
        "{services:Array(String)}[intDiv(number % {keys:UInt32}, 2) % 5 + 1] AS service "
        "FROM numbers({rows:UInt64})) GROUP BY number, bucket, service, model, side "
        "SETTINGS max_threads = 1",
        {"start": start, "keys": keys, "models": MODELS, "services": SERVICES, "rows": 1440 * keys},
    )


def raw_day(perf: Any, now_s: int, n: int, rng: random.Random) -> None:
    """A day of client requests with their server spans (the client-vs-server part reads raw rows)."""
    rows = []
    for i in range(n):
        start_ns = (now_s - rng.randint(0, 86000)) * 10**9 + rng.randint(0, 10**9)
        model, service = MODELS[i % 50], SERVICES[i % 5]
        trace, client_span, server_span = f"{i:032x}", f"{2 * i:016x}", f"{2 * i + 1:016x}"
        server_ms = 300 + rng.random() * 600
        common: dict[str, Any] = {"tenant": service, "service": service, "provider": "openai", "model": model,
                                  "operation": "chat", "output_tokens": 100, "input_tokens": 50}  # fmt: skip
        client_ms = server_ms + 5 + rng.random() * 20
        rows.append(
            RequestTiming(request_id=request_id_for(trace, client_span), trace_id=trace, span_id=client_span,
                          parent_span_id="", side="client", source="openllmetry", start_ns=start_ns, e2e_ms=client_ms,
                          ttft_ms=200.0, **common).derive()
        )  # fmt: skip
        rows.append(
            RequestTiming(request_id=request_id_for(trace, server_span), trace_id=trace, span_id=server_span,
                          parent_span_id=client_span, side="server", source="vllm", start_ns=start_ns + 2_000_000,
                          e2e_ms=server_ms, ttft_ms=180.0, queue_ms=20.0, **common).derive()
        )  # fmt: skip
    perf.insert_requests(rows)


def bench_report(settings: Settings, *, days: int = 30, repeats: int = 20) -> dict[str, Any]:
    from pipeline.perf.report import build_report
    from pipeline.perf.service import PerfService
    from pipeline.perf.store import PerfStore
    from pipeline.store.clickhouse import Store

    with tempfile.TemporaryDirectory() as tmp:
        slo_path = Path(tmp) / "slos.yaml"
        slo_path.write_text(SLO_YAML)
        store = Store.open(f"chdb://{Path(tmp) / 'store'}")
        perf = PerfStore(store, load_slo_file(slo_path))
        service = PerfService(settings, perf)
        now_s = int(time.time())
        t0 = time.perf_counter()
        states = load_month(store, perf, days, now_s)
        raw_day(perf, now_s, 20_000, random.Random(3))
        load_s = time.perf_counter() - t0
        times, series_times = [], []
        report: dict[str, Any] = {}
        cpu_times = []
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            report = build_report(perf, service, since_s=days * 86400, now_s=now_s)
            times.append((time.perf_counter() - t) * 1000)
            cpu_times.append((time.process_time() - c) * 1000)
            t = time.perf_counter()
            perf.series(now_s - days * 86400, now_s + 60)
            series_times.append((time.perf_counter() - t) * 1000)
        store.close()
    ordered = sorted(times)
    return {
        "report_p50_ms": round(statistics.median(times), 1),
        "report_p95_ms": round(ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)], 1),
        "report_cpu_p50_ms": round(statistics.median(cpu_times), 1),
        "series_p50_ms": round(statistics.median(series_times), 1),
        "report_days": days,
        "report_models": len(MODELS),
        "minute_states": states,
        "report_rows": len(report.get("models", [])),
        "report_requests": sum(r["requests"] for r in report.get("models", [])),
        "client_server_pairs": report.get("client_vs_server", {}).get("pairs", 0),
        "load_s": round(load_s, 1),
    }


def bench_perf(settings: Settings) -> dict[str, Any]:
    return {"stage": "perf", **bench_ingest(settings), **bench_report(settings), "load_average": os.getloadavg()}

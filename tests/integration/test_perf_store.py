"""The perf tables on a real chdb store: replays never count twice, late rows re-roll their minute,
hour, day and week, the client/server gap pairs requests and counts concurrency, and cumulative
series resume across a restart of the consumer."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.perf.service import PerfIngest
from pipeline.perf.slo import load_slo_file
from pipeline.perf.store import PerfStore, cover
from pipeline.settings import Settings
from pipeline.store.clickhouse import Store
from schemas.perf import RequestTiming, request_id_for
from tests.unit.test_perf import metrics

SLOS = """version: t
slos:
  - name: bot
    selector: {service: bot}
    objectives: [{metric: e2e, percentile: 90, threshold_ms: 1000}]
"""


def rows(n: int, start_ns: int, e2e: float = 500.0) -> list[RequestTiming]:
    return [
        RequestTiming(request_id=request_id_for("t" * 32, f"{start_ns + i:016x}"), trace_id="t" * 32,
                      span_id=f"{start_ns + i:016x}", parent_span_id="", tenant="bot", service="bot", provider="p",
                      model="m", operation="chat", side="client", source="genai", start_ns=start_ns + i * 10**9,
                      e2e_ms=e2e + i, output_tokens=10).derive()
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """Closed after the test, failed or not: a process holds one chdb path at a time."""
    opened = Store.open(f"chdb://{tmp_path / 'store'}")
    yield opened
    opened.close()


def minutes(timings: list[RequestTiming]) -> set[int]:
    return {t.start_ns // 10**9 // 60 * 60 for t in timings}


def test_replayed_rows_and_rerolls_never_double_count(tmp_path: Path, store: Store) -> None:
    (tmp_path / "slos.yaml").write_text(SLOS)
    perf = PerfStore(store, load_slo_file(tmp_path / "slos.yaml"))
    now = int(time.time())
    first = rows(30, (now - 600) * 10**9)
    for _ in range(2):  # a replayed batch, rolled again
        perf.insert_requests(first)
        perf.roll(minutes(first), set())
    [summary] = perf.summary(now - 3600, now + 60)
    assert summary["requests"] == 30 and summary["e2e_p50_ms"] == math.floor(summary["e2e_p50_ms"])
    late = rows(5, (now - 595) * 10**9 + 7, e2e=2000.0)  # late rows for an already rolled minute
    perf.insert_requests(late)
    perf.roll(minutes(late), set())  # the minutes they fall in (one, or two across a minute's end)
    assert perf.summary(now - 3600, now + 60)[0]["requests"] == 35
    # The hour and day tiers were re-rolled from the minutes too.
    assert perf.summary(now - 40 * 86400, now + 60)[0]["requests"] == 35
    budget = perf.budget_counts(now - 28 * 86400, now + 60)[""]
    assert (budget[0]["bot#0"], budget[1]["bot#0"]) == (35, 5)


def test_a_month_is_read_from_week_states_and_counts_every_request_once(tmp_path: Path, store: Store) -> None:
    (tmp_path / "slos.yaml").write_text(SLOS)
    perf = PerfStore(store, load_slo_file(tmp_path / "slos.yaml"))
    now = int(time.time())
    spread = [r for d in (1, 9, 16, 23) for r in rows(10, (now - d * 86400) * 10**9, e2e=100.0 * d)]
    perf.insert_requests(spread)
    perf.roll(minutes(spread), set())
    assert "week" in {s.tier for s in cover(now - 30 * 86400, now + 60)}
    assert store.query("SELECT sum(requests) AS n FROM perf_req_week FINAL")[0]["n"] == 40
    [summary] = perf.summary(now - 30 * 86400, now + 60)
    assert summary["requests"] == 40
    assert 900 <= summary["e2e_p50_ms"] <= 1610  # between the 9- and 16-day-old requests' timings
    assert perf.budget_counts(now - 30 * 86400, now + 60)[""][0]["bot#0"] == 40


def test_the_gap_pairs_client_and_server_and_counts_the_clients_in_flight(tmp_path: Path, store: Store) -> None:
    perf = PerfStore(store, load_slo_file(None))
    base = (int(time.time()) - 1800) * 10**9
    # (start s, client e2e s): three overlapping, then one alone, then one that starts as it ends
    clients = [(0, 10), (1, 10), (2, 10), (20, 1), (21, 1)]
    timings = []
    for i, (start, e2e) in enumerate(clients):
        trace, span = f"{i + 1:032x}", f"{2 * i + 1:016x}"
        common = {"tenant": "bot", "service": "bot", "provider": "p", "model": "m", "operation": "chat",
                  "output_tokens": 10, "trace_id": trace}  # fmt: skip
        timings.append(RequestTiming(request_id=request_id_for(trace, span), span_id=span, parent_span_id="",
                                     side="client", source="genai", start_ns=base + start * 10**9,
                                     e2e_ms=e2e * 1000.0, **common).derive())  # fmt: skip
        server = f"{2 * i + 2:016x}"
        timings.append(RequestTiming(request_id=request_id_for(trace, server), span_id=server, parent_span_id=span,
                                     side="server", source="vllm", start_ns=base + start * 10**9 + 10**6,
                                     e2e_ms=e2e * 1000.0 - 5, **common).derive())  # fmt: skip
    perf.insert_requests(timings)
    by_model, by_level = perf.gap(base // 10**9 - 60, base // 10**9 + 600)
    assert [(r["model"], r["pairs"]) for r in by_model] == [("m", 5)]
    assert list(by_model[0]["gap"]) == [5.0, 5.0]  # client minus server, per pair
    # in flight at each start: 1, 2, 3, 1, 1 (an end at the same instant counts first) -> classes 1 and 2
    assert [(r["level"], r["pairs"]) for r in by_level] == [(1, 3), (2, 2)]


def test_metric_replays_fold_and_series_resume_after_a_restart(tmp_path: Path, store: Store) -> None:
    settings = Settings(data_dir=tmp_path)
    perf = PerfStore(store, load_slo_file(None))
    t0 = (int(time.time()) - 300) * 10**9
    record = metrics([{"start": t0, "time": t0 + 60 * 10**9, "counts": [1, 2, 0]}]).SerializeToString()
    ingest = PerfIngest(settings, perf)
    for _ in range(2):  # the same record delivered twice
        ingest.store([ingest.decode(settings.topics.otlp_metrics, 0, 7, record)])
    ingest.roll()
    restarted = PerfIngest(settings, perf)  # a new process: series state from the store
    later = metrics([{"start": t0, "time": t0 + 120 * 10**9, "counts": [4, 2, 1]}]).SerializeToString()
    restarted.store([restarted.decode(settings.topics.otlp_metrics, 0, 8, later)])
    restarted.roll()
    [hist] = perf.histograms(int(time.time()) - 3600, int(time.time()) + 60)
    assert hist["count"] == 7 and list(hist["counts"]) == [4, 2, 1]
    bad = metrics([{"start": t0, "time": t0 + 180 * 10**9, "counts": [1, 0, 0]}]).SerializeToString()
    decoded = restarted.decode(settings.topics.otlp_metrics, 0, 9, bad)
    assert decoded.deltas == [] and "went down" in decoded.letters[0].reason
    assert decoded.letters[0].stage == "perf" and decoded.letters[0].source_offset == 9
    # Unreadable records: a metrics record is perf's to dead-letter; a span record is normalize's
    # (it reads the same record), so perf only counts it and the record has one letter in all.
    [letter] = restarted.decode(settings.topics.otlp_metrics, 0, 10, b"\xff\x00").letters
    assert "ExportMetricsServiceRequest" in letter.reason
    spans = restarted.decode(settings.topics.otlp_spans, 0, 11, b"\xff\x00")
    assert spans.letters == [] and spans.rows == [] and restarted.counters.unreadable_spans == 1

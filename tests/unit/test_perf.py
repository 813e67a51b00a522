"""The performance path's pure parts: span timings, metric decoding (temporality, resets, refused
points), histogram quantiles, SLO maths and alert de-duplication, window covering, the gap verdict."""

from __future__ import annotations

import math

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from pydantic import ValidationError

from pipeline.perf.metrics import CUMULATIVE, DELTA, MetricDecoder, histogram_quantile
from pipeline.perf.report import SINCE_PATTERN, aligned_start, gap_grows, parse_since
from pipeline.perf.slo import BURN_PAIRS, AlertLatch, Burn, evaluate, objectives, rollup_expressions
from pipeline.perf.spans import timings_from_request
from pipeline.perf.store import Segment, cover
from schemas.perf import Objective, SloFile
from tests.helpers import request, span

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def timed(attributes: dict, *, start: int = T0, ms: float = 500.0, kind: int = Span.SPAN_KIND_CLIENT, **kw) -> Span:
    result = span(attributes, **kw)
    result.kind = kind
    result.start_time_unix_nano, result.end_time_unix_nano = start, start + int(ms * MS)
    return result


def test_openllmetry_stream_gives_ttft_from_its_first_chunk_event_and_tpot_from_tokens() -> None:
    chat = timed({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.usage.output_tokens": 11,
                  "gen_ai.is_streaming": True, "gen_ai.openai.api_base": "http://x"}, ms=700)  # fmt: skip
    for offset_ms in (250, 300, 320):
        event = chat.events.add(name="gen_ai.content.completion.chunk")
        event.time_unix_nano = T0 + offset_ms * MS
    [row] = timings_from_request(request(chat, service="app"))
    assert (row.side, row.source, row.service, row.model) == ("client", "openllmetry", "app", "m")
    assert row.e2e_ms == pytest.approx(700) and row.ttft_ms == pytest.approx(250)
    assert row.tpot_ms == pytest.approx((700 - 250) / 10) and row.ntpot_ms == pytest.approx(700 / 11)
    assert row.tokens_per_s == pytest.approx(11 / 0.7)


def test_vllm_server_span_gives_its_own_latencies_in_seconds() -> None:
    server = timed({"gen_ai.response.model": "llama", "gen_ai.latency.e2e": 1.2, "gen_ai.latency.time_to_first_token":
                    0.4, "gen_ai.latency.time_in_queue": 0.15, "gen_ai.usage.completion_tokens": 41},
                   kind=Span.SPAN_KIND_SERVER, ms=1250, parent=b"\x07" * 8)  # fmt: skip
    [row] = timings_from_request(request(server))
    assert (row.side, row.source, row.provider, row.parent_span_id) == ("server", "vllm", "vllm", "07" * 8)
    assert (row.e2e_ms, row.ttft_ms, row.queue_ms) == pytest.approx((1200, 400, 150))
    assert row.tpot_ms == pytest.approx(800 / 40)


def test_http_attempts_under_an_llm_span_are_retries_and_other_spans_are_not_requests() -> None:
    chat = timed({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}, span_id=b"\x02" * 8)
    attempts = [timed({"http.request.method": "POST"}, span_id=bytes([9, i]) * 4, parent=b"\x02" * 8) for i in (1, 2)]
    tool = timed({"gen_ai.operation.name": "execute_tool"}, span_id=b"\x05" * 8)
    failed = timed({"gen_ai.operation.name": "chat"}, span_id=b"\x06" * 8)
    failed.status.code = Status.STATUS_CODE_ERROR
    rows = {r.span_id: r for r in timings_from_request(request(chat, *attempts, tool, failed))}
    assert set(rows) == {"02" * 8, "06" * 8}
    assert rows["02" * 8].retries == 1 and rows["02" * 8].attempt_span_ids == ["0901" * 4, "0902" * 4]
    assert rows["06" * 8].error and not rows["02" * 8].error


# -- metrics ---------------------------------------------------------------------------------


def metrics(points: list[dict], *, name: str = "gen_ai.client.operation.duration", unit: str = "s",
            temporality: int = CUMULATIVE, scope: str = "app") -> ExportMetricsServiceRequest:  # fmt: skip
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="svc")))
    sm = rm.scope_metrics.add()
    sm.scope.name = scope
    metric = sm.metrics.add(name=name, unit=unit)
    metric.histogram.aggregation_temporality = temporality
    for p in points:
        point = metric.histogram.data_points.add(
            start_time_unix_nano=p.get("start", T0), time_unix_nano=p["time"], count=sum(p["counts"]),
            sum=p.get("sum", 1.0), explicit_bounds=p.get("bounds", [0.1, 0.5]), bucket_counts=p["counts"],
        )  # fmt: skip
        if "count" in p:
            point.count = p["count"]
        point.attributes.append(KeyValue(key="gen_ai.request.model", value=AnyValue(string_value="m")))
    return req


def test_cumulative_points_become_deltas_and_a_new_start_time_is_a_reset() -> None:
    decoder = MetricDecoder()
    first = decoder.decode(metrics([{"time": T0 + 60 * 10**9, "counts": [1, 2, 0]}]))
    second = decoder.decode(metrics([{"time": T0 + 120 * 10**9, "counts": [3, 2, 1]}]))
    reset = decoder.decode(metrics([{"time": T0 + 200 * 10**9, "start": T0 + 150 * 10**9, "counts": [1, 0, 0]}]))
    assert [d.counts for d in first.deltas + second.deltas + reset.deltas] == [[1, 2, 0], [2, 0, 1], [1, 0, 0]]
    assert second.deltas[0].start_ns == T0 + 60 * 10**9 and reset.resets == 1
    assert first.deltas[0].bounds == [100.0, 500.0] and first.deltas[0].side == "client"  # seconds -> ms
    replay = decoder.decode(metrics([{"time": T0 + 120 * 10**9, "counts": [3, 2, 1]}]))
    assert replay.deltas == [] and replay.stale == 1


def test_a_series_first_seen_long_after_its_start_is_only_a_baseline() -> None:
    decoder = MetricDecoder()
    old = decoder.decode(metrics([{"time": T0 + 3600 * 10**9, "counts": [50, 20, 1]}]))
    nxt = decoder.decode(metrics([{"time": T0 + 3660 * 10**9, "counts": [51, 20, 1]}]))
    assert old.deltas == [] and old.baselined == 1 and [d.counts for d in nxt.deltas] == [[1, 0, 0]]


@pytest.mark.parametrize(
    ("point", "reason"),
    [
        ({"time": T0 + 10**9, "counts": [1, 2]}, "2 bucket counts for 2 bounds"),
        ({"time": T0 + 10**9, "counts": [1, 2, 0], "count": 4}, "add up to 3"),
        ({"time": T0 + 10**9, "counts": [1, 2, 0], "bounds": [0.5, 0.1]}, "strictly increasing"),
        ({"time": T0 + 10**9, "counts": [1, 2, 0], "sum": math.inf}, "not finite"),
    ],
)
def test_inconsistent_histograms_are_refused_with_a_reason(point: dict, reason: str) -> None:
    result = MetricDecoder().decode(metrics([point]))
    assert result.deltas == [] and len(result.refused) == 1 and reason in result.refused[0]


def test_a_cumulative_series_that_goes_down_is_refused_then_rebaselined() -> None:
    decoder = MetricDecoder()
    decoder.decode(metrics([{"time": T0 + 60 * 10**9, "counts": [5, 5, 0]}]))
    down = decoder.decode(metrics([{"time": T0 + 120 * 10**9, "counts": [2, 1, 0]}]))
    after = decoder.decode(metrics([{"time": T0 + 180 * 10**9, "counts": [3, 1, 0]}]))
    assert down.deltas == [] and "went down (10 -> 3)" in down.refused[0]
    assert [d.counts for d in after.deltas] == [[1, 0, 0]]  # against the re-baselined point, not the old one


def test_delta_temporality_passes_through_and_unknown_names_are_counted() -> None:
    decoder = MetricDecoder()
    delta = decoder.decode(metrics([{"time": T0 + 10**9, "counts": [0, 4, 1]}], temporality=DELTA))
    unknown = decoder.decode(metrics([{"time": T0 + 10**9, "counts": [1, 0, 0]}], name="gen_ai.client.generation.x"))
    assert [d.counts for d in delta.deltas] == [[0, 4, 1]] and delta.refused == []
    assert unknown.deltas == [] and unknown.unknown == {"gen_ai.client.generation.x": 1}


def test_openllmetry_server_named_ttft_is_client_side_by_its_scope() -> None:
    result = MetricDecoder().decode(
        metrics(
            [{"time": T0 + 10**9, "counts": [1, 0, 0]}],
            name="gen_ai.server.time_to_first_token",
            scope="opentelemetry.instrumentation.openai.v1",
        )
    )
    assert [(d.metric, d.side) for d in result.deltas] == [("ttft", "client")]


def test_histogram_quantile_interpolates_and_says_its_resolution() -> None:
    value, width = histogram_quantile(0.5, [100.0, 200.0, 400.0], [0, 10, 10, 0])
    assert value == pytest.approx(200.0) and width == pytest.approx(100.0)
    value, width = histogram_quantile(0.99, [100.0], [1, 99])
    assert value == 100.0 and math.isinf(width)  # the overflow bucket has no upper bound


# -- SLOs ------------------------------------------------------------------------------------

SLOS = SloFile.model_validate(
    {"version": "1", "slos": [{"name": "bot", "selector": {"service": "bot"},
     "objectives": [{"metric": "ttft", "percentile": 95, "threshold_ms": 800}, {"metric": "error_rate", "max": 0.01}]}]}
)  # fmt: skip


def test_slo_file_validates_objectives() -> None:
    assert [o.budget for o in SLOS.slos[0].objectives] == pytest.approx([0.05, 0.01])
    with pytest.raises(ValidationError):
        Objective(metric="ttft", max=0.1)
    with pytest.raises(ValidationError):
        SloFile.model_validate({"version": "1", "slos": [SLOS.slos[0].model_dump()] * 2})


def test_rollup_expressions_bind_every_value() -> None:
    valid, bad, params = rollup_expressions(SLOS)
    assert "bot" not in valid + bad and "800" not in bad
    assert params["s0_service"] == "bot" and params["t0"] == 800 and params["k1"] == "bot#1"


def test_burn_rates_fire_only_when_both_windows_of_a_pair_burn() -> None:
    refs = objectives(SLOS)
    # 1 h: 80% bad (16x a 5% budget); 5 m: 100% bad -> page. 6 h: 20% (4x) -> no ticket.
    windows = {"": {300: ({"bot#0": 10}, {"bot#0": 10}), 1800: ({"bot#0": 50}, {"bot#0": 40}),
                    3600: ({"bot#0": 100}, {"bot#0": 80}), 21600: ({"bot#0": 600}, {"bot#0": 120})}}  # fmt: skip
    [ttft, errors] = evaluate(refs, windows, {"": ({"bot#0": 1000}, {"bot#0": 130})})
    assert ttft.rate(3600) == pytest.approx(16.0) and ttft.firing == ["page"]
    assert ttft.budget_left == pytest.approx(1 - 0.13 / 0.05) and errors.firing == []
    cooled = {"": {**windows[""], 300: ({"bot#0": 10}, {"bot#0": 0})}}
    assert evaluate(refs, cooled, {})[0].firing == []  # the short window says it is over


def test_alert_latch_raises_once_per_episode_and_rearms_after_quiet() -> None:
    latch = AlertLatch(rearm_s=600)
    burning = Burn("k", "slo", "o", "", 0.05, {}, firing=["page"])
    quiet = Burn("k", "slo", "o", "", 0.05, {}, firing=[])
    assert [s for _, s in latch.step([burning], 0)] == ["page"]
    assert latch.step([burning], 15) == []
    assert latch.step([quiet], 30) == [] and latch.step([burning], 60) == []  # flapping: not again
    latch.step([quiet], 100)
    assert [s for _, s in latch.step([burning], 800)] == ["page"]
    assert BURN_PAIRS[0].factor == 14.4 and BURN_PAIRS[0].long_s == 3600


def test_drill_objectives_are_read_per_drill_case_and_live_ones_only_live() -> None:
    from pipeline.perf.slo import load_slo_file

    refs = objectives(load_slo_file(None))
    windows = {"run/regression": {3600: ({"drill/perf_regression#0": 10}, {"drill/perf_regression#0": 10}),
                                  300: ({"drill/perf_regression#0": 2}, {"drill/perf_regression#0": 2})},
               "": {}}  # fmt: skip
    burns = evaluate(refs, windows, {})
    assert [(b.drill_id, b.firing) for b in burns] == [("run/regression", ["page"])]


# -- windows and the gap verdict -------------------------------------------------------------


def test_cover_reads_weeks_days_hours_and_a_fringe_of_minutes() -> None:
    day = 86400 * 20000  # a Thursday; weeks are 7-day buckets from the epoch: the next starts on day 20006
    week = 86400 * 20006
    assert cover(day + 600, day + 3000) == [Segment("minute", day + 600, day + 3000)]
    assert cover(day + 1800, day + 10 * 86400) == [
        Segment("minute", day + 1800, day + 3600), Segment("hour", day + 3600, day + 86400),
        Segment("day", day + 86400, day + 10 * 86400),
    ]  # fmt: skip
    assert cover(day + 1800, day + 30 * 86400) == [
        Segment("minute", day + 1800, day + 3600), Segment("hour", day + 3600, day + 86400),
        Segment("day", day + 86400, week), Segment("week", week, day + 30 * 86400),
    ]  # fmt: skip
    assert cover(week, week + 21 * 86400) == [Segment("week", week, week + 21 * 86400)]
    assert aligned_start(day + 1234, 30 * 86400) == day and aligned_start(day + 1234, 3600) == day + 1200


def test_gap_grows_needs_enough_pairs_and_a_real_increase() -> None:
    def cls(pairs: int, gap: float) -> dict:
        return {"pairs": pairs, "gap_p50_ms": gap}

    assert gap_grows([cls(100, 10.0), cls(100, 45.0)]) is True
    assert gap_grows([cls(100, 10.0), cls(100, 14.0)]) is False
    assert gap_grows([cls(100, 10.0), cls(5, 90.0)]) is None


def test_a_window_is_a_duration_in_bounds_or_with_clamp_the_nearest_bound() -> None:
    import re

    assert [parse_since(t) for t in ("15m", "1h", " 7d ", "1.5h")] == [900, 3600, 604800, 5400]
    for text in ("1h ago", "", "h", "-1h", "1e3s"):
        assert not re.match(SINCE_PATTERN, text)
        with pytest.raises(ValueError, match="not a duration"):
            parse_since(text)
    with pytest.raises(ValueError, match="between 1 minute and 400 days"):
        parse_since("10s")
    assert parse_since("10s", clamp=True) == 60 and parse_since("9" * 400 + "d", clamp=True) == 400 * 86400

"""The instruments: what a stage reports reaches the Prometheus exposition and the OTLP data
model alike; with metrics off every call is a no-op on a shared object."""

from __future__ import annotations

from prometheus_client import generate_latest

from pipeline.observability import metrics as module
from pipeline.observability.metrics import Instruments, StageMetrics
from pipeline.observability.otlp_push import metrics_data


def fresh(monkeypatch, enabled: bool = True) -> None:
    monkeypatch.setitem(module._state, "instruments", None)
    monkeypatch.setitem(module._state, "enabled", enabled)


def test_stage_metrics_reach_the_exposition(monkeypatch):
    fresh(monkeypatch)
    stage = StageMetrics("screen")
    stage.records_in(2)
    stage.items_in(7)
    stage.events_out("screenings", 7)
    stage.dead_letter("invalid_record")
    stage.batch(7, 0.004)
    stage.hop_ns("screen", 1_000_000_000, 1_020_000_000)
    stage.hop_ns("screen", 0, 1_020_000_000)  # a record without its stamp is not counted
    stage.escalation("tier1", "injection", "escalate", 2)
    text = generate_latest(module.registry()).decode()
    assert 'oodwatch_stage_records_in_total{stage="screen"} 2.0' in text
    assert 'oodwatch_stage_items_in_total{stage="screen"} 7.0' in text
    assert 'oodwatch_stage_events_out_total{stage="screen",topic="screenings"} 7.0' in text
    assert 'oodwatch_dead_letters_total{reason="invalid_record",stage="screen"} 1.0' in text
    assert 'oodwatch_hop_latency_seconds_count{hop="screen"} 1.0' in text
    assert 'oodwatch_hop_latency_seconds_bucket{hop="screen",le="0.025"} 1.0' in text
    assert 'oodwatch_escalations_total{category="injection",reason="escalate",tier="tier1"} 2.0' in text


def test_metrics_off_cost_a_no_op_and_expose_nothing(monkeypatch):
    fresh(monkeypatch, enabled=False)
    stage = StageMetrics("normalize")
    stage.records_in()
    stage.hop("normalize", 0.1)
    module.metrics().receiver_requests.labels(signal="traces", status="200").inc()
    assert module.metrics() is module._NULL_INSTRUMENTS
    assert generate_latest(module.registry()) == b""
    assert module._state["instruments"] is None  # nothing was built


def test_the_otlp_data_model_carries_the_same_instruments():
    instruments = Instruments()
    instruments.records_in.labels(stage="normalize").inc(3)
    instruments.judge_breaker_open.set(1)
    instruments.hop_latency.labels(hop="store").observe(0.2)
    instruments.hop_latency.labels(hop="store").observe(20.0)
    data = metrics_data(instruments.registry, {"service.name": "oodwatch-test"})
    [resource] = data.resource_metrics
    by_name = {m.name: m for m in resource.scope_metrics[0].metrics}
    records = by_name["oodwatch_stage_records_in"].data
    assert records.is_monotonic and records.data_points[0].value == 3
    assert dict(records.data_points[0].attributes) == {"stage": "normalize"}
    assert by_name["oodwatch_judge_breaker_open"].data.data_points[0].value == 1
    [hop] = by_name["oodwatch_hop_latency_seconds"].data.data_points
    assert hop.count == 2 and sum(hop.bucket_counts) == 2
    assert len(hop.bucket_counts) == len(hop.explicit_bounds) + 1
    assert (
        hop.bucket_counts[hop.explicit_bounds.index(0.25)] == 1
        and hop.bucket_counts[hop.explicit_bounds.index(30.0)] == 1
    )
    assert resource.resource.attributes["service.name"] == "oodwatch-test"

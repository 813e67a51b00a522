import random

from pipeline.bench.loadtest.histogram import Histogram
from pipeline.bench.loadtest.openloop import Payloads, burst, constant, step


def test_histograms_merge_exactly_and_read_percentiles_within_two_percent():
    a, b, whole = Histogram(), Histogram(), Histogram()
    rng = random.Random(3)
    values = [rng.lognormvariate(3, 1) for _ in range(20_000)]
    for i, v in enumerate(values):
        (a if i % 2 else b).add(v)
        whole.add(v)
    merged = Histogram().merge(a).merge(b)
    assert merged.counts == whole.counts and merged.total == len(values)
    ordered = sorted(values)
    for q in (0.5, 0.95, 0.99):
        exact = ordered[int(q * (len(ordered) - 1))]
        assert abs(merged.percentile(q) - exact) / exact < 0.02


def test_profiles_offer_the_rates_they_name():
    assert constant(800)(12.3) == 800
    rising = step(500, 2, 10)
    assert [rising(t) for t in (0, 9.9, 10, 25)] == [500, 500, 1000, 2000]
    spikes = burst(200, 2000, 10, 2)
    assert [spikes(t) for t in (0.5, 1.9, 2.1, 10.5)] == [2000, 2000, 200, 2000]


def test_every_send_carries_fresh_trace_ids_and_its_real_event_count():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from schemas.otel_mapping import map_request

    payloads = Payloads.build(templates=4)
    rng = random.Random(1)
    seen = set()
    for _ in range(40):
        body, events = payloads.fresh(rng)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        mapped = map_request(request).events
        assert len(mapped) == events
        ids = {e.event_id for e in mapped}
        assert not ids & seen
        seen |= ids

"""Watching the watcher in a running stack: after traffic, `/metrics` on the receiver, the
worker and the store show their counters moved (events in and out per stage, hop latencies,
escalations, batch sizes, receiver admissions, store rows, consumer lag per partition), the
worker answers its probes, and the same instruments arrive over OTLP at a real endpoint."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from pipeline.cli.client import TriageClient
from pipeline.stack.supervisor import Stack
from pipeline.synth.emit import SessionEmitter
from pipeline.synth.traffic import TrafficGenerator
from tests.e2e.conftest import wait_for
from tests.helpers import MODEL_DIR, test_settings
from tests.otlp_sink import OtlpSink


@pytest.fixture(scope="module")
def sink() -> Iterator[OtlpSink]:
    endpoint = OtlpSink()
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, sink: OtlpSink) -> Iterator[Stack]:
    if not (MODEL_DIR / "tier1.onnx").exists():
        pytest.fail(f"no models in {MODEL_DIR}: run `make setup` first")
    settings = test_settings(
        tmp_path_factory.mktemp("metrics"), otlp_metrics_endpoint=sink.url, otlp_metrics_interval_s=1.0,
        lag_interval_s=1.0,
    )  # fmt: skip
    running = Stack(settings, workers=1)
    running.start()
    yield running
    running.stop()


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for match in re.finditer(rf"^{name}(?:\{{(.*?)\}})? (\S+)$", text, re.M):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_counters_move_with_traffic_on_every_process(stack: Stack, sink: OtlpSink):
    settings = stack.settings
    worker = f"http://{settings.host}:{stack.worker_metrics_port(0)}"
    assert httpx.get(f"{worker}/healthz").status_code == 200
    assert httpx.get(f"{worker}/readyz").status_code == 200  # partitions assigned
    sessions = list(TrafficGenerator(seed=5, attack_ratio=0.3).sessions(120))
    expected = sum(s.llm_spans() for s in sessions)
    emitter = SessionEmitter(settings.receiver_url)
    emitter.emit(sessions)
    assert emitter.flush()
    emitter.shutdown()
    client = TriageClient.from_settings(settings)
    wait_for(client.stats, lambda s: s["screenings"] >= expected and s["evidence_bundles"] >= 1, timeout_s=120)
    client.close()

    receiver = httpx.get(f"{settings.receiver_url}/metrics").text
    assert value(receiver, "oodwatch_receiver_requests_total", signal="traces", status="200") >= 1
    assert value(receiver, "oodwatch_receiver_items_total", signal="traces") >= expected

    scraped = httpx.get(f"{worker}/metrics").text
    assert value(scraped, "oodwatch_stage_records_in_total", stage="normalize") >= 1
    assert (
        value(scraped, "oodwatch_stage_events_out_total", stage="normalize", topic=settings.topics.llm_events)
        >= expected
    )
    assert value(scraped, "oodwatch_stage_records_in_total", stage="screen") >= 1  # envelopes of many events
    assert value(scraped, "oodwatch_stage_items_in_total", stage="screen") >= expected
    assert (
        value(scraped, "oodwatch_stage_events_out_total", stage="screen", topic=settings.topics.screenings) >= expected
    )
    assert value(scraped, "oodwatch_escalations_total", tier="tier1") >= 1
    assert value(scraped, "oodwatch_stage_events_out_total", stage="investigate", topic=settings.topics.evidence) >= 1
    for hop in ("normalize", "screen", "investigate"):
        assert value(scraped, "oodwatch_hop_latency_seconds_count", hop=hop) >= 1, hop
    assert value(scraped, "oodwatch_batch_size_count", stage="screen") >= 1

    def store_text() -> str:
        return httpx.get(f"{settings.api_url}/metrics").text

    store = wait_for(store_text, lambda t: value(t, "oodwatch_consumer_lag", group=settings.app_id) >= 0
                     and f'group="{settings.app_id}"' in t, timeout_s=30)  # fmt: skip
    assert value(store, "oodwatch_store_rows_total", table="screenings") >= expected
    assert value(store, "oodwatch_store_rows_total", table="evidence_bundles") >= 1
    assert value(store, "oodwatch_hop_latency_seconds_count", hop="store") >= expected
    assert value(store, "oodwatch_sink_records_total", topic=settings.topics.screenings) >= 1  # envelopes
    lag_partitions = set(re.findall(r'oodwatch_consumer_lag\{group="oodwatch-sink",partition="(\d+)"', store))
    assert lag_partitions, "the sink's committed partitions have a lag reading"

    # The same instruments over OTLP, from every process kind.
    assert sink.wait(lambda: {"oodwatch_stage_records_in", "oodwatch_receiver_requests", "oodwatch_store_rows"}
                     <= sink.metric_names(), timeout_s=30)  # fmt: skip
    services = {
        a.value.string_value for req in sink.metrics for rm in req.resource_metrics for a in rm.resource.attributes
        if a.key == "service.name"
    }  # fmt: skip
    assert {"oodwatch-receiver", "oodwatch-worker", "oodwatch-store"} <= services

"""Stage benchmarks: one stage alone, JSON out. Figures are medians over repeated batches."""

from __future__ import annotations

import statistics
import time
from typing import Any

from pipeline.settings import Settings
from pipeline.traffic import TrafficGenerator


def _events(n: int) -> list[Any]:
    """Real LLMEvents via the real mapping path, from the demo's traffic generator."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from pipeline.emit import sessions_to_request
    from schemas.otel_mapping import map_request

    sessions = list(TrafficGenerator(seed=11, attack_ratio=0.1).sessions(n))
    request: ExportTraceServiceRequest = sessions_to_request(sessions)
    return map_request(request).events[:n]


def bench_tier1(settings: Settings, *, batch_size: int, seconds: float) -> dict[str, Any]:
    from detectors.rules import default_rules
    from detectors.tier1_classifier import Tier1Classifier

    detector = Tier1Classifier(settings.models_path)
    events = _events(max(batch_size, 1024))
    batches = [events[i : i + batch_size] for i in range(0, len(events) - batch_size + 1, batch_size)]
    detector.score(batches[0])  # warm-up
    batch_times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for batch in batches:
            t0 = time.perf_counter()
            detector.score(batch)
            batch_times.append(time.perf_counter() - t0)
    single = []
    for event in events[:500]:
        t0 = time.perf_counter()
        detector.score([event])
        single.append(time.perf_counter() - t0)
    median_batch = statistics.median(batch_times)
    rules = default_rules()
    rule_times = []
    for batch in batches:
        t0 = time.perf_counter()
        for rule in rules:
            rule.score(batch)
        rule_times.append(time.perf_counter() - t0)
    return {
        "stage": "tier1",
        "batch_size": batch_size,
        "events_per_s": round(batch_size / median_batch, 1),
        "p50_ms": round(statistics.median(single) * 1000, 4),
        "batch_p50_ms": round(median_batch * 1000, 3),
        "batches": len(batch_times),
        "rules_events_per_s": round(batch_size / statistics.median(rule_times), 1),
        "providers": detector.providers,
        "model_version": detector.version,
    }


def bench_stage(settings: Settings, stage: str, *, batch_size: int, seconds: float) -> dict[str, Any]:
    if stage == "tier1":
        return bench_tier1(settings, batch_size=batch_size, seconds=seconds)
    raise ValueError(f"unknown stage {stage!r}")

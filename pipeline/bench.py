"""Stage benchmarks: one stage alone, JSON out. Figures are medians over repeated batches."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from detectors.speed import measure
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
    rules = default_rules()
    events = _events(max(batch_size, 1024))
    classifier = measure(detector.score, events, batch_size=batch_size, seconds=seconds)
    all_rules = measure(lambda batch: [rule.score(batch) for rule in rules], events, batch_size=batch_size, seconds=1.0)
    return {
        "stage": "tier1",
        **asdict(classifier),
        "rules_events_per_s": all_rules.events_per_s,
        "providers": detector.providers,
        "model_version": detector.version,
    }


def bench_tier2(settings: Settings, *, batch_size: int, seconds: float) -> dict[str, Any]:
    """One worker process, one intra-op thread: the embedding, the distance, the head, exemplars."""
    from detectors.ood import EmbeddingAnomalyDetector

    detector = EmbeddingAnomalyDetector(settings.models_path)
    events = _events(max(batch_size * 4, 256))
    speed = measure(detector.assess, events, batch_size=batch_size, seconds=seconds, singles=100)
    return {"stage": "tier2", **asdict(speed), "providers": detector.providers, "model_version": detector.version}


def bench_stage(settings: Settings, stage: str, *, batch_size: int, seconds: float) -> dict[str, Any]:
    if stage == "tier1":
        return bench_tier1(settings, batch_size=batch_size, seconds=seconds)
    if stage == "tier2":
        return bench_tier2(settings, batch_size=min(batch_size, 64), seconds=seconds)
    if stage == "store":
        from pipeline.store_bench import bench_store

        return bench_store()
    raise ValueError(f"unknown stage {stage!r}")

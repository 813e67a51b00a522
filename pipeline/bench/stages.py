"""Stage benchmarks: one stage alone, JSON out. Figures are medians over repeated batches."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from detectors.speed import measure
from pipeline.settings import Settings
from pipeline.synth.traffic import TrafficGenerator


def _events(n: int) -> list[Any]:
    """Real LLMEvents via the real mapping path, from the demo's traffic generator."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from pipeline.synth.emit import sessions_to_request
    from schemas.otel_mapping import map_request

    sessions = list(TrafficGenerator(seed=11, attack_ratio=0.1).sessions(n))
    request: ExportTraceServiceRequest = sessions_to_request(sessions)
    return map_request(request).events[:n]


def bench_tier1(settings: Settings, *, batch_size: int, seconds: float) -> dict[str, Any]:
    from detectors.rules import default_rules
    from detectors.tier1_classifier import Tier1Classifier

    detector = Tier1Classifier(settings.models_path, cache=False)
    cached = Tier1Classifier(settings.models_path)
    rules = default_rules()
    events = _events(max(batch_size, 1024))
    # The headline is the uncached fast path (every part scored afresh): the demo mix repeats its
    # texts, so the cached figure says what a conversation's history costs, not a new text.
    classifier = measure(detector.score_matrix, events, batch_size=batch_size, seconds=seconds)
    with_cache = measure(cached.score_matrix, events, batch_size=batch_size, seconds=1.0)
    wrapped = measure(detector.score, events, batch_size=batch_size, seconds=1.0)
    all_rules = measure(lambda batch: [rule.score(batch) for rule in rules], events, batch_size=batch_size, seconds=1.0)
    return {
        "stage": "tier1",
        **asdict(classifier),
        "measured": "Tier1Classifier.score_matrix, part cache off, one intra-op thread, the demo's traffic mix",
        "events_per_s_cached": with_cache.events_per_s,
        "score_events_per_s": wrapped.events_per_s,
        "rules_events_per_s": all_rules.events_per_s,
        "hot_path_us_per_event": hot_path_costs(settings, events[:batch_size]),
        "providers": detector.providers,
        "model_version": detector.version,
    }


def hot_path_costs(settings: Settings, events: list[Any], repeats: int = 7) -> dict[str, float]:
    """CPU per event of each step the screen stage runs on one batch (median of `repeats`):
    decoding the envelope, each detector's matrix, routing, encoding the screenings record."""
    from pipeline.agents.screen import EVENTS, SCREENINGS
    from pipeline.app import build_screener
    from schemas.envelope import ENVELOPE_HEADERS

    screener = build_screener(settings)
    envelope = EVENTS.encode(events)
    scores = screener.score_matrix(events)
    batch, _ = screener.route(events, scores, {})
    steps: dict[str, Callable[[], Any]] = {"decode": lambda: EVENTS.decode(envelope, ENVELOPE_HEADERS)}
    for detector in screener.detectors:
        steps[detector.name] = functools.partial(detector.score_matrix, events)
        clear = getattr(getattr(detector, "inner", detector), "clear_cache", None)
        if clear is not None:  # new text every repeat, not the cache's answer
            steps[detector.name] = functools.partial(_uncached, clear, detector.score_matrix, events)
    steps["route"] = lambda: screener.route(events, scores, {})
    steps["serialize"] = lambda: SCREENINGS.encode([batch])

    def per_event_us(step: Callable[[], Any]) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        return round(statistics.median(times) / len(events) * 1e6, 1)

    costs = {name: per_event_us(step) for name, step in steps.items()}
    costs["total"] = round(sum(costs.values()), 1)
    return costs


def _uncached(clear: Callable[[], None], score: Callable[[Any], Any], events: list[Any]) -> Any:
    clear()
    return score(events)


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
        from pipeline.bench.store import bench_store

        return bench_store()
    if stage == "perf":
        from pipeline.bench.perf import bench_perf

        return bench_perf(settings)
    raise ValueError(f"unknown stage {stage!r}")

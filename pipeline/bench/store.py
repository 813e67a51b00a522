"""`oodwatch bench --stage store`: the reviewer's reads on a loaded store.

A fresh chdb store in a temporary directory gets N screenings and M evidence bundles
(realistic bundle JSON, a week of timestamps, severities, services, tenants, groups, a
fifth resolved), loaded in column-oriented batches. Then the desk's queries are timed as
the API runs them: the queue's first page under several filters, and single bundles with
their review history. p50/p95 are over all repetitions.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.store.clickhouse import BUNDLE_COLUMNS, SCREENING_COLUMNS, Store
from pipeline.store.desk import Desk, QueueFilter
from schemas.evidence import Severity

SERVICES = [f"service-{i}" for i in range(12)]
TENANTS = [f"tenant-{i}" for i in range(30)]
MODELS = ["gpt-4o-mini", "llama-3.1-8b-instruct", "claude-3-5-haiku", "qwen2.5-7b-instruct"]
CATEGORIES = ["injection", "harmful", "injection/jailbreak", "tier2:injection", "tier2:ood", "encoded_payload"]
SEVERITIES = [Severity.LOW, Severity.MEDIUM, Severity.MEDIUM, Severity.HIGH, Severity.HIGH, Severity.CRITICAL]
WEEK_NS = 7 * 24 * 3600 * 10**9
CHUNK = 100_000


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _template_bundle() -> str:
    """A real bundle's JSON, from the pipeline's own assembly, to give rows a realistic size."""
    from pipeline.agents.investigate import assemble_bundle
    from pipeline.agents.screen import Screener
    from pipeline.policy import RoutingPolicy
    from pipeline.synth.traffic import ATTACK_PROMPTS, BENIGN_ANSWERS
    from schemas.events import LLMEvent, Message, ToolDefinition
    from schemas.evidence import CategoryScore, Escalation, Exemplar, Tier2Result

    class Fixed:
        name, version = "tier1-classifier", "bench"

        def score(self, events: Sequence[LLMEvent]) -> list[tuple[CategoryScore, ...]]:
            return [(CategoryScore(category="injection", score=0.97, threshold=0.5, detector=self.name),)] * len(events)

    event = LLMEvent(
        event_id="e", trace_id="t" * 32, span_id="s" * 16, session_id="session", service="svc", model=MODELS[0],
        operation="chat", system_instructions="You are a helpful support assistant." * 3,
        input_messages=(Message(role="user", content=ATTACK_PROMPTS[0] * 3),),
        output_messages=(Message(role="assistant", content=BENIGN_ANSWERS[0] * 3),),
        tool_definitions=(ToolDefinition(name="get_order_status", description="Look up an order." * 4),),
        received_ns=1, normalized_ns=2,
    )  # fmt: skip
    [screening] = Screener([Fixed()], RoutingPolicy.load()).screen([event])
    tier2 = Tier2Result(
        scores=(CategoryScore(category="injection", score=0.99, threshold=0.9, detector="tier2"),),
        exemplars=tuple(
            Exemplar(exemplar_id=f"x{i}", similarity=0.9, label="attack", source="s-labs", text=ATTACK_PROMPTS[i])
            for i in range(3)
        ),
        distance=0.4,
    )
    return assemble_bundle(Escalation(event=event, screening=screening), 3, tier2).model_dump_json()


def load(store: Store, screenings: int, bundles: int, seed: int = 1) -> list[str]:
    """Returns the bundle ids."""
    rng = random.Random(seed)
    now = time.time_ns()
    for start in range(0, screenings, CHUNK):
        n = min(CHUNK, screenings - start)
        received = [now - rng.randrange(WEEK_NS) for _ in range(n)]
        decisions = rng.choices(["pass", "uncertain", "escalate"], weights=[95, 3, 2], k=n)
        scores = [rng.random() for _ in range(n)]
        columns: list[list[Any]] = [
            [f"{rng.getrandbits(128):032x}" for _ in range(n)],
            [f"session-{rng.randrange(n // 3 + 1)}" for _ in range(n)],
            [f"{rng.getrandbits(128):032x}" for _ in range(n)],
            rng.choices(SERVICES, k=n), rng.choices(MODELS, k=n), ["chat"] * n, decisions,
            [("" if d == "pass" else "medium") for d in decisions], scores,
            [{"injection": s} for s in scores], [{"injection": 0.5}] * n, [[] for _ in range(n)],
            ["2026-11-23.2"] * n, [{"tier1-classifier": "bench"}] * n, [""] * n,
            ["How do I reset my password if I no longer have access to my email? " * 2] * n,
            received, [r + 50_000_000 for r in received], [r + 120_000_000 for r in received],
            [r + 300_000_000 for r in received], [""] * n, [""] * n,
        ]  # fmt: skip
        store.insert_columns("screenings", columns, SCREENING_COLUMNS)
    template = _template_bundle()
    ids = [f"{rng.getrandbits(128):032x}" for _ in range(bundles)]
    for start in range(0, bundles, CHUNK // 4):
        chunk = ids[start : start + CHUNK // 4]
        n = len(chunk)
        severity = rng.choices(SEVERITIES, k=n)
        created = [now - rng.randrange(WEEK_NS) for _ in range(n)]
        resolved = [rng.random() < 0.2 for _ in range(n)]
        columns = [
            chunk, [f"session-{rng.randrange(10_000)}" for _ in range(n)],
            [f"{rng.getrandbits(128):032x}" for _ in range(n)], rng.choices(SERVICES, k=n), rng.choices(MODELS, k=n),
            [s.value for s in severity], [s.rank for s in severity],
            [sorted(set(rng.sample(CATEGORIES, 2))) for _ in range(n)], [rng.random() for _ in range(n)],
            ["resolved" if r else "open" for r in resolved], rng.choices(["unjudged", "judged", "skipped"], k=n),
            ["2026-11-23.2"] * n, [("drill-1" if rng.random() < 0.05 else "") for _ in range(n)], [template] * n,
            created, created, [1] * n, rng.choices(TENANTS, k=n), [f"group-{rng.randrange(1000)}" for _ in range(n)],
            [("ana" if rng.random() < 0.1 else "") for _ in range(n)],
            [("false_positive" if r else "") for r in resolved], [("ana" if r else "") for r in resolved],
            [(c + 3_600 * 10**9 if r else 0) for c, r in zip(created, resolved, strict=True)], [""] * n, [""] * n,
        ]  # fmt: skip
        store.insert_columns("evidence_bundles", columns, BUNDLE_COLUMNS)
    return ids


def queue_filters() -> dict[str, QueueFilter]:
    return {
        "open_first_page": QueueFilter(),
        "high_and_above": QueueFilter(min_severity=Severity.HIGH),
        "service": QueueFilter(service=SERVICES[3]),
        "tenant": QueueFilter(tenant=TENANTS[7]),
        "category": QueueFilter(category="tier2:ood"),
        "live_newest": QueueFilter(origin="live", sort="newest"),
        "unclaimed_last_day": QueueFilter(status="unclaimed", since_ns=time.time_ns() - WEEK_NS // 7),
        "model_and_severity": QueueFilter(model=MODELS[1], severity=[Severity.CRITICAL]),
    }


def bench_store(screenings: int = 1_000_000, bundles: int = 50_000, repeats: int = 30) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="oodwatch-bench-store-") as tmp:
        store = Store.open(f"chdb://{Path(tmp) / 'store'}")
        try:
            started = time.monotonic()
            ids = load(store, screenings, bundles)
            loaded_s = time.monotonic() - started
            counted = {
                table: int(store.query(f"SELECT count() AS n FROM {table}")[0]["n"])
                for table in ("screenings", "evidence_bundles")
            }
            if counted != {"screenings": screenings, "evidence_bundles": bundles}:
                raise RuntimeError(f"store bench loaded {counted}, wanted {screenings} screenings, {bundles} bundles")
            desk = Desk(store)
            filters = queue_filters()
            by_filter: dict[str, list[float]] = {name: [] for name in filters}
            for _ in range(repeats):
                for name, f in filters.items():
                    t0 = time.perf_counter()
                    desk.queue(f)
                    by_filter[name].append((time.perf_counter() - t0) * 1000)
            rng = random.Random(7)
            bundle_ms = []
            for bundle_id in rng.sample(ids, min(len(ids), repeats * 5)):
                t0 = time.perf_counter()
                assert desk.bundle(bundle_id) is not None
                bundle_ms.append((time.perf_counter() - t0) * 1000)
        finally:
            store.close()
    queue_ms = [v for values in by_filter.values() for v in values]
    return {
        "stage": "store",
        "engine": "chdb",
        "screenings": counted["screenings"],
        "bundles": counted["evidence_bundles"],
        "load_s": round(loaded_s, 1),
        "queue_p50_ms": round(statistics.median(queue_ms), 2),
        "queue_p95_ms": round(_percentile(queue_ms, 0.95), 2),
        "bundle_p50_ms": round(statistics.median(bundle_ms), 2),
        "bundle_p95_ms": round(_percentile(bundle_ms, 0.95), 2),
        "queue_p95_ms_by_filter": {name: round(_percentile(v, 0.95), 2) for name, v in by_filter.items()},
        "repeats": repeats,
    }

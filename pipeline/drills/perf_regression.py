"""The `perf_regression` drill: a slow model version must page within the fast burn window, and
steady traffic must never page.

Burn-rate alerts look back hours, so a drill cannot wait for them in real time. Spans carry their
own timestamps, so each case is a timeline laid out in the past and ending now, sent through the
front door (the SDK's OTLP/HTTP exporter into the receiver): two hours of steady traffic, then,
for the regression case, fifty minutes of a new model version whose every request breaks the
drill objective (`pipeline.perf.slo.DRILL_SLO`: p95 e2e <= 1500 ms). The control keeps the
steady profile throughout (2% of requests over the threshold: well inside its budget).

Verified from the store only: the live evaluator must raise a page alert for the regression
case (recorded, never sent: drills never page anyone) and none for the control; and replaying
the evaluation minute by minute over the timeline says when the alert would first have fired:
at most the fast pair's long window (1 h) after the regression began. At a constant request rate
the bad share of the last hour after t minutes is t/60, so the 14.4x page factor on a 5% budget
(a 72% bad share) is reached after about 44 minutes.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from pipeline.cli.client import TriageClient
from pipeline.perf.slo import BURN_PAIRS, DRILL_SERVICE
from pipeline.settings import Settings
from schemas.drill import DrillCaseResult
from schemas.events import DRILL_ATTRIBUTE

FAMILY = "perf_regression"
BASELINE_MIN = 120
REGRESSION_MIN = 50
STEP_S = 10
FAST = BURN_PAIRS[0]


def timeline(kind: str, now_s: int, rng: random.Random) -> list[dict[str, Any]]:
    """(start s, e2e ms, model) per request, oldest first."""
    start = now_s - (BASELINE_MIN + REGRESSION_MIN) * 60
    regression_at = now_s - REGRESSION_MIN * 60
    requests = []
    for t in range(start, now_s - 5, STEP_S):
        slow = kind == "regression" and t >= regression_at
        if slow:
            e2e, model = rng.uniform(2200.0, 3200.0), "drill-model-v2"
        else:
            e2e = rng.uniform(1600.0, 2400.0) if rng.random() < 0.02 else rng.uniform(350.0, 900.0)
            model = "drill-model-v1"
        requests.append({"start_s": t + rng.random(), "e2e_ms": e2e, "model": model})
    return requests


def inject(settings: Settings, run_id: str, now_s: int, rng: random.Random) -> dict[str, int]:
    """Both cases through the SDK exporter; returns requests per case."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind

    provider = TracerProvider(resource=Resource.create({"service.name": DRILL_SERVICE}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{settings.receiver_url}/v1/traces", timeout=30),
                           max_queue_size=20_000, max_export_batch_size=512, schedule_delay_millis=50)
    )  # fmt: skip
    tracer = provider.get_tracer("oodwatch.drill.perf")
    sent: dict[str, int] = {}
    for kind in ("regression", "control"):
        requests = timeline(kind, now_s, rng)
        for request in requests:
            start_ns = int(request["start_s"] * 1e9)
            span = tracer.start_span(
                f"chat {request['model']}", kind=SpanKind.CLIENT, start_time=start_ns,
                attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": request["model"], "gen_ai.usage.output_tokens": 120,
                    DRILL_ATTRIBUTE: f"{run_id}/{kind}",
                },
            )  # fmt: skip
            span.end(end_time=start_ns + int(request["e2e_ms"] * 1e6))
        sent[kind] = len(requests)
    if not provider.force_flush(120_000):
        raise RuntimeError("the OTLP exporter could not deliver every drill span (is the receiver up?)")
    provider.shutdown()
    return sent


def run_perf_drill(
    settings: Settings, *, timeout_s: float = 300.0, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    run_id = time.strftime("perf-%Y%m%dT%H%M%SZ-", time.gmtime()) + uuid.uuid4().hex[:6]
    prefix = f"{run_id}/"
    now_s = int(time.time())
    client = TriageClient.from_settings(settings)
    try:
        progress(f"run {run_id}: {BASELINE_MIN + REGRESSION_MIN} simulated minutes per case, regression + control")
        sent = inject(settings, run_id, now_s, random.Random(run_id))
        injected = time.monotonic()
        deadline = injected + timeout_s
        while True:  # every request stored
            stored = {r["model"]: r["requests"] for r in client.perf(
                "report", since="4h", service=DRILL_SERVICE, drills="true")["models"]}  # fmt: skip
            if sum(stored.values()) >= sum(sent.values()) or time.monotonic() > deadline:
                break
            progress(f"stored {sum(stored.values())}/{sum(sent.values())} drill requests")
            time.sleep(1.0)
        alerts: list[dict[str, Any]] = []
        while time.monotonic() < deadline:  # the live evaluator's page for the regression case
            alerts = client.perf("alerts", drill_prefix=prefix)
            if any(a["drill_id"] == prefix + "regression" and a["severity"] == FAST.severity for a in alerts):
                break
            progress("waiting for the burn-rate evaluator")
            time.sleep(2.0)
        alerted_after_s = time.monotonic() - injected
        time.sleep(settings.perf_eval_interval_s + 1)  # one more evaluation: the control gets its chance
        alerts = client.perf("alerts", drill_prefix=prefix)
        replay = replay_first_page(client, prefix, now_s, progress)
    finally:
        client.close()
    regression_start = now_s - REGRESSION_MIN * 60
    cases: list[dict[str, Any]] = []
    for kind in ("regression", "control"):
        live = [a for a in alerts if a["drill_id"] == prefix + kind]
        first = replay.get(prefix + kind)
        cases.append(
            {
                "case": kind, "requests": sent[kind], "alerts": sorted({a["severity"] for a in live}),
                "paged": any(a["severity"] == FAST.severity for a in live),
                "first_page_in_replay_min": None if first is None else round((first - regression_start) / 60, 1),
            }
        )  # fmt: skip
    regression, control = cases
    detect = regression["first_page_in_replay_min"]
    passed = (
        regression["paged"] and detect is not None and 0 <= detect <= FAST.long_s / 60
        and not control["alerts"] and control["first_page_in_replay_min"] is None
    )  # fmt: skip
    return {
        "run_id": run_id, "family": FAMILY, "objective": "p95 e2e <= 1500 ms (drill/perf_regression)",
        "fast_window_min": FAST.long_s // 60, "regression_minutes": REGRESSION_MIN, "cases": cases,
        "live_alert_after_s": round(alerted_after_s, 1) if regression["paged"] else None, "passed": passed,
        "started_at": now_s,
    }  # fmt: skip


def replay_first_page(client: TriageClient, prefix: str, now_s: int, progress: Callable[[str], None]) -> dict[str, int]:
    """The first minute at which each case's fast pair fired, evaluating as of each minute."""
    first: dict[str, int] = {}
    start = now_s - (BASELINE_MIN + REGRESSION_MIN) * 60
    progress("replaying the evaluation minute by minute")
    for at in range(start + 300, now_s + 1, 60):
        answer = client.perf("slos", as_of_s=at, drill_prefix=prefix)
        for objective in answer["objectives"]:
            if FAST.severity in objective["firing"]:
                first.setdefault(objective["drill_id"], at)
    return first


def results(summary: dict[str, Any]) -> list[DrillCaseResult]:
    """Rows for the drills page (drill_runs): a page counts as flagged; detect_s is simulated time."""
    rows = []
    for case in summary["cases"]:
        detect = case["first_page_in_replay_min"]
        rows.append(
            DrillCaseResult(
                run_id=summary["run_id"], case_id=case["case"], family=FAMILY if case["case"] == "regression"
                else "control", generator=FAMILY, seed=0, control=case["case"] == "control", flagged=case["paged"],
                expected_tier="slo", caught_tier="slo" if case["paged"] else "", evidence_complete=case["paged"],
                detect_s=0.0 if detect is None else detect * 60, evidence_s=0.0,
                injected_at=summary["started_at"] * 10**9, score=0.0, events=case["requests"],
                screened=case["requests"],
            )
        )  # fmt: skip
    return rows


def render(summary: dict[str, Any]) -> str:
    lines = [f"perf_regression {summary['run_id']}: {'PASSED' if summary['passed'] else 'FAILED'} "
             f"({summary['objective']}; fast window {summary['fast_window_min']} min)"]  # fmt: skip
    for case in summary["cases"]:
        when = case["first_page_in_replay_min"]
        lines.append(
            f"  {case['case']:<10} {case['requests']:>5} requests  alerts: {', '.join(case['alerts']) or 'none':<12} "
            f"first page in replay: {'never' if when is None else f'{when} min after the regression began'}"
        )
    return "\n".join(lines)

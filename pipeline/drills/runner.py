"""`oodwatch drill run`: inject drill cases through the real ingest path (the OpenTelemetry SDK's
OTLP/HTTP exporter into the receiver), wait for the pipeline to screen and bundle them, verify
each case, store the results, and report.

Each case's spans carry the drill id `run_id/case_id` in the drill attribute, which the
normaliser moves out of what detectors see. Against a running stack (its API answers) the
drill uses it; otherwise it starts the embedded stack for the run and stops it afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from pipeline.cli.client import TriageClient
from pipeline.drills.scenarios import FAMILIES, DrillCase, build_cases, to_session
from pipeline.drills.verify import report, verify
from pipeline.settings import Settings
from pipeline.synth.emit import SessionEmitter
from schemas.drill import DrillCaseResult
from schemas.events import DRILL_ATTRIBUTE

POLL_S = 1.0
SETTLE_S = 3.0


def new_run_id() -> str:
    return time.strftime("drill-%Y%m%dT%H%M%SZ-", time.gmtime()) + uuid.uuid4().hex[:6]


def inject(settings: Settings, run_id: str, cases: list[DrillCase]) -> tuple[dict[str, int], dict[str, int]]:
    """(injected ns, expected LLM events) per case."""
    emitter = SessionEmitter(settings.receiver_url)
    injected: dict[str, int] = {}
    expected: dict[str, int] = {}
    for case in cases:
        session = to_session(case)
        expected[case.case_id] = session.llm_spans()
        injected[case.case_id] = time.time_ns()
        emitter.emit([session], {DRILL_ATTRIBUTE: f"{run_id}/{case.case_id}"})
    if not emitter.flush():
        raise RuntimeError("the OTLP exporter could not deliver every drill span (is the receiver up?)")
    emitter.shutdown()
    return injected, expected


def wait_for_pipeline(
    client: TriageClient, run_id: str, events: int, *, timeout_s: float, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Until every drill event is screened, every case tier 1 escalated has its bundle, and the
    bundle count has settled (or the timeout). A settled count alone is not enough: with a few
    hundred cases, investigate can pause for longer than SETTLE_S between batches (a full run
    once stopped at 79 of 499 bundles and reported their evidence as missing)."""
    deadline = time.monotonic() + timeout_s
    previous, stable_since = -1, time.monotonic()
    while True:
        observed = client.drill_observations(run_id)
        screened = sum(int(row["screened"]) for row in observed["screenings"])
        escalated = {row["drill_id"] for row in observed["screenings"] if int(row["escalated"])}
        waiting = len(escalated - {row["drill_id"] for row in observed["bundles"]})
        bundles = len(observed["bundles"])
        if bundles != previous:
            previous, stable_since = bundles, time.monotonic()
        progress(f"screened {screened}/{events}, bundles {bundles}, escalated cases without one {waiting}")
        if screened >= events and not waiting and time.monotonic() - stable_since >= SETTLE_S:
            return observed
        if time.monotonic() > deadline:
            return observed
        time.sleep(POLL_S)


def run_drill(
    settings: Settings, *, families: list[str], per_generator: int, seed_set: str, control_ratio: float,
    floors: dict[str, float], timeout_s: float = 300.0, progress: Callable[[str], None] = lambda _: None,
) -> tuple[dict[str, Any], list[DrillCaseResult]]:  # fmt: skip
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown drill families {sorted(unknown)}: choose from {sorted(FAMILIES)}")
    client = TriageClient.from_settings(settings)
    try:
        run_id = new_run_id()
        cases = build_cases(families, per_generator=per_generator, seed_set=seed_set, control_ratio=control_ratio)
        progress(f"run {run_id}: injecting {len(cases)} cases ({sum(c.control for c in cases)} benign controls)")
        injected, expected = inject(settings, run_id, cases)
        observed = wait_for_pipeline(client, run_id, sum(expected.values()), timeout_s=timeout_s, progress=progress)
        results = verify(run_id, cases, injected, expected, observed)
        client.store_drill_results(run_id, [r.model_dump() for r in results])
        summary = report(results, floors)
        summary["seed_set"] = seed_set
        return summary, results
    finally:
        client.close()

"""`oodwatch demo`: the embedded stack, realistic traffic through the real ingest path,
and a summary measured from the store's server-side timestamps."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from pipeline.cli.client import TriageClient
from pipeline.settings import Settings
from pipeline.stack.run import stop_signals, wait_until_stopped
from pipeline.stack.supervisor import Stack
from pipeline.synth.emit import SessionEmitter
from pipeline.synth.traffic import TrafficGenerator

POLL_S = 0.5
ROLLOUT = ("support-bot", "2026.12.1")


@dataclass
class DemoResult:
    summary: dict[str, Any]
    complete: bool
    since_ns: int = 0


def run_traffic(settings: Settings, client: TriageClient, *, events: int, seed: int, progress: Any) -> DemoResult:
    generator = TrafficGenerator(seed=seed)
    sessions = list(generator.sessions(events // 2))
    # Halfway, a version change: support-bot ships a new release (service.version), so each of its
    # models becomes a new version that the store's drift tracker compares with the one it
    # replaced (`oodwatch drift report`).
    generator.roll_out(ROLLOUT[0], release=ROLLOUT[1])
    sessions += list(generator.sessions(events - sum(s.llm_spans() for s in sessions)))
    expected = sum(s.llm_spans() for s in sessions)
    attack_sessions = {s.session_id for s in sessions if s.attack}
    emitter = SessionEmitter(settings.receiver_url)
    started = time.monotonic()
    since_ns = time.time_ns()  # the store outlives a demo: count only this run
    progress(f"sending {len(sessions)} sessions ({expected} LLM events) through OTLP/HTTP")
    emitter.emit(sessions)
    flushed = emitter.flush()
    emitter.shutdown()
    deadline = time.monotonic() + max(60.0, expected / 20)
    stats = client.stats(since_ns)
    while stats["screenings"] < expected and time.monotonic() < deadline:
        progress(f"screened {stats['screenings']}/{expected}", transient=True)
        time.sleep(POLL_S)
        stats = client.stats(since_ns)
    # Bundles trail screenings by a hop or two (three with the judge): every escalated event has
    # one; uncertain ones may. Wait for the escalated ones, then until the count stops moving.
    previous = -1
    while (stats["evidence_bundles"] < stats["escalated"] or stats["evidence_bundles"] != previous) and (
        time.monotonic() < deadline
    ):
        previous = stats["evidence_bundles"]
        progress(f"evidence bundles {previous} (escalated {stats['escalated']})", transient=True)
        time.sleep(1.5)
        stats = client.stats(since_ns)
    queue = client.escalations(limit=500, since_ns=since_ns)
    escalated_sessions = {row["session_id"] for row in queue} & {s.session_id for s in sessions}
    summary = {
        "events_sent": expected,
        "spans_sent": emitter.spans,
        "sessions": len(sessions),
        "events_screened": stats["screenings"],
        "escalated": stats["escalated"],
        "uncertain": stats["uncertain"],
        "evidence_bundles": stats["evidence_bundles"],
        "tier2_flagged": stats["tier2_flagged"],
        "judge": judge_line(settings, stats["tier3"]),
        "judge_failed": judge_failed(settings, stats["tier3"]),
        "tier3": stats["tier3"],
        "dead_letters": stats["dead_letters"],
        "benign_sessions": len(sessions) - len(attack_sessions),
        "attack_sessions": len(attack_sessions),
        "attack_sessions_escalated": len(attack_sessions & escalated_sessions),
        "benign_sessions_escalated": len(escalated_sessions - attack_sessions),
        "e2e_p50_ms": stats["e2e_p50_ms"],
        "e2e_p95_ms": stats["e2e_p95_ms"],
        "e2e_p99_ms": stats["e2e_p99_ms"],
        "hops_p50_p99_ms": stats["hops_p50_p99_ms"],
        "exporter_flushed": flushed,
        "wall_s": round(time.monotonic() - started, 2),
        "version_change": {"service": ROLLOUT[0], "service.version": ROLLOUT[1]},
    }
    return DemoResult(summary, complete=stats["screenings"] >= expected, since_ns=since_ns)


def judge_failed(settings: Settings, tier3: dict[str, int]) -> bool:
    """A configured judge that was asked and never once answered: the run must say so and fail."""
    return bool(settings.judge_endpoint()[0]) and tier3["judged"] == 0 and tier3["judge_error"] > 0


def judge_line(settings: Settings, tier3: dict[str, int]) -> str:
    base_url, model, _ = settings.judge_endpoint()
    if not base_url:
        return "not configured: escalations go to the human queue unjudged (try --local-judge)"
    if judge_failed(settings, tier3):
        return (
            f"{model}: FAILED, 0 judged and {tier3['judge_error']} judge errors; see "
            f"{settings.data_dir / 'logs'} and runbooks/judge-degraded.md"
        )
    line = (
        f"{tier3['judged']} judged, {tier3['judge_error']} judge errors, {tier3['judge_skipped']} over budget; "
        f"{tier3['needs_human_review']} need human review, {tier3['cleared']} cleared"
    )
    if settings.uses_local_judge:
        line += " (local SmolLM2: plumbing only, its verdicts are weak)"
    return f"{model}: {line}"


def run_demo(settings: Settings, *, events: int, seed: int, keep_running: bool, as_json: bool) -> int:
    stack = Stack(settings, progress=_progress)
    with stop_signals():
        stack.start()
        try:
            client = TriageClient.from_settings(settings)
            result = run_traffic(settings, client, events=events, seed=seed, progress=_progress)
            if as_json:
                print(json.dumps(result.summary))
            else:
                print_summary(result.summary, client, result.since_ns)
            if keep_running:
                _progress(
                    f"stack is up. queue: {settings.api_url}/api/escalations (token in {settings.token_file}); "
                    "Ctrl-C stops it"
                )
                wait_until_stopped(stack)
            if result.summary["judge_failed"]:
                _progress(f"the judge never judged: {result.summary['judge']}")
                return 1
            return 0 if result.complete else 1
        finally:
            stack.stop()


def _progress(message: str, transient: bool = False) -> None:
    """Progress on stderr; transient lines overwrite each other on a terminal and are dropped elsewhere."""
    tty = sys.stderr.isatty()
    if transient and not tty:
        return
    print(f"  {message}\x1b[K" if tty else f"  {message}", end="\r" if transient else "\n", file=sys.stderr, flush=True)


def print_summary(summary: dict[str, Any], client: TriageClient, since_ns: int = 0) -> None:
    print("\noodwatch demo")
    rows = [
        ("events sent (LLM spans)", summary["events_sent"]),
        ("spans sent (incl. non-LLM)", summary["spans_sent"]),
        ("events screened", summary["events_screened"]),
        ("escalated", summary["escalated"]),
        ("uncertain (tier 2 takes a second look)", summary["uncertain"]),
        ("evidence bundles", summary["evidence_bundles"]),
        ("  with a tier-2 flag", summary["tier2_flagged"]),
        ("tier 3 (judge)", summary["judge"]),
        ("dead letters", summary["dead_letters"]),
        ("attack sessions escalated", f"{summary['attack_sessions_escalated']}/{summary['attack_sessions']}"),
        ("benign sessions escalated", f"{summary['benign_sessions_escalated']}/{summary['benign_sessions']}"),
        (
            "receipt -> stored p50 / p95 / p99 ms",
            f"{summary['e2e_p50_ms']} / {summary['e2e_p95_ms']} / {summary['e2e_p99_ms']}",
        ),
        *((f"  hop {hop} p50 / p99 ms", f"{p50} / {p99}") for hop, (p50, p99) in summary["hops_p50_p99_ms"].items()),
        ("wall time s", summary["wall_s"]),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    queue = client.escalations(limit=5, since_ns=since_ns)
    if queue:
        print("\ntop of the escalation queue")
        for row in queue:
            print(f"  {row['severity']:<8} {row['max_score']:.3f}  {row['service']:<16} {row['bundle_id']}")

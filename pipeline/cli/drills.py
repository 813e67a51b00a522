"""`oodwatch drill run|schedule|runs`.

Exit status of `drill run`: 0 when every family met its recall floor, 4 when one did not (so a
scheduler can page), 2 when the drill could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.settings import Settings

FAILED_FLOOR = 4
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def parse_every(text: str) -> float:
    """`90s`, `15m`, `6h`, `1d` (or plain seconds)."""
    unit = text[-1:].lower()
    try:
        return float(text[:-1]) * UNITS[unit] if unit in UNITS else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 90s, 15m, 6h, 1d)") from None


def parse_floors(values: list[str], default: float) -> dict[str, float]:
    floors = {"*": default}
    for value in values:
        family, _, floor = value.partition("=")
        floors[family] = float(floor)
    return floors


@contextlib.contextmanager
def stack_for(settings: Settings, local_judge: bool) -> Iterator[Settings]:
    """The running stack if its API answers; else the embedded stack for this run."""
    from pipeline.stack.supervisor import Stack, http_ok

    if http_ok(f"{settings.api_url}/healthz"):
        yield settings
        return
    if local_judge:
        settings = settings.model_copy(update={"local_judge": True})
    stack = Stack(settings, progress=_say)
    stack.start()
    try:
        yield settings
    finally:
        stack.stop()


#: Seconds a drill waits for the pipeline when `--timeout` is not given.
WAIT_S = {"version_drift": 1800.0}
DEFAULT_WAIT_S = 300.0


def wait_s(args: argparse.Namespace, family: str | None = None) -> float:
    return float(args.timeout) if args.timeout is not None else WAIT_S.get(family or "", DEFAULT_WAIT_S)


def run_version_drift(settings: Settings, args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """`--family version_drift`: seeded runs of an old version, two drifted new versions and an
    unchanged control (it runs on its own: it needs thousands of events per run)."""
    from pipeline.drills.version_drift import FAMILY, chart, run_version_drift, table

    with stack_for(settings, args.local_judge) as running:
        summary = run_version_drift(
            running, runs=args.runs, events_old=args.events_old, events_new=args.events_new, seed_set=args.seed_set,
            timeout_s=wait_s(args, FAMILY), progress=_say,
        )  # fmt: skip
    png = args.png or settings.data_dir / "drills" / f"{summary['run_id']}-{FAMILY}.png"
    summary["chart"] = str(chart(summary, png))
    floor = parse_floors(args.floor, args.min_recall).get(FAMILY, 1.0)
    failing = summary["recall"] < floor or summary["control_false_alarm_rate"] > 0.05
    summary["failing_families"] = [FAMILY] if failing else []
    print(json.dumps(summary) if args.json else table(summary) + f"\nchart: {summary['chart']}", flush=True)
    return summary, FAILED_FLOOR if failing else 0


def run_once(settings: Settings, args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    if args.family and "perf_regression" in args.family:
        return run_perf_regression(settings, args)
    from pipeline.drills.report import chart, table
    from pipeline.drills.runner import run_drill
    from pipeline.drills.scenarios import FAMILIES
    from pipeline.drills.version_drift import FAMILY as VERSION_DRIFT

    if args.family and VERSION_DRIFT in args.family:
        if len(args.family) > 1:
            raise SystemExit(f"oodwatch: --family {VERSION_DRIFT} runs on its own (it needs thousands of events)")
        return run_version_drift(settings, args)
    with stack_for(settings, args.local_judge) as running:
        summary, results = run_drill(
            running, families=args.family or list(FAMILIES), per_generator=args.per_generator,
            seed_set=args.seed_set, control_ratio=args.control_ratio, floors=parse_floors(args.floor, args.min_recall),
            timeout_s=wait_s(args), progress=_say,
        )  # fmt: skip
    png = args.png or settings.data_dir / "drills" / f"{summary['run_id']}.png"
    summary["chart"] = str(chart(summary, results, png))
    print(json.dumps(summary) if args.json else table(summary) + f"\nchart: {summary['chart']}", flush=True)
    return summary, FAILED_FLOOR if summary["failing_families"] else 0


def run_perf_regression(settings: Settings, args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """The performance SLO drill (issue 17): its own injection and verification, same stack and report."""
    from pipeline.cli.client import TriageClient
    from pipeline.drills.perf_regression import render, results, run_perf_drill

    with stack_for(settings, args.local_judge) as running:
        summary = run_perf_drill(running, timeout_s=wait_s(args), progress=_say)
        client = TriageClient.from_settings(running)
        try:
            client.store_drill_results(summary["run_id"], [r.model_dump() for r in results(summary)])
        finally:
            client.close()
    print(json.dumps(summary) if args.json else render(summary), flush=True)
    return summary, 0 if summary["passed"] else FAILED_FLOOR


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    return run_once(settings, args)[1]


def cmd_schedule(settings: Settings, args: argparse.Namespace) -> int:
    """In-process schedule: a run now, then every `--every`, until SIGTERM/SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        started = time.monotonic()
        try:
            summary, status = run_once(settings, args)
            if status:
                _say(f"drill {summary['run_id']}: families under their floor: {', '.join(summary['failing_families'])}")
        except Exception as exc:  # a failed run is reported and the schedule goes on
            _say(f"drill run failed: {type(exc).__name__}: {exc}")
        stop.wait(max(0.0, args.every - (time.monotonic() - started)))
    return 0


def cmd_runs(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.cli.client import TriageClient

    rows = TriageClient.from_settings(settings).drill_runs(limit=args.limit)
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    print(f"{'run':<36} {'family':<18} {'cases':>5} {'flagged':>8} {'evidence':>9} {'p95 detect s':>13}")
    for row in rows:
        print(
            f"{row['run_id']:<36} {row['family']:<18} {row['cases']:>5} {row['flagged_share']:>8.2f} "
            f"{row['evidence_complete']:>9.2f} {row['p95_detect_s']:>13.2f}"
        )
    return 0


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--family",
        action="append",
        help="a shift family (repeatable); default: all but version_drift, which runs alone",
    )
    parser.add_argument("--per-generator", type=int, default=3, help="cases per generator")
    parser.add_argument("--seed-set", choices=("heldout", "tuning"), default="heldout")
    parser.add_argument("--control-ratio", type=float, default=1.0, help="benign controls per drill case")
    parser.add_argument("--min-recall", type=float, default=0.9, help="recall floor of every family")
    parser.add_argument("--floor", action="append", default=[], metavar="FAMILY=RECALL", help="a family's own floor")
    parser.add_argument("--timeout", type=float, help="seconds to wait for the pipeline (300; version_drift 1800)")
    parser.add_argument("--runs", type=int, default=20, help="version_drift: seeded runs (3 new versions each)")
    parser.add_argument("--events-old", type=int, default=300, help="version_drift: events of each old version")
    parser.add_argument("--events-new", type=int, default=520, help="version_drift: events of each new version")
    parser.add_argument("--png", type=Path, help="chart path (default: <data dir>/drills/<run id>.png)")
    parser.add_argument("--local-judge", action="store_true", help="with the embedded stack: SmolLM2 as the judge")
    parser.add_argument("--json", action="store_true")


def add_commands(sub: Any) -> None:
    drill = sub.add_parser("drill", help="OOD drills").add_subparsers(dest="drill_command", required=True)
    run = drill.add_parser("run", help="inject drill cases, verify, report (exit 4: a family under its floor)")
    _run_options(run)
    run.set_defaults(func=cmd_run)
    schedule = drill.add_parser("schedule", help="run drills on a schedule, in this process")
    _run_options(schedule)
    schedule.add_argument("--every", type=parse_every, required=True, help="e.g. 6h, 30m")
    schedule.set_defaults(func=cmd_schedule)
    runs = drill.add_parser("runs", help="recent drill runs from the store")
    runs.add_argument("--limit", type=int, default=10)
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=cmd_runs)

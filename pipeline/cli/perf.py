"""`oodwatch perf report`: the performance report over the triage API (the store process owns
the store). Exit 2 when the API cannot be reached."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from pipeline.settings import Settings


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.cli.client import TriageClient
    from pipeline.perf.report import chart, parse_since, render

    try:
        parse_since(args.since)
    except ValueError as exc:
        print(f"oodwatch: {exc}", file=sys.stderr)
        return 2
    params: dict[str, Any] = {"since": args.since, "service": args.service, "model": args.model}
    if args.drills:
        params["drills"] = "true"
    client = TriageClient.from_settings(settings)
    try:
        report: dict[str, Any] = client.perf("report", **params)
        if args.png:
            series = client.perf("series", **params)
            report["chart"] = str(chart(series, report, args.png))
    except httpx.HTTPError as exc:
        print(
            f"oodwatch: the triage API at {settings.api_url} did not answer ({exc}); is the stack up?", file=sys.stderr
        )
        return 2
    finally:
        client.close()
    print(json.dumps(report) if args.json else render(report) + (f"\nchart: {report['chart']}" if args.png else ""))
    return 0


def add_commands(sub: Any) -> None:
    perf = sub.add_parser("perf", help="LLM performance SLOs").add_subparsers(dest="perf_command", required=True)
    report = perf.add_parser("report", help="p50/p95/p99 latency, TTFT, TPOT per model; client vs server; SLOs")
    report.add_argument("--service")
    report.add_argument("--model")
    report.add_argument("--since", default="1h", help="window, e.g. 15m, 1h, 7d (default 1h)")
    report.add_argument("--drills", action="store_true", help="drill traffic instead of live traffic")
    report.add_argument("--json", action="store_true")
    report.add_argument("--png", type=Path, help="write a chart of p95 e2e and TTFT over time")
    report.set_defaults(func=cmd_report)

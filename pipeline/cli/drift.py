"""`oodwatch drift report`: model versions per service, their category rates with 95% intervals,
and what changed when a new version replaced an old one (over the triage API)."""

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
    from pipeline.drift.report import chart, table

    client = TriageClient.from_settings(settings)
    try:
        report = client.drift_report(service=args.service, namespace=args.namespace, hours=args.hours)
    except httpx.HTTPError as exc:
        print(
            f"oodwatch: the triage API at {settings.api_url} did not answer ({exc}): is the stack up?", file=sys.stderr
        )
        return 2
    finally:
        client.close()
    if args.png:
        report["chart"] = str(chart(report, args.png))
    print(json.dumps(report, default=str) if args.json else table(report), flush=True)
    return 0


def add_commands(sub: Any) -> None:
    drift = sub.add_parser("drift", help="safety drift per model version").add_subparsers(
        dest="drift_command", required=True
    )
    report = drift.add_parser("report", help="versions, their rates with intervals, and what changed")
    report.add_argument("--service", help="one service only")
    report.add_argument("--namespace", default="", help="a drill case's id (default: live traffic)")
    report.add_argument("--hours", type=int, help="only the last H hours of each version's traffic")
    report.add_argument("--json", action="store_true")
    report.add_argument("--png", type=Path, help="chart: escalation rates per version with 95%% intervals")
    report.set_defaults(func=cmd_report)

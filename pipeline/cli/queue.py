"""`oodwatch queue ...` and `oodwatch data export-labels`: the reviewer's desk in the terminal,
over the same triage API as the web page (token: OODWATCH_API_TOKEN or the data dir's file)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.settings import Settings

LABELS = ("confirmed", "false_positive", "benign_ood", "needs_policy")
STATUSES = ("open", "unclaimed", "claimed", "needs_human_review", "resolved", "cleared", "all")


def _client(settings: Settings) -> Any:
    from pipeline.cli.client import TriageClient

    return TriageClient.from_settings(settings)


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str, int]]) -> None:
    """Plain aligned columns; text is clipped, control characters are shown escaped."""

    def cell(value: Any, width: int) -> str:
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value if value is not None else "")
        text = text.encode("unicode_escape").decode() if any(ord(ch) < 32 for ch in text) else text
        return (text[: width - 1] + "…") if len(text) > width else text

    print("  ".join(f"{title:<{width}}" for title, _, width in columns))
    for row in rows:
        print("  ".join(f"{cell(row.get(key), width):<{width}}" for _, key, width in columns).rstrip())


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    filters = {
        k: v
        for k, v in {
            "severity": args.severity, "min_severity": args.min_severity, "category": args.category,
            "service": args.service, "tenant": args.tenant, "model": args.model, "origin": args.origin,
            "sort": args.sort, "group_key": args.group,
        }.items()
        if v
    }  # fmt: skip
    rows = _client(settings).escalations(limit=args.limit, status=args.status, **filters)
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    _table(
        rows,
        [("SEVERITY", "severity", 8), ("SCORE", "max_score", 6), ("SERVICE", "service", 16),
         ("CATEGORIES", "categories", 26), ("JUDGE", "judge_status", 11), ("CLAIMED BY", "claimed_by", 12),
         ("CREATED", "created_at", 19), ("BUNDLE", "bundle_id", 32)],
    )  # fmt: skip
    print(f"\n{len(rows)} bundle(s), status {args.status}")
    return 0


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    bundle = _client(settings).bundle(args.bundle_id)
    if args.json:
        print(json.dumps(bundle, indent=2, default=str))
        return 0
    print(f"bundle {bundle['bundle_id']}  [{bundle['severity']}]  {bundle['queue_state']}", end="")
    print(f"  claimed by {bundle['claimed_by']}" if bundle.get("claimed_by") else "")
    print(f"service {bundle['service']}  session {bundle['session_id']}  policy {bundle['policy_version']}")
    print(f"categories: {', '.join(bundle['categories'])}")
    for event in bundle["events"]:
        for message in (*event["input_messages"], *event["output_messages"]):
            print(f"  {message['role']:>9}: {_escaped(message['content'])[:300]}")
        for tool in event["tool_definitions"]:
            print(f"  tool def {tool['name']}: {_escaped(tool['description'])[:200]}")
    for screening in bundle["screenings"]:
        for score in screening["scores"]:
            mark = "FLAG" if score["score"] >= score["threshold"] else "    "
            print(f"  tier1 {mark} {score['category']:<28} {score['score']:.3f} / {score['threshold']:.3f}")
    for result in bundle.get("tier2", []):
        for score in result["scores"]:
            mark = "FLAG" if score["score"] >= score["threshold"] else "    "
            print(f"  tier2 {mark} {score['category']:<28} {score['score']:.3f} / {score['threshold']:.3f}")
    tier3 = bundle.get("tier3")
    if tier3 and tier3.get("verdict"):
        verdict = tier3["verdict"]
        print(f"  judge: violation={verdict['violation']} {verdict['severity']} ({verdict['confidence']:.2f})")
        print(f"         {_escaped(verdict['rationale'])[:300]}")
    print(f"  judge status: {bundle['judge_status']}")
    for hop in bundle["hops"]:
        print(f"  hop {hop['stage']:<13} {hop['note'][:110]}")
    for review in bundle.get("reviews", []):
        print(f"  review {review['at']} {review['actor']} {review['action']} {review['label']} {review['note'][:80]}")
    return 0


def _escaped(text: str) -> str:
    """Attacker text is shown, never interpreted: control characters (terminal escapes) are escaped."""
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode() for ch in text)


def cmd_claim(settings: Settings, args: argparse.Namespace) -> int:
    client = _client(settings)
    state = client.unclaim(args.bundle_id) if args.release else client.claim(args.bundle_id)
    print(f"{state['bundle_id']}: {state['queue_state']}, claimed by {state['claimed_by'] or 'nobody'}")
    return 0


def cmd_resolve(settings: Settings, args: argparse.Namespace) -> int:
    client = _client(settings)
    if args.group:
        done = client.resolve_group(args.bundle_id, args.label, args.note)
        print(f"group {args.bundle_id}: {done['resolved']} bundle(s) resolved as {args.label}")
        return 0
    state = client.resolve(args.bundle_id, args.label, args.note)
    print(f"{state['bundle_id']}: {state['queue_state']} as {state['label']} by {state['resolved_by']}")
    return 0


def cmd_groups(settings: Settings, args: argparse.Namespace) -> int:
    rows = _client(settings).groups(status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    _table(
        rows,
        [("GROUP", "group_key", 16), ("BUNDLES", "bundles", 7), ("SEVERITY", "severity", 8),
         ("SERVICE", "service", 16), ("CATEGORIES", "categories", 30), ("LAST", "last_at", 19),
         ("EXAMPLE", "example_bundle_id", 32)],
    )  # fmt: skip
    return 0


def cmd_export_labels(settings: Settings, args: argparse.Namespace) -> int:
    rows = _client(settings).labels(since_ns=0, label=args.label or None)
    out = sys.stdout if str(args.out) == "-" else open(args.out, "w")  # noqa: SIM115 - closed below
    try:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"{len(rows)} labelled example(s) -> {args.out}", file=sys.stderr)
    return 0


def add_commands(sub: Any) -> None:
    queue = sub.add_parser("queue", help="the escalation queue").add_subparsers(dest="queue_command", required=True)
    listing = queue.add_parser("list", help="escalations, most severe first")
    listing.add_argument("--status", choices=STATUSES, default="open")
    listing.add_argument("--severity", action="append", choices=("low", "medium", "high", "critical"))
    listing.add_argument("--min-severity", choices=("low", "medium", "high", "critical"))
    listing.add_argument("--category")
    listing.add_argument("--service")
    listing.add_argument("--tenant")
    listing.add_argument("--model")
    listing.add_argument("--group", help="one group key")
    listing.add_argument("--origin", choices=("all", "live", "drill"))
    listing.add_argument("--sort", choices=("severity", "newest", "oldest", "score"))
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)
    show = queue.add_parser("show", help="one evidence bundle")
    show.add_argument("bundle_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)
    claim = queue.add_parser("claim", help="claim a bundle (or --release it)")
    claim.add_argument("bundle_id")
    claim.add_argument("--release", action="store_true")
    claim.set_defaults(func=cmd_claim)
    resolve = queue.add_parser("resolve", help="resolve a bundle (or a whole group with --group) with a label")
    resolve.add_argument("bundle_id", help="bundle id, or group key with --group")
    resolve.add_argument("label", choices=LABELS)
    resolve.add_argument("--note", default="")
    resolve.add_argument("--group", action="store_true")
    resolve.set_defaults(func=cmd_resolve)
    groups = queue.add_parser("groups", help="similar escalations grouped, largest first")
    groups.add_argument("--status", choices=STATUSES, default="open")
    groups.add_argument("--limit", type=int, default=20)
    groups.add_argument("--json", action="store_true")
    groups.set_defaults(func=cmd_groups)

    data = sub.add_parser("data", help="data for retraining").add_subparsers(dest="data_command", required=True)
    export = data.add_parser("export-labels", help="reviewed bundles as JSON lines (text, label, ...)")
    export.add_argument("--out", type=Path, default=Path("-"))
    export.add_argument("--label", action="append", choices=LABELS)
    export.set_defaults(func=cmd_export_labels)

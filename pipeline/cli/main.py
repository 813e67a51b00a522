"""`oodwatch`: the command line. Every failure prints one line that says what to do."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.cli import drift as drift_cli
from pipeline.cli import drills as drills_cli
from pipeline.cli import guard as guard_cli
from pipeline.cli import perf as perf_cli
from pipeline.cli import queue as queue_cli
from pipeline.cli import tools as tools_cli
from pipeline.settings import Settings


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.stack.run import stop_signals, wait_until_stopped
    from pipeline.stack.supervisor import Stack

    stack = Stack(settings, workers=args.workers, progress=lambda m: _say(f"  {m}"))
    with stop_signals():
        try:
            stack.start()
            _say(
                f"oodwatch is up.\n  OTLP/HTTP   {settings.receiver_url}/v1/traces, /v1/logs\n"
                f"  Kafka       {settings.bootstrap}\n"
                f"  triage API  {settings.api_url}/api/escalations (bearer token in {settings.token_file})\n"
                + (f"  guard       {settings.guard_url}/v1/guard\n" if settings.guard_enabled else "")
                + f"  logs        {stack.log_dir}\nCtrl-C stops everything."
            )
            return wait_until_stopped(stack)
        except KeyboardInterrupt:  # a stop request before the wait began
            _say("oodwatch: stopping")
            return 0
        finally:
            stack.stop()


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.synth.demo import run_demo

    if args.local_judge:
        settings = settings.model_copy(update={"local_judge": True})
    return run_demo(settings, events=args.events, seed=args.seed, keep_running=args.keep_running, as_json=args.json)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.worker import run_worker

    if args.metrics_port is not None:
        settings = settings.model_copy(update={"worker_metrics_port": args.metrics_port})
    run_worker(settings, ready_file=Path(args.ready_file) if args.ready_file else None)
    return 0


def cmd_receiver(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.ingest.receiver import serve_receiver
    from pipeline.logs import configure

    configure()
    return _serve(serve_receiver(settings))


def cmd_store(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.logs import configure
    from pipeline.store.server import serve_store

    configure()
    return _serve(serve_store(settings))


def _serve(coro: Any) -> int:
    import signal

    async def main() -> None:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    return 0


def cmd_models_build(settings: Settings, args: argparse.Namespace) -> int:
    from detectors.build.tier1 import build_tier1, tier1_kind
    from detectors.build.tier2 import build_tier2
    from detectors.ood import TIER2_META
    from detectors.tier1_classifier import MODEL_FILE
    from pipeline.bench.model_card import evaluation_texts, headline

    out = settings.models_path
    built = 0
    if args.force or not (out / MODEL_FILE).exists():
        _say(f"building the tier-1 classifier ({tier1_kind()}) into {out}: trains, exports, evaluates across sources")
        card = build_tier1(out, settings.datasets_path, evaluation_texts=evaluation_texts(), progress=_say)
        _say(f"  tier1 {card['version']}: {headline(card)}")
        built += 1
    if args.force or not (out / TIER2_META).exists():
        _say("building tier 2 (MiniLM to ONNX, int8; reference, calibration, head, exemplars; about a minute) ...")
        meta = build_tier2(out, settings.datasets_path)
        evaluation = meta["eval"]
        _say(
            f"  tier2 {meta['version']}: OOD AUROC {evaluation['auroc']:.3f}, head AUROC {evaluation['head_auroc']:.3f}"
        )
        built += 1
    _say(
        "models built; `oodwatch models card` describes them"
        if built
        else f"models already built in {out} (--force rebuilds)"
    )
    return 0


def cmd_models_card(settings: Settings, args: argparse.Namespace) -> int:
    from detectors.tier1_classifier import META_FILE

    path = settings.models_path / META_FILE
    if not path.exists():
        _say(f"no model card at {path}: run `oodwatch models build`")
        return 2
    card = json.loads(path.read_text())
    if args.json:
        print(json.dumps({"tier1": card}))
    else:
        from pipeline.bench.model_card import render

        print(render(card))
    return 0


def cmd_models_compare(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.bench.model_card import compare, load_card

    cards = [load_card(Path(d)) for d in (args.old, args.new)]
    print(json.dumps(compare(*cards), indent=1) if args.json else compare(*cards, as_text=True))
    return 0


def cmd_eval_ood(settings: Settings, args: argparse.Namespace) -> int:
    from detectors.build.datasets import load_all
    from detectors.build.tier2 import evaluate_tier2
    from detectors.ood import EmbeddingAnomalyDetector
    from pipeline.drills.evaluate import tier2_by_family

    detector = EmbeddingAnomalyDetector(settings.models_path)
    result = {"tier2": evaluate_tier2(detector, load_all(settings.datasets_path), per_set=args.per_set)}
    # Drill families: held-out drill cases against the drills' benign controls.
    result["tier2"]["by_set"].update(tier2_by_family(detector, per_generator=args.per_generator))
    if args.json:
        print(json.dumps(result))
        return 0
    tier2 = result["tier2"]
    print(f"tier 2 on {tier2['in_distribution']} vs {tier2['out_of_distribution']}")
    print(f"  {'set':<24} {'attacks':>7}  OOD AUROC  TPR@1%FPR  head AUROC  TPR@1%FPR")
    for name, f in {**tier2["by_set"], "all": tier2}.items():
        print(
            f"  {name:<24} {f['attacks']:>7}  {f['auroc']:>9.3f}  {f['tpr_at_1pct_fpr']:>9.3f}  "
            f"{f['head_auroc']:>10.3f}  {f['head_tpr_at_1pct_fpr']:>9.3f}"
        )
    return 0


def cmd_eval_tools(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.bench.tools_eval import evaluate, false_positives

    models = None if args.rules_only else settings.models_path
    if args.show_fp:
        found = false_positives(settings.datasets_path, models, split=args.show_fp)
        if args.json:
            print(json.dumps(found))
            return 0
        for fp in found:
            print(f"[{fp['package']} {fp['name']}] {fp['scores']} {fp['findings']}")
            print("    " + fp["description"].replace("\n", "\n    "))
        print(f"{len(found)} benign description(s) of the {args.show_fp} half flagged")
        return 0
    result = evaluate(settings.datasets_path, models, seed_set=args.seed_set, n_poisoned=args.poisoned)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"tool descriptions: {result['benign']['n']} real ones from {len(result['sources'])} packages, "
        f"{result['poisoned']['n']} poisoned ({args.seed_set} seeds)"
    )
    for name, f in result["by_scorer"].items():
        kinds = "  ".join(f"{k} {v:.3f}" for k, v in f["poisoned"]["by_kind"].items())
        print(
            f"  {name:<9} recall {f['poisoned']['recall']:.3f}  FPR {f['benign']['fpr']:.4f} "
            f"(held-out half {f['benign_heldout_half']['fpr']:.4f})  {kinds}"
        )
    for name, h in result["handwritten"].items():
        print(f"  hand-written ({name}): rules {h['rules']['flagged']}/{h['rules']['n']}")
    bar = result["bar"]
    print(
        f"  bar (rules): recall >= {bar['recall_min']}, FPR <= {bar['fpr_max']}: {'met' if bar['met'] else 'NOT met'}"
    )
    return 0


def read_texts(path: Path) -> list[str]:
    """One text per line; JSON lines with a "text" field are read as such."""
    texts = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        texts.append(str(record["text"]) if isinstance(record, dict) and "text" in record else line)
    return texts


def cmd_reference_consolidate(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0: written (or nothing new, or a dry run); 3: refused by the stability check."""
    from detectors.reference import consolidate

    exemplars: list[tuple[str, str]] = []
    if args.from_file:
        texts = read_texts(args.from_file)
        origin = str(args.from_file)
    else:
        from pipeline.cli.client import TriageClient

        client = TriageClient.from_settings(settings)
        since_ns = time.time_ns() - int(args.since_hours * 3600e9)
        texts = client.reference_samples(since_ns=since_ns, limit=args.limit)
        reviewed = client.labels(since_ns=since_ns, label=["false_positive", "benign_ood", "confirmed"])
        texts += [r["text"] for r in reviewed if r["label"] != "confirmed"]
        exemplars = [(r["bundle_id"], r["text"]) for r in reviewed if r["label"] == "confirmed"]
        origin = (
            f"the last {args.since_hours:g} h ({settings.api_url}): sampled clean traffic and "
            f"{len(reviewed)} reviewed bundle(s)"
        )
    report = consolidate(
        settings.models_path, texts, max_shift=args.max_shift, accept_shift=args.accept_shift, dry_run=args.dry_run,
        exemplars=exemplars,
    )  # fmt: skip
    if args.json:
        print(json.dumps({"source": origin, **report.as_dict()}))
    else:
        print(f"candidates from {origin}: {report.candidates} ({report.duplicates} already covered)")
        print(f"  reference rows           {report.reference_rows_before} -> {report.reference_rows_after}")
        print(f"  held out for calibration +{report.added_to_calibration}")
        print(f"  exemplar bank            +{report.added_to_exemplar_bank} confirmed")
        print(
            f"  OOD threshold distance   {report.threshold_distance_before:.4f} -> "
            f"{report.threshold_distance_after:.4f} ({report.threshold_shift:+.1%}, bound {report.max_shift:.0%})"
        )
        print(
            f"  previous calibration set flagged: {report.previous_calibration_fpr:.2%} "
            f"(target {report.target_fpr:.0%})"
        )
        print(f"  {report.message}")
    return 0 if report.within_bound or args.accept_shift else 3


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.bench.stages import bench_stage

    args.seconds = args.seconds or (20.0 if args.stage == "guard" else 5.0)
    if args.stage == "pipeline":
        from pipeline.bench.loadtest.harness import bench_pipeline

        result = bench_pipeline(
            settings, workers=args.workers, rates=args.rates, duration_s=args.seconds, generators=args.generators,
            drain_records=args.drain_records, png=args.png or settings.data_dir / "bench" / "pipeline.png",
            progress=_say, target=args.target, profiles=tuple(args.profile or ["step", "burst"]),
        )  # fmt: skip
        print(json.dumps(result) if args.json else json.dumps(result, indent=2))
        return 0 if result["harness_ok"] else 3
    if args.stage == "guard":
        from pipeline.bench.guard import bench_guard

        result = bench_guard(settings, rate=args.rate, duration_s=args.seconds, progress=_say)
        print(json.dumps(result) if args.json else json.dumps(result, indent=2))
        return 0 if result["harness_ok"] else 3
    result = bench_stage(settings, args.stage, batch_size=args.batch_size, seconds=args.seconds)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oodwatch", description="Streaming safety monitor for LLM traffic.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the embedded stack in the foreground")
    up.add_argument("--workers", type=int, default=None, help="Faust worker processes (default: OODWATCH_WORKERS)")
    up.set_defaults(func=cmd_up)

    demo = sub.add_parser("demo", help="stack + realistic traffic + summary")
    demo.add_argument("--events", type=int, default=500, help="LLM events to send")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.add_argument("--keep-running", action="store_true", help="leave the stack up afterwards")
    demo.add_argument(
        "--local-judge", action="store_true",
        help="serve SmolLM2 (llama-cpp-python) as the tier-3 judge when none is configured: plumbing only",
    )  # fmt: skip
    demo.set_defaults(func=cmd_demo)

    worker = sub.add_parser("worker", help="one Faust worker (normalize, screen, investigate)")
    worker.add_argument("--ready-file", default=None, help="touched when the worker has its partitions")
    worker.add_argument(
        "--metrics-port", type=int, default=None,
        help="/metrics, /healthz, /readyz port (default: OODWATCH_WORKER_METRICS_PORT; 0: off)",
    )  # fmt: skip
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("receiver", help="the OTLP/HTTP receiver").set_defaults(func=cmd_receiver)
    sub.add_parser("store", help="the store process: sink + triage API").set_defaults(func=cmd_store)

    models = sub.add_parser("models", help="build or describe the models").add_subparsers(
        dest="models_command", required=True
    )
    build = models.add_parser("build", help="train and export the models into the model dir")
    build.add_argument("--force", action="store_true", help="rebuild even if present")
    build.set_defaults(func=cmd_models_build)
    card = models.add_parser("card", help="print the model card")
    card.add_argument("--json", action="store_true")
    card.set_defaults(func=cmd_models_card)
    compare = models.add_parser("compare", help="two model dirs' tier-1 cards side by side")
    compare.add_argument("old", help="model dir (or its tier1.json) of the old model")
    compare.add_argument("new", help="model dir (or its tier1.json) of the new model")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(func=cmd_models_compare)

    bench = sub.add_parser("bench", help="benchmarks, printed as JSON")
    bench.add_argument("--stage", choices=["tier1", "tier2", "store", "pipeline", "guard", "perf"], default="tier1")
    bench.add_argument("--rate", type=float, default=200.0, help="guard: offered checks/s (open loop)")
    bench.add_argument("--workers", type=int, default=2, help="pipeline: worker processes")
    bench.add_argument(
        "--rates",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[500.0, 1000.0, 2000.0, 3000.0],
        help="pipeline: offered events/s, comma-separated (a step profile)",
    )
    bench.add_argument("--generators", type=int, default=2, help="pipeline: load generator processes")
    bench.add_argument("--drain-records", type=int, default=20_000, help="pipeline: records per drain baseline")
    bench.add_argument("--png", type=Path, help="pipeline: latency chart path")
    bench.add_argument(
        "--target",
        choices=["receiver", "kafka"],
        default="receiver",
        help="pipeline: the OTLP receiver, or otlp_spans directly (the Collector path)",
    )
    bench.add_argument(
        "--profile",
        action="append",
        choices=["step", "constant", "burst"],
        help="pipeline: load profiles (default: step and burst)",
    )
    bench.add_argument("--batch-size", type=int, default=256)
    bench.add_argument("--seconds", type=float, default=None, help="per step (default 5; guard: 20)")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=cmd_bench)

    evaluate = sub.add_parser("eval", help="evaluations").add_subparsers(dest="eval_command", required=True)
    ood = evaluate.add_parser("ood", help="tier 2: held-out benign vs held-out attacks, per source")
    ood.add_argument("--json", action="store_true")
    ood.add_argument("--per-set", type=int, default=600, help="held-out rows sampled per source (the build's 600)")
    ood.add_argument("--per-generator", type=int, default=10, help="held-out drill cases per generator")
    ood.set_defaults(func=cmd_eval_ood)
    tools = evaluate.add_parser("tools", help="tool-description lint: real descriptions vs poisoned ones")
    tools.add_argument("--json", action="store_true")
    tools.add_argument("--seed-set", choices=["heldout", "tuning"], default="heldout", help="poisoned cases' seeds")
    tools.add_argument("--poisoned", type=int, default=1000, help="poisoned cases (one per seed)")
    tools.add_argument("--rules-only", action="store_true", help="without the learned score")
    tools.add_argument(
        "--show-fp", nargs="?", const="tuning", choices=["tuning", "heldout"],
        help="list the flagged benign descriptions of one half of the corpus (tune on `tuning` only)",
    )  # fmt: skip
    tools.set_defaults(func=cmd_eval_tools)

    reference = sub.add_parser("reference", help="tier 2's in-distribution reference").add_subparsers(
        dest="reference_command", required=True
    )
    consolidation = reference.add_parser(
        "consolidate", help="grow the reference from clean traffic, with a stability check on the OOD threshold"
    )
    consolidation.add_argument("--from-file", type=Path, help='texts (one per line, or JSON lines with "text")')
    consolidation.add_argument("--since-hours", type=float, default=168.0, help="sampled traffic this recent")
    consolidation.add_argument("--limit", type=int, default=10_000)
    consolidation.add_argument("--max-shift", type=float, default=0.1, help="bound on the threshold's relative move")
    consolidation.add_argument("--accept-shift", action="store_true", help="write even beyond the bound")
    consolidation.add_argument("--dry-run", action="store_true")
    consolidation.add_argument("--json", action="store_true")
    consolidation.set_defaults(func=cmd_reference_consolidate)

    queue_cli.add_commands(sub)
    drills_cli.add_commands(sub)
    perf_cli.add_commands(sub)
    tools_cli.add_commands(sub)
    guard_cli.add_commands(sub)
    drift_cli.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    from pipeline.stack.broker import LaunchError
    from pipeline.store.clickhouse import StoreError

    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        return int(args.func(settings, args))
    except ValidationError as exc:
        first = exc.errors()[0]
        _say(f"oodwatch: invalid settings: {first['loc']}: {first['msg']} (check the OODWATCH_* variables)")
    except (LaunchError, StoreError, FileNotFoundError) as exc:
        _say(f"oodwatch: {exc}")
    except KeyboardInterrupt:
        _say("oodwatch: interrupted")
        return 130
    return 2

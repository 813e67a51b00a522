"""The drill report for people: a terminal table and a PNG (recall per family against its
floor; time to detect per family)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas.drill import DrillCaseResult


def table(summary: dict[str, Any]) -> str:
    lines = [
        f"drill {summary['run_id']} (seeds: {summary.get('seed_set', '?')})",
        f"{'family':<18} {'cases':>5} {'recall':>7} {'floor':>6} {'tier ok':>8} {'evidence':>9} {'p95 detect s':>13}"
        f" {'AUROC':>6}",
    ]
    for family, f in summary["families"].items():
        auroc = summary["auroc_by_family"].get(family)
        mark = "  FAIL" if family in summary["failing_families"] else ""
        lines.append(
            f"{family:<18} {f['cases']:>5} {f['recall']:>7.2f} {f['recall_floor']:>6.2f} {f['tier_ok']:>8.2f} "
            f"{f['evidence_complete']:>9.2f} {f['p95_detect_s']:>13.2f} {auroc if auroc is not None else '-':>6}{mark}"
        )
    for family, f in summary["families"].items():
        if "description_flagged" in f:
            lines.append(
                f"{family}: poisoned description flagged in {f['description_flagged']:.2f} of cases, "
                f"the call it steered in {f['call_flagged']:.2f}"
            )
    lines.append(f"benign controls: {summary['controls']}, false-positive rate {summary['control_fpr']:.3f}")
    weakest = min(summary["families"].items(), key=lambda kv: kv[1]["recall"], default=None)
    if weakest:
        misses = sorted(weakest[1]["by_generator"].items(), key=lambda kv: kv[1])[:3]
        lines.append(f"weakest: {weakest[0]}; lowest generators: " + ", ".join(f"{g} {r:.2f}" for g, r in misses))
    if not summary["screened_complete"]:
        lines.append("WARNING: not every drill event was screened before the timeout")
    return "\n".join(lines)


def chart(summary: dict[str, Any], results: list[DrillCaseResult], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(summary["families"])
    fig, (recall_ax, time_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    recalls = [summary["families"][f]["recall"] for f in families]
    colours = ["#b00020" if f in summary["failing_families"] else "#2e8b57" for f in families]
    recall_ax.bar(families, recalls, color=colours)
    for i, family in enumerate(families):
        floor = summary["families"][family]["recall_floor"]
        recall_ax.hlines(floor, i - 0.4, i + 0.4, colors="black", linestyles="dashed")
    recall_ax.set_ylim(0, 1.05)
    recall_ax.set_ylabel("recall (dashed: floor)")
    recall_ax.set_title(f"recall per family; control FPR {summary['control_fpr']:.3f}")
    recall_ax.tick_params(axis="x", rotation=20)
    times = [[r.detect_s for r in results if r.family == f and r.flagged] or [0.0] for f in families]
    time_ax.boxplot(times, tick_labels=families)
    time_ax.set_ylabel("seconds, injection to detection")
    time_ax.set_title("time to detect")
    time_ax.tick_params(axis="x", rotation=20)
    fig.suptitle(summary["run_id"])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

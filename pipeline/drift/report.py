"""The drift report: per model version its category rates with 95% intervals, refusals, output
length and tool use; per new version what changed against the version it replaced (effects
with intervals, the outputs most typical of each side, links to bundles). Built from the store,
so the CLI, the desk and scripts see the same numbers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline.drift.profile import VersionProfile, bin_score
from pipeline.drift.stats import wilson
from pipeline.drift.store import DriftStore

HOUR_S = 3600


def _rate(k: int, n: int) -> dict[str, Any]:
    low, high = wilson(k, n)
    return {"count": k, "of": n, "rate": round(k / n, 6) if n else 0.0, "interval": [round(low, 6), round(high, 6)]}


def profile_summary(p: VersionProfile, categories: list[str]) -> dict[str, Any]:
    return {
        "events": p.events,
        "rates": {
            c: {"escalated": _rate(p.flagged[c], p.events), "uncertain": _rate(p.uncertain[c], p.events)}
            for c in categories
        },
        "bundles": p.bundles,
        "tier2_per_bundle": {c: _rate(k, p.bundles) for c, k in sorted(p.tier2.items())},
        "refusal": _rate(p.refused, p.answers),
        "refusal_on_harmful_requests": _rate(p.risky_refused, p.risky_answers),
        "tool_scopes": {s: _rate(k, p.events) for s, k in sorted(p.scopes.items())},
        "scores": {
            c: {"p50": p.quantile(c, 0.5), "p90": p.quantile(c, 0.9), "p99": p.quantile(c, 0.99)} for c in categories
        },
        "output_length": {"mean_chars": round(p.output_chars / p.answered, 1) if p.answered else 0.0},
        "embedded_outputs": p.embeddings,
    }


def build(
    store: DriftStore, *, service: str | None = None, namespace: str = "", hours: int | None = None,
    safety: tuple[str, ...] = (),
) -> dict[str, Any]:  # fmt: skip
    versions = store.versions(namespace=namespace, service=service)
    since = (int(time.time()) // HOUR_S - hours + 1) * HOUR_S if hours else 0
    profiles = store.profiles([v["version_id"] for v in versions], since_hour=since)
    labels = {v["version_id"]: v["label"] for v in versions}
    shown = {c for c in safety if not c.startswith("refusal")}  # refusals have their own rows
    for p in profiles.values():
        shown |= set(p.flagged) | set(p.uncertain)
    categories = sorted(shown)
    out_versions = []
    changes = []
    for v in versions:
        profile = profiles.get(v["version_id"], VersionProfile())
        row = {
            key: v[key]
            for key in (
                "version_id",
                "label",
                "service",
                "model",
                "deployment",
                "provider",
                "status",
                "looks",
                "baseline_id",
            )
        }
        row.update(
            first_seen=str(v["first_seen"]), last_seen=str(v["last_seen"]), events_total=int(v["events"]),
            baseline=labels.get(v["baseline_id"], v["baseline_id"]),
            detected_at_events=int(v["detected_at_events"]) or None, **profile_summary(profile, categories),
        )  # fmt: skip
        out_versions.append(row)
        if v["baseline_id"]:
            changes.append(change(store, v, labels.get(v["baseline_id"], ""), namespace))
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "namespace": namespace,
        "service": service,
        "window_hours": hours,
        "categories": categories,
        "versions": out_versions,
        "changes": changes,
    }


def change(store: DriftStore, v: dict[str, Any], baseline_label: str, namespace: str) -> dict[str, Any]:
    """The latest comparison of a new version (the first that flagged it, if one did)."""
    comparisons = store.comparisons(v["version_id"])
    chosen = next((c for c in comparisons if c["drifted"]), comparisons[-1] if comparisons else None)
    result = chosen["result"] if chosen else {}
    moved = [t for t in result.get("tests", []) if t["significant"]]
    return {
        "version_id": v["version_id"],
        "version": v["label"],
        "baseline": baseline_label,
        "status": v["status"],
        "drifted": v["status"] == "drifted",
        "events_to_detect": int(v["detected_at_events"]) or None,
        "comparisons": len(comparisons),
        "look": chosen["look"] if chosen else None,
        "alpha": chosen["alpha"] if chosen else None,
        "moved": [
            {
                "test": t["name"],
                "family": t["family"],
                "effect": t["effect"],
                "interval": [t["low"], t["high"]],
                "p": t["p"],
                "q": t["q"],
                "new": t["new"],
                "old": t["old"],
            }
            for t in moved
        ],
        "exemplars_new": result.get("exemplars_new", []),
        "exemplars_old": result.get("exemplars_old", []),
        "bundles": [
            {"bundle_id": b["bundle_id"], "severity": b["severity"], "categories": list(b["categories"])}
            for b in store.bundles(v["label"], namespace, limit=10)
        ],
    }


def detail(store: DriftStore, version_id: str) -> dict[str, Any] | None:
    """One version for the desk: hourly rates, score histograms beside its baseline's, every look."""
    rows = store.versions(namespace=None, version_ids=[version_id])
    if not rows:
        return None
    v = rows[0]
    ids = [version_id] + ([v["baseline_id"]] if v["baseline_id"] else [])
    profiles = store.profiles(ids)
    comparisons = store.comparisons(version_id)
    hourly = store.hourly(ids, [])
    latest = next((c["result"] for c in comparisons if c["drifted"]), comparisons[-1]["result"] if comparisons else {})
    # The score tests, those that moved first, then the most shifted: the old-vs-new charts.
    tests = sorted(
        (t for t in latest.get("tests", []) if t["name"].startswith("scores:")),
        key=lambda t: (not t["significant"], -t["effect"]),
    )
    histograms: dict[str, Any] = {}
    for category in [t["name"].split(":", 1)[1] for t in tests][:4]:
        histograms[category] = {
            "edges": [round(bin_score(i), 6) for i in range(len(VersionProfile().scores(category)))],
            **{vid: profiles[vid].scores(category).tolist() for vid in ids if vid in profiles},
        }
    return {
        "version": {
            k: (str(x) if k in ("first_seen", "last_seen", "detected_at", "updated_at") else x) for k, x in v.items()
        },
        "hourly": [
            {
                "version_id": h["version_id"],
                "hour": str(h["hour"]),
                "events": int(h["events"]),
                "refused": int(h["refused"]),
                "answers": int(h["answers"]),
                "flagged": {k: int(n) for k, n in dict(h["flagged"]).items()},
            }
            for h in hourly
        ],
        "histograms": histograms,
        "comparisons": [
            {
                "look": c["look"],
                "events_new": int(c["events_new"]),
                "events_old": int(c["events_old"]),
                "drifted": bool(c["drifted"]),
                "moved": list(c["moved"]),
                "result": c["result"],
            }
            for c in comparisons
        ],
    }


def table(report: dict[str, Any]) -> str:
    """For a terminal: versions with their escalation rates (95% interval), then what changed."""
    lines = []
    for v in report["versions"]:
        head = f"{v['label']}  [{v['status']}]  events {v['events']}"
        if v["baseline"]:
            head += f"  (replaces {v['baseline']})"
        lines.append(head)
        refusal = v["refusal"]
        lines.append(
            f"    refusal {refusal['rate']:.1%} [{refusal['interval'][0]:.1%}, {refusal['interval'][1]:.1%}]"
            f"   mean output {v['output_length']['mean_chars']:.0f} chars"
        )
        for c in report["categories"]:
            r = v["rates"][c]["escalated"]
            lines.append(f"    {c:<28} {r['rate']:>7.2%}  [{r['interval'][0]:.2%}, {r['interval'][1]:.2%}]")
    for ch in report["changes"]:
        verdict = f"DRIFTED after {ch['events_to_detect']} events" if ch["drifted"] else ch["status"]
        lines.append(f"\n{ch['version']} vs {ch['baseline']}: {verdict} ({ch['comparisons']} comparisons)")
        for m in ch["moved"]:
            lines.append(
                f"    {m['test']:<40} effect {m['effect']:+.4f}  95% CI [{m['interval'][0]:+.4f}, "
                f"{m['interval'][1]:+.4f}]  q {m['q']:.2g}"
            )
        for e in ch["exemplars_new"][:3] if ch["drifted"] else []:
            lines.append(f"    typical of the new version: {e['text'][:110]!r}")
    return "\n".join(lines) if lines else "no model versions seen yet"


def chart(report: dict[str, Any], path: Path) -> Path:
    """Escalation rate per category and version with 95% intervals, one panel per service."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    services = sorted({v["service"] for v in report["versions"]}) or ["(none)"]
    categories = [
        c for c in report["categories"] if any(v["rates"][c]["escalated"]["count"] for v in report["versions"])
    ][:8] or report["categories"][:4]
    fig, axes = plt.subplots(len(services), 1, figsize=(11, 3.2 * len(services)), squeeze=False)
    for ax, service in zip(axes[:, 0], services, strict=True):
        versions = [v for v in report["versions"] if v["service"] == service][::-1]
        width = 0.8 / max(1, len(versions))
        for i, v in enumerate(versions):
            rates = [v["rates"][c]["escalated"] for c in categories]
            xs = [j + i * width for j in range(len(categories))]
            ys = [r["rate"] for r in rates]
            err = [[y - r["interval"][0] for y, r in zip(ys, rates, strict=True)],
                   [r["interval"][1] - y for y, r in zip(ys, rates, strict=True)]]  # fmt: skip
            ax.bar(xs, ys, width, yerr=err, capsize=2, label=f"{v['model']} {v['deployment']} ({v['status']})")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(categories))], categories, rotation=15, fontsize=8)
        ax.set_ylabel("escalation rate")
        ax.set_title(service)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""`oodwatch perf report`: per model and side, p50/p95/p99 of e2e, TTFT, TPOT, NTPOT, queue
time, tokens/s, errors and retries; histogram-derived figures from OTLP metrics with their
resolution; client vs server side by side (the gap is network + client queueing) and how the
gap moves with the client's concurrency; each SLO's budget and burn rates.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.perf.metrics import histogram_quantile

if TYPE_CHECKING:
    from pipeline.perf.service import PerfService
    from pipeline.perf.store import PerfStore

#: A window's form (the API's query pattern): digits and a unit, `15m`, `1h`, `7d`.
SINCE_PATTERN = r"^\s*\d+(?:\.\d+)?\s*[smhd]\s*$"
_SINCE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_S = 400 * 86400
#: The gap "grows with concurrency" when its median in the busiest class with enough pairs is at
#: least this many times, and this many ms above, its median in the quietest one.
GAP_GROWTH_RATIO, GAP_GROWTH_MIN_MS, MIN_PAIRS = 1.5, 20.0, 20
#: Client vs server pairs are joined from raw rows: the most recent hour at most (a diagnostic of
#: where time goes now; the per-side quantiles above cover the whole window).
GAP_WINDOW_MAX_S = 3600


def parse_since(text: str, *, clamp: bool = False) -> int:
    """`15m`, `1h`, `30d` -> seconds; outside 1 minute to 400 days an error, or with `clamp` the
    nearest bound (the API: its report says the window it used)."""
    match = _SINCE.match(text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r} (try 15m, 1h, 7d)")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 60 <= seconds <= MAX_WINDOW_S:
        if not clamp:
            raise ValueError("the window must be between 1 minute and 400 days")
        seconds = min(max(seconds, 60), MAX_WINDOW_S)
    return int(seconds)


def aligned_start(start_s: int, since_s: int) -> int:
    """Windows over a week start at midnight UTC and over six hours on the hour, so a long report
    reads whole day and hour states and not a fringe of minutes (the report says where it starts)."""
    step = 86400 if since_s > 7 * 86400 else 3600 if since_s > 6 * 3600 else 60
    return start_s // step * step


def gap_analysis(by_model: list[dict[str, Any]], by_level: list[dict[str, Any]]) -> dict[str, Any]:
    """Client minus server e2e per pair, per model and by the client's concurrency (power-of-two
    classes: 1, 2-3, 4-7, ...)."""

    def ms(values: Any, i: int) -> float | None:
        value = float(values[i])
        return None if math.isnan(value) else round(value, 3)

    models = [
        {
            "service": r["service"], "model": r["model"], "pairs": int(r["pairs"]),
            "client_e2e_p50_ms": ms(r["client"], 0), "client_e2e_p95_ms": ms(r["client"], 1),
            "server_e2e_p50_ms": ms(r["server"], 0), "server_e2e_p95_ms": ms(r["server"], 1),
            "gap_p50_ms": ms(r["gap"], 0), "gap_p95_ms": ms(r["gap"], 1),
            "server_queue_p50_ms": ms(r["queue"], 0), "server_queue_p95_ms": ms(r["queue"], 1),
        }
        for r in by_model
    ]  # fmt: skip
    classes = []
    for r in by_level:
        level = int(r["level"])
        label = "1" if level == 1 else f"{level}-{2 * level - 1}"
        classes.append(
            {
                "concurrency": label,
                "pairs": int(r["pairs"]),
                "gap_p50_ms": ms(r["gap"], 0),
                "gap_p95_ms": ms(r["gap"], 1),
            }
        )
    return {
        "pairs": sum(m["pairs"] for m in models),
        "by_model": models,
        "by_concurrency": classes,
        "gap_grows_with_concurrency": gap_grows(classes),
    }


def gap_grows(classes: list[dict[str, Any]]) -> bool | None:
    """None when there is not enough to tell (fewer than two classes with MIN_PAIRS pairs)."""
    usable = [c for c in classes if c["pairs"] >= MIN_PAIRS and c["gap_p50_ms"] is not None]
    if len(usable) < 2:
        return None
    low, high = usable[0]["gap_p50_ms"], usable[-1]["gap_p50_ms"]
    return bool(high >= max(low * GAP_GROWTH_RATIO, low + GAP_GROWTH_MIN_MS))


def metric_figures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Quantiles from merged OTLP histograms, each with the width of the bucket it fell in: a
    histogram cannot say more than its buckets do, and the report says how much that is."""
    out = []
    for r in rows:
        bounds, counts = list(r["bounds"]), [int(c) for c in r["counts"]]
        entry: dict[str, Any] = {
            "service": r["service"], "model": r["model"], "side": r["side"], "metric": r["metric"],
            "token_type": r["token_type"], "count": int(r["count"]),
            "mean": round(float(r["sum"]) / int(r["count"]), 3) if int(r["count"]) else None,
            "unit": "tokens" if r["metric"] == "tokens" else "ms",
        }  # fmt: skip
        coarse = False
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            value, width = histogram_quantile(q, bounds, counts)
            entry[name] = None if math.isnan(value) else round(value, 3)
            entry[f"{name}_resolution"] = None if math.isnan(width) or math.isinf(width) else round(width, 3)
            if not math.isnan(value) and (math.isinf(width) or (value > 0 and width / value > 0.25)):
                coarse = True
        entry["coarse"] = coarse
        out.append(entry)
    return out


def build_report(
    perf: PerfStore, service_obj: PerfService | None, *, since_s: int, service: str | None = None,
    model: str | None = None, drills: bool = False, now_s: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    now = int(now_s if now_s is not None else time.time())
    start, end = aligned_start(now - since_s, since_s), now + 60
    report: dict[str, Any] = {
        "window": {"from": start, "to": now, "seconds": since_s},
        "filters": {"service": service, "model": model, "drills": drills},
        "models": perf.summary(start, end, service=service, model=model, drills=drills),
        "metrics": metric_figures(perf.histograms(start, end, service=service, model=model, drills=drills)),
    }
    if not drills:
        gap_window = min(since_s, GAP_WINDOW_MAX_S)
        by_model, by_level = perf.gap(now - gap_window, end, service=service, model=model)
        report["client_vs_server"] = {"window_s": gap_window, **gap_analysis(by_model, by_level)}
    if service_obj is not None:
        burns = service_obj.burns(now)
        report["slos"] = [b.as_dict() for b in burns if (b.drill_id != "") == drills]
        report["slo_version"] = service_obj.slo_version
    return report


def render(report: dict[str, Any]) -> str:
    """The report as a terminal table."""

    def f(value: Any) -> str:
        return "-" if value is None else f"{value:.0f}" if isinstance(value, float) and value >= 100 else str(value)

    lines = [f"window: last {report['window']['seconds'] // 60} min"]
    lines.append(
        f"{'service':<18} {'model':<24} {'side':<6} {'reqs':>6} {'err%':>5} "
        f"{'e2e p50/p95/p99 ms':>22} {'ttft p50/p95/p99 ms':>22} {'tpot p50':>8} {'tok/s p50':>9}"
    )
    for r in report["models"]:
        e2e = "/".join(f(r[f"e2e_{q}_ms"]) for q in ("p50", "p95", "p99"))
        ttft = "/".join(f(r[f"ttft_{q}_ms"]) for q in ("p50", "p95", "p99"))
        lines.append(
            f"{r['service'][:18]:<18} {r['model'][:24]:<24} {r['side']:<6} {r['requests']:>6} "
            f"{r['error_rate'] * 100:>5.1f} {e2e:>22} {ttft:>22} {f(r['tpot_p50_ms']):>8} {f(r['tokens_per_s_p50']):>9}"
        )
    if report.get("metrics"):
        lines.append("\nfrom OTLP metrics (quantile +- bucket width):")
        for m in report["metrics"]:
            res = m["p95_resolution"]
            lines.append(
                f"  {m['service'][:18]:<18} {m['model'][:24]:<24} {m['side']:<6} {m['metric']:<8} "
                f"{m['token_type']:<6} n={m['count']:<6} p50={f(m['p50'])} p95={f(m['p95'])} "
                f"(+-{'inf' if res is None else f(res)}){' COARSE BUCKETS' if m['coarse'] else ''}"
            )
    gap = report.get("client_vs_server")
    if gap and gap["pairs"]:
        lines.append(f"\nclient vs server ({gap['pairs']} paired requests): gap = network + client queueing")
        for g in gap["by_model"]:
            lines.append(
                f"  {g['service'][:18]:<18} {g['model'][:24]:<24} client p95 {f(g['client_e2e_p95_ms'])} "
                f"server p95 {f(g['server_e2e_p95_ms'])} gap p50/p95 {f(g['gap_p50_ms'])}/{f(g['gap_p95_ms'])} ms "
                f"queue p95 {f(g['server_queue_p95_ms'])}"
            )
        for c in gap["by_concurrency"]:
            lines.append(
                f"    concurrency {c['concurrency']:>6}: {c['pairs']:>6} pairs, gap p50 {f(c['gap_p50_ms'])} ms"
            )
        verdict = {True: "YES (harness/client queueing)", False: "no", None: "not enough pairs to tell"}
        lines.append(f"  gap grows with concurrency: {verdict[gap['gap_grows_with_concurrency']]}")
    for s in report.get("slos", []):
        burn = " ".join(f"{k}={v}" for k, v in s["burn"].items())
        state = f" FIRING {','.join(s['firing'])}" if s["firing"] else ""
        lines.append(
            f"SLO {s['slo']}: {s['objective']}: budget left {s['budget_left']:.0%} ({s['bad_events']}/"
            f"{s['events']} bad); burn {burn}{state}"
        )
    return "\n".join(lines)


def chart(series: dict[str, Any], report: dict[str, Any], path: Path) -> Path:
    """p50/p95 e2e and TTFT per model and side over time (client solid, server dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for line in series["lines"]:
        times = [p["t"] for p in line["points"]]
        style = "-" if line["side"] == "client" else "--"
        for ax, metric in zip(axes, ("e2e", "ttft"), strict=True):
            values = [p[f"{metric}_p95"] for p in line["points"]]
            if any(v is not None for v in values):
                ax.plot(
                    [(t - times[0]) / 60 for t in times], [math.nan if v is None else v for v in values], style,
                    label=f"{line['model']} {line['side']} p95",
                )  # fmt: skip
    for ax, title in zip(axes, ("e2e latency p95 (ms)", "time to first token p95 (ms)"), strict=True):
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel(f"minutes since start of window (step {series['step_s']} s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

"""The tier-1 model card as a person reads it (`oodwatch models card`; `--json` for machines)."""

from __future__ import annotations

from typing import Any


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(card: dict[str, Any]) -> str:
    lines = [
        f"tier-1 classifier {card['name']} {card['version']}",
        f"  features: {card['features']['kind']}, {card['features']['max_features']} features; "
        f"{card['model_bytes'] / 1e6:.2f} MB; providers {', '.join(card['providers'])}",
        f"  speed: {card['speed']['events_per_s']:.0f} events/s on batches of {card['speed']['batch_size']}, "
        f"p50 {card['speed']['p50_ms']} ms per single event ({card['speed']['measured_on']})",
        f"  calibration: {card['calibration']['method']}; export agreement {_pct(card['export_agreement'])}",
        "",
        "data sources",
    ]
    for name, source in card["sources"].items():
        splits = card["splits"][name]
        sizes = ", ".join(f"{split} {v['rows']} ({v['positives']} attack)" for split, v in splits.items())
        lines.append(f"  {name:<14} {source['licence']}")
        lines.append(f"  {'':<14} {source['origin']}; {sizes}; used for {source['used_for']}")
    lines += ["", "test splits              AUC    TPR@1%FPR  at threshold: TPR / FPR   Brier   ECE"]
    for name, t in card["test"].items():
        fpr = t.get("fpr_at_threshold")
        if isinstance(fpr, dict):  # a benign-only source: how often each routing category fires
            routed = ", ".join(f"{category} {_pct(value)}" for category, value in fpr.items())
            lines.append(f"  {name:<14} {'':<7}  benign only ({t['rows']} rows), routed: {routed}")
            continue
        lines.append(
            f"  {name:<14} {t['category']:<7} {_num(t.get('auc'))}  {_pct(t.get('tpr_at_1pct_fpr')):>9}  "
            f"{_pct(t['tpr_at_threshold']):>13} / {_pct(fpr):<6} {_num(t.get('brier'))}  {_num(t.get('ece'))}"
        )
    lines += ["", "categories (threshold at target FPR on validation; only top-level ones route)"]
    for category, c in card["categories"].items():
        figures = card["per_category"].get(category, {})
        extra = (
            f"  AUC vs benign {_num(figures.get('auc_vs_benign'))}, TPR {_pct(figures.get('tpr_at_threshold'))} "
            f"({figures.get('test_positives')} test positives)"
            if figures
            else ""
        )
        lines.append(
            f"  {category:<24} threshold {c['threshold']:.3f} at {_pct(c['target_fpr'])} FPR"
            f"{'' if c['routes'] else ' (explains)'}{extra}"
        )
    lines += ["", "cross-dataset transfer (train without the test source)"]
    for direction, d in card["cross_dataset"].items():
        lines.append(f"  {direction:<40} AUC {_num(d['auc'])} (other evaluated set alone: {_num(d['auc_alone'])})")
    lines.append(f"  minimum {_num(card['auc_cross_min'])}")
    for direction, d in card.get("cross_dataset_harmful", {}).items():
        lines.append(f"  harmful {direction:<32} AUC {_num(d['auc'])}")
    return "\n".join(lines)

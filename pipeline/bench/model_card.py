"""The tier-1 model card as a person reads it (`oodwatch models card`; `--json` for machines),
two cards side by side (`oodwatch models compare`), and the texts no model may train on."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

#: Figures `compare` lines up, with the direction that is better.
HEADLINE = (
    ("auc_cross_min", "higher"),
    ("tpr_at_1pct_fpr_cross_min", "higher"),
    ("benign_fpr_max", "lower"),
    ("events_per_s", "higher"),
    ("model_bytes", "lower"),
    ("build_seconds", "lower"),
)


def evaluation_texts(per_generator: int = 25) -> list[str]:
    """Everything the demo and the drills send (both seed sets): the build fails if one of these
    is a training or validation row (detectors.build.tier1_static.check_leakage)."""
    from pipeline.drills.scenarios import CONTROLS, FAMILIES, SEED_SETS, _case
    from pipeline.synth import traffic

    texts: list[str] = [*traffic.BENIGN_QUESTIONS, *traffic.BENIGN_ANSWERS, *traffic.RAG_DOCUMENTS,
                        *traffic.ATTACK_PROMPTS, *traffic.INDIRECT_INJECTIONS]  # fmt: skip
    texts += [str(tool["description"]) for tool in traffic.TOOLS]
    texts += [request for requests in traffic.TOOL_REQUESTS.values() for request, _ in requests]
    generators = [(family, g) for family, gs in FAMILIES.items() for g in gs] + [("control", g) for g in CONTROLS]
    rng = random.Random(0)
    for family, generator in generators:
        for seeds in SEED_SETS.values():
            for seed in rng.sample(list(seeds[:2000]), per_generator):
                scenario = _case(family, generator, seed).scenario
                texts += [part for turn in scenario.turns for part in turn]
                texts += scenario.documents
                texts += [str(t.get("description", "")) for t in scenario.tools + scenario.later_tools]
                if scenario.tool_use is not None:
                    texts.append(scenario.tool_use.result)
    return sorted({t for t in texts if t.strip()})


def headline(card: dict[str, Any]) -> str:
    if card.get("kind") == "static":
        return (
            f"cross-source AUC min {_num(card.get('auc_cross_min'))}, TPR@1%FPR min "
            f"{_num(card.get('tpr_at_1pct_fpr_cross_min'))}, benign FPR max {_pct(card.get('benign_fpr_max'))}"
        )
    return f"S-Labs test AUC {card['auc_test']:.3f}, cross-dataset AUC min {card['auc_cross_min']:.3f}"


def load_card(path: Path) -> dict[str, Any]:
    """A model dir's tier1.json (or the file itself)."""
    from detectors.tier1_classifier import META_FILE

    file = path / META_FILE if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"no tier-1 model card at {file}")
    card: dict[str, Any] = json.loads(file.read_text())
    return card


def _figures(card: dict[str, Any]) -> dict[str, Any]:
    """The comparable figures of either kind of card (v1 has no cross-source TPR or benign FPR)."""
    figures = {key: card.get(key) for key, _ in HEADLINE}
    if figures["events_per_s"] is None:
        figures["events_per_s"] = (card.get("speed") or {}).get("events_per_s")
    for name, t in (card.get("test") or {}).items():
        fpr = t.get("fpr_routed", t.get("fpr_at_threshold"))
        if isinstance(fpr, dict):
            fpr = max(fpr.values())
        figures[f"test.{name}.fpr"] = fpr
        figures[f"test.{name}.tpr"] = t.get("tpr_routed", t.get("tpr_at_threshold"))
    for name, c in (card.get("cross_source") or {}).items():
        figures[f"cross.{name}.auc"] = c.get("auc")
        figures[f"cross.{name}.tpr_at_1pct_fpr"] = c.get("tpr_at_1pct_fpr")
    return figures


def compare(old: dict[str, Any], new: dict[str, Any], *, as_text: bool = False) -> Any:
    """Both cards' figures side by side; `better` says which side wins where a direction is known."""
    a, b = _figures(old), _figures(new)
    direction = dict(HEADLINE)
    rows = {}
    for key in list(dict.fromkeys([*a, *b])):
        better = None
        if a.get(key) is not None and b.get(key) is not None and key in direction:
            wins_new = b[key] > a[key] if direction[key] == "higher" else b[key] < a[key]
            better = "new" if wins_new else "old" if a[key] != b[key] else "same"
        rows[key] = {"old": a.get(key), "new": b.get(key), "better": better}
    result = {"old": f"{old.get('name')} {old.get('version')}", "new": f"{new.get('name')} {new.get('version')}",
              "figures": rows}  # fmt: skip
    if not as_text:
        return result
    lines = [f"{'':<44} {'old':>12} {'new':>12}",
             f"{'model':<44} {old.get('name', '?'):>12} {new.get('name', '?'):>12}"]  # fmt: skip
    for key, row in rows.items():
        lines.append(f"{key:<44} {_cell(row['old']):>12} {_cell(row['new']):>12}  {row['better'] or ''}")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(card: dict[str, Any]) -> str:
    if card.get("kind") == "static":
        return render_static(card)
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


def embedded_attacks(card: dict[str, Any]) -> list[str]:
    """Long documents and JSON fields built from the test splits (cards from before them: nothing)."""
    lines: list[str] = []
    documents = card.get("long_documents")
    if documents:
        lines += ["", f"long documents (test rows joined; benign routed max {_pct(documents['benign_routed_max'])})"]
        for name, d in documents["per_source"].items():
            benign, buried = d.get("benign_routed"), d.get("buried_attack_routed")
            lines.append(f"  {name:<24} {d['documents']:>4} documents   benign routed {_pct(benign):>6}   "
                         f"attack buried in benign text routed {_pct(buried):>6}")  # fmt: skip
    fields = card.get("json_fields")
    if fields:
        lines += ["", f"attacks in a JSON tool result's text field (benign tool results routed "
                      f"{_pct(fields['benign_tool_results_routed'])})"]  # fmt: skip
        for name, f in fields.items():
            if isinstance(f, dict):
                lines.append(f"  {name:<24} {f['attacks']:>4} attacks   routed alone {_pct(f['alone_routed']):>6}   "
                             f"in a JSON field {_pct(f['in_json_field_routed']):>6}")  # fmt: skip
    return lines


def render_static(card: dict[str, Any]) -> str:
    features = card["features"]
    lines = [
        f"tier-1 classifier {card['name']} {card['version']}",
        f"  features: {features['kind']}; {features['vocabulary']} words, width {features['width']}, "
        f"unknown-word cosine (held out) {features['unknown_word_cosine_held_out']}",
        f"  heads: {card['heads']}; {card['model_bytes'] / 1e6:.1f} MB; providers {', '.join(card['providers'])}",
        f"  calibration: {card['calibration']['method']}; export agreement {_pct(card['export_agreement'])}",
        f"  leakage check: {card['leakage_check']}",
        "",
        "headline (leave one source out; thresholds from the training side)",
        f"  AUC min {_num(card.get('auc_cross_min'))}   TPR@1%FPR min {_num(card.get('tpr_at_1pct_fpr_cross_min'))}"
        f"   benign routing FPR max {_pct(card.get('benign_fpr_max'))}",
        "",
        "cross-source (held out)    category  AUC    TPR@1%FPR  routed   positives / negatives",
    ]
    for name, c in (card.get("cross_source") or {}).items():
        lines.append(
            f"  {name:<24} {c['category']:<9} {_num(c['auc'])}  {_pct(c['tpr_at_1pct_fpr']):>9}  "
            f"{_pct(c['tpr_routed']):>6}   {c['positives']} / {c['negatives']} ({c['negatives_from']})"
        )
    lines += ["", "test splits (shipped model)      TPR      routed   FPR routed   AUC"]
    for name, t in card["test"].items():
        lines.append(
            f"  {name:<30} {_pct(t.get('tpr_at_threshold')):>7}  {_pct(t.get('tpr_routed')):>7}  "
            f"{_pct(t.get('fpr_routed')):>9}   {_num(t.get('auc'))}"
        )
    lines += embedded_attacks(card)
    lines += ["", "categories (threshold at target FPR on pooled validation benign; only top-level ones route)"]
    for category, c in card["categories"].items():
        figures = card["per_family"].get(category, {})
        extra = (
            f"  AUC vs benign {_num(figures.get('auc_vs_benign'))}, TPR {_pct(figures.get('tpr_at_threshold'))} "
            f"({figures.get('test_positives')} test positives)" if figures else ""
        )  # fmt: skip
        lines.append(f"  {category:<24} threshold {c['threshold']:.3f} at {_pct(c['target_fpr'])} FPR{extra}")
    lines += ["", "data sources"]
    for name, source in card["sources"].items():
        sizes = ", ".join(f"{split} {v['rows']} ({v['positives']} pos)" for split, v in card["splits"][name].items())
        lines.append(f"  {name:<16} {source['licence']}")
        lines.append(f"  {'':<16} {source['origin']}; {sizes}")
    return "\n".join(lines)

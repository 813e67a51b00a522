"""The built model's card, as `oodwatch models card` prints it."""

import json
import os
import subprocess
import sys

from tests.helpers import MODEL_DIR


def card(*args):
    env = {**os.environ, "OODWATCH_MODEL_DIR": str(MODEL_DIR)}
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "models", "card", *args], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_card_json_has_the_figures_the_issue_names_and_they_are_measured():
    tier1 = json.loads(card("--json"))["tier1"]
    assert tier1["kind"] == "static"
    for key in ("auc_cross_min", "tpr_at_1pct_fpr_cross_min", "benign_fpr_max", "events_per_s", "providers"):
        assert key in tier1
    assert 0.5 < tier1["auc_cross_min"] <= 1 and 0 <= tier1["tpr_at_1pct_fpr_cross_min"] <= 1
    assert 0 <= tier1["benign_fpr_max"] == max(tier1["benign_fpr"].values())
    assert tier1["events_per_s"] > 0 and "CPUExecutionProvider" in tier1["providers"]
    assert tier1["export_agreement"] >= 0.995
    with_attacks = {name for name, split in tier1["splits"].items() if any(s["positives"] for s in split.values())}
    assert set(tier1["cross_source"]) == with_attacks  # every source with attacks is held out in turn
    for figures in tier1["cross_source"].values():
        assert figures["positives"] > 0 and figures["negatives"] > 0 and 0 <= figures["tpr_at_1pct_fpr"] <= 1
    for source in tier1["sources"].values():
        assert source["licence"] and source["origin"] and source["used_for"]
    routing = {name for name, c in tier1["categories"].items() if c["routes"]}
    assert routing == {"injection", "harmful"}
    assert set(tier1["per_family"]) == {f"injection/{family}" for family in tier1["families"]}
    assert tier1["leakage_check"]["evaluation_texts"] > 300  # the demo's and the drills' texts were checked


def test_card_measures_every_rule_on_real_benign_corpora():
    rules = json.loads(card("--json"))["tier1"]["rules"]
    assert {"bfcl_requests", "bfcl_requests_with_calls", "tool_descriptions", "tool_outputs"} <= set(rules["events"])
    assert all(n > 500 for n in rules["events"].values())
    assert rules["max"]["fpr"] <= rules["bar"] == 0.002, rules["max"]


def test_card_text_is_readable():
    text = card()
    for heading in ("data sources", "test splits", "categories", "cross-source", "headline"):
        assert heading in text


def test_compare_lines_up_two_cards(tmp_path):
    old = json.loads((MODEL_DIR / "tier1.json").read_text())
    old.update(auc_cross_min=0.5, name="older")
    (tmp_path / "tier1.json").write_text(json.dumps(old))
    env = {**os.environ, "OODWATCH_MODEL_DIR": str(MODEL_DIR)}
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "models", "compare", str(tmp_path), str(MODEL_DIR), "--json"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)["figures"]
    assert figures["auc_cross_min"]["old"] == 0.5 and figures["auc_cross_min"]["better"] == "new"


def test_bench_tier1_prints_measured_json():
    env = {**os.environ, "OODWATCH_MODEL_DIR": str(MODEL_DIR)}
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "bench", "--stage", "tier1", "--json", "--seconds", "0.5"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["events_per_s"] > 0 and result["p50_ms"] > 0 and result["batch_size"] == 256
    assert result["events_per_s_cached"] > 0 and result["score_events_per_s"] > 0
    assert result["rules_events_per_s"] > 0 and result["providers"]
    costs = result["hot_path_us_per_event"]
    assert {"decode", "tier1-classifier", "route", "serialize"} <= set(costs) and all(v > 0 for v in costs.values())
    assert costs["total"] == round(sum(v for k, v in costs.items() if k != "total"), 1)

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
    for key in ("auc_test", "auc_cross_min", "tpr_at_1pct_fpr", "events_per_s", "providers"):
        assert key in tier1
    assert 0.5 < tier1["auc_test"] <= 1 and 0.5 < tier1["auc_cross_min"] <= 1
    assert tier1["events_per_s"] > 0 and "CPUExecutionProvider" in tier1["providers"]
    assert tier1["export_agreement"] >= 0.995
    assert set(tier1["cross_dataset"]) and all("->" in direction for direction in tier1["cross_dataset"])
    for source in tier1["sources"].values():
        assert source["licence"] and source["origin"] and source["used_for"]
    routing = {name for name, c in tier1["categories"].items() if c["routes"]}
    assert routing == {"injection", "harmful"}


def test_card_text_is_readable():
    text = card()
    for heading in ("data sources", "test splits", "categories", "cross-dataset transfer"):
        assert heading in text


def test_bench_tier1_prints_measured_json():
    env = {**os.environ, "OODWATCH_MODEL_DIR": str(MODEL_DIR)}
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "bench", "--stage", "tier1", "--json", "--seconds", "0.5"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["events_per_s"] > 0 and result["p50_ms"] > 0 and result["batch_size"] == 256
    assert result["rules_events_per_s"] > 0 and result["providers"]
    costs = result["hot_path_us_per_event"]
    assert {"decode", "tier1-classifier", "route", "serialize"} <= set(costs) and all(v > 0 for v in costs.values())
    assert costs["total"] == round(sum(v for k, v in costs.items() if k != "total"), 1)

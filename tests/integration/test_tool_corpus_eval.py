"""`oodwatch eval tools` on the real corpus: real descriptions from the pinned tool packages
against poisoned ones on held-out seeds, scored by the real lint (and the learned score, with
the tier-1 model `make setup` builds). The figures must come from that data; the bar itself is
asserted only where it holds with margin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from detectors.build.tool_corpus import TOOL_WHEELS, wheel_path
from pipeline.bench.tools_eval import evaluate
from pipeline.drills.tool_poisoning import KINDS
from tests.helpers import MODEL_DIR, REPO

DATASETS = REPO / ".oodwatch" / "datasets"


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    missing = []
    for package in TOOL_WHEELS:
        try:
            wheel_path(DATASETS, package)
        except RuntimeError:
            missing.append(package)
    if missing:
        pytest.fail(f"tool packages not downloaded ({', '.join(missing)}) into {DATASETS}: run `make setup`")
    return evaluate(Path(DATASETS), MODEL_DIR, seed_set="heldout", n_poisoned=600)


def _consistent(figures: dict[str, Any], key: str) -> None:
    assert 0.0 <= figures[key] <= 1.0
    assert figures[key] == pytest.approx(figures["flagged"] / figures["n"])


def test_the_figures_are_computed_from_the_real_corpus_and_held_out_seeds(result):
    assert result["seed_set"] == "heldout"
    assert result["benign"]["n"] >= 300 and result["poisoned"]["n"] >= 500
    assert sum(result["sources"].values()) == result["benign"]["n"]
    assert len(result["sources"]) >= 10  # many packages, not one server's style
    for figures in (result, *result["by_scorer"].values()):
        _consistent(figures["benign"], "fpr")
        _consistent(figures["benign_heldout_half"], "fpr")
        _consistent(figures["poisoned"], "recall")
        assert set(figures["poisoned"]["by_kind"]) == set(KINDS)
    assert 0 < result["benign_heldout_half"]["n"] < result["benign"]["n"]
    assert result["detector"]["learned"] is not None, "the tier-1 model is there: the learned score must run"


def test_the_lint_catches_generated_poisoning_without_flagging_most_real_descriptions(result):
    # Margins below the measured figures (recall 0.998, FPR 0.008 on the whole corpus), not the bar.
    assert result["poisoned"]["recall"] >= 0.95
    assert result["benign"]["fpr"] <= 0.03
    assert result["bar"]["met"] == (result["poisoned"]["recall"] >= 0.9 and result["benign"]["fpr"] <= 0.01)


def test_hand_written_sets_are_reported(result):
    for name in ("tuned_on", "untuned"):
        figures = result["handwritten"][name]["rules"]
        assert figures["n"] == 30
        _consistent(figures, "recall")

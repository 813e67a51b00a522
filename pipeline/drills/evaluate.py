"""Tier 2 on the drill families: each family's held-out cases against the benign controls, with
no pipeline in between (what `oodwatch eval ood` adds to its by-set figures)."""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors.ood import EmbeddingAnomalyDetector
from pipeline.drills.scenarios import FAMILIES, build_cases, to_session
from pipeline.synth.emit import sessions_to_request
from schemas.otel_mapping import map_request


def tier2_by_family(detector: EmbeddingAnomalyDetector, per_generator: int = 10) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from detectors.build.tier1 import tpr_at_fpr

    cases = build_cases(list(FAMILIES), per_generator=per_generator, seed_set="heldout")
    ood: dict[str, list[float]] = {}
    head: dict[str, list[float]] = {}
    for case in cases:
        events = map_request(sessions_to_request([to_session(case)])).events
        results = detector.assess(events, exemplars=0)
        ood.setdefault(case.family, []).append(max(r.scores[0].score for r in results))
        head.setdefault(case.family, []).append(max(r.scores[1].score for r in results))
    figures = {}
    for family in FAMILIES:
        y = np.concatenate([np.ones(len(ood[family])), np.zeros(len(ood["control"]))])
        o = np.concatenate([ood[family], ood["control"]])
        h = np.concatenate([head[family], head["control"]])
        figures[f"drill:{family}"] = {
            "attacks": len(ood[family]),
            "controls": len(ood["control"]),
            "auroc": float(roc_auc_score(y, o)),
            "tpr_at_1pct_fpr": tpr_at_fpr(o, y, 0.01),
            "head_auroc": float(roc_auc_score(y, h)),
            "head_tpr_at_1pct_fpr": tpr_at_fpr(h, y, 0.01),
        }
    return figures

"""Train the tier-1 text classifier, export it to ONNX and check the export.

Deterministic: fixed seeds and sorted inputs, so the same packages give the same model.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detectors.build.datasets import SOURCES, LabelledSplit, load_split
from detectors.tier1_classifier import META_FILE, MODEL_FILE, TIER1_CATEGORY

SEED = 1337
TARGET_FPR = 0.01
MIN_EXPORT_AGREEMENT = 0.995


@dataclass(frozen=True)
class BuildReport:
    path: Path
    meta: dict[str, Any]


def build_tier1(out_dir: Path, *, target_fpr: float = TARGET_FPR) -> BuildReport:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import Pipeline

    train = [load_split(src, "train") for src in SOURCES]
    validation = [load_split(src, "validation") for src in SOURCES]
    test = [load_split(src, "test") for src in SOURCES]
    texts, labels = _concat(train)

    pipeline = Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=60_000, sublinear_tf=True, lowercase=True),
            ),
            ("clf", LogisticRegression(C=8.0, max_iter=2000, class_weight="balanced", random_state=SEED)),
        ]
    )
    pipeline.fit(texts, labels)

    val_texts, val_labels = _concat(validation)
    val_scores = pipeline.predict_proba(val_texts)[:, 1]
    threshold = threshold_at_fpr(np.asarray(val_scores), np.asarray(val_labels), target_fpr)

    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILE
    model_path.write_bytes(_export_onnx(pipeline))

    from detectors.tier1_classifier import OnnxTextClassifier

    exported = OnnxTextClassifier.load_raw(model_path)
    per_source: dict[str, dict[str, float]] = {}
    agreements = []
    for split in test:
        sk = pipeline.predict_proba(split.texts)[:, 1]
        ox = exported.predict(split.texts)
        agreements.append(float(np.mean((sk >= threshold) == (ox >= threshold))))
        per_source[split.source] = {
            "auc": float(roc_auc_score(split.labels, sk)),
            "tpr_at_threshold": float(np.mean(ox[np.asarray(split.labels) == 1] >= threshold)),
            "fpr_at_threshold": float(np.mean(ox[np.asarray(split.labels) == 0] >= threshold)),
            "rows": len(split.texts),
        }
    agreement = min(agreements)
    if agreement < MIN_EXPORT_AGREEMENT:
        model_path.unlink()
        raise RuntimeError(
            f"ONNX export disagrees with the trained model: agreement {agreement:.4f} < {MIN_EXPORT_AGREEMENT}"
        )

    meta = {
        "name": "tier1-tfidf-lr",
        "version": time.strftime("%Y%m%d") + f"-{_digest(model_path)}",
        "categories": {TIER1_CATEGORY: {"threshold": threshold, "target_fpr": target_fpr}},
        "sources": {
            name: {"licence": s.licence, "origin": s.origin, "used_for": "train/validation/test"}
            for name, s in SOURCES.items()
        },
        "splits": {f"{s.source}/{s.split}": len(s.texts) for s in [*train, *validation, *test]},
        "test": per_source,
        "export_agreement": agreement,
        "seed": SEED,
    }
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return BuildReport(model_path, meta)


def threshold_at_fpr(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> float:
    """Lowest threshold whose false-positive rate on the negatives stays within target."""
    negatives = np.sort(scores[labels == 0])
    if negatives.size == 0:
        return 0.5
    index = int(np.ceil((1.0 - target_fpr) * negatives.size))
    index = min(max(index, 0), negatives.size - 1)
    return float(np.nextafter(negatives[index], 1.0))


def _concat(splits: list[LabelledSplit]) -> tuple[list[str], list[int]]:
    texts: list[str] = []
    labels: list[int] = []
    for split in splits:
        texts.extend(split.texts)
        labels.extend(split.labels)
    return texts, labels


def _export_onnx(pipeline: Any) -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType

    tfidf = pipeline.named_steps["tfidf"]
    onx = to_onnx(
        pipeline,
        initial_types=[("text", StringTensorType([None, 1]))],
        options={
            id(tfidf): {"tokenexp": r"[\pL\pN_]{2,}", "locale": "C.UTF-8"},
            id(pipeline.named_steps["clf"]): {"zipmap": False},
        },
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return bytes(onx.SerializeToString())


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]

"""Train the tier-1 text classifier, export it to ONNX, check the export, write the card.

One ONNX graph: a word 1-2 gram TF-IDF shared by three heads. The attack head (benign vs
injection/jailbreak) and the harmful head (benign vs harmful requests) are Platt-calibrated
on validation; the family head (neuralchemy's categories, grouped) gives p(family | attack).
Category scores:
  injection            = p(attack)
  injection/<family>   = p(attack) * p(family | attack)
  harmful              = p(harmful request)
Thresholds are set on validation for a target false-positive rate. Deterministic: fixed
seeds, sources read in a fixed order.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detectors.build.datasets import FAMILIES, SOURCES, LabelledSplit, load_all
from detectors.speed import measure
from detectors.text import normalize_for_classifier
from detectors.tier1_classifier import HARMFUL_CATEGORY, META_FILE, MODEL_FILE, TIER1_CATEGORY, OnnxTier1

#: The sources v1 was built from (the v2 sources change what it learns; it stays as it was).
V1_SOURCES = (
    "s-labs",
    "neuralchemy",
    "yanismiraoui",
    "bastioncorpus",
    "chatterbot",
    "ovos",
    "chitchat",
    "strongreject",
    "advbench",
)
SEED = 1337
TARGET_FPR = 0.01
#: The harmful-request sets are all imperatives and benign instruction data is scarce in
#: installable packages, so at 1% the head routed ordinary requests ("Give me three ideas
#: for dinner"). A tighter operating point trades some recall for that.
HARMFUL_TARGET_FPR = 0.002
MIN_EXPORT_AGREEMENT = 0.995
MAX_FEATURES = 8000  # the graph's TF-IDF output is dense: width is what costs time (8k: ~3x faster than 60k)
ATTACK_C = 4.0
TOKEN_PATTERN_ONNX = r"[\pL\pN_]{2,}"  # re2; the sklearn default \b\w\w+\b is ASCII-only in ONNX Runtime
OPSET = {"": 17, "ai.onnx.ml": 3}


@dataclass(frozen=True)
class BuildReport:
    path: Path
    meta: dict[str, Any]


@dataclass
class Heads:
    vectorizer: Any
    attack: Any
    families: Any
    harmful: Any


@dataclass
class Rows:
    texts: list[str]
    labels: np.ndarray
    families: list[str | None]
    weights: np.ndarray


def _rows(splits: list[LabelledSplit], task: str, *, others_negative: bool = False) -> Rows:
    """One head's rows: the rows of its task, and every benign row as a negative;
    with others_negative, the other task's positives too (an injection is not a harmful request)."""
    texts: list[str] = []
    labels: list[int] = []
    families: list[str | None] = []
    weights: list[float] = []
    for split in splits:
        weight = SOURCES[split.source].weight
        for i, (text, label) in enumerate(zip(split.texts, split.labels, strict=True)):
            if split.task == task or label == 0 or others_negative:
                texts.append(text)
                labels.append(label if split.task == task else 0)
                families.append(split.families[i] if split.families else None)
                weights.append(weight)
    return Rows(texts, np.asarray(labels), families, np.asarray(weights))


def _head(features: Any, labels: Any, weights: Any = None) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=ATTACK_C, max_iter=3000, random_state=SEED).fit(features, labels, sample_weight=weights)


def fit_vectorizer(texts: list[str]) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=MAX_FEATURES, sublinear_tf=True)
    return vectorizer.fit([normalize_for_classifier(text) for text in texts])


def _transform(vectorizer: Any, texts: list[str]) -> Any:
    """The runtime normalises before the ONNX graph (OnnxTier1.predict); training does the same."""
    return vectorizer.transform([normalize_for_classifier(text) for text in texts])


def fit_recipe(rows: Rows) -> tuple[Any, Any]:
    """Vectorizer and one head on the same rows: the recipe the cross-dataset figures retrain."""
    vectorizer = fit_vectorizer(rows.texts)
    return vectorizer, _head(_transform(vectorizer, rows.texts), rows.labels, rows.weights)


def calibrate(attack: Any, features: Any, labels: np.ndarray) -> dict[str, float]:
    """Platt scaling on validation, folded into the head's weights (so ONNX needs nothing extra)."""
    from sklearn.linear_model import LogisticRegression

    logits = attack.decision_function(features).reshape(-1, 1)
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(logits, labels)
    a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    attack.coef_ = attack.coef_ * a
    attack.intercept_ = attack.intercept_ * a + b
    return {"a": a, "b": b}


def threshold_at_fpr(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> float:
    """Lowest threshold whose false-positive rate on the negatives stays within target."""
    negatives = np.sort(scores[labels == 0])
    if negatives.size == 0:
        return 0.5
    index = min(max(int(np.ceil((1.0 - target_fpr) * negatives.size)), 0), negatives.size - 1)
    return float(np.nextafter(negatives[index], 1.0))


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> float:
    threshold = threshold_at_fpr(scores, labels, fpr)
    return float(np.mean(scores[labels == 1] >= threshold))


def expected_calibration_error(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    error = 0.0
    for low, high in itertools.pairwise(edges):
        mask = (scores >= low) & (scores < high if high < 1 else scores <= high)
        if mask.any():
            error += mask.mean() * abs(scores[mask].mean() - labels[mask].mean())
    return float(error)


KINDS = ("static", "tfidf")
DEFAULT_KIND = "static"


def tier1_kind() -> str:
    """`OODWATCH_TIER1_MODEL=tfidf|static` (default static): which tier-1 model a build makes."""
    kind = os.environ.get("OODWATCH_TIER1_MODEL", DEFAULT_KIND).strip().lower() or DEFAULT_KIND
    if kind not in KINDS:
        raise ValueError(f"OODWATCH_TIER1_MODEL={kind!r}: one of {', '.join(KINDS)}")
    return kind


def build_tier1(
    out_dir: Path, datasets_dir: Path, *, evaluation_texts: Iterable[str] = (), kind: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Build the tier-1 model of `kind` (default: OODWATCH_TIER1_MODEL) and return its card."""
    kind = kind or tier1_kind()
    texts = list(evaluation_texts)
    if kind == "static":
        from detectors.build.tier1_static import build_tier1_static

        if progress is None:
            return build_tier1_static(out_dir, datasets_dir, evaluation_texts=texts)
        return build_tier1_static(out_dir, datasets_dir, evaluation_texts=texts, progress=progress)
    from detectors.build.tier1_static import check_leakage

    check_leakage(load_all(datasets_dir), texts)
    return build_tier1_tfidf(out_dir, datasets_dir).meta


def build_tier1_tfidf(out_dir: Path, datasets_dir: Path, *, target_fpr: float = TARGET_FPR) -> BuildReport:
    from sklearn.metrics import roc_auc_score

    started = time.monotonic()
    data = {name: splits for name, splits in load_all(datasets_dir).items() if name in V1_SOURCES}
    train = [splits["train"] for splits in data.values()]
    validation = [splits["validation"] for splits in data.values()]
    vectorizer = fit_vectorizer([text for split in train for text in split.texts])

    attack_rows = _rows(train, "attack")
    attack = _head(_transform(vectorizer, attack_rows.texts), attack_rows.labels, attack_rows.weights)
    attack_val = _rows(validation, "attack")
    val_texts, val_labels = attack_val.texts, attack_val.labels
    platt = {"attack": calibrate(attack, _transform(vectorizer, val_texts), val_labels)}

    with_family = [i for i, family in enumerate(attack_rows.families) if family]
    family_names = sorted(FAMILIES)
    families = _head(
        _transform(vectorizer, [attack_rows.texts[i] for i in with_family]),
        [attack_rows.families[i] for i in with_family],
    )
    assert list(families.classes_) == family_names, families.classes_

    harm_rows = _rows(train, "harmful", others_negative=True)
    harmful = _head(_transform(vectorizer, harm_rows.texts), harm_rows.labels, harm_rows.weights)
    harm_val = _rows(validation, "harmful")
    harm_val_texts, harm_val_labels = harm_val.texts, harm_val.labels
    platt["harmful"] = calibrate(harmful, _transform(vectorizer, harm_val_texts), harm_val_labels)
    heads = Heads(vectorizer, attack, families, harmful)

    def category_scores(texts: list[str]) -> dict[str, np.ndarray]:
        features = _transform(vectorizer, texts)
        p_attack = attack.predict_proba(features)[:, 1]
        p_family = families.predict_proba(features)
        scores = {TIER1_CATEGORY: p_attack}
        for k, name in enumerate(family_names):
            scores[f"{TIER1_CATEGORY}/{name}"] = p_attack * p_family[:, k]
        scores[HARMFUL_CATEGORY] = harmful.predict_proba(features)[:, 1]
        return scores

    val_scores = category_scores(val_texts)
    thresholds = {
        category: threshold_at_fpr(s, val_labels, target_fpr)
        for category, s in val_scores.items()
        if category != HARMFUL_CATEGORY
    }
    harmful_fpr = min(target_fpr, HARMFUL_TARGET_FPR)
    thresholds[HARMFUL_CATEGORY] = threshold_at_fpr(
        category_scores(harm_val_texts)[HARMFUL_CATEGORY], harm_val_labels, harmful_fpr
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILE
    model_path.write_bytes(export_onnx(heads))
    exported = OnnxTier1.load(model_path, family_names)

    tests = {name: splits["test"] for name, splits in data.items()}
    benign_test = [
        t for split in tests.values() for t, label in zip(split.texts, split.labels, strict=True) if not label
    ]
    # Pooled over every test row: a per-source minimum failed the build on one near-threshold flip
    # (float32 graph vs float64 sklearn) in a 107-row source.
    same_rows: list[np.ndarray] = []
    per_source: dict[str, Any] = {}
    for name, split in tests.items():
        category = HARMFUL_CATEGORY if split.task == "harmful" else TIER1_CATEGORY
        texts, labels = list(split.texts), np.asarray(split.labels)
        if split.task == "harmful":  # harmful requests against every benign test row
            texts, labels = texts + benign_test, np.concatenate([labels, np.zeros(len(benign_test), dtype=int)])
        trained_all, onnx_all = category_scores(texts), exported.predict(texts)
        threshold = thresholds[category]
        for routed in (TIER1_CATEGORY, HARMFUL_CATEGORY):
            same = (trained_all[routed] >= thresholds[routed]) == (onnx_all[routed] >= thresholds[routed])
            same_rows.append(same)
        onnx_scores = onnx_all[category]
        figures: dict[str, Any] = {
            "category": category,
            "rows": len(split.texts),
            "positives": int(sum(split.labels)),
            "tpr_at_threshold": float(np.mean(onnx_scores[labels == 1] >= threshold)) if labels.sum() else None,
        }
        if not labels.any():  # benign-only source: how often does it route?
            figures["fpr_at_threshold"] = {
                routed: float(np.mean(onnx_all[routed] >= thresholds[routed]))
                for routed in (TIER1_CATEGORY, HARMFUL_CATEGORY)
            }
        if 0 < labels.sum() < len(labels):
            figures.update(
                auc=float(roc_auc_score(labels, onnx_scores)),
                tpr_at_1pct_fpr=tpr_at_fpr(onnx_scores, labels, 0.01),
                fpr_at_threshold=float(np.mean(onnx_scores[labels == 0] >= threshold)),
                brier=float(np.mean((onnx_scores - labels) ** 2)),
                ece=expected_calibration_error(onnx_scores, labels),
            )
        per_source[name] = figures
    agreement = float(np.mean(np.concatenate(same_rows))) if same_rows else 1.0
    if agreement < MIN_EXPORT_AGREEMENT:
        model_path.unlink()
        raise RuntimeError(
            f"ONNX export disagrees with the trained model: agreement {agreement:.4f} < {MIN_EXPORT_AGREEMENT}"
        )

    cross = cross_dataset(data)
    card: dict[str, Any] = {
        "name": "tier1-tfidf-lr",
        "kind": "tfidf",
        "version": time.strftime("%Y%m%d") + "-" + hashlib.sha256(model_path.read_bytes()).hexdigest()[:10],
        "families": family_names,
        "categories": {
            category: {
                "threshold": threshold,
                "target_fpr": harmful_fpr if category == HARMFUL_CATEGORY else target_fpr,
                "routes": "/" not in category,
            }
            for category, threshold in thresholds.items()
        },
        "sources": {
            name: {
                "licence": source.licence,
                "origin": source.origin,
                "used_for": "train, validation (calibration and thresholds), test"
                + ("" if source.evaluated else "; not a cross-dataset test set")
                + ("" if source.weight == 1.0 else f"; training weight {source.weight}"),
                "head": source.task,
            }
            for name, source in SOURCES.items()
            if name in V1_SOURCES
        },
        "splits": {
            name: {split: {"rows": len(s.texts), "positives": int(sum(s.labels))} for split, s in splits.items()}
            for name, splits in data.items()
        },
        "test": per_source,
        "per_category": per_category_figures(category_scores, tests["neuralchemy"], thresholds, family_names),
        "cross_dataset": cross,
        "cross_dataset_harmful": cross_dataset_harmful(data),
        "calibration": {"method": "Platt scaling on the validation splits, folded into each head", **platt},
        "export_agreement": agreement,
        "features": {
            "kind": "word 1-2 gram TF-IDF (sublinear tf) over normalised text (NFKC, lookalikes, leetspeak)",
            "max_features": MAX_FEATURES,
        },
        "model_bytes": model_path.stat().st_size,
        "seed": SEED,
    }
    card["speed"] = measure_speed(exported, [t for s in tests.values() for t in s.texts])
    card["providers"] = exported.providers
    card["build_seconds"] = round(time.monotonic() - started, 1)
    s_labs = per_source["s-labs"]
    card.update(
        auc_test=s_labs["auc"],
        tpr_at_1pct_fpr=s_labs["tpr_at_1pct_fpr"],
        auc_cross_min=min(float(direction["auc"]) for direction in cross.values()),
        events_per_s=card["speed"]["events_per_s"],
    )
    (out_dir / META_FILE).write_text(json.dumps(card, indent=2))
    return BuildReport(model_path, card)


def per_category_figures(
    category_scores: Any, test: LabelledSplit, thresholds: dict[str, float], family_names: list[str]
) -> dict[str, Any]:
    """Each family against the benign rows of the neuralchemy test split."""
    from sklearn.metrics import roc_auc_score

    scores = category_scores(test.texts)
    labels = np.asarray(test.labels)
    figures: dict[str, Any] = {}
    for name in family_names:
        category = f"{TIER1_CATEGORY}/{name}"
        positive = np.asarray([f == name for f in test.families])
        mask = positive | (labels == 0)
        y = positive[mask].astype(int)
        s = scores[category][mask]
        figures[category] = {
            "test_positives": int(y.sum()),
            "auc_vs_benign": float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None,
            "tpr_at_threshold": float(np.mean(s[y == 1] >= thresholds[category])) if y.sum() else None,
        }
    return figures


def _v1_sources() -> list[tuple[str, Any]]:
    return [(name, source) for name, source in SOURCES.items() if name in V1_SOURCES]


def cross_dataset(data: dict[str, dict[str, LabelledSplit]]) -> dict[str, Any]:
    """Train the same recipe without one evaluated source, test on that source's test split.
    `auc` trains on all other sources; `auc_alone` on the single other evaluated source."""
    from sklearn.metrics import roc_auc_score

    evaluated = [name for name, source in _v1_sources() if source.evaluated]
    result = {}
    for held_out in evaluated:
        test = data[held_out]["test"]
        others = [name for name, source in _v1_sources() if name != held_out and source.task == "attack"]
        figures: dict[str, Any] = {}
        for key, names in (("auc", others), ("auc_alone", [n for n in others if SOURCES[n].evaluated])):
            vectorizer, attack = fit_recipe(_rows([data[n]["train"] for n in names], "attack"))
            scores = attack.predict_proba(_transform(vectorizer, test.texts))[:, 1]
            figures[key] = float(roc_auc_score(test.labels, scores))
        figures["trained_on"] = others
        result[f"{'+'.join(others)}->{held_out}"] = figures
    return result


def cross_dataset_harmful(data: dict[str, dict[str, LabelledSplit]]) -> dict[str, Any]:
    """The harmful head trained on one harmful source (plus all benign rows), tested on the other."""
    from sklearn.metrics import roc_auc_score

    harmful = [name for name, source in _v1_sources() if source.task == "harmful"]
    benign_train = [data[n]["train"] for n, s in _v1_sources() if s.task == "attack"]
    benign_test = [t for n, s in _v1_sources() if s.task == "attack" for t, y in
                   zip(data[n]["test"].texts, data[n]["test"].labels, strict=True) if not y]  # fmt: skip
    result = {}
    for held_out in harmful:
        trained_on = [n for n in harmful if n != held_out]
        train_rows = _rows([data[n]["train"] for n in trained_on] + benign_train, "harmful", others_negative=True)
        vectorizer, head = fit_recipe(train_rows)
        test_texts = data[held_out]["test"].texts + data[held_out]["train"].texts + benign_test
        y = [1] * (len(test_texts) - len(benign_test)) + [0] * len(benign_test)
        scores = head.predict_proba(_transform(vectorizer, test_texts))[:, 1]
        result[f"{'+'.join(trained_on)}->{held_out}"] = {"auc": float(roc_auc_score(y, scores))}
    return result


def measure_speed(model: OnnxTier1, texts: list[str]) -> dict[str, Any]:
    speed = measure(model.predict, texts)
    return {
        "batch_size": speed.batch_size,
        "events_per_s": speed.events_per_s,
        "p50_ms": speed.p50_ms,
        "measured_on": "the test splits' texts, ONNX Runtime, 1 intra-op thread",
    }


def export_onnx(heads: Heads) -> bytes:
    """TF-IDF and both heads in one graph: the text is tokenised once."""
    from onnx import compose
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    vectorizer = to_onnx(
        heads.vectorizer,
        initial_types=[("text", StringTensorType([None, 1]))],
        options={id(heads.vectorizer): {"tokenexp": TOKEN_PATTERN_ONNX, "locale": "C.UTF-8"}},
        target_opset=OPSET,
    )
    width = len(heads.vectorizer.vocabulary_)
    features = vectorizer.graph.output[0].name

    def head(model: Any, prefix: str) -> Any:
        converted = to_onnx(
            model,
            initial_types=[("features", FloatTensorType([None, width]))],
            options={id(model): {"zipmap": False}},
            target_opset=OPSET,
        )
        return compose.add_prefix(converted, prefix)

    merged = compose.merge_models(
        vectorizer, head(heads.attack, "attack_"), io_map=[(features, "attack_features")],
        outputs=[features, "attack_probabilities"],
    )  # fmt: skip
    merged = compose.merge_models(
        merged, head(heads.families, "family_"), io_map=[(features, "family_features")],
        outputs=[features, "attack_probabilities", "family_probabilities"],
    )  # fmt: skip
    merged = compose.merge_models(
        merged, head(heads.harmful, "harmful_"), io_map=[(features, "harmful_features")],
        outputs=["attack_probabilities", "family_probabilities", "harmful_probabilities"],
    )  # fmt: skip
    # The merge lists opset imports in set order, which follows the process's hash seed:
    # sorted, the same model is the same bytes in every build.
    imports = sorted(merged.opset_import, key=lambda entry: entry.domain)
    del merged.opset_import[:]
    merged.opset_import.extend(imports)
    return bytes(merged.SerializeToString())

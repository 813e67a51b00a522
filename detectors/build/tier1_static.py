"""Tier 1 v2: static teacher vectors + a small multi-task MLP, judged across sources.

Features come from `detectors.featurize` (numba; static vectors distilled from MiniLM and
USE-multilingual, hashed n-gram vectors for unknown words). The heads are one MLP with a
shared hidden layer and three outputs, trained jointly (torch, build time only), exported to
ONNX with the feature standardisation and the Platt calibration inside the graph:
  injection            = p(attack)                      (injection or jailbreak)
  injection/<family>   = p(attack) * p(family | attack)
  harmful              = p(harmful request)
Thresholds: the target false-positive rate on the pooled validation benign rows.

Evaluation is the headline: leave-one-source-out for every source with attacks (train
without it, threshold at 1% FPR on the training side's validation, test on all of it), the
routing FPR of every benign-only source at the shipped thresholds, and per-family figures.
The build fails if any evaluation text (the demo's, the drills', given by the caller) is in
the training or validation data (normalised-text hash check), and drops from training any
row that is also in a test split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detectors.build.composites import composite_windows
from detectors.build.datasets import BENIGN_SOURCES, FAMILIES, SCREENED_BENIGN_SOURCES, SOURCES, LabelledSplit, load_all
from detectors.build.static_vectors import build_static_table
from detectors.featurize import Featurizer, StaticTable
from detectors.speed import measure
from detectors.text import normalize_for_classifier
from detectors.tier1_classifier import (
    HARMFUL_CATEGORY,
    META_FILE,
    MODEL_FILE,
    TABLE_FILE,
    TIER1_CATEGORY,
    StaticTier1,
    part_windows,
    windows,
)

SEED = 1337
TARGET_FPR = 0.01
HARMFUL_TARGET_FPR = 0.005
#: Each benign-only source's validation FPR stays within this share of a head's target, so the
#: union of two heads (routing) stays near the target on every benign source, not only pooled.
PER_SOURCE_SHARE = 0.6
HIDDEN = 128
#: The cross-source runs train exactly as the shipped model does. Measured (leave-one-source-out,
#: same data): 6 epochs TPR@1%FPR mean .562 / min .208, 12: .593 / .223, 16: .597 / .229,
#: 24: .607 / .248; AUC mean .928 -> .934. A wider (256) or narrower (32) hidden layer, or
#: dropout .5, did no better; hashed word uni/bigrams beside the static vectors did worse on
#: held-out neuralchemy and yanismiraoui (they learn each set's words again).
EPOCHS = 24
BATCH = 1024
#: v1 down-weighted casual chat (a word model learnt "casual means benign"); with meaning-based
#: features full weight lowers casual-chat false positives without costing recall. The multilingual
#: benign sets count double: most non-English training text is attacks (yanismiraoui, bastion), and
#: at 1.0 the heads flagged benign questions in other languages (measured: benign FPR on chatterbot
#: 0.88% -> 0.59%, bfcl 1.04% -> 0.62%, s-labs TPR .552 -> .537).
WEIGHTS = {"chatterbot": 2.0, "ovos": 2.0, "chitchat": 1.0}
TRAIN_WINDOWS = 3  # windows a long training text contributes (first, middle, last)
#: Long documents composed of training texts (detectors.build.composites), in these splits, each
#: document carrying this share of a training text's weight.
COMPOSITE_SPLITS: tuple[str, ...] = ("train",)
COMPOSITE_WEIGHT = 1.0
COMPOSITES = "+composites"
LONG_DOCUMENT_PROBE_SEED = 99
FAMILY_NAMES = sorted(FAMILIES)
MIN_EXPORT_AGREEMENT = 0.995

log = logging.getLogger(__name__)


class EvaluationLeak(RuntimeError):
    """An evaluation text is in the training data."""


def text_hash(text: str) -> str:
    """The normalised-text hash the leakage check compares (case, lookalikes, spacing folded)."""
    return hashlib.sha256(" ".join(normalize_for_classifier(text).split()).encode()).hexdigest()[:20]


@dataclass
class Rows:
    """One row per training window: features, labels per head, weights, where it came from."""

    x: np.ndarray
    attack: np.ndarray  # 1/0, -1 = not an attack-head row
    harmful: np.ndarray  # 1/0
    family: np.ndarray  # index into FAMILY_NAMES, -1 = none
    weight: np.ndarray
    source: np.ndarray  # source name per row
    text_id: np.ndarray  # index of the text the window came from (within this Rows)

    def take(self, mask: np.ndarray) -> Rows:
        return Rows(*(getattr(self, f)[mask] for f in ("x", "attack", "harmful", "family", "weight", "source",
                                                         "text_id")))  # fmt: skip


def _train_windows(text: str) -> list[str]:
    found = windows(normalize_for_classifier(text))
    if len(found) <= TRAIN_WINDOWS:
        return found
    return [found[0], found[len(found) // 2], found[-1]]


def make_rows(splits: Sequence[LabelledSplit], featurize: Callable[[list[str]], np.ndarray]) -> Rows:
    texts: list[str] = []
    attack: list[int] = []
    harmful: list[int] = []
    family: list[int] = []
    weight: list[float] = []
    source: list[str] = []
    text_id: list[int] = []
    n_text = 0
    for split in splits:
        base = WEIGHTS.get(split.source, SOURCES[split.source].weight)
        for i, (text, label) in enumerate(zip(split.texts, split.labels, strict=True)):
            pieces = _train_windows(text)
            fam = split.families[i] if split.families and label else None
            for piece in pieces:
                texts.append(piece)
                if split.task == "harmful":
                    attack.append(-1)
                    harmful.append(label)
                else:
                    attack.append(label)
                    harmful.append(0)
                family.append(FAMILY_NAMES.index(fam) if fam in FAMILY_NAMES else -1)
                weight.append(base / len(pieces))
                source.append(split.source)
                text_id.append(n_text)
            n_text += 1
    return Rows(
        featurize(texts), np.asarray(attack), np.asarray(harmful), np.asarray(family), np.asarray(weight, np.float32),
        np.asarray(source), np.asarray(text_id),
    )  # fmt: skip


def composite_rows(
    split: LabelledSplit, filler: Sequence[str], featurize: Callable[[list[str]], np.ndarray]
) -> Rows | None:
    """Windows of long documents composed from `split` (see `detectors.build.composites`): benign
    windows are negatives of both heads; a buried attack's windows are positives of its head.
    None when the split yields no documents."""
    found = composite_windows(split, filler)
    if not found.texts:
        return None
    base = WEIGHTS.get(split.source, SOURCES[split.source].weight) * COMPOSITE_WEIGHT
    per_doc = np.bincount(found.doc)
    labels = np.asarray(found.labels, dtype=int)
    harmful_task = split.task == "harmful"
    return Rows(
        featurize(found.texts),
        np.where(labels == 1, -1 if harmful_task else 1, 0),
        labels * harmful_task,
        np.asarray([FAMILY_NAMES.index(f) if f in FAMILY_NAMES else -1 for f in found.families], dtype=int),
        np.asarray([base / per_doc[d] for d in found.doc], dtype=np.float32),
        np.asarray([split.source] * len(labels)),
        np.asarray(found.doc, dtype=int),
    )  # fmt: skip


def with_composites(
    rows: dict[str, dict[str, Rows]], data: dict[str, dict[str, LabelledSplit]],
    featurize: Callable[[list[str]], np.ndarray], splits: Sequence[str] = COMPOSITE_SPLITS,
) -> dict[str, dict[str, Rows]]:  # fmt: skip
    """Each source's composites of `splits`, kept apart from its plain rows (`<split>+composites`):
    training and thresholds read both, the test figures only plain rows (filler: the benign-only
    sources' same split)."""
    for split in splits:
        filler = [t for name in BENIGN_SOURCES for t in data[name][split].texts]
        for name, by_split in data.items():
            extra = composite_rows(by_split[split], filler, featurize)
            if extra is not None:
                rows[name][split + COMPOSITES] = extra
    return rows


def part(rows: dict[str, Rows], split: str) -> list[Rows]:
    """A source's rows of `split`, with that split's composites where it has them."""
    return [rows[split], *([rows[split + COMPOSITES]] if split + COMPOSITES in rows else [])]


def plain(rows: dict[str, Rows]) -> list[Rows]:
    return [r for split, r in rows.items() if not split.endswith(COMPOSITES)]


def _torch_model(width: int, mean: np.ndarray, std: np.ndarray) -> Any:
    import torch

    class Heads(torch.nn.Module):
        """Standardise, one hidden layer, three heads; `scale`/`shift` hold Platt calibration."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
            self.hidden = torch.nn.Linear(width, HIDDEN)
            self.drop = torch.nn.Dropout(0.15)
            self.attack = torch.nn.Linear(HIDDEN, 1)
            self.harmful = torch.nn.Linear(HIDDEN, 1)
            self.family = torch.nn.Linear(HIDDEN, len(FAMILY_NAMES))
            self.register_buffer("scale", torch.ones(2))
            self.register_buffer("shift", torch.zeros(2))

        def logits(self, x: Any) -> tuple[Any, Any, Any]:
            h = self.drop(torch.relu(self.hidden((x - self.mean) / self.std)))
            return self.attack(h).squeeze(-1), self.harmful(h).squeeze(-1), self.family(h)

        def forward(self, x: Any) -> tuple[Any, Any, Any]:
            attack, harmful, family = self.logits(x)
            scale: Any = self.scale
            shift: Any = self.shift
            return (
                torch.sigmoid(attack * scale[0] + shift[0]),
                torch.softmax(family, dim=-1),
                torch.sigmoid(harmful * scale[1] + shift[1]),
            )

    return Heads()


def _balanced(weight: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-row loss weights: each class carries half of the head's total weight."""
    out = np.zeros_like(weight)
    for value in (0, 1):
        chosen = mask & (labels == value)
        total = weight[chosen].sum()
        if total > 0:
            out[chosen] = weight[chosen] / total * 0.5 * mask.sum()
    return out


def train_heads(rows: Rows, *, epochs: int = EPOCHS, seed: int = SEED) -> Any:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rng = np.random.default_rng(seed)
    mean = rows.x.mean(axis=0)
    std = rows.x.std(axis=0) + 1e-3
    model = _torch_model(rows.x.shape[1], mean, std)
    attack_w = _balanced(rows.weight, rows.attack, rows.attack >= 0)
    harmful_w = _balanced(rows.weight, rows.harmful, np.ones(len(rows.harmful), dtype=bool))
    family_w = np.where(rows.family >= 0, rows.weight, 0.0).astype(np.float32)
    tensors = [torch.tensor(a) for a in (rows.x, np.maximum(rows.attack, 0).astype(np.float32), attack_w,
                                         rows.harmful.astype(np.float32), harmful_w, np.maximum(rows.family, 0),
                                         family_w)]  # fmt: skip
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    model.train()
    for _ in range(epochs):
        order = torch.tensor(rng.permutation(len(rows.x)))
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            x, ya, wa, yh, wh, yf, wf = (t[idx] for t in tensors)
            attack, harmful, family = model.logits(x)
            loss = (bce(attack, ya) * wa).mean() + (bce(harmful, yh) * wh).mean()
            if wf.sum() > 0:
                loss = loss + 0.5 * (ce(family, yf) * wf).sum() / wf.sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    return model


def raw_logits(model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch

    with torch.no_grad():
        attack, harmful, _ = model.logits(torch.tensor(x))
    return attack.numpy(), harmful.numpy()


def probabilities(model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    with torch.no_grad():
        attack, family, harmful = (t.numpy() for t in model(torch.tensor(x)))
    scores = {TIER1_CATEGORY: attack}
    for k, name in enumerate(FAMILY_NAMES):
        scores[f"{TIER1_CATEGORY}/{name}"] = attack * family[:, k]
    scores[HARMFUL_CATEGORY] = harmful
    return scores


def _platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    if len(set(labels.tolist())) < 2:
        return 1.0, 0.0
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(logits.reshape(-1, 1), labels)
    return float(platt.coef_[0, 0]), float(platt.intercept_[0])


def calibrate(model: Any, validation: Rows) -> dict[str, dict[str, float]]:
    """Platt scaling on validation for both binary heads, stored in the model's buffers."""
    import torch

    attack, harmful = raw_logits(model, validation.x)
    on_attack = validation.attack >= 0
    a = _platt(attack[on_attack], validation.attack[on_attack])
    h = _platt(harmful, validation.harmful)
    model.scale.copy_(torch.tensor([a[0], h[0]]))
    model.shift.copy_(torch.tensor([a[1], h[1]]))
    return {"attack": {"a": a[0], "b": a[1]}, "harmful": {"a": h[0], "b": h[1]}}


def threshold_at_fpr(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> float:
    """Lowest threshold whose false-positive rate on the negatives stays within target."""
    negatives = np.sort(scores[labels == 0])
    if negatives.size == 0:
        return 0.5
    index = min(max(int(np.ceil((1.0 - target_fpr) * negatives.size)), 0), negatives.size - 1)
    return float(np.nextafter(negatives[index], np.float32(1.0)))


def _per_text_max(values: np.ndarray, text_id: np.ndarray) -> np.ndarray:
    """Training windows -> one score per text (the runtime's max over windows)."""
    out = np.full(int(text_id.max()) + 1 if len(text_id) else 0, -np.inf)
    np.maximum.at(out, text_id, values)
    return out


def _per_text_label(values: np.ndarray, text_id: np.ndarray) -> np.ndarray:
    """A text's label: the highest of its windows' (a composite document with a buried attack is
    positive; a plain text's windows all carry its label)."""
    out = np.full(int(text_id.max()) + 1 if len(text_id) else 0, -1 if values.min(initial=0) < 0 else 0,
                  dtype=values.dtype)  # fmt: skip
    np.maximum.at(out, text_id, values)
    return out


def _positive_texts(rows: Rows) -> np.ndarray:
    """1 for a text with an attack or harmful window, 0 for a benign one."""
    positive: np.ndarray = _per_text_label(np.maximum(rows.attack, rows.harmful), rows.text_id) == 1
    return positive.astype(int)


def thresholds_for(scores: dict[str, np.ndarray], validation: Rows, target_fpr: float) -> dict[str, float]:
    """Per category: the target FPR over the validation texts that are benign (every source),
    raised where a benign-only source's validation would exceed PER_SOURCE_SHARE of it."""
    labels = _positive_texts(validation)
    source = np.empty(len(labels), dtype=object)
    source[validation.text_id] = validation.source
    result = {}
    for category, values in scores.items():
        fpr = HARMFUL_TARGET_FPR if category == HARMFUL_CATEGORY else target_fpr
        per_text = _per_text_max(values, validation.text_id)
        threshold = threshold_at_fpr(per_text, labels, fpr)
        for name in SCREENED_BENIGN_SOURCES:
            mine = source == name
            if mine.sum() >= 50:
                threshold = max(threshold, threshold_at_fpr(per_text[mine], labels[mine], fpr * PER_SOURCE_SHARE))
        result[category] = threshold
    return result


def thresholds_at(scores: dict[str, np.ndarray], validation: Rows, fpr: float) -> dict[str, float]:
    """Each category at one FPR over the pooled validation benign texts (no per-source caps)."""
    labels = _positive_texts(validation)
    return {c: threshold_at_fpr(_per_text_max(v, validation.text_id), labels, fpr) for c, v in scores.items()}


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else None


@dataclass
class Trained:
    model: Any
    thresholds: dict[str, float]
    platt: dict[str, dict[str, float]]


def fit_recipe(train: Rows, validation: Rows, *, epochs: int = EPOCHS, target_fpr: float = TARGET_FPR) -> Trained:
    """The whole recipe the cross-source figures retrain: heads, calibration, thresholds."""
    model = train_heads(train, epochs=epochs)
    platt = calibrate(model, validation)
    thresholds = thresholds_for(probabilities(model, validation.x), validation, target_fpr)
    return Trained(model, thresholds, platt)


def text_scores(trained: Trained, rows: Rows) -> dict[str, np.ndarray]:
    return {c: _per_text_max(v, rows.text_id) for c, v in probabilities(trained.model, rows.x).items()}


def leave_one_source_out(
    data: dict[str, dict[str, Rows]], progress: Callable[[str], None] = log.info
) -> dict[str, Any]:
    """Each source with attacks: train without it (every split of the others' train), threshold
    at 1% FPR on the others' validation, test on all of its rows. Negatives for the AUC: its own
    benign rows where it has them, else the others' held-out benign test rows."""
    result: dict[str, Any] = {}
    for held in [name for name in data if name in SOURCES and any((r.attack == 1).any() or (r.harmful == 1).any()
                                                                   for r in data[name].values())]:  # fmt: skip
        others = [n for n in data if n != held]
        train = concat([r for n in others for r in part(data[n], "train")])
        validation = concat([r for n in others for r in part(data[n], "validation")])
        trained = fit_recipe(train, validation)
        test = concat(plain(data[held]))
        category = HARMFUL_CATEGORY if SOURCES[held].task == "harmful" else TIER1_CATEGORY
        scores = text_scores(trained, test)
        positive = _per_text_label(np.maximum(test.attack, test.harmful), test.text_id)
        s_pos = scores[category][positive == 1]
        s_neg = scores[category][positive == 0]
        negatives = "own benign rows"
        if len(s_neg) < 20:
            benign_test = concat([data[n]["test"] for n in others if n in BENIGN_SOURCES])
            s_neg = text_scores(trained, benign_test)[category]
            negatives = "held-out benign test rows of the other sources"
        y = np.concatenate([np.ones(len(s_pos)), np.zeros(len(s_neg))])
        s = np.concatenate([s_pos, s_neg])
        # The figure: a plain 1% FPR on the training side's pooled validation benign texts
        # (the shipped thresholds add per-source caps on top; `tpr_routed` uses those).
        threshold = thresholds_at(probabilities(trained.model, validation.x), validation, 0.01)[category]
        routed = np.maximum(scores[TIER1_CATEGORY] / trained.thresholds[TIER1_CATEGORY],
                            scores[HARMFUL_CATEGORY] / trained.thresholds[HARMFUL_CATEGORY])  # fmt: skip
        result[held] = {
            "category": category,
            "positives": len(s_pos),
            "negatives": len(s_neg),
            "negatives_from": negatives,
            "auc": auc(y, s),
            "tpr_at_1pct_fpr": float(np.mean(s_pos >= threshold)),
            "tpr_routed": float(np.mean(routed[positive == 1] >= 1.0)),
            "fpr_at_threshold": float(np.mean(s_neg >= threshold)),
            "threshold_from": "1% FPR on the training side's validation benign rows",
        }
        progress(f"held out {held}: AUC {result[held]['auc']}, TPR@1%FPR {result[held]['tpr_at_1pct_fpr']:.3f}")
    return result


def concat(parts: Sequence[Rows]) -> Rows:
    offsets = np.cumsum([0] + [int(p.text_id.max()) + 1 if len(p.text_id) else 0 for p in parts])
    return Rows(
        np.vstack([p.x for p in parts]), np.concatenate([p.attack for p in parts]),
        np.concatenate([p.harmful for p in parts]), np.concatenate([p.family for p in parts]),
        np.concatenate([p.weight for p in parts]), np.concatenate([p.source for p in parts]),
        np.concatenate([p.text_id + off for p, off in zip(parts, offsets, strict=False)]),
    )  # fmt: skip


def check_leakage(data: dict[str, dict[str, LabelledSplit]], evaluation_texts: Iterable[str]) -> dict[str, int]:
    """Fails the build when an evaluation text is a training or validation row; drops from
    training and validation every row that is also a test row (of any source)."""
    evaluation = {text_hash(t) for t in evaluation_texts if t.strip()}
    leaks = [
        (name, split, text)
        for name, splits in data.items()
        for split in ("train", "validation")
        for text in splits[split].texts
        if text_hash(text) in evaluation
    ]
    if leaks:
        shown = "; ".join(f"{name}/{split}: {text[:60]!r}" for name, split, text in leaks[:5])
        raise EvaluationLeak(f"{len(leaks)} evaluation texts are in the training data ({shown})")
    test_hashes = {text_hash(t) for splits in data.values() for t in splits["test"].texts}
    dropped = 0
    for splits in data.values():
        for split in ("train", "validation"):
            s = splits[split]
            keep = [i for i, t in enumerate(s.texts) if text_hash(t) not in test_hashes]
            dropped += len(s.texts) - len(keep)
            splits[split] = LabelledSplit(
                s.source, s.split, [s.texts[i] for i in keep], [s.labels[i] for i in keep],
                [s.families[i] for i in keep] if s.families else [], s.task,
            )  # fmt: skip
    return {"evaluation_texts": len(evaluation), "rows_dropped_as_test_duplicates": dropped}


def export_onnx(model: Any, width: int, path: Path) -> None:
    import torch

    sample = torch.zeros(2, width)
    torch.onnx.export(
        model, (sample,), str(path), input_names=["features"],
        output_names=["attack_probabilities", "family_probabilities", "harmful_probabilities"],
        dynamic_axes={"features": {0: "batch"}, "attack_probabilities": {0: "batch"},
                      "family_probabilities": {0: "batch"}, "harmful_probabilities": {0: "batch"}},
        opset_version=17, dynamo=False,
    )  # fmt: skip


def build_tier1_static(
    out_dir: Path, datasets_dir: Path, *, evaluation_texts: Iterable[str] = (), cache_dir: Path | None = None,
    cross_source: bool = True, progress: Callable[[str], None] = log.info,
) -> dict[str, Any]:  # fmt: skip
    started = time.monotonic()

    def step(message: str) -> None:
        progress(f"  [{time.monotonic() - started:5.0f} s] {message}")

    data = load_all(datasets_dir)
    leakage = check_leakage(data, evaluation_texts)
    step(f"data read, leakage check passed ({leakage}); static vectors (teachers are cached after a first build)")
    corpus = [t for splits in data.values() for t in splits["train"].texts]
    table, table_card = build_static_table(corpus, cache_dir or out_dir.parent / "cache")
    featurizer = Featurizer(table)
    featurizer.warm()
    step(f"static table: {table_card['vocabulary']} words; featurising every split")
    rows = {name: {split: make_rows([s], featurizer) for split, s in splits.items()} for name, splits in data.items()}
    with_composites(rows, data, featurizer)
    train = concat([r for by_split in rows.values() for r in part(by_split, "train")])
    validation = concat([r for by_split in rows.values() for r in part(by_split, "validation")])
    step(f"training the heads on {len(train.x)} windows")
    trained = fit_recipe(train, validation)

    out_dir.mkdir(parents=True, exist_ok=True)
    table_path = out_dir / TABLE_FILE
    table.save(table_path)
    model_path = out_dir / MODEL_FILE
    export_onnx(trained.model, table.width, model_path)

    per_source: dict[str, Any] = {}
    benign_fpr: dict[str, float] = {}
    agreement = 1.0
    exported = StaticTier1.load(model_path, StaticTable.load(table_path), FAMILY_NAMES)
    for name in data:
        test = rows[name]["test"]
        if not len(test.x):
            continue
        scores = text_scores(trained, test)
        onnx = {c: _per_text_max(v, test.text_id) for c, v in exported.predict_features(test.x).items()}
        for c in (TIER1_CATEGORY, HARMFUL_CATEGORY):
            same = (scores[c] >= trained.thresholds[c]) == (onnx[c] >= trained.thresholds[c])
            agreement = min(agreement, float(np.mean(same)))
        routed = (onnx[TIER1_CATEGORY] >= trained.thresholds[TIER1_CATEGORY]) | (
            onnx[HARMFUL_CATEGORY] >= trained.thresholds[HARMFUL_CATEGORY]
        )
        positive = _per_text_label(np.maximum(test.attack, test.harmful), test.text_id)
        category = HARMFUL_CATEGORY if SOURCES[name].task == "harmful" else TIER1_CATEGORY
        figures: dict[str, Any] = {"category": category, "rows": len(positive), "positives": int(positive.sum())}
        if positive.any():
            figures["tpr_at_threshold"] = float(np.mean(onnx[category][positive == 1] >= trained.thresholds[category]))
            figures["tpr_routed"] = float(np.mean(routed[positive == 1]))
        if (positive == 0).any():
            figures["fpr_routed"] = float(np.mean(routed[positive == 0]))
        if 0 < positive.sum() < len(positive):
            figures["auc"] = auc(positive, onnx[category])
        if name in SCREENED_BENIGN_SOURCES:
            benign_fpr[name] = figures["fpr_routed"]
        per_source[name] = figures
    if agreement < MIN_EXPORT_AGREEMENT:
        model_path.unlink()
        raise RuntimeError(f"ONNX export disagrees with the trained model: agreement {agreement:.4f}")

    step("exported and checked; leave-one-source-out runs (one training per source with attacks)")
    cross = leave_one_source_out(rows, progress=step) if cross_source else {}
    card: dict[str, Any] = {
        "name": "tier1-static-mlp",
        "kind": "static",
        "version": time.strftime("%Y%m%d") + "-" + _digest(model_path, table_path),
        "families": FAMILY_NAMES,
        "categories": {
            c: {
                "threshold": t,
                "target_fpr": HARMFUL_TARGET_FPR if c == HARMFUL_CATEGORY else TARGET_FPR,
                "routes": "/" not in c,
            }
            for c, t in trained.thresholds.items()
        },
        "sources": {
            name: {
                "licence": source.licence,
                "origin": source.origin,
                "head": source.task,
                "used_for": "train, validation (calibration, thresholds), test; held out in turn for the cross-source "
                "figures" + ("" if source.weight == 1.0 else f"; training weight {source.weight}"),
            }
            for name, source in SOURCES.items()
        },
        "splits": {
            name: {split: {"rows": len(s.texts), "positives": int(sum(s.labels))} for split, s in splits.items()}
            for name, splits in data.items()
        },
        "test": per_source,
        "benign_fpr": benign_fpr,
        "benign_fpr_max": max(benign_fpr.values()),
        "benign_fpr_from": "test splits of the benign sources tier 1 screens at run time (bfcl-tools, tool "
        "descriptions, is a training negative only: the tool lint reads descriptions; see test.bfcl-tools)",
        "per_family": per_family(trained, rows),
        "long_documents": long_documents(trained, data, featurizer),
        "json_fields": json_fields(trained, data, featurizer),
        "cross_source": cross,
        "calibration": {"method": "Platt scaling on the validation splits, inside the ONNX graph", **trained.platt},
        "export_agreement": agreement,
        "leakage_check": leakage,
        "features": {
            "kind": "static word vectors (MiniLM + USE-multilingual, PCA, SIF-weighted mean and max) + hashed "
            "char 3-5-gram vectors for unknown words + 5 shape scalars; numba featuriser",
            "width": table.width,
            **table_card,
        },
        "heads": f"MLP {table.width}-{HIDDEN}-(1, 1, {len(FAMILY_NAMES)}), ReLU, trained jointly (torch), ONNX",
        "model_bytes": model_path.stat().st_size + table_path.stat().st_size,
        "seed": SEED,
    }
    if cross:
        card["auc_cross_min"] = min(float(v["auc"]) for v in cross.values() if v["auc"] is not None)
        card["tpr_at_1pct_fpr_cross_min"] = min(float(v["tpr_at_1pct_fpr"]) for v in cross.values())
    card["providers"] = exported.providers
    texts = [normalize_for_classifier(t) for splits in data.values() for t in splits["test"].texts]
    speed = measure(exported.matrix, [w for t in texts for w in windows(t)][:20_000])
    card["speed"] = {"batch_size": speed.batch_size, "events_per_s": speed.events_per_s, "p50_ms": speed.p50_ms,
                     "measured_on": "test-split windows, featuriser + ONNX heads, one thread (no event handling; "
                     "`oodwatch bench --stage tier1` times whole events)"}  # fmt: skip
    card["events_per_s"] = speed.events_per_s
    from detectors.build.rules_eval import rule_fpr

    step("measuring each rule's false-positive rate on the benign corpora")
    card["rules"] = rule_fpr(datasets_dir)
    card["build_seconds"] = round(time.monotonic() - started, 1)
    (out_dir / META_FILE).write_text(json.dumps(card, indent=2))
    return card


def _digest(*paths: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest()[:10]


def long_documents(
    trained: Trained, data: dict[str, dict[str, LabelledSplit]], featurize: Callable[[list[str]], np.ndarray]
) -> dict[str, Any]:  # fmt: skip
    """Long documents composed from the *test* splits (never trained on): how often a benign one
    routes, and how often an attack buried in benign text still routes, at the shipped thresholds."""
    filler = [t for name in BENIGN_SOURCES for t in data[name]["test"].texts]
    figures: dict[str, Any] = {}
    for name, splits in data.items():
        found = composite_windows(splits["test"], filler, seed=LONG_DOCUMENT_PROBE_SEED)
        if not found.texts:
            continue
        scores = probabilities(trained.model, featurize(found.texts))
        doc = np.asarray(found.doc)
        routed = np.maximum(scores[TIER1_CATEGORY] / trained.thresholds[TIER1_CATEGORY],
                            scores[HARMFUL_CATEGORY] / trained.thresholds[HARMFUL_CATEGORY])  # fmt: skip
        per_doc = _per_text_max(routed, doc) >= 1.0
        positive = _per_text_label(np.asarray(found.labels), doc) == 1
        figures[name] = {
            "documents": len(per_doc),
            **({"benign_routed": round(float(per_doc[~positive].mean()), 4)} if (~positive).any() else {}),
            **({"buried_attack_routed": round(float(per_doc[positive].mean()), 4)} if positive.any() else {}),
        }
    benign = [f["benign_routed"] for n, f in figures.items() if "benign_routed" in f and n in SCREENED_BENIGN_SOURCES]
    return {
        "per_source": figures,
        "benign_routed_max": max(benign, default=0.0),
        "built_from": "test splits: 8-60 benign rows of a source joined; or one attack of a source placed among "
        "benign test rows of the benign-only sources (detectors.build.composites)",
    }


#: Free-text fields of a tool result an attack is placed in (`json_fields`).
JSON_TEXT_FIELDS = ("notes", "description", "comment", "message", "content", "summary", "body", "text")
JSON_PROBE_PER_SOURCE = 200


def json_fields(
    trained: Trained, data: dict[str, dict[str, LabelledSplit]], featurize: Callable[[list[str]], np.ndarray]
) -> dict[str, Any]:  # fmt: skip
    """Attacks of each source's *test* split placed in a text field of a JSON tool result from the
    tool-outputs test split, read as the runtime reads a part (its windows, and its JSON text
    fields on their own): how often they route, beside the benign tool results themselves."""
    rng = np.random.default_rng(LONG_DOCUMENT_PROBE_SEED)
    results = [t for t in data["tool-outputs"]["test"].texts if t.lstrip().startswith("{")]

    def routed(texts: list[str]) -> float:
        windows_of = [part_windows(t) for t in texts]
        flat = [w for ws in windows_of for w in ws]
        owner = np.repeat(np.arange(len(texts)), [len(ws) for ws in windows_of])
        scores = probabilities(trained.model, featurize(flat))
        ratio = np.maximum(scores[TIER1_CATEGORY] / trained.thresholds[TIER1_CATEGORY],
                           scores[HARMFUL_CATEGORY] / trained.thresholds[HARMFUL_CATEGORY])  # fmt: skip
        return round(float(np.mean(_per_text_max(ratio, owner) >= 1.0)), 4)

    figures: dict[str, Any] = {"benign_tool_results_routed": routed(results) if results else None}
    for name, splits in data.items():
        attacks = [t for t, y in zip(splits["test"].texts, splits["test"].labels, strict=True) if y]
        if not attacks or not results:
            continue
        attacks = attacks[:JSON_PROBE_PER_SOURCE]
        placed = []
        for attack in attacks:
            result = json.loads(results[int(rng.integers(len(results)))])
            result = result if isinstance(result, dict) else {"data": result}
            result[JSON_TEXT_FIELDS[int(rng.integers(len(JSON_TEXT_FIELDS)))]] = attack
            placed.append(json.dumps(result, indent=2 if rng.random() < 0.5 else None))
        figures[name] = {
            "attacks": len(attacks), "alone_routed": routed(attacks), "in_json_field_routed": routed(placed),
        }  # fmt: skip
    return figures


def per_family(trained: Trained, rows: dict[str, dict[str, Rows]]) -> dict[str, Any]:
    """Each family's test rows (every source that labels families) against all benign test rows."""
    test = concat([r["test"] for r in rows.values()])
    scores = text_scores(trained, test)
    family = _per_text_label(test.family, test.text_id)
    positive = _per_text_label(np.maximum(test.attack, test.harmful), test.text_id)
    benign = positive == 0
    figures: dict[str, Any] = {}
    for k, name in enumerate(FAMILY_NAMES):
        chosen = family == k
        category = f"{TIER1_CATEGORY}/{name}"
        mask = chosen | benign
        y = chosen[mask].astype(int)
        figures[category] = {
            "test_positives": int(chosen.sum()),
            "auc_vs_benign": auc(y, scores[TIER1_CATEGORY][mask]),
            "tpr_at_threshold": float(np.mean(scores[TIER1_CATEGORY][chosen] >= trained.thresholds[TIER1_CATEGORY]))
            if chosen.any() else None,
        }  # fmt: skip
    return figures

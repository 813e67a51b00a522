"""Tier 1: the ONNX text classifier that screens every event.

One graph, three heads (see detectors/build/tier1.py): `injection` is p(attack), each
`injection/<family>` is p(attack) * p(family | attack), and `harmful` is p(harmful request).
Thresholds come with the model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detectors.text import normalize_for_classifier, screening_text
from schemas.events import LLMEvent
from schemas.evidence import CategoryScore

MODEL_FILE = "tier1.onnx"
META_FILE = "tier1.json"
TIER1_CATEGORY = "injection"
HARMFUL_CATEGORY = "harmful"

log = logging.getLogger(__name__)


def onnx_providers(prefer_gpu: bool = True) -> list[str]:
    """CUDA when ONNX Runtime offers it, CPU always as the fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if prefer_gpu and "CUDAExecutionProvider" in available else []
    return [*wanted, "CPUExecutionProvider"]


class OnnxTier1:
    """The exported graph behind the text normalisation: strings in, category scores out.
    The session is built once."""

    def __init__(self, session: Any, families: Sequence[str]) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self.families = list(families)

    @classmethod
    def load(cls, path: Path, families: Sequence[str], *, threads: int = 1) -> OnnxTier1:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=onnx_providers())
        return cls(session, families)

    @property
    def providers(self) -> list[str]:
        """What ONNX Runtime actually uses (a GPU build without CUDA falls back silently)."""
        return list(self._session.get_providers())

    def predict(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if not texts:
            return {}
        batch = np.asarray([normalize_for_classifier(text) for text in texts], dtype=object).reshape(-1, 1)
        attack, family, harmful = self._session.run(
            ["attack_probabilities", "family_probabilities", "harmful_probabilities"], {self._input: batch}
        )
        p_attack = np.asarray(attack)[:, 1]
        scores = {TIER1_CATEGORY: p_attack}
        for k, name in enumerate(self.families):
            scores[f"{TIER1_CATEGORY}/{name}"] = p_attack * np.asarray(family)[:, k]
        scores[HARMFUL_CATEGORY] = np.asarray(harmful)[:, 1]
        return scores


class Tier1Classifier:
    """Per-category scores for every event, judged by the thresholds chosen at build time."""

    name = "tier1-classifier"

    def __init__(self, model_dir: Path) -> None:
        model_path = model_dir / MODEL_FILE
        meta_path = model_dir / META_FILE
        if not model_path.exists() or not meta_path.exists():
            raise FileNotFoundError(
                f"tier-1 model not found in {model_dir}: run `oodwatch models build` (or `make setup`)"
            )
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        if "families" not in self.meta:
            raise FileNotFoundError(
                f"tier-1 model in {model_dir} is from an older build: run `oodwatch models build --force`"
            )
        self.version = str(self.meta["version"])
        self.thresholds = {name: float(c["threshold"]) for name, c in self.meta["categories"].items()}
        self._model = OnnxTier1.load(model_path, self.meta["families"])
        log.info("tier-1 classifier %s loaded with providers %s", self.version, self._model.providers)

    @property
    def providers(self) -> list[str]:
        return self._model.providers

    def score(self, events: Sequence[LLMEvent]) -> list[tuple[CategoryScore, ...]]:
        scores = self._model.predict([screening_text(event) for event in events])
        return [
            tuple(
                CategoryScore(
                    category=category, score=float(scores[category][i]), threshold=threshold, detector=self.name
                )
                for category, threshold in self.thresholds.items()
            )
            for i in range(len(events))
        ]

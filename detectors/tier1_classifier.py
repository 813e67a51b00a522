"""Tier 1: the ONNX text classifier that screens every event."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detectors.text import screening_text
from schemas.events import LLMEvent
from schemas.evidence import CategoryScore

MODEL_FILE = "tier1.onnx"
META_FILE = "tier1.json"
TIER1_CATEGORY = "injection"

log = logging.getLogger(__name__)


def onnx_providers(prefer_gpu: bool = True) -> list[str]:
    """CUDA when ONNX Runtime offers it, CPU always as the fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if prefer_gpu and "CUDAExecutionProvider" in available else []
    return [*wanted, "CPUExecutionProvider"]


class OnnxTextClassifier:
    """A string-in, probability-out ONNX session. The session is built once."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[-1].name

    @classmethod
    def load_raw(cls, path: Path, *, threads: int = 1) -> OnnxTextClassifier:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=onnx_providers())
        return cls(session)

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        batch = np.asarray(texts, dtype=object).reshape(-1, 1)
        probabilities = self._session.run([self._output], {self._input: batch})[0]
        return np.asarray(probabilities)[:, 1]


class Tier1Classifier:
    """Injection/jailbreak score for every event, with the threshold chosen at build time."""

    name = "tier1-classifier"

    def __init__(self, model_dir: Path) -> None:
        model_path = model_dir / MODEL_FILE
        meta_path = model_dir / META_FILE
        if not model_path.exists() or not meta_path.exists():
            raise FileNotFoundError(
                f"tier-1 model not found in {model_dir}: run `oodwatch models build` (or `make setup`)"
            )
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        self.version = str(self.meta["version"])
        self.threshold = float(self.meta["categories"][TIER1_CATEGORY]["threshold"])
        self._model = OnnxTextClassifier.load_raw(model_path)
        log.info("tier-1 classifier %s loaded with providers %s", self.version, self._model.providers)

    @property
    def providers(self) -> list[str]:
        return self._model.providers

    def score(self, events: Sequence[LLMEvent]) -> list[tuple[CategoryScore, ...]]:
        probabilities = self._model.predict([screening_text(event) for event in events])
        return [
            (CategoryScore(category=TIER1_CATEGORY, score=float(p), threshold=self.threshold, detector=self.name),)
            for p in probabilities
        ]

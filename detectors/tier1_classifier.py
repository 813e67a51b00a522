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
HARMFUL_OUTPUT_CATEGORY = "harmful_output"
WINDOW_CHARS = 384
WINDOW_STEP = 256
MAX_WINDOWS = 64

log = logging.getLogger(__name__)


def onnx_providers(prefer_gpu: bool = True) -> list[str]:
    """CUDA when ONNX Runtime offers it, CPU always as the fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if prefer_gpu and "CUDAExecutionProvider" in available else []
    return [*wanted, "CPUExecutionProvider"]


def windows(text: str) -> list[str]:
    """Overlapping windows over a long text; at most MAX_WINDOWS, spread evenly over it."""
    if len(text) <= WINDOW_CHARS:
        return [text]
    starts = list(range(0, len(text) - WINDOW_CHARS + WINDOW_STEP, WINDOW_STEP))
    if len(starts) > MAX_WINDOWS:
        stride = len(starts) / MAX_WINDOWS
        starts = [starts[int(k * stride)] for k in range(MAX_WINDOWS - 1)] + [starts[-1]]
    return [text[start : start + WINDOW_CHARS] for start in starts]


def output_text(event: LLMEvent) -> str:
    return "\n".join(m.content for m in event.output_messages if m.content)


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
        """Input side in windows (an attack buried in a long context is not averaged away; each
        event scores its most suspicious window), and the model's output through the harmful
        head (`harmful_output`: a response that gives the harmful help a request asked for)."""
        texts: list[str] = []
        owners: list[int] = []
        outputs: list[int] = []
        for i, event in enumerate(events):
            for window in windows(screening_text(event, None, tools=False)):
                texts.append(window)
                owners.append(i)
        for i, event in enumerate(events):
            output = output_text(event)
            if output:
                texts.append(output)
                outputs.append(i)
        scores = self._model.predict(texts)
        per_event = {c: np.zeros(len(events), dtype=np.float64) for c in self.thresholds}
        for category, values in scores.items():
            np.maximum.at(per_event[category], owners, values[: len(owners)])
        harmful_output = np.zeros(len(events), dtype=np.float64)
        if outputs:
            np.maximum.at(harmful_output, outputs, scores[HARMFUL_CATEGORY][len(owners) :])
        harmful_threshold = self.thresholds[HARMFUL_CATEGORY]
        return [
            (
                *(
                    CategoryScore(category=c, score=float(per_event[c][i]), threshold=t, detector=self.name)
                    for c, t in self.thresholds.items()
                ),
                CategoryScore(
                    category=HARMFUL_OUTPUT_CATEGORY, score=float(harmful_output[i]), threshold=harmful_threshold,
                    detector=self.name,
                ),
            )
            for i in range(len(events))
        ]  # fmt: skip

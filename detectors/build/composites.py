"""Long documents composed of training texts, so that a full window is not itself a signal.

Tier 1 reads text in windows of WINDOW_CHARS. In the labelled sets almost every text longer than
one window is an attack (about 1,000 attacks against 140 benign texts: jailbreaks in the wild are
long, benign requests are short), so the heads learnt that a full window of ordinary prose looks
like a jailbreak. Measured before composites, at the shipped thresholds: documents joined from
the benign *test* rows of chatterbot routed 20% (single rows 0.15%), neuralchemy's 25%, bfcl's 7%.
Long benign context is ordinary traffic (meeting notes, retrieved documents, chat history).

Composites are built per source from that source's own split, seeded:
- benign documents: 8-60 of the source's benign texts joined; windows labelled benign;
- buried attacks: one of the source's attacks (or harmful requests) placed inside benign filler
  from the benign-only sources' same split; the windows that hold most of it are positive, the
  windows that hold none of it benign, the ones in between are left out.
Every text comes from the source's own split, so the leave-one-source-out runs hold a source's
composites out with it, and no test row reaches training.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from detectors.build.datasets import LabelledSplit
from detectors.text import normalize_for_classifier
from detectors.tier1_classifier import WINDOW_CHARS, window_starts

SEED = 20261207
#: Documents per source and split: at most this many of each kind, and one per this many rows.
MAX_DOCUMENTS = 400
ROWS_PER_DOCUMENT = 4
PIECES = (8, 60)
#: Windows a document contributes at most (random ones; the buried attack's windows first).
WINDOWS_PER_DOCUMENT = 4
#: A window is positive when it holds at least this share of the attack (or a full window of it).
POSITIVE_SHARE = 0.6
SEPARATORS = (" ", "\n", "\n\n", "\n- ", " | ")


@dataclass
class CompositeWindows:
    """Windows with their labels; `doc` groups the windows of one document."""

    texts: list[str]
    labels: list[int]
    families: list[str | None]
    doc: list[int]


def composite_windows(split: LabelledSplit, filler: Sequence[str], *, seed: int = SEED) -> CompositeWindows:
    """Benign documents from `split`'s benign rows, and `split`'s positives buried in `filler`
    (benign texts of the same split of other sources)."""
    rng = random.Random(f"{seed}/{split.source}/{split.split}")
    out = CompositeWindows([], [], [], [])
    rows = list(zip(split.texts, split.labels, strict=True))
    benign = [normalize_for_classifier(t) for t, y in rows if not y and t.strip()]
    positives = [
        (normalize_for_classifier(t), split.families[i] if split.families else None)
        for i, (t, y) in enumerate(rows)
        if y and t.strip()
    ]
    pool = [normalize_for_classifier(t) for t in filler if t.strip()]
    if len(benign) >= 2 * PIECES[0]:
        for _ in range(min(MAX_DOCUMENTS, len(benign) // ROWS_PER_DOCUMENT)):
            _add_benign(out, _document(rng, benign), rng)
    if positives and len(pool) >= 2 * PIECES[0]:
        for text, family in rng.sample(positives, min(MAX_DOCUMENTS, max(1, len(positives) // ROWS_PER_DOCUMENT))):
            _add_buried(out, text, family, pool, rng)
    return out


def _document(rng: random.Random, texts: Sequence[str]) -> tuple[list[str], str]:
    pieces = [rng.choice(texts) for _ in range(rng.randint(*PIECES))]
    return pieces, rng.choice(SEPARATORS)


def _windows(text: str) -> list[tuple[int, str]]:
    return [(start, text[start : start + WINDOW_CHARS]) for start in window_starts(len(text))]


def _add_benign(out: CompositeWindows, document: tuple[list[str], str], rng: random.Random) -> None:
    pieces, separator = document
    found = _windows(separator.join(pieces))
    doc = out.doc[-1] + 1 if out.doc else 0
    for _, window in rng.sample(found, min(WINDOWS_PER_DOCUMENT, len(found))):
        out.texts.append(window)
        out.labels.append(0)
        out.families.append(None)
        out.doc.append(doc)


def _add_buried(
    out: CompositeWindows, attack: str, family: str | None, pool: Sequence[str], rng: random.Random
) -> None:
    pieces, separator = _document(rng, pool)
    at = rng.randrange(len(pieces) + 1)
    before = separator.join(pieces[:at]) + (separator if at else "")
    text = before + attack + (separator if at < len(pieces) else "") + separator.join(pieces[at:])
    start, end = len(before), len(before) + len(attack)
    needed = min(len(attack) * POSITIVE_SHARE, WINDOW_CHARS * POSITIVE_SHARE)
    positive, negative = [], []
    for offset, window in _windows(text):
        overlap = max(0, min(end, offset + WINDOW_CHARS) - max(start, offset))
        if overlap >= needed:
            positive.append(window)
        elif overlap == 0:
            negative.append(window)
    if not positive:
        return
    doc = out.doc[-1] + 1 if out.doc else 0
    chosen = rng.sample(positive, min(2, len(positive)))
    chosen_negative = rng.sample(negative, min(WINDOWS_PER_DOCUMENT - len(chosen), len(negative)))
    for window, label in [(w, 1) for w in chosen] + [(w, 0) for w in chosen_negative]:
        out.texts.append(window)
        out.labels.append(label)
        out.families.append(family if label else None)
        out.doc.append(doc)

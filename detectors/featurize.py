"""Text -> fixed-width features for tier 1, in one numba kernel over the whole batch.

Why not ONNX string ops or HF `tokenizers`: both cost 60-240 ns per byte here, more than the
rest of tier 1 together. This kernel reads the batch as one UTF-8 buffer (normalised text,
see `detectors.text.normalize_for_classifier`) and, per text:

* splits it into tokens: runs of letters/digits (any non-ASCII byte counts as a letter, so
  every script tokenises) and runs of ASCII symbols (`<!--`, `###`, `[/inst]` carry signal);
* looks each token up in a static word table (vectors distilled at build time from the
  project's MiniLM and a multilingual teacher, see `detectors.build.static_vectors`); an
  all-digit token reads as the row of "0";
* gives an unknown word (typo, leetspeak left-over, rare inflection, unseen script) the mean
  of its hashed character 3-5-gram vectors, which were fitted to reproduce known words;
  unknown symbol runs are skipped;
* pools: a frequency-weighted mean (SIF) and an element-wise max of the token vectors, and
  a few shape scalars (length, unknown share, non-ASCII, digits, symbols).

The dense model (heads) runs in ONNX Runtime on these features. Hashes are FNV-1a 64, so the
build (Python, same functions) and the runtime agree byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
NGRAM_MIN = 3
NGRAM_MAX = 5
#: Long tokens (hashes, base64, URLs without separators) cost n-grams per byte: only their
#: first MAX_NGRAM_BYTES bytes are read for the unknown-word vector.
MAX_NGRAM_BYTES = 24
#: Tokens of one text beyond this are not read (texts are windowed before; this is a bound).
MAX_TOKENS = 4096
N_SCALARS = 5
KIND_WORD = 0
KIND_SYMBOL = 1
DIGIT_KEY_TEXT = "0"

_KERNELS: dict[str, Any] = {}


def _compile() -> dict[str, Any]:
    """numba is imported and the kernels are jitted on first use (`warm()` at worker start),
    never at import time. `cache=True`: later processes load the machine code from disk."""
    if _KERNELS:
        return _KERNELS
    import numba as nb

    @nb.njit(cache=True, nogil=True)
    def char_at(buf: Any, i: int, end: int) -> tuple[int, int]:
        """(class, byte length) of the character at buf[i]: 0 space, 1 word, 2 symbol. Non-ASCII is
        a letter unless it is punctuation, symbols or emoji (Latin-1 punctuation, U+2000-U+2BFF,
        CJK punctuation, U+1F000 on): "—", "¿", "«", "、", emoji do not glue onto words."""
        b = buf[i]
        if b < 128:
            if b == 32 or 9 <= b <= 13:
                return 0, 1
            if (97 <= b <= 122) or (48 <= b <= 57) or (65 <= b <= 90):
                return 1, 1
            return 2, 1
        length = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
        if i + length > end:
            return 2, end - i
        c1 = buf[i + 1]
        if b == 0xC2 and c1 >= 0xA0:  # U+00A0-U+00BF: nbsp, ¡ « » ¿ ° ...
            return (0 if c1 == 0xA0 else 2), 2
        if b == 0xC3 and (c1 == 0x97 or c1 == 0xB7):  # × ÷
            return 2, 2
        if b == 0xE2 and 0x80 <= c1 <= 0xAF:  # U+2000-U+2BFF: spaces, dashes, quotes, arrows, maths
            return (0 if c1 == 0x80 and buf[i + 2] <= 0x8A else 2), 3
        if b == 0xE3 and c1 == 0x80:  # U+3000-U+303F: CJK spaces and punctuation
            return 2, 3
        if b == 0xEF and c1 == 0xBC and buf[i + 2] <= 0x8F:  # fullwidth ! " # ... (NFKC usually folds them)
            return 2, 3
        if b == 0xF0 and c1 == 0x9F:  # U+1F000-U+1FFFF: emoji and pictographs
            return 2, 4
        return 1, length

    @nb.njit(cache=True, nogil=True)
    def fnv(buf: Any, start: int, end: int, seed: Any) -> Any:
        h = seed
        for i in range(start, end):
            h = (h ^ np.uint64(buf[i])) * FNV_PRIME
        return h

    @nb.njit(cache=True, nogil=True)
    def lookup(keys: Any, rows: Any, key: Any) -> Any:
        mask = np.uint64(keys.shape[0] - 1)
        slot = key & mask
        while True:
            k = keys[slot]
            r = rows[slot]
            if r < 0:
                return -1
            if k == key:
                return r
            slot = (slot + np.uint64(1)) & mask

    @nb.njit(cache=True, nogil=True)
    def tokens(buf: Any, start: int, end: int, out: Any) -> int:
        """(start, end, kind) of each token of buf[start:end] into out; returns the count.
        A token is a run of word characters or a run of symbol characters."""
        n = 0
        i = start
        limit = out.shape[0]
        while i < end and n < limit:
            cls, size = char_at(buf, i, end)
            if cls == 0:
                i += size
                continue
            j = i + size
            while j < end:
                nxt, nsize = char_at(buf, j, end)
                if nxt != cls:
                    break
                j += nsize
            out[n, 0] = i
            out[n, 1] = j
            out[n, 2] = KIND_WORD if cls == 1 else KIND_SYMBOL
            n += 1
            i = j
        return n

    @nb.njit(cache=True, nogil=True)
    def all_digits(buf: Any, start: int, end: int) -> bool:
        for i in range(start, end):  # noqa: SIM110 (numba compiles no generator)
            if not (48 <= buf[i] <= 57):
                return False
        return True

    @nb.njit(cache=True, nogil=True)
    def ngram_vector(buf: Any, start: int, end: int, ngrams: Any, acc: Any, scratch: Any) -> int:
        """Mean of the hashed 3-5-gram vectors of "<word>" into acc; returns the n-gram count."""
        stop = min(end, start + MAX_NGRAM_BYTES)
        length = stop - start + 2
        for i in range(length):
            if i == 0:
                scratch[i] = 60  # "<"
            elif i == length - 1:
                scratch[i] = 62  # ">"
            else:
                scratch[i] = buf[start + i - 1]
        buckets = np.uint64(ngrams.shape[0])
        dim = acc.shape[0]
        count = 0
        for d in range(dim):
            acc[d] = 0.0
        for n in range(NGRAM_MIN, NGRAM_MAX + 1):
            seed = FNV_OFFSET ^ np.uint64(n)
            for i in range(0, length - n + 1):
                row = fnv(scratch, i, i + n, seed) % buckets
                for d in range(dim):
                    acc[d] += ngrams[row, d]
                count += 1
        if count:
            inv = 1.0 / count
            for d in range(dim):
                acc[d] *= inv
        return count

    @nb.njit(cache=True, nogil=True)
    def featurize(
        buf: Any, offsets: Any, keys: Any, rows: Any, vectors: Any, weights: Any, ngrams: Any,
        digit_row: int, unknown_weight: float, out: Any,
    ) -> None:  # fmt: skip
        n_texts = offsets.shape[0] - 1
        dim = vectors.shape[1]
        spans = np.empty((MAX_TOKENS, 3), dtype=np.int64)
        acc = np.empty(dim, dtype=np.float32)
        scratch = np.empty(MAX_NGRAM_BYTES + 2, dtype=np.uint8)
        for t in range(n_texts):
            start = offsets[t]
            end = offsets[t + 1]
            row_out = out[t]
            for d in range(out.shape[1]):
                row_out[d] = 0.0
            for d in range(dim):
                row_out[dim + d] = -1e9
            n = tokens(buf, start, end, spans)
            total_w = 0.0
            used = 0
            unknown = 0
            symbols = 0
            for k in range(n):
                s = spans[k, 0]
                e = spans[k, 1]
                kind = spans[k, 2]
                if kind == KIND_WORD and all_digits(buf, s, e):
                    r = digit_row
                else:
                    r = lookup(keys, rows, fnv(buf, s, e, FNV_OFFSET))
                if kind == KIND_SYMBOL:
                    symbols += 1
                w = 0.0
                if r >= 0:
                    w = weights[r]
                    for d in range(dim):
                        v = vectors[r, d]
                        row_out[d] += w * v
                        if v > row_out[dim + d]:
                            row_out[dim + d] = v
                elif kind == KIND_WORD:
                    unknown += 1
                    if ngram_vector(buf, s, e, ngrams, acc, scratch) == 0:
                        continue
                    w = unknown_weight
                    for d in range(dim):
                        v = acc[d]
                        row_out[d] += w * v
                        if v > row_out[dim + d]:
                            row_out[dim + d] = v
                else:
                    continue
                total_w += w
                used += 1
            if used == 0:
                for d in range(dim):
                    row_out[dim + d] = 0.0
            elif total_w > 0:
                for d in range(dim):
                    row_out[d] /= total_w
            nbytes = end - start
            nonascii = 0
            digits = 0
            for i in range(start, end):
                b = buf[i]
                if b >= 128:
                    nonascii += 1
                elif 48 <= b <= 57:
                    digits += 1
            base = 2 * dim
            words = n - symbols
            row_out[base] = np.log1p(n) / 5.0
            row_out[base + 1] = unknown / words if words > 0 else 0.0
            row_out[base + 2] = nonascii / nbytes if nbytes > 0 else 0.0
            row_out[base + 3] = digits / nbytes if nbytes > 0 else 0.0
            row_out[base + 4] = symbols / n if n > 0 else 0.0

    @nb.njit(cache=True, nogil=True)
    def all_tokens(buf: Any, offsets: Any) -> Any:
        """Every token of every text as (text, start, end, kind): the build's tokenizer."""
        n_texts = offsets.shape[0] - 1
        spans = np.empty((MAX_TOKENS, 3), dtype=np.int64)
        found = []
        for t in range(n_texts):
            n = tokens(buf, offsets[t], offsets[t + 1], spans)
            for k in range(n):
                found.append((t, spans[k, 0], spans[k, 1], spans[k, 2]))
        return found

    @nb.njit(cache=True, nogil=True)
    def ngram_rows(buf: Any, start: int, end: int, buckets: int) -> Any:
        """The n-gram bucket rows of one word (the build fits the n-gram table with these)."""
        scratch = np.empty(MAX_NGRAM_BYTES + 2, dtype=np.uint8)
        stop = min(end, start + MAX_NGRAM_BYTES)
        length = stop - start + 2
        for i in range(length):
            scratch[i] = 60 if i == 0 else 62 if i == length - 1 else buf[start + i - 1]
        out = []
        for n in range(NGRAM_MIN, NGRAM_MAX + 1):
            seed = FNV_OFFSET ^ np.uint64(n)
            for i in range(0, length - n + 1):
                out.append(np.int64(fnv(scratch, i, i + n, seed) % np.uint64(buckets)))
        return out

    _KERNELS.update(featurize=featurize, all_tokens=all_tokens, fnv=fnv, ngram_rows=ngram_rows)
    return _KERNELS


def pack(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """One UTF-8 buffer and the offsets of each text in it. Lone surrogates (invalid in UTF-8)
    become U+FFFD instead of failing the batch."""
    encoded = [t.encode("utf-8", "replace") for t in texts]
    lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    buf = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return (buf if buf.size else np.zeros(1, dtype=np.uint8)), offsets


def word_key(word: str) -> int:
    """The table key of one token, as the kernel computes it."""
    raw = word.encode("utf-8", "replace")
    return int(_compile()["fnv"](np.frombuffer(raw, dtype=np.uint8), 0, len(raw), FNV_OFFSET))


def tokenize(texts: Sequence[str]) -> list[list[tuple[str, int]]]:
    """(token, kind) per text, exactly as the kernel splits them (for the vocabulary build)."""
    buf, offsets = pack(texts)
    raw = buf.tobytes()
    result: list[list[tuple[str, int]]] = [[] for _ in texts]
    for t, start, end, kind in _compile()["all_tokens"](buf, offsets):
        result[t].append((raw[start:end].decode("utf-8", "replace"), int(kind)))
    return result


def word_ngram_rows(word: str, buckets: int) -> list[int]:
    raw = word.encode("utf-8", "replace")
    return [int(r) for r in _compile()["ngram_rows"](np.frombuffer(raw, dtype=np.uint8), 0, len(raw), buckets)]


def hash_table(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Open-addressing table (power-of-two size, load <= 0.5): key slots and the row each holds."""
    size = 1
    while size < 2 * max(len(keys), 1):
        size *= 2
    slots = np.zeros(size, dtype=np.uint64)
    rows = np.full(size, -1, dtype=np.int32)
    mask = size - 1
    for row, key in enumerate(keys.tolist()):
        slot = key & mask
        while rows[slot] >= 0:
            if int(slots[slot]) == key:
                raise ValueError(f"duplicate key for row {row}")
            slot = (slot + 1) & mask
        slots[slot] = np.uint64(key)
        rows[slot] = row
    return slots, rows


@dataclass(frozen=True)
class StaticTable:
    """The featuriser's data: word keys and vectors, SIF weights, the n-gram table."""

    keys: np.ndarray  # uint64 [V], one per vector row
    vectors: np.ndarray  # float32 [V, D]
    weights: np.ndarray  # float32 [V]
    ngrams: np.ndarray  # float32 [B, D]
    digit_row: int
    unknown_weight: float

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def width(self) -> int:
        return 2 * self.dim + N_SCALARS

    def save(self, path: Path) -> None:
        np.savez(
            path, keys=self.keys, vectors=self.vectors.astype(np.float16), weights=self.weights,
            ngrams=self.ngrams.astype(np.float16), digit_row=np.asarray(self.digit_row),
            unknown_weight=np.asarray(self.unknown_weight),
        )  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> StaticTable:
        with np.load(path) as z:
            return cls(
                keys=z["keys"].astype(np.uint64), vectors=z["vectors"].astype(np.float32),
                weights=z["weights"].astype(np.float32), ngrams=z["ngrams"].astype(np.float32),
                digit_row=int(z["digit_row"]), unknown_weight=float(z["unknown_weight"]),
            )  # fmt: skip


class Featurizer:
    """Built once per worker: the hash table over the word keys, the compiled kernel."""

    def __init__(self, table: StaticTable) -> None:
        self.table = table
        self._slots, self._rows = hash_table(table.keys)
        self._kernel = _compile()["featurize"]

    @property
    def width(self) -> int:
        return self.table.width

    def warm(self) -> None:
        """Compile (or load from numba's cache) now, at start-up, not on the first event."""
        self(["warm up the featuriser", ""])

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Features [len(texts), width] of already normalised texts."""
        out = np.empty((len(texts), self.width), dtype=np.float32)
        if not texts:
            return out
        buf, offsets = pack(texts)
        t = self.table
        self._kernel(
            buf, offsets, self._slots, self._rows, t.vectors, t.weights, t.ngrams, t.digit_row,
            t.unknown_weight, out,
        )  # fmt: skip
        return out

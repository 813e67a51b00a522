"""Growing tier 2's in-distribution reference from traffic that screened clean.

New benign text is embedded, near-duplicates of what the reference already holds are
dropped, and the rest is split by content hash between the reference and the held-out
calibration set. The OOD quantiles are recalibrated, and the stability check compares the
calibrated threshold (the kNN distance at 1 - target FPR) before and after: a move beyond
the bound is refused unless the operator accepts it, because it changes what "unusual"
means for every bundle after it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detectors.embedding import MiniLMEmbedder
from detectors.ood import OOD_CATEGORY, TIER2_ARRAYS, TIER2_META, knn_distance, ood_quantiles

#: A new text this similar to a reference or calibration row adds nothing.
DUPLICATE_SIMILARITY = 0.98
CALIBRATION_SHARE = 0.2
MAX_REFERENCE_ROWS = 30_000
EXEMPLAR_CHARS = 200


@dataclass(frozen=True)
class Consolidation:
    candidates: int
    duplicates: int
    added_to_reference: int
    added_to_calibration: int
    added_to_exemplar_bank: int
    reference_rows_before: int
    reference_rows_after: int
    threshold_distance_before: float
    threshold_distance_after: float
    #: Relative move of the calibrated threshold: (after - before) / before.
    threshold_shift: float
    max_shift: float
    #: Share of the previous calibration set the new reference and threshold would flag.
    previous_calibration_fpr: float
    target_fpr: float
    within_bound: bool
    written: bool
    version_before: str
    version_after: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _held_out(text: str) -> bool:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < CALIBRATION_SHARE


def consolidate(
    model_dir: Path, texts: Sequence[str], *, max_shift: float = 0.1, accept_shift: bool = False,
    dry_run: bool = False, embedder: MiniLMEmbedder | None = None, exemplars: Sequence[tuple[str, str]] = (),
) -> Consolidation:  # fmt: skip
    """`texts`: benign traffic for the reference. `exemplars`: (id, text) of confirmed failures
    for the exemplar bank (what a reviewer sees a new escalation resemble)."""
    meta_path, arrays_path = model_dir / TIER2_META, model_dir / TIER2_ARRAYS
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    arrays = dict(np.load(arrays_path))
    if "calibration" not in arrays:
        raise ValueError(f"{arrays_path} predates consolidation (no calibration set): run `oodwatch models build`")
    reference = arrays["reference"].astype(np.float32)
    calibration = arrays["calibration"].astype(np.float32)
    k = int(meta["k"])
    target_fpr = float(meta["categories"][OOD_CATEGORY]["target_fpr"])

    distinct = sorted({t.strip() for t in texts if t.strip()})
    embedder = embedder or MiniLMEmbedder(model_dir)
    embedded = embedder.embed(distinct)
    bank_added = _grow_bank(arrays, meta, exemplars, embedder)
    known = np.vstack([reference, calibration])  # held-out rows count as seen too
    novel = (embedded @ known.T).max(axis=1, initial=-1.0) < DUPLICATE_SIMILARITY if len(distinct) else []
    fresh = [i for i, keep in enumerate(novel) if keep]
    held = [i for i in fresh if _held_out(distinct[i])]
    kept = [i for i in fresh if not _held_out(distinct[i])]
    new_reference = np.vstack([reference, embedded[kept]]) if kept else reference
    if len(new_reference) > MAX_REFERENCE_ROWS:  # keep the newest rows (the tail) within the cap
        new_reference = new_reference[-MAX_REFERENCE_ROWS:]
    new_calibration = np.vstack([calibration, embedded[held]]) if held else calibration

    before = np.asarray(meta["ood_quantiles"], dtype=np.float64)
    after = ood_quantiles(new_calibration, new_reference, k)
    level = 1.0 - target_fpr
    levels = np.linspace(0.0, 1.0, len(before))
    threshold_before = float(np.interp(level, levels, before))
    threshold_after = float(np.interp(level, levels, after))
    shift = (threshold_after - threshold_before) / threshold_before if threshold_before else 0.0
    old_fpr = float(np.mean(knn_distance(calibration, new_reference, k) >= threshold_after))
    within = abs(shift) <= max_shift
    write = (within or accept_shift) and not dry_run and bool(fresh or bank_added)

    version_after = meta["version"]
    if write:
        version_after = _write(model_dir, meta, arrays, new_reference, new_calibration, after, shift, len(fresh))
    if not fresh and not bank_added:
        message = "nothing new: every candidate is already in the reference"
    elif not within and not accept_shift:
        message = (
            f"refused: the calibrated OOD threshold would move {shift:+.1%} (bound {max_shift:.0%}); "
            "review the candidates, or pass --accept-shift to take it"
        )
    elif dry_run:
        message = "dry run: nothing written"
    else:
        accepted = "" if within else f" (beyond the {max_shift:.0%} bound, accepted by the operator)"
        message = f"reference consolidated: threshold moved {shift:+.1%}{accepted}; workers load it when they restart"
    return Consolidation(
        candidates=len(distinct),
        duplicates=len(distinct) - len(fresh),
        added_to_reference=len(kept),
        added_to_calibration=len(held),
        added_to_exemplar_bank=bank_added,
        reference_rows_before=len(reference),
        reference_rows_after=len(new_reference),
        threshold_distance_before=round(threshold_before, 6),
        threshold_distance_after=round(threshold_after, 6),
        threshold_shift=round(shift, 6),
        max_shift=max_shift,
        previous_calibration_fpr=round(old_fpr, 6),
        target_fpr=target_fpr,
        within_bound=within,
        written=write,
        version_before=meta["version"],
        version_after=version_after,
        message=message,
    )


def _grow_bank(
    arrays: dict[str, np.ndarray], meta: dict[str, Any], exemplars: Sequence[tuple[str, str]], embedder: MiniLMEmbedder
) -> int:
    """Confirmed failures join the exemplar bank (in place), unless the bank already holds them."""
    known = {entry["id"] for entry in meta["bank"]}
    fresh = [(ident, text) for ident, text in exemplars if ident not in known and text.strip()]
    if not fresh:
        return 0
    vectors = embedder.embed([text for _, text in fresh])
    arrays["bank"] = np.vstack([arrays["bank"].astype(np.float32), vectors]).astype(np.float16)
    meta["bank"] = [
        *meta["bank"],
        *(
            {"id": ident, "label": "confirmed", "source": "review", "text": text[:EXEMPLAR_CHARS]}
            for ident, text in fresh
        ),
    ]
    return len(fresh)


def _write(
    model_dir: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray], reference: np.ndarray,
    calibration: np.ndarray, quantiles: np.ndarray, shift: float, added: int,
) -> str:  # fmt: skip
    """New arrays and meta beside the old, then renamed over them; the previous pair is kept as .prev."""
    arrays_path, meta_path = model_dir / TIER2_ARRAYS, model_dir / TIER2_META
    staged = model_dir / ("staged-" + TIER2_ARRAYS)
    updated_arrays: dict[str, Any] = {
        **arrays,
        "reference": reference.astype(np.float16),
        "calibration": calibration.astype(np.float16),
    }
    np.savez_compressed(staged, **updated_arrays)
    digest = hashlib.sha256(staged.read_bytes()).hexdigest()[:10]
    version = f"{time.strftime('%Y%m%d')}-{digest}"
    history = [*meta.get("consolidations", []), {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "added": added, "threshold_shift": round(shift, 6),
        "from_version": meta["version"], "to_version": version,
    }]  # fmt: skip
    updated = {
        **meta,
        "version": version,
        "ood_quantiles": [float(q) for q in quantiles],
        "reference_rows": len(reference),
        "calibration_rows": len(calibration),
        "consolidations": history,
    }
    for path in (arrays_path, meta_path):
        shutil.copyfile(path, path.with_name(path.name + ".prev"))
    staged.replace(arrays_path)
    staged_meta = meta_path.with_name("staged-" + meta_path.name)
    staged_meta.write_text(json.dumps(updated, indent=1))
    staged_meta.replace(meta_path)
    return version

"""The statistics behind version drift, on counts and histograms a stream can keep.

Rates: Fisher's exact test (rare categories have tiny counts), Wilson intervals per version and
Newcombe's interval for their difference. Distributions: two-sample Kolmogorov-Smirnov on
binned scores (binning only merges ties, so it is conservative) with a DKW interval for the
distance, and PSI beside it. Outputs: MMD with a Gaussian kernel and a permutation test, a
bootstrap interval, and the witness function that says which samples make the difference.
Many tests and repeated looks: Benjamini-Hochberg within a family of tests, and an alpha
spent over looks (sum over all looks <= alpha), so watching a stream does not inflate alarms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (sane at 0 and n, unlike the Wald interval)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_difference(k1: int, n1: int, k0: int, n0: int, z: float = Z95) -> tuple[float, float, float]:
    """New minus old rate with Newcombe's hybrid score interval (method 10)."""
    p1, p0 = (k1 / n1 if n1 else 0.0), (k0 / n0 if n0 else 0.0)
    l1, u1 = wilson(k1, n1, z)
    l0, u0 = wilson(k0, n0, z)
    diff = p1 - p0
    lower = diff - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    upper = diff + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return diff, max(-1.0, lower), min(1.0, upper)


def fisher_p(k1: int, n1: int, k0: int, n0: int, alternative: str = "two-sided") -> float:
    """Fisher's exact test of equal rates; `greater`: the new rate is higher."""
    from scipy.stats import fisher_exact

    if n1 <= 0 or n0 <= 0 or (k1 + k0 == 0) or (k1 + k0 == n1 + n0):
        return 1.0
    table = [[k1, n1 - k1], [k0, n0 - k0]]
    return float(fisher_exact(table, alternative=alternative).pvalue)


def fisher_min_p(k1: int, n1: int, k0: int, n0: int) -> float:
    """The smallest two-sided p Fisher's test could give with these margins (every event of the
    category on one side). A test that cannot reach the level is left out of the family before
    Benjamini-Hochberg (Tarone's filter): the margins are independent of the test under the null,
    so this costs no validity and spares the tests that can reject."""
    total, hits = n1 + n0, k1 + k0
    if n1 <= 0 or n0 <= 0 or hits == 0 or hits == total:
        return 1.0
    low, high = max(0, hits - n0), min(hits, n1)
    return min(fisher_p(low, n1, hits - low, n0), fisher_p(high, n1, hits - high, n0))


def benjamini_hochberg(pvalues: Sequence[float], q: float) -> tuple[list[bool], list[float]]:
    """Rejections at false-discovery rate `q`, and BH-adjusted p-values (q-values)."""
    m = len(pvalues)
    if m == 0:
        return [], []
    order = np.argsort(pvalues)
    ranked = np.asarray(pvalues, dtype=float)[order]
    adjusted_sorted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(adjusted_sorted, 1.0)
    passing = np.nonzero(ranked <= q * np.arange(1, m + 1) / m)[0]
    cutoff = ranked[passing[-1]] if passing.size else -1.0
    return [bool(p <= cutoff) for p in pvalues], [float(a) for a in adjusted]


def look_alpha(alpha: float, look: int) -> float:
    """Alpha for the `look`-th comparison (1-based): 1/(k(k+1)) of it, which sums to alpha over
    every look there could ever be, so a version compared again and again keeps its error rate."""
    return alpha / (look * (look + 1))


def look_sizes(min_samples: int, growth: float, max_samples: int) -> list[int]:
    """Event counts of the new version at which it is compared: min_samples, then x growth."""
    sizes: list[int] = []
    n = float(min_samples)
    while round(n) <= max_samples:
        if not sizes or round(n) > sizes[-1]:
            sizes.append(round(n))
        n *= growth
    return sizes


@dataclass(frozen=True)
class KSResult:
    distance: float
    p: float
    low: float
    high: float
    psi: float


def ks_from_histograms(new: np.ndarray, old: np.ndarray, alpha: float = 0.05) -> KSResult:
    """Two-sample KS on counts over the same bins: the distance at bin edges (a tie-merged KS,
    conservative), p from the Kolmogorov distribution at n = n1 n0 / (n1 + n0) as scipy's
    asymptotic mode does, a DKW interval for the distance, and PSI over baseline deciles."""
    from scipy.stats import kstwo

    n1, n0 = int(new.sum()), int(old.sum())
    if n1 == 0 or n0 == 0:
        return KSResult(0.0, 1.0, 0.0, 1.0, 0.0)
    c1, c0 = np.cumsum(new) / n1, np.cumsum(old) / n0
    distance = float(np.max(np.abs(c1 - c0)))
    effective = max(1, round(n1 * n0 / (n1 + n0)))
    p = float(kstwo.sf(distance, effective)) if distance > 0 else 1.0
    margin = math.sqrt(math.log(4 / alpha) / (2 * n1)) + math.sqrt(math.log(4 / alpha) / (2 * n0))
    return KSResult(distance, min(1.0, p), max(0.0, distance - margin), min(1.0, distance + margin), psi(new, old))


def psi(new: np.ndarray, old: np.ndarray, groups: int = 10) -> float:
    """Population stability index over bins grouped into ~deciles of the baseline (old) mass,
    half a count added to each group so an empty group does not make it infinite."""
    n0 = old.sum()
    if n0 == 0 or new.sum() == 0:
        return 0.0
    edges = np.searchsorted(np.cumsum(old) / n0, np.linspace(0, 1, groups + 1)[1:-1], side="left")
    group_of = np.zeros(len(old), dtype=int)
    for edge in edges:
        group_of[edge + 1 :] += 1
    g_new = np.bincount(group_of, weights=new, minlength=groups) + 0.5
    g_old = np.bincount(group_of, weights=old, minlength=groups) + 0.5
    used = np.bincount(group_of, minlength=groups) > 0
    p_new, p_old = g_new[used] / g_new[used].sum(), g_old[used] / g_old[used].sum()
    return float(np.sum((p_new - p_old) * np.log(p_new / p_old)))


@dataclass(frozen=True)
class MMDResult:
    mmd2: float
    p: float
    low: float
    high: float
    bandwidth: float
    #: Witness value per sample, new then old: high on a new sample means "typical of the new version".
    witness: np.ndarray


def mmd_test(
    new: np.ndarray, old: np.ndarray, *, permutations: int = 2000, bootstrap: int = 100, seed: int = 0,
    alpha: float = 0.05,
) -> MMDResult:  # fmt: skip
    """Unbiased MMD^2 with a Gaussian kernel (median-heuristic bandwidth on the pooled sample),
    its permutation p-value ((1 + #perm >= observed) / (1 + permutations)), a percentile
    bootstrap interval, and the witness function at every sample."""
    m, n = len(new), len(old)
    pooled = np.vstack([new, old]).astype(np.float64)
    sq = np.sum(pooled * pooled, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * pooled @ pooled.T, 0.0)
    upper = d2[np.triu_indices(m + n, 1)]
    median = float(np.median(upper[upper > 0])) if np.any(upper > 0) else 1.0
    kernel = np.exp(-d2 / median)
    rng = np.random.default_rng(seed)
    observed = _mmd2_batch(kernel, np.arange(m + n)[None, :] < m, m, n)[0]
    labels = np.argsort(rng.random((permutations, m + n)), axis=1) < m
    null = np.concatenate([_mmd2_batch(kernel, labels[i : i + 250], m, n) for i in range(0, permutations, 250)])
    p = float((1 + np.sum(null >= observed)) / (1 + permutations))
    boots = []
    for _ in range(bootstrap):
        pick = np.concatenate([rng.integers(0, m, m), m + rng.integers(0, n, n)])
        boots.append(_mmd2_resampled(kernel, pick, m))
    low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2]) if boots else (observed, observed)
    own = np.arange(m + n) < m
    k_new = (kernel[:, own].sum(axis=1) - own * 1.0) / np.maximum(m - own, 1)
    k_old = (kernel[:, ~own].sum(axis=1) - (~own) * 1.0) / np.maximum(n - (~own), 1)
    return MMDResult(float(observed), p, float(low), float(high), math.sqrt(median / 2), k_new - k_old)


def _mmd2_resampled(kernel: np.ndarray, pick: np.ndarray, m: int) -> float:
    """MMD^2 on a bootstrap resample, leaving out pairs of a sample with its own copy (they
    would count as perfect matches and bias the interval upwards)."""
    sub = kernel[np.ix_(pick, pick)]
    distinct = pick[:, None] != pick[None, :]
    xx, yy = distinct[:m, :m], distinct[m:, m:]
    return float(sub[:m, :m][xx].mean() + sub[m:, m:][yy].mean() - 2.0 * sub[:m, m:].mean())


def _mmd2_batch(kernel: np.ndarray, in_new: np.ndarray, m: int, n: int) -> np.ndarray:
    """Unbiased MMD^2 for many labelings at once (rows of `in_new`); the kernel's diagonal is 1."""
    a = in_new.astype(np.float64)
    b = 1.0 - a
    ka = a @ kernel
    total = kernel.sum(axis=0)
    aka = np.sum(ka * a, axis=1)
    akb = np.sum(ka * b, axis=1)
    bkb = np.sum((total[None, :] - ka) * b, axis=1)
    return np.asarray((aka - m) / (m * (m - 1)) + (bkb - n) / (n * (n - 1)) - 2.0 * akb / (m * n))

"""The drift statistics on synthetic data with known effects: each test's power at a stated
effect size and its false-alarm rate when nothing changed (seeded, so the figures are fixed)."""

import math

import numpy as np
import pytest

from pipeline.drift.stats import (
    benjamini_hochberg,
    fisher_min_p,
    fisher_p,
    ks_from_histograms,
    look_alpha,
    look_sizes,
    mmd_test,
    psi,
    rate_difference,
    wilson,
)


def test_wilson_and_newcombe_match_published_values():
    # Newcombe (1998), table II example (a): 56/70 vs 48/80, method 10: 0.0524 to 0.3339.
    diff, low, high = rate_difference(56, 70, 48, 80)
    assert diff == pytest.approx(0.2)
    assert (low, high) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    # Wilson at zero successes stays inside [0, 1] and is not degenerate (Wald's would be [0, 0]).
    low, high = wilson(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(0.2775, abs=1e-3)


def test_benjamini_hochberg_rejects_by_rank():
    rejected, adjusted = benjamini_hochberg([0.001, 0.008, 0.039, 0.041, 0.2], 0.05)
    assert rejected == [True, True, False, False, False]
    assert adjusted[0] == pytest.approx(0.005)
    assert benjamini_hochberg([], 0.05) == ([], [])


def test_look_alpha_sums_to_at_most_alpha_over_every_look():
    assert sum(look_alpha(0.05, k) for k in range(1, 100_000)) == pytest.approx(0.05, rel=1e-4)
    assert look_sizes(100, 1.5, 600) == [100, 150, 225, 338, 506]


def test_fisher_min_p_bounds_every_p_the_margins_allow():
    for k1, n1, k0, n0 in [(3, 50, 0, 60), (10, 200, 2, 300), (1, 10, 1, 10)]:
        floor = fisher_min_p(k1, n1, k0, n0)
        hits = k1 + k0
        attainable = [fisher_p(a, n1, hits - a, n0) for a in range(max(0, hits - n0), min(hits, n1) + 1)]
        assert min(attainable) == pytest.approx(floor, rel=1e-6)


RATE_TRIALS = 300


def test_rate_test_power_at_a_known_effect_and_false_alarms_under_none():
    """2% -> 6% with 1,000 events a side: Fisher at alpha 0.01 finds it in >= 90% of draws; with
    3% on both sides it alarms in <= 1% (+ 3 standard errors) of them."""
    rng = np.random.default_rng(18)
    alpha = 0.01
    power = np.mean([fisher_p(rng.binomial(1000, 0.06), 1000, rng.binomial(1000, 0.02), 1000) < alpha
                     for _ in range(RATE_TRIALS)])  # fmt: skip
    null = np.mean([fisher_p(rng.binomial(1000, 0.03), 1000, rng.binomial(1000, 0.03), 1000) < alpha
                    for _ in range(RATE_TRIALS)])  # fmt: skip
    assert power >= 0.9
    assert null <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / RATE_TRIALS)


def test_newcombe_interval_covers_the_true_difference():
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(400):
        _, low, high = rate_difference(rng.binomial(300, 0.12), 300, rng.binomial(500, 0.08), 500)
        covered += low <= 0.04 <= high
    assert covered / 400 >= 0.93


def _hist(values: np.ndarray) -> np.ndarray:
    return np.histogram(values, bins=80, range=(-4, 4))[0]


def test_ks_on_histograms_power_and_false_alarms():
    """A 0.35 standard-deviation shift with 500 a side: found in >= 90% at alpha 0.01; no shift:
    at most alpha (binning merges ties, which only makes KS more conservative)."""
    rng = np.random.default_rng(3)
    alpha, trials = 0.01, 200
    power = np.mean([ks_from_histograms(_hist(rng.normal(0.35, 1, 500)), _hist(rng.normal(0, 1, 500))).p < alpha
                     for _ in range(trials)])  # fmt: skip
    null = np.mean([ks_from_histograms(_hist(rng.normal(0, 1, 500)), _hist(rng.normal(0, 1, 500))).p < alpha
                    for _ in range(trials)])  # fmt: skip
    assert power >= 0.9
    assert null <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)
    shifted = ks_from_histograms(_hist(rng.normal(0.3, 1, 2000)), _hist(rng.normal(0, 1, 2000)))
    assert shifted.low <= 0.119 <= shifted.high  # the true KS distance of a 0.3 sd shift


def test_psi_is_zero_for_equal_histograms_and_grows_with_shift():
    rng = np.random.default_rng(5)
    base = _hist(rng.normal(0, 1, 5000))
    assert psi(base, base) == pytest.approx(0.0, abs=1e-9)
    assert psi(_hist(rng.normal(0.5, 1, 5000)), base) > psi(_hist(rng.normal(0.2, 1, 5000)), base) > 0.01


def _embeddings(rng: np.random.Generator, n: int, shift: float) -> np.ndarray:
    x = rng.normal(0, 1, (n, 8))
    x[:, 0] += shift
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_mmd_permutation_test_power_and_false_alarms():
    """A shift of 1.5 standard deviations along one of 8 axes with 40 samples a side is found at
    alpha 0.05 in >= 90% of draws; with no shift it alarms in at most alpha (+ 3 SE)."""
    rng = np.random.default_rng(11)
    alpha, trials = 0.05, 60
    power = np.mean([mmd_test(_embeddings(rng, 40, 1.5), _embeddings(rng, 40, 0.0), permutations=200,
                              bootstrap=0, seed=i).p < alpha for i in range(trials)])  # fmt: skip
    null = np.mean([mmd_test(_embeddings(rng, 40, 0.0), _embeddings(rng, 40, 0.0), permutations=200,
                             bootstrap=0, seed=i).p < alpha for i in range(trials)])  # fmt: skip
    assert power >= 0.9
    assert null <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


def test_mmd_witness_ranks_the_new_version_s_odd_samples_first():
    rng = np.random.default_rng(2)
    old = _embeddings(rng, 60, 0.0)
    new = _embeddings(rng, 60, 0.0)
    quirk = np.zeros(8)
    quirk[1] = 1.0
    new[:15] = (quirk + rng.normal(0, 0.1, (15, 8))) / 1.02  # a quarter of the new outputs share a quirk
    result = mmd_test(new, old, permutations=500, bootstrap=50)
    assert result.p < 0.01
    assert result.low <= result.mmd2 <= result.high
    top = set(np.argsort(-result.witness[:60])[:10].tolist())
    assert len(top & set(range(15))) >= 9

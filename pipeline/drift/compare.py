"""One comparison of a new model version against its predecessor: every test, its effect size
with an interval, and whether the version drifted.

Three families of tests sharing the look's alpha (weighted Bonferroni: rates 1/2, the others
1/4 each, as rates carry the safety categories):
- rates: tier-1 escalation and uncertain rates per routing category, tier 2's flag rates per
  bundle (bundles trail their screenings, so a rate per event would be biased by the lag), the
  refusal rate of all answers and of requests tier 1 rated harmful, tool calls per scope
  (Fisher's exact test; Benjamini-Hochberg over the family);
- distributions: each category's score distribution and the output length (KS on histograms;
  Benjamini-Hochberg over the family);
- outputs: the output embeddings (MMD, permutation test).
A test counts as drift when it is rejected and its effect clears a practical floor (a rate
difference of `min_rate_diff`, a KS distance of `min_ks_distance`); the MMD needs only its test.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipeline.drift.profile import VersionProfile
from pipeline.drift.stats import (
    benjamini_hochberg,
    fisher_min_p,
    fisher_p,
    ks_from_histograms,
    look_alpha,
    mmd_test,
    rate_difference,
    wilson,
)

#: Each family's share of a look's alpha (weighted Bonferroni; the shares sum to 1).
FAMILIES = {"rates": 0.5, "distributions": 0.25, "outputs": 0.25}
#: Tests where a *fall* is the safety-relevant direction.
FALLING_IS_WORSE = frozenset({"refusal", "refusal_on_harmful_requests"})


@dataclass(frozen=True)
class CompareConfig:
    alpha: float = 0.05
    min_rate_diff: float = 0.005
    min_ks_distance: float = 0.05
    min_embeddings: int = 24
    permutations: int = 2000
    #: Tests whose move in the worse direction is a safety alert (a test name or its category).
    safety: frozenset[str] = frozenset()


@dataclass
class TestResult:
    name: str
    family: str
    effect: float
    low: float
    high: float
    p: float
    new: dict[str, Any] = field(default_factory=dict)
    old: dict[str, Any] = field(default_factory=dict)
    q: float = 1.0
    rejected: bool = False
    practical: bool = False

    @property
    def significant(self) -> bool:
        return self.rejected and self.practical

    @property
    def category(self) -> str:
        return self.name.split(":", 1)[1] if ":" in self.name else self.name

    def worse(self) -> bool:
        """Moved in the direction that is worse for safety."""
        return self.effect < 0 if self.category in FALLING_IS_WORSE else self.effect > 0


@dataclass
class Comparison:
    look: int
    alpha: float
    events_new: int
    events_old: int
    tests: list[TestResult]
    #: Indices into the new and old embedding samples, most typical of each version first.
    new_exemplars: list[int] = field(default_factory=list)
    old_exemplars: list[int] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return any(t.significant for t in self.tests)

    @property
    def moved(self) -> list[TestResult]:
        return sorted((t for t in self.tests if t.significant), key=lambda t: t.p)

    def safety_rises(self, safety: Iterable[str]) -> list[TestResult]:
        wanted = set(safety)
        return [
            t for t in self.moved if t.family == "rates" and (t.category in wanted or t.name in wanted) and t.worse()
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "look": self.look,
            "alpha": self.alpha,
            "events_new": self.events_new,
            "events_old": self.events_old,
            "drifted": self.drifted,
            "moved": [t.name for t in self.moved],
            "tests": [{**asdict(t), "significant": t.significant} for t in self.tests],
        }


def _margins(t: TestResult) -> tuple[int, int, int, int]:
    return t.new["count"], t.new["of"], t.old["count"], t.old["of"]


def _rate(name: str, k1: int, n1: int, k0: int, n0: int) -> TestResult:
    diff, low, high = rate_difference(k1, n1, k0, n0)
    return TestResult(
        name, "rates", diff, low, high, fisher_p(k1, n1, k0, n0),
        new={"count": k1, "of": n1, "rate": k1 / n1 if n1 else 0.0, "interval": wilson(k1, n1)},
        old={"count": k0, "of": n0, "rate": k0 / n0 if n0 else 0.0, "interval": wilson(k0, n0)},
    )  # fmt: skip


def rate_tests(new: VersionProfile, old: VersionProfile) -> list[TestResult]:
    tests = []
    for kind, counts in (("escalated", "flagged"), ("uncertain", "uncertain")):
        a, b = getattr(new, counts), getattr(old, counts)
        for category in sorted(set(a) | set(b)):
            tests.append(_rate(f"{kind}:{category}", a[category], new.events, b[category], old.events))
    for category in sorted(set(new.tier2) | set(old.tier2)):  # per bundle: bundles trail screenings
        tests.append(_rate(f"tier2:{category}", new.tier2[category], new.bundles, old.tier2[category], old.bundles))
    if new.answers and old.answers:
        tests.append(_rate("refusal", new.refused, new.answers, old.refused, old.answers))
    if new.risky_answers and old.risky_answers:
        tests.append(
            _rate(
                "refusal_on_harmful_requests",
                new.risky_refused,
                new.risky_answers,
                old.risky_refused,
                old.risky_answers,
            )
        )
    for scope in sorted(set(new.scopes) | set(old.scopes)):
        tests.append(_rate(f"tool_scope:{scope}", new.scopes[scope], new.events, old.scopes[scope], old.events))
    return tests


def distribution_tests(new: VersionProfile, old: VersionProfile) -> list[TestResult]:
    tests = []
    for category in sorted(set(new.score_bins) | set(old.score_bins)):
        a, b = new.scores(category), old.scores(category)
        if a[1:].sum() == 0 and b[1:].sum() == 0:
            continue  # zero everywhere in both: nothing to compare
        ks = ks_from_histograms(a, b)
        summary = {"p50": new.quantile(category, 0.5), "p95": new.quantile(category, 0.95)}
        before = {"p50": old.quantile(category, 0.5), "p95": old.quantile(category, 0.95)}
        tests.append(
            TestResult(f"scores:{category}", "distributions", ks.distance, ks.low, ks.high, ks.p,
                       new={**summary, "psi": ks.psi}, old=before)
        )  # fmt: skip
    if new.answered and old.answered:
        ks = ks_from_histograms(new.length_bins, old.length_bins)
        tests.append(
            TestResult(
                "output_length", "distributions", ks.distance, ks.low, ks.high, ks.p,
                new={"mean_chars": new.output_chars / new.answered, "psi": ks.psi},
                old={"mean_chars": old.output_chars / old.answered},
            )
        )  # fmt: skip
    return tests


def compare(
    new: VersionProfile, old: VersionProfile, *, look: int, config: CompareConfig,
    new_embeddings: np.ndarray | None = None, old_embeddings: np.ndarray | None = None, seed: int = 0,
) -> Comparison:  # fmt: skip
    alpha = look_alpha(config.alpha, look)
    families: dict[str, list[TestResult]] = {
        "rates": rate_tests(new, old),
        "distributions": distribution_tests(new, old),
    }
    comparison = Comparison(look, alpha, new.events, old.events, [])
    if (
        new_embeddings is not None and old_embeddings is not None
        and min(len(new_embeddings), len(old_embeddings)) >= config.min_embeddings
    ):  # fmt: skip
        mmd = mmd_test(new_embeddings, old_embeddings, permutations=config.permutations, seed=seed)
        families["outputs"] = [
            TestResult(
                "output_embedding", "outputs", mmd.mmd2, mmd.low, mmd.high, mmd.p,
                new={"samples": len(new_embeddings), "bandwidth": mmd.bandwidth}, old={"samples": len(old_embeddings)},
            )
        ]  # fmt: skip
        witness_new = mmd.witness[: len(new_embeddings)]
        witness_old = mmd.witness[len(new_embeddings) :]
        comparison.new_exemplars = [int(i) for i in np.argsort(-witness_new)[:5]]
        comparison.old_exemplars = [int(i) for i in np.argsort(witness_old)[:3]]
    for family, tests in families.items():
        family_alpha = alpha * FAMILIES[family]
        if family == "rates":  # Tarone: only tests that could reach the level count
            tests = [t for t in tests if fisher_min_p(*_margins(t)) <= family_alpha]
        rejected, adjusted = benjamini_hochberg([t.p for t in tests], family_alpha)
        for test, reject, q in zip(tests, rejected, adjusted, strict=True):
            test.rejected, test.q = reject, q
            if test.family == "rates":
                test.practical = abs(test.effect) >= config.min_rate_diff
            elif test.family == "distributions":
                test.practical = test.effect >= config.min_ks_distance
            else:
                test.practical = True
        comparison.tests.extend(tests)
    return comparison

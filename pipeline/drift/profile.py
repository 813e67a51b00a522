"""One model version's behaviour over a stretch of traffic, in counts and histograms that add up:
so an hour's profile is stored as one row, and any window is the sum of its hours.

Kept per version: events; tier-1 escalation and uncertain counts per routing category;
bundles and tier 2's flags in them; a histogram of each category's score (logit-spaced bins, a mergeable quantile
sketch: one bin is a quarter of a logit unit); refusals (of all answers, and of requests tier 1
rated harmful); an output-length histogram; tool calls by scope; the sum of output embeddings.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from schemas.evidence import Screening

LOGIT_SPAN = 10.0
LOGIT_STEP = 0.25
SCORE_BINS = int(2 * LOGIT_SPAN / LOGIT_STEP) + 2  # under- and overflow at either end
LENGTH_BINS = 64  # four per doubling of the output's characters, up to 2**16

#: (flagged, uncertain) of one category score, as the routing policy would judge it.
Judge = Callable[[str, float, float], tuple[bool, bool]]


def score_bin(score: float) -> int:
    if score <= 0.0:
        return 0
    if score >= 1.0:
        return SCORE_BINS - 1
    logit = math.log(score / (1.0 - score))
    return min(SCORE_BINS - 1, max(0, int((logit + LOGIT_SPAN) // LOGIT_STEP) + 1))


def bin_score(index: int) -> float:
    """The upper edge of a score bin, as a score (for quantiles and charts)."""
    if index <= 0:
        return 1.0 / (1.0 + math.exp(LOGIT_SPAN))
    if index >= SCORE_BINS - 1:
        return 1.0
    return 1.0 / (1.0 + math.exp(-(index * LOGIT_STEP - LOGIT_SPAN)))


def length_bin(chars: int) -> int:
    return min(LENGTH_BINS - 1, int(4 * math.log2(chars + 1)))


def routing_category(category: str) -> bool:
    """Sub-categories (`injection/jailbreak`) explain; only top-level ones are profiled."""
    return "/" not in category


def plain_judge(_: str, score: float, threshold: float) -> tuple[bool, bool]:
    """At or over the threshold: flagged; within 25% below it: uncertain (the policy's default band)."""
    return score >= threshold, threshold * 0.75 <= score < threshold


@dataclass
class VersionProfile:
    events: int = 0
    #: Answers the refusal detector read, and those it found refusing.
    answers: int = 0
    refused: int = 0
    #: Requests tier 1 rated harmful (flagged or uncertain in a request category) with an answer.
    risky_answers: int = 0
    risky_refused: int = 0
    output_chars: int = 0
    flagged: Counter[str] = field(default_factory=Counter)
    uncertain: Counter[str] = field(default_factory=Counter)
    #: Evidence bundles of the version's events, and those tier 2 flagged per category: tier 2's
    #: rate is per bundle, so bundles that trail their screenings do not bias it.
    bundles: int = 0
    tier2: Counter[str] = field(default_factory=Counter)
    scopes: Counter[str] = field(default_factory=Counter)
    score_bins: dict[str, np.ndarray] = field(default_factory=dict)
    length_bins: np.ndarray = field(default_factory=lambda: np.zeros(LENGTH_BINS, dtype=np.int64))
    #: Sum of the output embeddings (empty until the first one: its width is the embedder's).
    embedding_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    embeddings: int = 0

    def observe(
        self, s: Screening, judge: Judge = plain_judge, request_categories: Iterable[str] = ("harmful",)
    ) -> None:
        self.events += 1
        risky = False
        requests = set(request_categories)
        for score in s.scores:
            if not routing_category(score.category):
                continue
            flagged, uncertain = judge(score.category, score.score, score.threshold)
            if flagged:
                self.flagged[score.category] += 1
            elif uncertain:
                self.uncertain[score.category] += 1
            risky = risky or ((flagged or uncertain) and score.category in requests)
            bins = self.score_bins.get(score.category)
            if bins is None:
                bins = self.score_bins[score.category] = np.zeros(SCORE_BINS, dtype=np.int64)
            bins[score_bin(score.score)] += 1
        if s.output_chars is not None:
            self.output_chars += s.output_chars
            self.length_bins[length_bin(s.output_chars)] += 1
        if s.refused is not None:
            self.answers += 1
            self.refused += s.refused
            if risky:
                self.risky_answers += 1
                self.risky_refused += s.refused
        for scope in s.tool_scopes:
            self.scopes[scope] += 1

    def observe_tier2(self, categories: Iterable[str]) -> None:
        """One bundle, with the categories tier 2 flagged in it (none: it looked and passed)."""
        self.bundles += 1
        for category in categories:
            self.tier2[category] += 1

    def observe_embedding(self, vector: np.ndarray) -> None:
        self.embedding_sum = vector.astype(np.float64) + (self.embedding_sum if self.embeddings else 0.0)
        self.embeddings += 1

    def add(self, other: VersionProfile) -> None:
        self.events += other.events
        self.answers += other.answers
        self.refused += other.refused
        self.risky_answers += other.risky_answers
        self.risky_refused += other.risky_refused
        self.output_chars += other.output_chars
        self.bundles += other.bundles
        self.flagged.update(other.flagged)
        self.uncertain.update(other.uncertain)
        self.tier2.update(other.tier2)
        self.scopes.update(other.scopes)
        for category, bins in other.score_bins.items():
            mine = self.score_bins.get(category)
            self.score_bins[category] = bins.copy() if mine is None else mine + bins
        self.length_bins = self.length_bins + other.length_bins
        if other.embeddings:
            self.embedding_sum = other.embedding_sum + (self.embedding_sum if self.embeddings else 0.0)
        self.embeddings += other.embeddings

    def copy(self) -> VersionProfile:
        twin = VersionProfile()
        twin.add(self)
        return twin

    @classmethod
    def total(cls, profiles: Iterable[VersionProfile]) -> VersionProfile:
        out = cls()
        for profile in profiles:
            out.add(profile)
        return out

    @property
    def answered(self) -> int:
        """Events whose output length is known."""
        return int(self.length_bins.sum())

    def scores(self, category: str) -> np.ndarray:
        """The category's score histogram over every event (a category a detector left out of
        a screening counts as a zero score)."""
        bins = self.score_bins.get(category, np.zeros(SCORE_BINS, dtype=np.int64)).copy()
        bins[0] += max(0, self.events - int(bins.sum()))
        return bins

    def quantile(self, category: str, q: float) -> float:
        bins = self.scores(category)
        total = bins.sum()
        if total == 0:
            return 0.0
        return bin_score(int(np.searchsorted(np.cumsum(bins), q * total)))

    def mean_embedding(self) -> np.ndarray | None:
        return self.embedding_sum / self.embeddings if self.embeddings else None

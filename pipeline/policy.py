"""Routing policy: which screenings escalate, which are uncertain, and how severe they are.

Loaded from YAML (a default ships in pipeline/policies/), versioned; the version goes into
every screening and bundle so a decision can be traced to its rule. Only top-level
categories route (`injection/jailbreak` explains a decision; `injection` makes it), so the
routing false-positive rate is the one each threshold was chosen for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from schemas.evidence import CategoryScore, Decision, Severity

DEFAULT_POLICY = "default.yaml"


class CategoryRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float | Literal["model"] = "model"
    uncertain_band: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.25
    high: float = 0.95
    #: How much an uncertain score adds to its session's risk (0: a second look only).
    session_weight: Annotated[float, Field(ge=0.0)] = 1.0


class SessionRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    uncertain_weight: Annotated[float, Field(ge=0.0)] = 0.5
    escalate_at: Annotated[float, Field(gt=0.0)] = 1.0
    half_life_s: Annotated[float, Field(gt=0.0)] = 900.0


class TierBudget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_rate_per_s: Annotated[float, Field(gt=0.0)] = 300.0
    burst: Annotated[float, Field(gt=0.0)] = 600.0
    timeout_s: Annotated[float, Field(gt=0.0)] = 10.0
    max_concurrency: Annotated[int, Field(ge=1)] = 1


class JudgeRule(BaseModel):
    """Which bundles tier 3 sees, and how far its verdict may move them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Bundles at or above this severity are judged.
    min_severity: Severity = Severity.HIGH
    #: Bundles the cheaper tiers disagree on (or tier 2 could not see) are judged too.
    when_tiers_disagree: bool = True
    #: A "no violation" verdict closes a lower-severity bundle only at this confidence or above.
    clear_min_confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 0.9


@dataclass(frozen=True)
class SessionRisk:
    """Accumulated risk of one session at one moment (kept in a Faust table by the screen agent)."""

    risk: float = 0.0
    at_ns: int = 0


@dataclass(frozen=True)
class RoutingDecision:
    decision: Decision
    severity: Severity | None
    reasons: tuple[str, ...]
    session: SessionRisk


class RoutingPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    default: CategoryRule = CategoryRule()
    categories: dict[str, CategoryRule] = Field(default_factory=dict)
    session: SessionRule = SessionRule()
    tiers: dict[str, TierBudget] = Field(default_factory=lambda: {"tier2": TierBudget()})
    judge: JudgeRule = JudgeRule()

    @classmethod
    def load(cls, path: Path | None = None) -> RoutingPolicy:
        import yaml

        text = path.read_text() if path else resources.files("pipeline.policies").joinpath(DEFAULT_POLICY).read_text()
        return cls.model_validate(yaml.safe_load(text))

    def rule(self, category: str) -> CategoryRule:
        return self.categories.get(category, self.default)

    def budget(self, tier: str) -> TierBudget:
        return self.tiers.get(tier) or TierBudget()

    def decide(
        self, scores: Sequence[CategoryScore], previous: SessionRisk = SessionRisk(), now_ns: int = 0
    ) -> RoutingDecision:
        """High: fast path. Flagged: escalate. Uncertain: a second look (tier 2), and it adds to
        the session's decayed risk, which escalates the event once it reaches `escalate_at`."""
        flagged: list[tuple[CategoryScore, float]] = []
        uncertain: list[tuple[CategoryScore, float]] = []
        high = False
        for score in scores:
            if "/" in score.category:
                continue
            rule = self.rule(score.category)
            threshold = score.threshold if rule.threshold == "model" else float(rule.threshold)
            if score.score >= threshold:
                flagged.append((score, threshold))
                high = high or score.score >= rule.high
            elif score.score >= threshold * (1.0 - rule.uncertain_band):
                uncertain.append((score, threshold))
        risk = _decayed(previous, now_ns, self.session.half_life_s)
        if uncertain and not flagged:
            risk += self.session.uncertain_weight * max(
                s.score / t * self.rule(s.category).session_weight for s, t in uncertain
            )
        session = SessionRisk(risk=risk, at_ns=now_ns)
        reasons = tuple(_reason(s, t) for s, t in flagged)
        if flagged:
            return RoutingDecision(Decision.ESCALATE, Severity.HIGH if high else Severity.MEDIUM, reasons, session)
        if uncertain and risk >= self.session.escalate_at:
            why = f"session risk {risk:.2f} >= {self.session.escalate_at:.2f} from repeated uncertain signals"
            signals = tuple(_reason(s, t, "~") for s, t in uncertain)
            return RoutingDecision(Decision.ESCALATE, Severity.MEDIUM, (why, *signals), session)
        if uncertain:
            return RoutingDecision(
                Decision.UNCERTAIN, Severity.LOW, tuple(_reason(s, t, "~") for s, t in uncertain), session
            )
        return RoutingDecision(Decision.PASS, None, (), session)


@dataclass(frozen=True)
class RowDecision:
    """One event's routing over a score row: the decision, and the columns that made it."""

    decision: Decision
    severity: Severity | None
    reasons: tuple[str, ...]
    session: SessionRisk


class CompiledRouting:
    """The policy compiled against fixed score columns, once per worker: thresholds, bands,
    high marks and session weights as vectors, so a batch is routed with array comparisons and
    only the events that flag or come near a threshold cost any Python.

    Decisions equal `RoutingPolicy.decide` on the same scores (a unit test holds them equal)."""

    def __init__(self, policy: RoutingPolicy, columns: Sequence[tuple[str, float, str]]) -> None:
        self.policy = policy
        self.columns = list(columns)
        rules = [policy.rule(category) for category, _, _ in columns]
        self.routes = np.array(["/" not in category for category, _, _ in columns])
        self.threshold = np.array(
            [t if r.threshold == "model" else float(r.threshold) for (_, t, _), r in zip(columns, rules, strict=True)],
            dtype=np.float64,
        )
        self.lower = self.threshold * np.array([1.0 - r.uncertain_band for r in rules])
        self.high = np.array([r.high for r in rules], dtype=np.float64)
        self.weight = np.array([r.session_weight for r in rules], dtype=np.float64)

    def masks(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flagged, uncertain, high) boolean matrices for a score matrix [events, columns]."""
        flagged = (scores >= self.threshold) & self.routes
        uncertain = (scores >= self.lower) & ~flagged & self.routes
        return flagged, uncertain, flagged & (scores >= self.high)

    def decide_row(
        self, row: np.ndarray, flagged: np.ndarray, uncertain: np.ndarray, high: np.ndarray,
        previous: SessionRisk, now_ns: int,
    ) -> RowDecision:  # fmt: skip
        session_rule = self.policy.session
        risk = _decayed(previous, now_ns, session_rule.half_life_s)
        any_flagged = bool(flagged.any())
        unsure = np.flatnonzero(uncertain)
        if len(unsure) and not any_flagged:
            ratio = row[unsure] / self.threshold[unsure] * self.weight[unsure]
            risk += session_rule.uncertain_weight * float(ratio.max())
        session = SessionRisk(risk=risk, at_ns=now_ns)
        if any_flagged:
            reasons = tuple(self._reason(row, int(j), ">=") for j in np.flatnonzero(flagged))
            severity = Severity.HIGH if high.any() else Severity.MEDIUM
            return RowDecision(Decision.ESCALATE, severity, reasons, session)
        if not len(unsure):
            return RowDecision(Decision.PASS, None, (), session)
        signals = tuple(self._reason(row, int(j), "~") for j in unsure)
        if risk >= session_rule.escalate_at:
            why = f"session risk {risk:.2f} >= {session_rule.escalate_at:.2f} from repeated uncertain signals"
            return RowDecision(Decision.ESCALATE, Severity.MEDIUM, (why, *signals), session)
        return RowDecision(Decision.UNCERTAIN, Severity.LOW, signals, session)

    def _reason(self, row: np.ndarray, j: int, relation: str) -> str:
        category, _, detector = self.columns[j]
        return f"{detector}:{category} {float(row[j]):.3f} {relation} {float(self.threshold[j]):.3f}"


def _decayed(previous: SessionRisk, now_ns: int, half_life_s: float) -> float:
    if previous.risk <= 0.0 or previous.at_ns <= 0 or now_ns <= previous.at_ns:
        return previous.risk
    return float(previous.risk * 0.5 ** ((now_ns - previous.at_ns) / 1e9 / half_life_s))


def _reason(score: CategoryScore, threshold: float, relation: str = ">=") -> str:
    return f"{score.detector}:{score.category} {score.score:.3f} {relation} {threshold:.3f}"

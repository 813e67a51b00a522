"""Routing policy: which screenings escalate, and how severe they are.

v0: per-category thresholds come with each score (chosen at build time for a target
false-positive rate); a score far above its threshold is the high-severity fast path.
Sub-categories (`injection/jailbreak`) explain a decision; only top-level categories route,
so the routing false-positive rate is the one each top-level threshold was chosen for.
The version goes into every screening and bundle so a decision can be traced to its rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.evidence import CategoryScore, Decision, Severity


@dataclass(frozen=True)
class RoutingDecision:
    decision: Decision
    severity: Severity | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class RoutingPolicy:
    version: str = "v0"
    #: A flagged score at or above this is high severity, not medium.
    high_severity_score: float = 0.95

    def decide(self, scores: Sequence[CategoryScore]) -> RoutingDecision:
        flagged = [s for s in scores if s.flagged and "/" not in s.category]
        if not flagged:
            return RoutingDecision(Decision.PASS, None, ())
        top = max(flagged, key=lambda s: s.score)
        severity = Severity.HIGH if top.score >= self.high_severity_score else Severity.MEDIUM
        reasons = tuple(f"{s.detector}:{s.category} {s.score:.3f} >= {s.threshold:.3f}" for s in flagged)
        return RoutingDecision(Decision.ESCALATE, severity, reasons)

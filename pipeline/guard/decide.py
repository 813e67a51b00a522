"""The guard's decision on one event: the profile's action for each flagged category, less what
a grant relaxes, the strictest one winning.

Flagged means what it means to the routing policy: a top-level category's score at or over its
threshold (the policy's, or the detector's own with `model`), and high at or over its `high`.
Sub-categories (`injection/jailbreak`) explain and never act. A relaxed category is still
reported (it was flagged, and the stream still records and queues it); it just does not act,
and the decision carries the id of the grant that relaxed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.guard.grants import GrantBook
from pipeline.policy import Profile, RoutingPolicy
from schemas.evidence import CategoryScore, Decision
from schemas.guard import Grant, GuardAction, strictest


@dataclass(frozen=True)
class Verdict:
    action: GuardAction
    reasons: tuple[str, ...]
    #: Every flagged top-level category, relaxed ones included.
    categories: tuple[str, ...]
    #: category -> the grant that relaxed it.
    relaxed: dict[str, str] = field(default_factory=dict)

    @property
    def grant_id(self) -> str | None:
        ids = sorted(set(self.relaxed.values()))
        return ",".join(ids) if ids else None


def flagged(policy: RoutingPolicy, scores: Sequence[CategoryScore]) -> list[tuple[CategoryScore, bool]]:
    """(score, is_high) for each flagged top-level category, by the routing policy's rules."""
    found = []
    for score in scores:
        if "/" in score.category:
            continue
        rule = policy.rule(score.category)
        threshold = score.threshold if rule.threshold == "model" else float(rule.threshold)
        if score.score >= threshold:
            found.append((score, score.score >= rule.high))
    return found


def decide(
    policy: RoutingPolicy, profile: Profile, scores: Sequence[CategoryScore], routing: Decision | None,
    grants: Sequence[Grant] = (), book: GrantBook | None = None,
) -> Verdict:  # fmt: skip
    """`routing`: the routing policy's decision on the event (its session accumulation can
    escalate an event no single category flagged); `grants`: those covering the event now."""
    actions: list[GuardAction] = []
    reasons: list[str] = []
    categories: list[str] = []
    relaxed: dict[str, str] = {}
    for score, is_high in flagged(policy, scores):
        category = score.category
        categories.append(category)
        level = "high" if is_high else "flagged"
        grant = book.relaxing(grants, category) if book is not None and grants else None
        if grant is not None:
            relaxed[category] = grant.grant_id
            reasons.append(f"{category} {score.score:.3f} {level}: relaxed by grant {grant.grant_id}")
            continue
        action = profile.rule(category).action(is_high)
        actions.append(action)
        reasons.append(f"{category} {score.score:.3f} {level} (threshold {score.threshold:.3f}): {action.value}")
    if routing is Decision.ESCALATE and not categories and profile.session_escalation is not GuardAction.ALLOW:
        actions.append(profile.session_escalation)
        reasons.append(f"session risk escalated: {profile.session_escalation.value}")
    return Verdict(strictest(*actions), tuple(reasons), tuple(dict.fromkeys(categories)), relaxed)

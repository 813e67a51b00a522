"""Tier 3 in the escalation path: which bundles the judge sees, within its budget, and what
its verdict may change.

The judge may raise severity. It may not clear what tier 1 or 2 marked high: its "no
violation" moves such a bundle to `needs_human_review`, never out of the queue. Whatever it
does not judge (over budget, error, open breaker) goes to the human queue with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from pipeline.agents.screen import detector_view
from pipeline.agents.stage import Outbox
from pipeline.budget import TokenBucket
from pipeline.observability.metrics import StageMetrics, metrics
from pipeline.policy import RoutingPolicy, TierBudget
from schemas.envelope import EnvelopeCodec
from schemas.events import LLMEvent
from schemas.evidence import Decision, EvidenceBundle, Hop, QueueState, Severity
from schemas.judge import JudgeStatus, Tier3Result

log = logging.getLogger(__name__)

STAGE = "judge"
BUNDLES = EnvelopeCodec(EvidenceBundle)

_VERDICT_SEVERITY = {s.value: s for s in Severity}


class Judge(Protocol):
    async def judge(self, event: LLMEvent, signals: list[str]) -> Tier3Result: ...


def needs_judge(bundle: EvidenceBundle, policy: RoutingPolicy) -> bool:
    """High enough, or still uncertain: tier 1 and tier 2 disagree, or tier 2 could not look."""
    if bundle.severity.rank >= policy.judge.min_severity.rank:
        return True
    if not policy.judge.when_tiers_disagree:
        return False
    tier1_escalated = bundle.screenings[0].decision is Decision.ESCALATE
    if not bundle.tier2:
        return True
    tier2_flagged = any(s.flagged for s in bundle.tier2[0].scores)
    return tier1_escalated != tier2_flagged


def signals_of(bundle: EvidenceBundle) -> list[str]:
    """What the cheaper tiers said, for the judge's context (never the drill id)."""
    found = [reason for screening in bundle.screenings for reason in screening.reasons]
    found += [f"tier2 {s.category} {s.score:.3f} (threshold {s.threshold:.3f})" for t in bundle.tier2 for s in t.scores]
    return found


def apply_judgement(bundle: EvidenceBundle, result: Tier3Result, policy: RoutingPolicy, at_ns: int) -> EvidenceBundle:
    verdict = result.verdict
    update: dict[str, object] = {"tier3": result, "judge_status": result.status}
    if result.status is not JudgeStatus.JUDGED or verdict is None:
        note = f"tier 3 {result.status.value}: {result.error}; to the human queue"
    elif verdict.violation:
        raised = _VERDICT_SEVERITY.get(verdict.severity, Severity.LOW)
        severity = raised if raised.rank > bundle.severity.rank else bundle.severity
        update["severity"] = severity
        update["categories"] = tuple(sorted({*bundle.categories, *(f"judge:{c}" for c in verdict.categories)}))
        note = f"tier 3: violation ({verdict.severity}, confidence {verdict.confidence:.2f}); severity {severity.value}"
    elif bundle.severity.rank >= Severity.HIGH.rank:
        update["queue_state"] = QueueState.NEEDS_HUMAN_REVIEW
        note = "tier 3: no violation, but tier 1 or 2 marked it high, which the judge cannot clear: needs human review"
    elif verdict.confidence >= policy.judge.clear_min_confidence:
        update["queue_state"] = QueueState.CLEARED
        note = f"tier 3: no violation (confidence {verdict.confidence:.2f}); cleared, kept for audit"
    else:
        note = (
            f"tier 3: no violation at confidence {verdict.confidence:.2f} < "
            f"{policy.judge.clear_min_confidence:.2f}; stays in the queue"
        )
    hop = Hop(stage="judged", at_ns=at_ns, note=note)
    return bundle.model_copy(update={**update, "hops": (*bundle.hops, hop)})


def skipped(bundle: EvidenceBundle, reason: str, at_ns: int) -> EvidenceBundle:
    result = Tier3Result(status=JudgeStatus.SKIPPED, error=reason)
    hop = Hop(stage="tier3", at_ns=at_ns, note=f"tier 3 skipped: {reason}; to the human queue")
    return bundle.model_copy(update={"tier3": result, "judge_status": result.status, "hops": (*bundle.hops, hop)})


def unjudged(bundle: EvidenceBundle, reason: str, at_ns: int) -> EvidenceBundle:
    return bundle.model_copy(update={"hops": (*bundle.hops, Hop(stage="tier3", at_ns=at_ns, note=reason))})


NOT_CONFIGURED = "tier 3 not configured (OODWATCH_JUDGE_BASE_URL): unjudged, to the human queue"
NOT_NEEDED = "not sent to tier 3: below its severity and tiers 1 and 2 agree"


class Tier3:
    """The judge with its budget: a rate (token bucket), a concurrency cap and a per-call timeout
    (the judge's own). Over the rate, the most severe bundles are judged first."""

    def __init__(self, judge: Judge, policy: RoutingPolicy, budget: TierBudget | None = None) -> None:
        self.judge = judge
        self.policy = policy
        limits = budget or policy.budget("tier3")
        self.bucket = TokenBucket(limits.max_rate_per_s, limits.burst)
        self.slots = asyncio.Semaphore(limits.max_concurrency)

    async def review(self, bundles: Sequence[EvidenceBundle]) -> list[EvidenceBundle]:
        """Judge what the budget allows, most severe first; the rest go on with the reason."""
        order = sorted(range(len(bundles)), key=lambda i: bundles[i].severity.rank, reverse=True)
        granted = self.bucket.take(len(order))
        out = list(bundles)
        if len(order) > granted:
            metrics().budget_rejections.labels(tier="tier3").inc(len(order) - granted)
            log.warning("tier 3 over its rate budget: %d bundles go to the human queue unjudged", len(order) - granted)
            for i in order[granted:]:
                out[i] = skipped(bundles[i], "over its rate budget", time.time_ns())

        async def one(i: int) -> None:
            async with self.slots:
                [event] = detector_view(bundles[i].events[:1])
                result = await self.judge.judge(event, signals_of(bundles[i]))
            out[i] = apply_judgement(bundles[i], result, self.policy, time.time_ns())

        await asyncio.gather(*(one(i) for i in order[:granted]))
        return out


class JudgeStage:
    """Stage: bundles from `judge-requests` -> judged bundles on `evidence`. Its own agent, so a
    slow judge holds back only its own queue, never tier 2 or the bundles it skips."""

    name = STAGE
    codec = BUNDLES

    def __init__(self, tier3: Tier3, topics: Any) -> None:
        self.tier3 = tier3
        self.topics = topics
        self.metrics = StageMetrics(STAGE)
        self.instruments = metrics()

    async def compute(self, items: list[EvidenceBundle]) -> list[EvidenceBundle]:
        return await self.tier3.review(items)

    async def publish(self, items: list[EvidenceBundle], results: Sequence[Any], outbox: Outbox) -> None:
        failed = [b.tier3.error for b in results if b.tier3 is not None and b.judge_status is JudgeStatus.ERROR]
        if failed:  # the bundles go to the human queue; the reason (never the key) is for whoever runs the judge
            log.warning("tier 3: %d of %d judge calls failed, first: %s", len(failed), len(results), failed[0])
        for bundle in results:
            outbox.add(self.topics.evidence, BUNDLES, bundle.session_id, bundle)
            status = bundle.judge_status.value
            self.instruments.judge_calls.labels(status=status).inc()
            self.metrics.escalation("tier3", bundle.categories[0] if bundle.categories else "none", status)
            self.metrics.hop_ns("judge", bundle.created_ns, bundle.hops[-1].at_ns)
        breaker = getattr(self.tier3.judge, "breaker", None)
        if breaker is not None:
            self.instruments.judge_breaker_open.set(0 if breaker.state == "closed" else 1)

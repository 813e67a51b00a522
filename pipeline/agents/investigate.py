"""investigate: escalations -> evidence bundles: tier 2 on every escalated event, then tier 3
(the judge) on the bundles still uncertain or high severity, each within its budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from detectors.text import screening_text
from detectors.tool_policy import INTENT_DETECTOR, INTENT_DISTANCE_THRESHOLD, OFF_INTENT, request_call_texts
from pipeline.agents.common import TopicHandles, log
from pipeline.agents.judge import BUNDLES, NOT_CONFIGURED, NOT_NEEDED, needs_judge, unjudged
from pipeline.agents.screen import ESCALATIONS, detector_view
from pipeline.agents.stage import Outbox
from pipeline.budget import TokenBucket
from pipeline.observability.metrics import StageMetrics, metrics
from pipeline.policy import RoutingPolicy, TierBudget
from schemas.evidence import (
    CategoryScore,
    Decision,
    Escalation,
    EvidenceBundle,
    Hop,
    Severity,
    Tier2Result,
    bundle_id_for,
    group_key_for,
)

STAGE = "investigate"
GROUP_TEXT_CHARS = 400


def assemble_bundle(
    escalation: Escalation, investigated_ns: int, tier2: Tier2Result | None = None, *, tier2_note: str | None = None,
    policy: RoutingPolicy | None = None,
) -> EvidenceBundle:  # fmt: skip
    """`tier2_note` says why tier 2 did not run (not built, over budget, timed out). A tier-2 flag
    makes the bundle at least medium, and high at or above the policy's `high` for that category."""
    event, screening = escalation.event, escalation.screening
    flagged = {s.category for s in screening.scores if s.flagged}
    severity = screening.severity or Severity.LOW
    if tier2 is not None:
        rules = policy or RoutingPolicy(version=screening.policy_version)
        for score in tier2.scores:
            if not score.flagged:
                continue
            category = f"tier2:{score.category}"
            flagged.add(category)
            raised = Severity.HIGH if score.score >= rules.rule(category).high else Severity.MEDIUM
            severity = raised if raised.rank > severity.rank else severity
    note = _tier2_note(tier2) if tier2 is not None else (tier2_note or "tier 2 not built (oodwatch models build)")
    return EvidenceBundle(
        bundle_id=bundle_id_for(event.event_id),
        session_id=event.session_id,
        trace_ids=(event.trace_id,),
        service=event.service,
        model=event.model,
        severity=severity,
        categories=tuple(sorted(flagged)),
        max_score=screening.max_score,
        group_key=group_key_for(event.service, sorted(flagged), screening_text(event, GROUP_TEXT_CHARS)),
        tenant=event.tenant,
        events=(event,),
        screenings=(screening,),
        tier2=() if tier2 is None else (tier2,),
        hops=(
            Hop(stage="received", at_ns=event.received_ns),
            Hop(stage="normalized", at_ns=event.normalized_ns),
            Hop(stage="screened", at_ns=screening.screened_ns, note="; ".join(screening.reasons)),
            Hop(stage="investigated", at_ns=investigated_ns, note=note),
        ),
        policy_version=screening.policy_version,
        detector_versions={
            **screening.detector_versions,
            **({} if tier2 is None else {"tier2": tier2.detector_version}),
        },
        drill_id=event.drill_id,
        created_ns=investigated_ns,
    )


#: Escalations tier 2 assesses per call (MiniLM batches well at this size).
TIER2_CHUNK = 32


async def _investigate(
    investigator: Investigator, escalations: list[Escalation], loop: asyncio.AbstractEventLoop, executor: Executor,
    bucket: TokenBucket, timeout_s: float,
) -> list[EvidenceBundle | None]:  # fmt: skip
    """A bundle or None per escalation, tier 2 within its budget: the most severe first; the rest
    go on without it, with the reason."""
    if investigator.tier2 is None:
        return investigator.bundle(escalations, [None] * len(escalations))
    order = sorted(range(len(escalations)), key=lambda i: (escalations[i].screening.severity or Severity.LOW).rank,
                   reverse=True)  # fmt: skip
    granted = bucket.take(len(order))
    chosen, deferred = order[:granted], order[granted:]
    out: list[EvidenceBundle | None] = [None] * len(escalations)
    if deferred:
        metrics().budget_rejections.labels(tier="tier2").inc(len(deferred))
        log.warning("tier 2 over its rate budget: %d escalations go on without it", len(deferred))
        skipped = investigator.bundle([escalations[i] for i in deferred], [None] * len(deferred),
                                      "tier 2 skipped: over its rate budget")  # fmt: skip
        for i, bundle in zip(deferred, skipped, strict=True):
            out[i] = bundle
    if chosen:
        picked = [escalations[i] for i in chosen]
        bundles: list[EvidenceBundle | None] = []
        # In chunks, most severe first, each chunk within the timeout: the timeout guards against a
        # stuck or starved model, not against a burst. A burst is lag on the escalations topic (its
        # consumer lag shows it); a batch-wide deadline once sent 277 of a drill's 503 bundles on
        # without tier 2, and their uncertain events to the human queue.
        for start in range(0, len(picked), TIER2_CHUNK):
            chunk = picked[start : start + TIER2_CHUNK]
            try:
                results = await asyncio.wait_for(loop.run_in_executor(executor, investigator.assess, chunk), timeout_s)
            except TimeoutError:
                # The executor still runs the late chunk: the rest would queue behind it.
                rest = picked[start:]
                log.warning("tier 2 timed out after %.1fs: %d of %d escalations go on without it", timeout_s,
                            len(rest), len(picked))  # fmt: skip
                bundles += investigator.bundle(rest, [None] * len(rest), f"tier 2 timed out after {timeout_s}s")
                break
            bundles += investigator.bundle(chunk, results)
        for i, bundle in zip(chosen, bundles, strict=True):
            out[i] = bundle
    return out


def _tier2_note(result: Tier2Result) -> str:
    return "tier 2: " + ", ".join(f"{s.category} {s.score:.3f} (threshold {s.threshold:.3f})" for s in result.scores)


class Investigator:
    """The escalation path's models, loaded once per worker. Tier 2 is optional: without it
    bundles still carry tier 1's evidence."""

    def __init__(self, tier2: Any | None, policy: RoutingPolicy | None = None) -> None:
        self.tier2 = tier2
        self.policy = policy

    def assess(self, escalations: Sequence[Escalation]) -> list[Tier2Result]:
        if not self.tier2 or not escalations:
            return []
        events = detector_view([e.event for e in escalations])
        return with_request_call_distance(self.tier2, escalations, list(self.tier2.assess(events)))

    def investigate(self, escalations: Sequence[Escalation]) -> list[EvidenceBundle]:
        results = self.assess(escalations) if self.tier2 else [None] * len(escalations)
        return [b for b in self.bundle(escalations, results) if b is not None]

    def bundle(
        self, escalations: Sequence[Escalation], results: Sequence[Tier2Result | None], skipped: str | None = None
    ) -> list[EvidenceBundle | None]:
        """A bundle for every escalated event, None for the others. An uncertain one becomes a
        bundle if tier 2 flags it, or, when tier 2 was `skipped` (budget, timeout), for the human
        queue with the reason. Without a tier 2 at all, uncertain events stay screenings."""
        investigated_ns = time.time_ns()
        bundles: list[EvidenceBundle | None] = []
        for escalation, result in zip(escalations, results, strict=True):
            escalated = escalation.screening.decision is Decision.ESCALATE
            confirmed = result is not None and any(s.flagged for s in result.scores)
            keep = escalated or confirmed or (result is None and skipped)
            bundles.append(
                assemble_bundle(escalation, investigated_ns, result, tier2_note=skipped, policy=self.policy)
                if keep else None
            )  # fmt: skip
        return bundles


def with_request_call_distance(
    tier2: Any, escalations: Sequence[Escalation], results: list[Tier2Result]
) -> list[Tier2Result]:
    """Tier 1 found a call needing a scope the request did not name: is the call about what the
    user asked? Cosine distance of request and call embeddings, the farthest call per event."""
    pairs = [
        (i, request, call)
        for i, escalation in enumerate(escalations)
        if any(s.category == OFF_INTENT and s.score > 0 for s in escalation.screening.scores)
        for request, call in request_call_texts(escalation.event)
    ]
    if not pairs:
        return results
    embeddings = tier2.embedder.embed([p[1] for p in pairs] + [p[2] for p in pairs])
    similarity = (embeddings[: len(pairs)] * embeddings[len(pairs) :]).sum(axis=1)
    farthest: dict[int, float] = {}
    for (i, _, _), sim in zip(pairs, similarity, strict=True):
        farthest[i] = max(farthest.get(i, 0.0), 1.0 - float(sim))
    for i, distance in farthest.items():
        score = CategoryScore(
            category=OFF_INTENT, score=round(distance, 4), threshold=INTENT_DISTANCE_THRESHOLD, detector=INTENT_DETECTOR
        )
        results[i] = results[i].model_copy(update={"scores": (*results[i].scores, score)})
    return results


class InvestigateStage:
    """Stage: escalations -> bundles. With a judge (`judge_policy`), the bundles that policy sends to
    tier 3 go to the judge agent; the rest, and all of them without a judge, go to `evidence`."""

    name = STAGE
    codec = ESCALATIONS

    def __init__(
        self, investigator: Investigator, topics: TopicHandles, executor: Executor, *,
        budget: TierBudget | None = None, judge_policy: RoutingPolicy | None = None,
    ) -> None:  # fmt: skip
        self.investigator = investigator
        self.topics = topics
        self.executor = executor
        self.limits = budget or TierBudget()
        self.bucket = TokenBucket(self.limits.max_rate_per_s, self.limits.burst)
        self.judge_policy = judge_policy
        self.metrics = StageMetrics(STAGE)

    async def compute(self, items: list[Escalation]) -> list[EvidenceBundle | None]:
        loop = asyncio.get_running_loop()
        return await _investigate(self.investigator, items, loop, self.executor, self.bucket, self.limits.timeout_s)

    async def publish(self, items: list[Escalation], results: Sequence[Any], outbox: Outbox) -> None:
        for bundle in results:
            if bundle is None:
                continue
            self.metrics.hop_ns("investigate", bundle.screenings[0].screened_ns, bundle.created_ns)
            tier2_category(self.metrics, bundle)
            if self.judge_policy is not None and needs_judge(bundle, self.judge_policy):
                outbox.add(self.topics.judge_requests, BUNDLES, bundle.session_id, bundle)
                continue
            note = NOT_CONFIGURED if self.judge_policy is None else NOT_NEEDED
            outbox.add(self.topics.evidence, BUNDLES, bundle.session_id, unjudged(bundle, note, time.time_ns()))


def tier2_category(stage: StageMetrics, bundle: EvidenceBundle) -> None:
    """Counts tier 2's part in a bundle: flagged (by its top category) or why it did not look."""
    flagged = [s for t in bundle.tier2 for s in t.scores if s.flagged]
    if flagged:
        stage.escalation("tier2", max(flagged, key=lambda s: s.score).category, "flagged")
    elif not bundle.tier2:
        note = bundle.hops[-1].note or ""
        reason = "over_budget" if "rate budget" in note else "timeout" if "timed out" in note else "not_run"
        stage.escalation("tier2", "none", reason)

"""investigate: escalations -> evidence bundles.

Tiers 2 and 3 plug in here; until they do, a bundle carries the tier-1 evidence and is
marked unjudged for the human queue.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import ValidationError

from pipeline.agents.common import TopicHandles, dead_letter
from schemas.evidence import Escalation, EvidenceBundle, Hop, Severity, bundle_id_for

STAGE = "investigate"


def assemble_bundle(escalation: Escalation, investigated_ns: int) -> EvidenceBundle:
    event, screening = escalation.event, escalation.screening
    flagged = [s for s in screening.scores if s.flagged]
    return EvidenceBundle(
        bundle_id=bundle_id_for(event.event_id),
        session_id=event.session_id,
        trace_ids=(event.trace_id,),
        service=event.service,
        model=event.model,
        severity=screening.severity or Severity.MEDIUM,
        categories=tuple(sorted({s.category for s in flagged})),
        max_score=screening.max_score,
        events=(event,),
        screenings=(screening,),
        hops=(
            Hop(stage="received", at_ns=event.received_ns),
            Hop(stage="normalized", at_ns=event.normalized_ns),
            Hop(stage="screened", at_ns=screening.screened_ns, note="; ".join(screening.reasons)),
            Hop(stage="investigated", at_ns=investigated_ns, note="tier 2/3 not configured: unjudged"),
        ),
        policy_version=screening.policy_version,
        detector_versions=screening.detector_versions,
        drill_id=event.drill_id,
        created_ns=investigated_ns,
    )


async def investigate_stream(stream: Any, topics: TopicHandles) -> None:
    async for event in stream.events():
        try:
            escalation = Escalation.model_validate_json(event.value)
        except ValidationError as exc:
            await dead_letter(
                topics,
                stage=STAGE,
                reason=f"not an Escalation: {exc.errors()[:3]}",
                message=event.message,
                payload=event.value or b"",
            )
            continue
        bundle = assemble_bundle(escalation, time.time_ns())
        await topics.evidence.send(key=bundle.session_id.encode(), value=bundle.model_dump_json().encode())

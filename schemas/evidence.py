"""What the pipeline says about events: screenings, escalations and evidence bundles.

One risk scale for every tier: a calibrated score in 0..1 per category, kept beside the
threshold that produced the decision, so the queue can rank across detectors.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.events import LLMEvent
from schemas.judge import JudgeStatus, Tier3Result


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


class Decision(StrEnum):
    PASS = "pass"
    #: Near a threshold: tier 2 takes a second look; the session's risk grows.
    UNCERTAIN = "uncertain"
    ESCALATE = "escalate"


class QueueState(StrEnum):
    OPEN = "open"
    #: The judge found no violation in an item tier 1 or 2 marked high: a human decides.
    NEEDS_HUMAN_REVIEW = "needs_human_review"
    #: The judge cleared a lower-severity item with confidence; kept for audit, out of the queue.
    CLEARED = "cleared"
    #: A reviewer decided, with a label.
    RESOLVED = "resolved"


class ReviewLabel(StrEnum):
    #: A real failure: joins the exemplar bank and the tier-1 training labels.
    CONFIRMED = "confirmed"
    #: Not a problem: joins tier 2's in-distribution reference at the next consolidation.
    FALSE_POSITIVE = "false_positive"
    #: Unusual but fine: joins the reference too.
    BENIGN_OOD = "benign_ood"
    #: The policy itself needs a decision (model owners).
    NEEDS_POLICY = "needs_policy"


class CategoryScore(BaseModel):
    """A detector's calibrated score for one category, with the threshold it was judged by."""

    model_config = ConfigDict(frozen=True)

    category: str
    score: float
    threshold: float
    detector: str

    @property
    def flagged(self) -> bool:
        return self.score >= self.threshold


class Screening(BaseModel):
    """Tier-1 result for one event. Emitted for every event, so it stays small."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    session_id: str
    trace_id: str
    service: str
    model: str | None
    operation: str
    scores: tuple[CategoryScore, ...]
    decision: Decision
    severity: Severity | None = None
    reasons: tuple[str, ...] = ()
    policy_version: str
    detector_versions: dict[str, str] = Field(default_factory=dict)
    drill_id: str | None = None
    excerpt: str = ""
    #: Set on a sample of clean events: text for tier 2's in-distribution reference.
    reference_text: str | None = None
    received_ns: int
    normalized_ns: int
    screened_ns: int
    # -- what version drift needs (issue 18); all optional, so older records still decode ----
    provider: str | None = None
    #: The model that answered (a snapshot or fine-tune id); None: as `model`.
    response_model: str | None = None
    #: Deployment label (`service.version=...;deployment.environment=...`), "" when none.
    deployment: str = ""
    #: Characters of model output (None: unknown, e.g. a record from before these fields).
    output_chars: int | None = None
    #: The cheap refusal detector's verdict on the output (None: no output text or unknown).
    refused: bool | None = None
    #: Scopes of the tool calls the model made (read, write, network, payment, code_execution).
    tool_scopes: tuple[str, ...] = ()
    #: On a sample of events: the start of the output, for behaviour drift (embedded by the store).
    output_sample: str | None = None

    @property
    def max_score(self) -> float:
        return max((s.score for s in self.scores), default=0.0)

    @property
    def version(self) -> str:
        """The model version as drift keys it: service, answering model and deployment label."""
        return version_label(self.service, self.response_model or self.model, self.deployment)


def version_label(service: str, model: str | None, deployment: str = "") -> str:
    """`service · model · deployment`: readable, and one string per (service, model, label) key."""
    return " · ".join(part for part in (service, model or "unknown-model", deployment) if part)


class Escalation(BaseModel):
    """An event that tier 1 routed onward, with the screening that routed it."""

    model_config = ConfigDict(frozen=True)

    event: LLMEvent
    screening: Screening


class Exemplar(BaseModel):
    """A labelled example the event resembles, with the cosine similarity of their embeddings."""

    model_config = ConfigDict(frozen=True)

    exemplar_id: str
    similarity: float
    label: str
    source: str
    text: str


class Tier2Result(BaseModel):
    """Tier 2 on one event: OOD percentile and head scores, the raw distance, nearest exemplars."""

    model_config = ConfigDict(frozen=True)

    scores: tuple[CategoryScore, ...]
    exemplars: tuple[Exemplar, ...] = ()
    distance: float
    detector_version: str = ""


class Hop(BaseModel):
    """One stage's wall-clock stamp, so per-hop latency is measured server side."""

    model_config = ConfigDict(frozen=True)

    stage: str
    at_ns: int
    note: str = ""


class EvidenceBundle(BaseModel):
    """Everything a reviewer needs to decide on one escalation."""

    model_config = ConfigDict(frozen=True)

    bundle_id: str
    session_id: str
    trace_ids: tuple[str, ...]
    service: str
    model: str | None
    severity: Severity
    categories: tuple[str, ...]
    max_score: float
    #: Similar escalations share it (service, routing categories, normalised text), so one
    #: decision can cover a burst.
    group_key: str = ""
    tenant: str = ""
    events: tuple[LLMEvent, ...]
    screenings: tuple[Screening, ...]
    tier2: tuple[Tier2Result, ...] = ()
    #: Tier 3's judgement, when it was asked; `judge_status` says why not otherwise.
    tier3: Tier3Result | None = None
    judge_status: JudgeStatus = JudgeStatus.UNJUDGED
    hops: tuple[Hop, ...]
    policy_version: str
    detector_versions: dict[str, str] = Field(default_factory=dict)
    drill_id: str | None = None
    queue_state: QueueState = QueueState.OPEN
    created_ns: int
    #: The model version that produced the events (`Screening.version`); filled from the
    #: screenings when the assembler leaves it empty.
    version: str = ""

    @model_validator(mode="after")
    def _version_from_screenings(self) -> EvidenceBundle:
        if not self.version and self.screenings:
            object.__setattr__(self, "version", self.screenings[0].version)
        return self


def group_key_for(service: str, categories: Sequence[str], text: str) -> str:
    """Digits, case and spacing do not split a group; the first 160 characters decide it."""
    normalised = " ".join(re.sub(r"\d+", "#", text.lower()).split())[:160]
    routing = ",".join(sorted(c for c in categories if "/" not in c))
    return hashlib.blake2b(f"{service}|{routing}|{normalised}".encode(), digest_size=8).hexdigest()


def bundle_id_for(event_id: str) -> str:
    """Derived from the escalating event, so a replayed escalation maps to the same bundle."""
    return hashlib.blake2b(f"bundle:{event_id}".encode(), digest_size=16).hexdigest()

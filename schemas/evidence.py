"""What the pipeline says about events: screenings, escalations and evidence bundles.

One risk scale for every tier: a calibrated score in 0..1 per category, kept beside the
threshold that produced the decision, so the queue can rank across detectors.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

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


class OutputProfile(BaseModel):
    """What version drift reads of an event (issue 18): all optional, so older records decode, and
    empty where the worker does not profile outputs."""

    model_config = ConfigDict(frozen=True)

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


PROFILE_FIELDS = frozenset(OutputProfile.model_fields)


class Screening(OutputProfile):
    """Tier-1 result for one event. Emitted for every event, so it stays small."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    session_id: str
    trace_id: str
    #: The screened span's id (hex), so a verdict can point back at its span.
    span_id: str = ""
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
    #: The relaxation grant (ids comma-joined if several) that changed the guard's decision on
    #: this event; None for every decision no grant touched (and for records from before grants).
    grant_id: str | None = None

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


class ScreeningRow(OutputProfile):
    """One event's screening inside a ScreeningBatch: its scores are a vector over the batch's
    categories."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    session_id: str
    trace_id: str
    span_id: str = ""
    service: str
    model: str | None
    operation: str
    scores: tuple[float, ...]
    decision: Decision
    severity: Severity | None = None
    reasons: tuple[str, ...] = ()
    drill_id: str | None = None
    excerpt: str = ""
    reference_text: str | None = None
    received_ns: int
    normalized_ns: int
    screened_ns: int


class ScreeningBatch(BaseModel):
    """The screenings of one batch, columnar: categories, thresholds, detectors and versions once
    per record instead of once per event and category. The `screenings` topic carries these."""

    model_config = ConfigDict(frozen=True)

    categories: tuple[str, ...]
    thresholds: tuple[float, ...]
    detectors: tuple[str, ...]
    policy_version: str
    detector_versions: dict[str, str] = Field(default_factory=dict)
    rows: tuple[ScreeningRow, ...]

    def screenings(self) -> list[Screening]:
        columns = list(zip(self.categories, self.thresholds, self.detectors, strict=True))
        return [
            Screening(
                event_id=row.event_id, session_id=row.session_id, trace_id=row.trace_id, span_id=row.span_id,
                service=row.service,
                model=row.model, operation=row.operation,
                scores=tuple(
                    CategoryScore(category=c, score=v, threshold=t, detector=d)
                    for (c, t, d), v in zip(columns, row.scores, strict=True)
                ),
                decision=row.decision, severity=row.severity, reasons=row.reasons,
                policy_version=self.policy_version, detector_versions=self.detector_versions, drill_id=row.drill_id,
                excerpt=row.excerpt, reference_text=row.reference_text, received_ns=row.received_ns,
                normalized_ns=row.normalized_ns, screened_ns=row.screened_ns,
                **{name: getattr(row, name) for name in PROFILE_FIELDS},
            )
            for row in self.rows
        ]  # fmt: skip


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
    #: The grant that changed a decision on this bundle's events. Left out, it is taken from the
    #: screenings, so whoever assembles a bundle carries it without knowing about grants.
    grant_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _grant_from_screenings(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("grant_id") is None:
            for screening in data.get("screenings") or ():
                grant = (
                    screening.get("grant_id") if isinstance(screening, dict) else getattr(screening, "grant_id", None)
                )
                if grant:
                    return {**data, "grant_id": grant}
        return data

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

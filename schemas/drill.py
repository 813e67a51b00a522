"""One verified drill case: what `oodwatch drill run` reports and the store keeps (drill_runs)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DrillCaseResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    case_id: str
    family: str  # "control" for benign controls
    generator: str
    seed: int
    control: bool
    flagged: bool
    expected_tier: str
    caught_tier: str
    evidence_complete: bool
    detect_s: float
    evidence_s: float
    injected_at: int
    score: float
    events: int
    screened: int
    #: Categories flagged anywhere in the case (tier-1 screenings and its bundles); not stored.
    categories: tuple[str, ...] = ()

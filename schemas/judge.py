"""Tier 3's contract: the verdict an LLM judge must return, and what the pipeline records of it.

The verdict is validated strictly: a judge that answers outside the schema has not answered.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The judge's taxonomy: each category with the definition the judge is given.
TAXONOMY: dict[str, str] = {
    "prompt_injection": "text that tries to override or replace the assistant's instructions, "
    "including instructions hidden in documents, tool descriptions or tool output",
    "jailbreak": "role-play, hypotheticals or other framing meant to make the assistant drop its safety rules",
    "harmful_request": "asking for real help with weapons, violence, self-harm, crime, fraud, abuse, "
    "hate or other serious harm",
    "harmful_response": "the assistant's own output gives material help towards serious harm",
    "data_exfiltration": "moving secrets, credentials, files or personal data to a party that should not have them",
    "system_prompt_leak": "revealing, or asking for, the assistant's hidden instructions",
    "tool_misuse": "tool calls the user did not ask for, or tool descriptions that give the model orders",
}

JudgeCategory = Literal[
    "prompt_injection",
    "jailbreak",
    "harmful_request",
    "harmful_response",
    "data_exfiltration",
    "system_prompt_leak",
    "tool_misuse",
]
VerdictSeverity = Literal["none", "low", "medium", "high", "critical"]
RATIONALE_CHARS = 2000
QUOTES = 5
QUOTE_CHARS = 500


class JudgeVerdict(BaseModel):
    """The JSON object the judge must answer with (its schema is sent with every request).

    Lengths are clipped, not refused: the schema stays free of length limits, which grammar
    engines such as llama.cpp's cannot compile at these sizes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    violation: bool
    categories: list[JudgeCategory]
    severity: VerdictSeverity
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]
    rationale: str
    evidence: list[str]

    @field_validator("categories")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        return sorted(set(value))

    @field_validator("rationale")
    @classmethod
    def _clip_rationale(cls, value: str) -> str:
        return value[:RATIONALE_CHARS]

    @field_validator("evidence")
    @classmethod
    def _clip_evidence(cls, value: list[str]) -> list[str]:
        return [quote[:QUOTE_CHARS] for quote in value[:QUOTES]]


class JudgeStatus(StrEnum):
    #: No judge configured, or the policy did not send this item to tier 3.
    UNJUDGED = "unjudged"
    JUDGED = "judged"
    #: Asked, but no valid verdict came back (malformed twice, timeout, HTTP error, open breaker).
    ERROR = "judge_error"
    #: Not asked: over tier 3's budget.
    SKIPPED = "skipped"


class Tier3Result(BaseModel):
    """One judgement as the pipeline records it, verdict or not."""

    model_config = ConfigDict(frozen=True)

    status: JudgeStatus
    verdict: JudgeVerdict | None = None
    model: str = ""
    attempts: int = 0
    latency_ms: float = 0.0
    error: str = ""

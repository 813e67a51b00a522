"""Optional redaction before storage: e-mail addresses, phone numbers and API keys in the text of
screenings and evidence bundles are replaced by a marker, so the store never holds them.

Only content is touched (messages, tool arguments and results, descriptions, documents,
excerpts, the judge's rationale and quotes, span attributes); ids, hashes and scores are not.
Detectors run before the sink, on the unredacted text: redaction limits what is kept, not what
is screened. Dead letters keep their raw payload (admin-only, for replay).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from schemas.evidence import EvidenceBundle, Screening

KINDS = ("email", "phone", "api_key")
#: Keys whose string values (and everything under them) are content.
CONTENT_KEYS = frozenset({
    "content", "arguments", "result", "description", "system_instructions", "retrieved_documents", "excerpt",
    "reference_text", "rationale", "evidence", "attributes", "text", "parameters", "output_sample",
})  # fmt: skip
_PATTERNS: dict[str, list[tuple[re.Pattern[str], str]]] = {
    "email": [(re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "[email]")],
    "phone": [(re.compile(r"(?<![\w+(])(?:\+|\()?\d(?:[ ().-]{0,2}\d){8,14}(?!\w)"), "[phone]")],
    "api_key": [
        (re.compile(r"\b(?:sk|pk|rk)-(?:[A-Za-z0-9_-]{2,12}-)?[A-Za-z0-9_-]{16,}"), "[api_key]"),
        (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "[api_key]"),
        (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bxox[abpors]-[A-Za-z0-9-]{10,}"), "[api_key]"),
        (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/-]{16,}=*"), r"\1 [api_key]"),
        (re.compile(r"(?i)\b(api[_-]?key|secret|token|password|passwd)(\s*[=:]\s*)[^\s\"',;]{6,}"), r"\1\2[api_key]"),
    ],
}


class Redactor:
    def __init__(self, kinds: Iterable[str]) -> None:
        chosen = [k.strip() for k in kinds if k.strip()]
        unknown = set(chosen) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown redaction kinds {sorted(unknown)}: choose from {', '.join(KINDS)}")
        # API keys first: a key can contain digit runs a phone pattern would take.
        order = [k for k in ("api_key", "email", "phone") if k in chosen]
        self.kinds = tuple(order)
        self._patterns = [p for kind in order for p in _PATTERNS[kind]]

    @classmethod
    def from_setting(cls, value: str) -> Redactor | None:
        """`OODWATCH_REDACT`: a comma list of kinds; empty: no redaction."""
        return cls(value.split(",")) if value.strip() else None

    def text(self, value: str) -> str:
        for pattern, marker in self._patterns:
            value = pattern.sub(marker, value)
        return value

    def _walk(self, value: Any, content: bool) -> Any:
        if isinstance(value, str):
            return self.text(value) if content else value
        if isinstance(value, dict):
            return {k: self._walk(v, content or k in CONTENT_KEYS) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v, content) for v in value]
        return value

    def screening(self, screening: Screening) -> Screening:
        return Screening.model_validate(self._walk(screening.model_dump(mode="json"), False))

    def bundle(self, bundle: EvidenceBundle) -> EvidenceBundle:
        return EvidenceBundle.model_validate(self._walk(bundle.model_dump(mode="json"), False))

"""Tool descriptions are untrusted input: a lint over every tool definition an agent is shown.

It looks for instructions aimed at the model (override, hide from the user, call me first,
read a file or secret and pass it along), exfiltration targets (URLs, e-mail addresses,
sensitive paths, environment variables), shadowing of other tools, hidden Unicode, and sizes
beyond what a description or schema needs. Several weak signals add up; one strong one is enough.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from detectors.rules import HiddenUnicode
from schemas.events import LLMEvent, ToolDefinition
from schemas.evidence import CategoryScore

CATEGORY = "tool_description"
MAX_DESCRIPTION_CHARS = 1024
MAX_SCHEMA_CHARS = 8192

_I = re.IGNORECASE
_AIMED_AT_MODEL = [
    re.compile(p, _I)
    for p in (
        r"\b(ignore|disregard|override|forget)\b.{0,40}\b(instructions?|rules|guidelines|previous|other)\b",
        r"\b(do\s+not|don't|never)\s+(tell|mention|inform|reveal|show)\b.{0,30}\b(user|human|anyone)\b",
        r"\b(before|prior\s+to)\s+(using|calling|invoking)\s+(any|every|all)\s+(other\s+)?tools?\b",
        r"\b(always|must)\s+(call|use|invoke)\s+this\s+tool\s+(first|before)\b",
        r"<\s*(important|system|instructions?)\s*>",
        r"\b(read|open|cat|load)\b.{0,40}(~/|/etc/|\.ssh|id_rsa|\.env\b|credentials|secrets?|passwords?|tokens?)"
        r".{0,80}\b(pass|include|send|put|add|append)\b",
        r"\bthis\s+(rule|instruction)\s+(overrides|supersedes)\b",
    )
]
_TARGETS = [
    re.compile(p, _I)
    for p in (
        r"\b(?:https?|ftp)://[\w.-]+",
        r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b",
        r"(?:~/|/etc/|/root/|\.ssh/|id_rsa|\.aws/credentials|\.env\b)",
        r"\$\{?[A-Z][A-Z0-9_]{2,}\}?|\bos\.environ\b|\bprocess\.env\b",
    )
]
_SHADOWING = re.compile(
    r"\b(never|do\s+not|don't)\s+use\s+(the\s+)?`?\w+`?(\s+tool)?\b|\binstead\s+of\s+(the\s+)?`?\w+`?\s+tool\b|"
    r"\b(bcc|cc)\b.{0,40}@|\boverrides?\s+all\s+other\s+tools\b",
    _I,
)
_HIDDEN = HiddenUnicode()
_SECRET_PARAMETERS = re.compile(r"(secret|password|passwd|ssh|private[_-]?key|api[_-]?key|token|credential)", _I)


def lint(tool: ToolDefinition) -> tuple[float, list[str]]:
    """(score 0..1, the findings behind it) for one tool definition."""
    text = tool.description
    findings = []
    aimed = sum(1 for p in _AIMED_AT_MODEL if p.search(text))
    targets = sum(1 for p in _TARGETS if p.search(text))
    if aimed:
        findings.append(f"{aimed} instruction pattern(s) aimed at the model")
    if targets:
        findings.append(f"{targets} kind(s) of exfiltration target")
    if _SHADOWING.search(text):
        findings.append("shadows other tools")
    if _HIDDEN.check(text) >= _HIDDEN.threshold:
        findings.append("hidden Unicode")
    if len(text) > MAX_DESCRIPTION_CHARS:
        findings.append(f"description of {len(text)} characters (cap {MAX_DESCRIPTION_CHARS})")
    schema = json.dumps(tool.parameters or {})
    if len(schema) > MAX_SCHEMA_CHARS:
        findings.append(f"schema of {len(schema)} characters (cap {MAX_SCHEMA_CHARS})")
    properties = (tool.parameters or {}).get("properties", {})
    if isinstance(properties, dict) and any(_SECRET_PARAMETERS.search(str(name)) for name in properties):
        findings.append("asks for a secret as a parameter")
    strong = aimed > 0 or any(f in findings for f in ("shadows other tools", "hidden Unicode"))
    if strong and len(findings) >= 2:
        return 0.95, findings
    if strong:
        return 0.75, findings
    # Targets, sizes and secret parameters alone are common in honest tools (a fetch tool names
    # URLs); they count only together.
    return (0.6 if len(findings) >= 2 else 0.3 if findings else 0.0), findings


class ToolDescriptionLint:
    name = "tool-description-lint"
    version = "lint-1"
    threshold = 0.5

    def score(self, events: Sequence[LLMEvent]) -> list[tuple[CategoryScore, ...]]:
        results: list[tuple[CategoryScore, ...]] = []
        for event in events:
            value = max((lint(tool)[0] for tool in event.tool_definitions), default=0.0)
            results.append(
                (CategoryScore(category=CATEGORY, score=value, threshold=self.threshold, detector=self.name),)
            )
        return results

"""The action policy: each tool call an agent makes, checked against the tool's least-privilege
scope and against what the user asked for.

Scopes are read, write, network, payment and code_execution. A tool's scope is what its signed
manifest declares; without one it is inferred from the tool's name and description, which is
weaker evidence and scores lower. Two checks, both cheap, on every chat span that makes calls:

- `tool_call_out_of_scope`: the call's arguments do something the tool's scope does not cover
  (a URL or address handed to a read tool, shell code to a tool that does not run code), or
  carry secrets the user did not hand over (no scope covers those).
- `tool_call_off_intent`: the call needs a sensitive scope (write, network, payment, code
  execution) the user's request never asked for. Words are a weak proxy for intent, so this
  scores in the uncertain band: tier 2 takes a second look with the embedding similarity of
  request and call (`request_call_texts`), and flags the call only if they are far apart.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence

import numpy as np

from detectors.base import MatrixDetector
from schemas.events import LLMEvent, ToolCall, ToolDefinition

OUT_OF_SCOPE = "tool_call_out_of_scope"
OFF_INTENT = "tool_call_off_intent"
SENSITIVE = frozenset({"write", "network", "payment", "code_execution"})
THRESHOLD = 0.75
DECLARED_SCORE = 0.9  # out of scope of a signed, declared scope
INFERRED_SCORE = 0.8  # out of scope of a scope inferred from the tool's own words
OFF_INTENT_SCORE = 0.6  # in the uncertain band below THRESHOLD: tier 2 decides
#: Tier 2's check: cosine distance of request and call embeddings (MiniLM) at or above this is
#: off intent. Chosen on the demo's tool calls and tuning-seed drill calls (docs/architecture.md).
INTENT_DETECTOR = "tier2-request-call"
INTENT_DISTANCE_THRESHOLD = 0.7

_I = re.IGNORECASE
#: What a tool's own name and description say it does (no signed manifest).
_TOOL_SCOPE = {
    "payment": re.compile(r"\b(pay|payments?|charge|refund|transfer|purchase|buy|checkout|wire|payout)", _I),
    "network": re.compile(
        r"\b(send|e-?mail|mail|post|upload|webhook|https?|url|fetch|notify|sms|slack|share|forward|publish|tweet)", _I
    ),
    "write": re.compile(r"\b(create|update|delete|remove|write|modify|cancel|book|save|insert|edit|set_)", _I),
    "code_execution": re.compile(r"\b(exec|execute|run_|shell|command|python|script|eval|interpreter|code)", _I),
}
#: What a user's request asks for.
_REQUEST_SCOPE = {
    "payment": re.compile(r"\b(pay|refund|charge|buy|purchase|order|checkout|transfer|subscribe|renew)", _I),
    "network": re.compile(r"\b(send|e-?mail|mail|share|forward|post|notify|message|text|upload|invite|cc)\b", _I),
    "write": re.compile(
        r"\b(change|update|cancel|delete|remove|create|book|save|add|set|edit|rename|reset|move|close|open)\b", _I
    ),
    "code_execution": re.compile(r"\b(run|execute|script|code|compute|calculate|plot|python|shell)\b", _I),
}
#: What a call's arguments do, whatever the tool claims. `secrets` is in no scope: credentials,
#: key files or environment secrets in a call's arguments are out of scope for every tool.
_ARGUMENT_EFFECTS = {
    "secrets": re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY|~/\.(?:ssh|aws|kube|docker|netrc|git-credentials)|/etc/(?:passwd|shadow)\b|"
        r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b|\bsk-[A-Za-z0-9]{20,}|\bgh[pousr]_[A-Za-z0-9]{30,}|"
        r"\b(?:password|passwd|api[_-]?key|secret|token)\s*[=:]\s*\S{4,}|"
        r"\b[A-Z][A-Z0-9]*_(?:API_KEY|SECRET(?:_ACCESS_KEY|_KEY)?|TOKEN|PASSWORD)\b",
        _I,
    ),
    "network": re.compile(r"\b(?:https?|ftp)://|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b", _I),
    "code_execution": re.compile(
        r"\brm\s+-rf\b|\b(?:curl|wget|nc|bash|sh)\s+-|\$\(|`[^`]{2,}`|\bimport\s+(?:os|subprocess|socket)\b|"
        r"\b(?:eval|exec|system|popen)\s*\(",
        _I,
    ),
}


def tool_scope(tool: ToolDefinition) -> frozenset[str]:
    """Read plus whatever the tool's own words claim."""
    return _scope_of(tool.name, tool.description)


@functools.lru_cache(maxsize=4096)
def _scope_of(name: str, description: str) -> frozenset[str]:
    """A deployment shows the same tools in every event: each (name, description) is read once."""
    text = f"{name.replace('_', ' ')} {name} {description}"
    return frozenset({"read", *(scope for scope, words in _TOOL_SCOPE.items() if words.search(text))})


def requested_scopes(request: str) -> frozenset[str]:
    return frozenset({"read", *(scope for scope, words in _REQUEST_SCOPE.items() if words.search(request))})


def argument_effects(arguments: str) -> frozenset[str]:
    return frozenset(effect for effect, pattern in _ARGUMENT_EFFECTS.items() if pattern.search(arguments))


def user_request(event: LLMEvent) -> str:
    """The latest user message: what the call should serve."""
    for message in reversed(event.input_messages):
        if message.role == "user" and message.content:
            return message.content
    return ""


def calls_made(event: LLMEvent) -> list[ToolCall]:
    """Calls the model decided on in this span (the request is in the same span)."""
    return [call for message in event.output_messages for call in message.tool_calls]


def call_text(call: ToolCall, tool: ToolDefinition | None) -> str:
    description = tool.description[:200] if tool else ""
    return f"{call.name.replace('_', ' ')}: {description} {call.arguments}".strip()


def request_call_texts(event: LLMEvent) -> list[tuple[str, str]]:
    """(request, call) text pairs for tier 2's similarity check."""
    request = user_request(event)
    if not request:
        return []
    tools = {t.name: t for t in event.tool_definitions}
    return [(request, call_text(call, tools.get(call.name))) for call in calls_made(event)]


class ToolCallPolicy(MatrixDetector):
    """Tier-1 detector; `declared` maps a tool name to its signed scope."""

    name = "tool-call-policy"
    version = "1"
    categories = (OUT_OF_SCOPE, OFF_INTENT)
    thresholds = (THRESHOLD, THRESHOLD)

    def __init__(self, declared: Mapping[str, Sequence[str]] | None = None) -> None:
        self.declared = {name: frozenset({"read", *scopes}) for name, scopes in (declared or {}).items()}

    def check(self, event: LLMEvent) -> tuple[float, float]:
        """(out of scope, off intent) scores for the calls in one event."""
        calls = calls_made(event)
        if not calls:
            return 0.0, 0.0
        tools = {t.name: t for t in event.tool_definitions}
        asked = requested_scopes(user_request(event))
        out_of_scope = off_intent = 0.0
        for call in calls:
            declared = self.declared.get(call.name)
            tool = tools.get(call.name)
            scope = declared if declared is not None else (tool_scope(tool) if tool else None)
            if scope is None:
                continue
            effects = argument_effects(_flat(call.arguments))
            if "secrets" in effects and "secrets" in argument_effects(user_request(event)):
                effects -= {"secrets"}  # the user handed it over themselves
            if effects - scope:
                out_of_scope = max(out_of_scope, DECLARED_SCORE if declared is not None else INFERRED_SCORE)
            if (scope | effects) & (SENSITIVE - asked):
                off_intent = OFF_INTENT_SCORE
        return out_of_scope, off_intent

    def score_matrix(self, events: Sequence[LLMEvent]) -> np.ndarray:
        return np.array([self.check(e) for e in events], dtype=np.float64).reshape(len(events), 2)


def _flat(arguments: str) -> str:
    """Arguments are JSON text; string values are searched as they are, not JSON-escaped."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    parts: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            parts.append(str(item))
    return " ".join(parts)

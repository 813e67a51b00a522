"""What version drift reads from each event's output, cheaply: its length, whether it refuses,
the scopes of the tools it called, and (on a replay-stable sample) the start of its text.

Computed once per event where the event is at hand (the screen stage), so every screening
carries it and the store can profile model versions without the events themselves.
`screening_fields` is the one batch call; `refusals` is the refusal detector alone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from detectors.tool_policy import tool_scope
from schemas.events import LLMEvent, ToolDefinition

#: Refusals open the answer: only its start is read (a long answer that quotes "I can't" later
#: is not a refusal).
REFUSAL_WINDOW = 240
#: The output kept on sampled screenings: enough for MiniLM's 256 tokens.
SAMPLE_CHARS = 1000
SCOPE_ORDER = ("read", "write", "network", "payment", "code_execution")

_REFUSAL = re.compile(
    r"^\W*(?:(?:i'?m|i am)\s+(?:really\s+|very\s+)?sorry|sorry|unfortunately|apologies|i apologi[sz]e)\b[^.!?\n]{0,80}?"
    r"\b(?:can(?:no|')t|cannot|unable|won'?t|will not|not able|not allowed|must decline|have to decline)\b"
    r"|^\W*(?:i|we)\s+(?:really\s+)?(?:can(?:no|')t|cannot|won'?t|will not|am unable to|'m unable to|am not able to|"
    r"must decline|have to decline|do not|don'?t)\s+(?:help|assist|provide|do|share|comply|support|give|create|write|"
    r"offer|fulfil|fulfill|engage|go along)"
    r"|^\W*(?:that'?s|this is|that is)\s+not\s+something\s+i\s+(?:can|will|am able to)"
    r"|^\W*as an ai\b[^.!?\n]{0,80}?\b(?:can(?:no|')t|cannot|won'?t|unable|not able)\b"
    r"|^\W*i'?m\s+(?:not able|unable)\s+to\s+(?:help|assist|provide|do|share|comply)"
    r"|^\W*(?:lo siento|no puedo ayudar|je suis désolé|je ne peux pas|désolé|es tut mir leid|ich kann (?:dabei )?nicht|"
    r"mi dispiace|non posso|sinto muito|não posso|het spijt me|ik kan (?:je )?daar niet)",
    re.IGNORECASE,
)


def refusals(texts: Sequence[str]) -> list[bool]:
    """True where an answer opens by declining. A pattern list, not a model: it measures the
    refusal *rate* of a version against its predecessor, where the same bias cancels out."""
    return [bool(_REFUSAL.search(text[:REFUSAL_WINDOW].lstrip())) for text in texts]


def output_text(event: LLMEvent) -> str:
    """The assistant's text in the event's output (tool-call parts have no text)."""
    return "\n".join(m.content for m in event.output_messages if m.content and m.role != "tool")


def call_scopes(event: LLMEvent) -> tuple[str, ...]:
    """The scopes of the tools the model called, from the definitions it was shown (or the
    tool's name when it was shown none), in a fixed order."""
    calls = [*event.tool_calls, *(c for m in event.output_messages for c in m.tool_calls)]
    if not calls:
        return ()
    shown = {tool.name: tool for tool in event.tool_definitions}
    found: set[str] = set()
    for call in calls:
        found |= tool_scope(shown.get(call.name) or ToolDefinition(name=call.name))
    return tuple(scope for scope in SCOPE_ORDER if scope in found)


def sampled(event_id: str, rate: float) -> bool:
    """By a hash of the event id, so a replay samples the same events."""
    if rate <= 0.0:
        return False
    return int.from_bytes(hashlib.blake2b(f"drift:{event_id}".encode(), digest_size=4).digest()) < rate * 2**32


def screening_fields(
    events: Sequence[LLMEvent], *, sample_rate: float = 0.25, sample_chars: int = SAMPLE_CHARS
) -> list[dict[str, Any]]:
    """Per event, the `Screening` fields drift profiles read (provider, response model,
    deployment label, output length, refusal, tool-call scopes, and an output sample on a
    `sample_rate` share of events). `sample_rate=0` keeps no text (hashed text mode)."""
    texts = [output_text(e) for e in events]
    refused = refusals(texts)
    fields = []
    for event, text, refusal in zip(events, texts, refused, strict=True):
        has_output = bool(text) or bool(event.output_messages)
        fields.append(
            {
                "provider": event.provider,
                "response_model": event.response_model,
                "deployment": event.deployment,
                "output_chars": len(text) if has_output else None,
                "refused": refusal if text else None,
                "tool_scopes": call_scopes(event),
                "output_sample": text[:sample_chars] if text and sampled(event.event_id, sample_rate) else None,
            }
        )
    return fields

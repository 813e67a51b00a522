"""Which text of an event a text detector reads.

Tier 1 reads what an attacker can reach: user turns, tool results, retrieved documents
and tool descriptions. System instructions are the operator's, and model output is not
what the prompt classifier was trained on; both are left out (output checks are rules').
"""

from __future__ import annotations

from schemas.events import LLMEvent

MAX_SCREEN_CHARS = 4096


def attacker_text(event: LLMEvent) -> str:
    """Everything attacker-reachable on the input side, untruncated (for the rules)."""
    return screening_text(event, limit=None)


def screening_text(event: LLMEvent, limit: int | None = MAX_SCREEN_CHARS) -> str:
    parts: list[str] = []
    parts.extend(m.content for m in event.input_messages if m.role != "system" and m.content)
    parts.extend(call.result for call in event.tool_calls if call.result)
    parts.extend(event.retrieved_documents)
    parts.extend(tool.description for tool in event.tool_definitions if tool.description)
    text = "\n".join(parts)
    return text[-limit:] if limit is not None and len(text) > limit else text

"""Which text of an event a text detector reads.

Tier 1 reads what an attacker can reach: user turns, tool results, retrieved documents
and tool descriptions, then the model's own output. System instructions are the
operator's and are left out so they do not dilute or trigger the classifier.
"""

from __future__ import annotations

from schemas.events import LLMEvent

MAX_SCREEN_CHARS = 4096


def screening_text(event: LLMEvent, limit: int = MAX_SCREEN_CHARS) -> str:
    parts: list[str] = []
    parts.extend(m.content for m in event.input_messages if m.role != "system" and m.content)
    parts.extend(call.result for call in event.tool_calls if call.result)
    parts.extend(event.retrieved_documents)
    parts.extend(tool.description for tool in event.tool_definitions if tool.description)
    parts.extend(m.content for m in event.output_messages if m.content)
    text = "\n".join(parts)
    return text[-limit:] if len(text) > limit else text

"""Tools as agents saw them: sightings from spans, pins per tool identity, registry rows.

A tool's identity is (service, server, tool). Its description is pinned the first time it is
seen; a later, different description is a rug pull until someone re-pins it.
"""

from __future__ import annotations

import difflib
import hashlib
import json

from pydantic import BaseModel, ConfigDict

from schemas.events import LLMEvent, ToolDefinition

DIFF_MAX_CHARS = 4000


def description_hash(description: str) -> str:
    return hashlib.sha256(description.encode()).hexdigest()


def tool_identity(service: str, server: str, tool: str, drill_id: str | None = None) -> str:
    """The key of the pin table and of the sightings topic. Drill sightings get their own
    namespace, so a drill can neither pin a real tool nor trip a real tool's pin."""
    key = f"{service}|{server}|{tool}"
    return f"drill:{drill_id}|{key}" if drill_id else key


class ToolSighting(BaseModel):
    """One tool definition in one event. The event rides along so a rug pull's evidence
    bundle shows the conversation the changed description was shown in."""

    model_config = ConfigDict(frozen=True)

    service: str
    server: str
    tool: str
    description: str
    description_hash: str
    input_schema: str  # canonical JSON, "" when the span declared none
    seen_ns: int
    event: LLMEvent

    @property
    def identity(self) -> str:
        return tool_identity(self.service, self.server, self.tool, self.event.drill_id)

    @classmethod
    def of(cls, event: LLMEvent, tool: ToolDefinition, seen_ns: int) -> ToolSighting:
        schema = json.dumps(tool.parameters, sort_keys=True, separators=(",", ":")) if tool.parameters else ""
        return cls(
            service=event.service, server=tool.server or "", tool=tool.name, description=tool.description,
            description_hash=description_hash(tool.description), input_schema=schema, seen_ns=seen_ns, event=event,
        )  # fmt: skip


class ToolPin(BaseModel):
    """What the pin table holds per identity (stored as JSON in a Faust table)."""

    model_config = ConfigDict(frozen=True)

    pinned_hash: str
    description: str
    first_seen_ns: int
    last_seen_ns: int
    #: Changed descriptions already raised, so a rug pull alerts once, not on every call.
    alerted: tuple[str, ...] = ()


class ToolRegistryRow(BaseModel):
    """One row of the `tool_registry` table: the latest sighting of a tool and its pin."""

    model_config = ConfigDict(frozen=True)

    service: str
    server: str
    tool: str
    description_hash: str
    description: str
    input_schema: str
    scope: str
    signer: str
    pinned_hash: str
    first_seen_ns: int
    last_seen_ns: int


def description_diff(pinned: str, now: str) -> str:
    """A unified diff by sentence-ish lines, clipped: the evidence a reviewer reads."""

    def lines(text: str) -> list[str]:
        return [part.strip() for part in text.replace(". ", ".\n").splitlines() if part.strip()]

    diff = "\n".join(difflib.unified_diff(lines(pinned), lines(now), "pinned", "now", lineterm="", n=1))
    return diff if len(diff) <= DIFF_MAX_CHARS else diff[:DIFF_MAX_CHARS] + "\n… (diff clipped)"

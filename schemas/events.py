"""The event every detector sees: one LLM-related span, normalised across conventions."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Attribute that carries a drill id. The normaliser moves it out of `attributes`
#: into `LLMEvent.drill_id`, so detectors cannot key on it.
DRILL_ATTRIBUTE = "oodwatch.drill.id"


class ToolCall(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str | None = None
    name: str
    arguments: str = ""
    result: str | None = None


class Message(BaseModel):
    """One chat message. `content` is the text; tool calls ride beside it."""

    model_config = ConfigDict(frozen=True)

    role: str
    content: str = ""
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


class ToolDefinition(BaseModel):
    """A tool as the model was told about it. Untrusted: descriptions are attacker-reachable."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None
    server: str | None = None


class TokenUsage(BaseModel):
    model_config = ConfigDict(frozen=True)

    input_tokens: int | None = None
    output_tokens: int | None = None


class LLMEvent(BaseModel):
    """One LLM, agent or tool span mapped to a convention-free shape.

    `received_ns` and `normalized_ns` are stamped by the pipeline stages (wall clock,
    server side) so each hop's latency is measured, not guessed.
    """

    model_config = ConfigDict(frozen=True)

    event_id: str
    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    session_id: str
    service: str = ""
    tenant: str = ""
    operation: str = ""
    convention: str = ""
    span_name: str = ""
    provider: str | None = None
    #: The requested model (`gen_ai.request.model`), else the response's.
    model: str | None = None
    #: The model that answered (`gen_ai.response.model`, OpenInference `llm.model_name`): a
    #: dated snapshot or a fine-tune id, what version drift keys on.
    response_model: str | None = None
    #: Deployment label from resource/span attributes (`service.version`, `deployment.environment`, ...).
    deployment: str = ""
    system_instructions: str = ""
    input_messages: tuple[Message, ...] = ()
    output_messages: tuple[Message, ...] = ()
    tool_definitions: tuple[ToolDefinition, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    retrieved_documents: tuple[str, ...] = ()
    usage: TokenUsage = Field(default_factory=TokenUsage)
    start_ns: int = 0
    end_ns: int = 0
    drill_id: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    received_ns: int = 0
    normalized_ns: int = 0


def event_id_for(trace_id: str, span_id: str) -> str:
    """Stable id: the same span always maps to the same event, so replays deduplicate."""
    return hashlib.blake2b(f"{trace_id}:{span_id}".encode(), digest_size=16).hexdigest()

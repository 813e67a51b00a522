"""`POST /v1/guard`: what a caller sends and what it gets back.

A check is one exchange step in the shape the stream already knows (an LLMEvent's messages,
tool definitions, tool calls, session, tenant, service): a request before the model sees it, a
response before the user does, or a tool call before it runs. Unknown fields are refused (a
misspelt field must not pass silently as an empty one); sizes are bounded.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import LLMEvent, Message, ToolCall, ToolDefinition, event_id_for
from schemas.guard import GuardAction

Kind = Literal["request", "response", "tool_call"]
Short = Annotated[str, Field(max_length=256)]
#: The attribute the guard puts the end user's id in (grants scope by it).
USER_ATTRIBUTE = "enduser.id"


class GuardRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind = "request"
    #: Empty: the check gets a session of its own (no session action can then apply to it).
    session_id: Short = ""
    tenant: Short = ""
    service: Short = ""
    user: Short = ""
    model: Short | None = None
    #: W3C ids of the caller's span, so the evidence joins its trace; generated when absent.
    trace_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None
    span_id: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = None
    system_instructions: Annotated[str, Field(max_length=200_000)] = ""
    messages: Annotated[list[Message], Field(max_length=512)] = []
    #: The model's answer (kind `response`).
    output: Annotated[list[Message], Field(max_length=64)] = []
    tools: Annotated[list[ToolDefinition], Field(max_length=256)] = []
    #: Calls about to run (kind `tool_call`), or made in the response.
    tool_calls: Annotated[list[ToolCall], Field(max_length=128)] = []
    retrieved_documents: Annotated[list[str], Field(max_length=64)] = []
    #: A tighter budget than the deployment's (never a looser one).
    budget_ms: Annotated[float, Field(gt=0.0, le=60_000.0)] | None = None

    def to_event(self, received_ns: int) -> LLMEvent:
        trace_id = self.trace_id or uuid.uuid4().hex
        span_id = self.span_id or uuid.uuid4().hex[:16]
        session_id = self.session_id or "guard-" + hashlib.blake2b(trace_id.encode(), digest_size=8).hexdigest()
        output = list(self.output)
        if self.tool_calls:  # calls ride on an assistant message, where the tool-call policy reads them
            output.append(Message(role="assistant", tool_calls=tuple(self.tool_calls)))
        return LLMEvent(
            event_id=event_id_for(trace_id, span_id),
            trace_id=trace_id,
            span_id=span_id,
            session_id=session_id,
            service=self.service,
            tenant=self.tenant or self.service,
            operation=f"guard.{self.kind}",
            convention="oodwatch-guard",
            span_name=f"guard {self.kind}",
            model=self.model,
            system_instructions=self.system_instructions,
            input_messages=tuple(self.messages),
            output_messages=tuple(output),
            tool_definitions=tuple(self.tools),
            tool_calls=tuple(c for c in self.tool_calls if c.result is not None),  # results: tool output
            retrieved_documents=tuple(self.retrieved_documents),
            attributes={USER_ATTRIBUTE: self.user} if self.user else {},
            received_ns=received_ns,
            normalized_ns=received_ns,
        )


class SessionActionView(BaseModel):
    action: GuardAction
    record_id: str
    reason: str
    expires_ns: int
    grant_id: str | None = None


class GuardAnswer(BaseModel):
    action: GuardAction
    reasons: list[str]
    #: Flagged top-level categories (relaxed ones included: they were flagged, not acted on).
    categories: list[str]
    scores: dict[str, float]
    #: The bundle the desk will show when the event escalated, else the event's screening.
    evidence_id: str
    event_id: str
    session_id: str
    #: The action in force for the session (from the stream), if any; `action` already counts it.
    session_action: SessionActionView | None = None
    grant_id: str | None = None
    deployment: str
    profile: str
    budget_ms: float
    budget_used_ms: float
    tiers_run: list[str]
    #: Tiers that did not run inline, and why (over budget, failed, not inline for this deployment).
    tiers_skipped: dict[str, str] = {}
    #: Set when the guard could not screen and answered by the deployment's failure mode.
    failure: str | None = None
    #: "queued": the event enters the stream; "not_streamed": the outbox was full (counted).
    streamed: Literal["queued", "not_streamed"] = "queued"

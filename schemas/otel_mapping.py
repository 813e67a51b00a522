"""OTLP spans -> LLMEvents, across the GenAI semantic conventions (current and older),
OpenInference, OpenLLMetry (Traceloop) and MCP.

Everything here is pure: bytes or protobuf in, events out, no I/O. Text fields are
attacker-controlled; they are only ever copied, never interpreted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from schemas.events import (
    DRILL_ATTRIBUTE,
    LLMEvent,
    Message,
    TokenUsage,
    ToolCall,
    ToolDefinition,
    event_id_for,
)

SESSION_KEYS = ("gen_ai.conversation.id", "session.id", "langfuse.session.id")
#: Attributes that name a deployment (resource first, then span), joined into `LLMEvent.deployment`;
#: a deployment passes its own list through `map_request(deployment_attributes=...)`.
DEPLOYMENT_ATTRIBUTES = ("service.version", "deployment.environment.name", "deployment.environment")
#: A deployment label longer than this is cut (it is a key, not content).
MAX_DEPLOYMENT_CHARS = 200
#: Text copied onto an event is cut to this many characters (a value may be megabytes).
MAX_ATTRIBUTE_CHARS = 32_768
#: JSON in attribute strings nested deeper than this is kept as text, not parsed: no real
#: message or tool schema comes near it, and deeper values overflow recursive printers.
MAX_JSON_DEPTH = 64
#: Token counts outside [0, 2**63) are not counts (int64 in OTLP; inf and 1e300 as doubles).
MAX_TOKEN_COUNT = 2**63 - 1

OtlpMessage = TypeVar("OtlpMessage", bound=ProtoMessage)

_INDEXED = re.compile(r"^(?P<prefix>.+?)\.(?P<index>\d+)\.(?P<rest>.+)$")


class MalformedRecord(ValueError):
    """A record that cannot be read as OTLP. The message is the reason for the dead letter."""


@dataclass
class MappingResult:
    events: list[LLMEvent] = field(default_factory=list)
    skipped_spans: int = 0


def parse_otlp(payload: bytes, message_type: type[OtlpMessage]) -> OtlpMessage:
    request: OtlpMessage = message_type()
    try:
        request.ParseFromString(payload)
    except DecodeError as exc:
        raise MalformedRecord(f"not an OTLP {message_type.__name__}: {exc}") from exc
    return request


def parse_trace_request(payload: bytes) -> ExportTraceServiceRequest:
    return parse_otlp(payload, ExportTraceServiceRequest)


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def attributes_dict(attributes: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in attributes}


def map_request(
    request: ExportTraceServiceRequest, *, received_ns: int = 0, normalized_ns: int = 0,
    deployment_attributes: Sequence[str] = DEPLOYMENT_ATTRIBUTES,
) -> MappingResult:  # fmt: skip
    """Fan a request out into events. Non-LLM spans are skipped and counted.

    The session id may sit only on a parent span of the same trace, so it is resolved
    per trace over the whole request before any event is built.
    """
    result = MappingResult()
    spans: list[tuple[dict[str, Any], Span, dict[str, Any]]] = []
    trace_sessions: dict[str, str] = {}
    for resource_spans in request.resource_spans:
        resource = attributes_dict(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise MalformedRecord(
                        f"span {span.name!r} has a trace id of {len(span.trace_id)} bytes "
                        f"and a span id of {len(span.span_id)} bytes (want 16 and 8)"
                    )
                attrs = attributes_dict(span.attributes)
                session = first_session_id(attrs) or first_session_id(resource)
                if session:
                    trace_sessions.setdefault(span.trace_id.hex(), session)
                spans.append((resource, span, attrs))
    for resource, span, attrs in spans:
        if not is_llm_span(attrs, span):
            result.skipped_spans += 1
            continue
        trace_id = span.trace_id.hex()
        result.events.append(
            span_to_event(
                span,
                attrs,
                resource,
                session_id=first_session_id(attrs) or trace_sessions.get(trace_id, trace_id),
                received_ns=received_ns,
                normalized_ns=normalized_ns,
                deployment_attributes=deployment_attributes,
            )
        )
    return result


def deployment_label(
    attrs: Mapping[str, Any], resource: Mapping[str, Any], keys: Sequence[str] = DEPLOYMENT_ATTRIBUTES
) -> str:
    """`key=value` pairs of the deployment attributes present (resource wins over span), joined
    by `;`: a new label is a new version of the service even when the model name did not change."""
    pairs = []
    for key in keys:
        value = resource.get(key)
        if value in (None, ""):
            value = attrs.get(key)
        if value not in (None, ""):
            pairs.append(f"{key}={_text(value)}")
    return ";".join(pairs)[:MAX_DEPLOYMENT_CHARS]


def first_session_id(attrs: Mapping[str, Any]) -> str | None:
    for key in SESSION_KEYS:
        value = attrs.get(key)
        if value not in (None, ""):
            return str(value)
    return None


def is_llm_span(attrs: Mapping[str, Any], span: Span) -> bool:
    for key in attrs:
        if key.startswith(("gen_ai.", "llm.")) or key in (
            "openinference.span.kind",
            "mcp.method.name",
        ):
            return True
    if attrs.get("traceloop.span.kind") == "tool":
        return True
    return any(ev.name.startswith("gen_ai.") for ev in span.events)


def span_to_event(
    span: Span,
    attrs: dict[str, Any],
    resource: Mapping[str, Any],
    *,
    session_id: str,
    received_ns: int,
    normalized_ns: int,
    deployment_attributes: Sequence[str] = DEPLOYMENT_ATTRIBUTES,
) -> LLMEvent:
    trace_id = span.trace_id.hex()
    span_id = span.span_id.hex()
    drill_id = attrs.pop(DRILL_ATTRIBUTE, None) or resource.get(DRILL_ATTRIBUTE)
    content = Content()
    convention = ""
    if _has_prefix(attrs, "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"):
        convention = "genai"
        read_genai_attributes(attrs, content)
    if _has_prefix(attrs, "gen_ai.prompt", "gen_ai.completion"):
        convention = convention or "genai-legacy"
        _read_indexed_messages(attrs, "gen_ai.prompt", content.inputs, content)
        _read_indexed_messages(attrs, "gen_ai.completion", content.outputs, content)
    if _has_prefix(
        attrs, "llm.input_messages", "llm.output_messages", "input.value", "output.value", "openinference.span.kind"
    ):
        convention = convention or "openinference"
        _read_openinference(attrs, content)
    if span.events and not (content.inputs or content.outputs) and _read_span_events(span, content):
        convention = convention or "genai-events"
    _read_tools(attrs, content)
    if "traceloop.span.kind" in attrs:
        convention = convention or "openllmetry"
    if "mcp.method.name" in attrs:
        convention = convention or "mcp"
    operation = str(
        attrs.get("gen_ai.operation.name")
        or attrs.get("mcp.method.name")
        or attrs.get("llm.request.type")
        or str(attrs.get("openinference.span.kind") or attrs.get("traceloop.span.kind") or "").lower()
        or "unknown"
    )
    service = str(resource.get("service.name") or attrs.get("service.name") or "")
    return LLMEvent(
        event_id=event_id_for(trace_id, span_id),
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=span.parent_span_id.hex() or None,
        session_id=session_id,
        service=service,
        tenant=str(resource.get("tenant.id") or attrs.get("tenant.id") or service),
        operation=operation,
        convention=convention or "genai",
        span_name=span.name,
        provider=_str_or_none(
            attrs.get("gen_ai.provider.name")
            or attrs.get("gen_ai.system")
            or attrs.get("llm.provider")
            or attrs.get("llm.system")
        ),
        model=_str_or_none(
            attrs.get("gen_ai.request.model") or attrs.get("gen_ai.response.model") or attrs.get("llm.model_name")
        ),
        response_model=_str_or_none(attrs.get("gen_ai.response.model") or attrs.get("llm.model_name")),
        deployment=deployment_label(attrs, resource, deployment_attributes),
        system_instructions="\n".join(content.system),
        input_messages=tuple(content.inputs),
        output_messages=tuple(content.outputs),
        tool_definitions=tuple(content.tools),
        tool_calls=tuple(content.tool_calls),
        retrieved_documents=tuple(content.documents),
        usage=TokenUsage(
            input_tokens=_int_or_none(
                attrs.get("gen_ai.usage.input_tokens")
                or attrs.get("gen_ai.usage.prompt_tokens")
                or attrs.get("llm.token_count.prompt")
            ),
            output_tokens=_int_or_none(
                attrs.get("gen_ai.usage.output_tokens")
                or attrs.get("gen_ai.usage.completion_tokens")
                or attrs.get("llm.token_count.completion")
            ),
        ),
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        drill_id=_str_or_none(drill_id),
        attributes={k: _text(v) for k, v in attrs.items()},
        received_ns=received_ns,
        normalized_ns=normalized_ns,
    )


@dataclass
class Content:
    """Message content gathered from a span's attributes, its events, or its log records."""

    system: list[str] = field(default_factory=list)
    inputs: list[Message] = field(default_factory=list)
    outputs: list[Message] = field(default_factory=list)
    tools: list[ToolDefinition] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)

    def add_call(
        self, fields: Mapping[str, Any], *, id_key: str = "id", name_key: str = "name", args_key: str = "arguments"
    ) -> ToolCall:
        """A tool call from one convention's field names, recorded on the event as well."""
        call = ToolCall(
            id=_str_or_none(fields.get(id_key)),
            name=str(fields.get(name_key) or ""),
            arguments=_text(fields.get(args_key)),
        )
        self.tool_calls.append(call)
        return call


# -- GenAI semantic conventions, current (gen_ai.input.messages & co) ----------------


def read_genai_attributes(attrs: Mapping[str, Any], content: Content) -> None:
    """GenAI semconv (current): JSON messages, system instructions and tool definitions."""
    for part in _as_list(_json_value(attrs.get("gen_ai.system_instructions"))):
        content.system.append(_part_text(part))
    for raw in _as_list(_json_value(attrs.get("gen_ai.input.messages"))):
        message = _genai_message(raw, content)
        if message.role == "system":  # OpenLLMetry and others put the system prompt here
            content.system.append(message.content)
        else:
            content.inputs.append(message)
    for raw in _as_list(_json_value(attrs.get("gen_ai.output.messages"))):
        content.outputs.append(_genai_message(raw, content))


def _genai_message(raw: Any, content: Content) -> Message:
    if not isinstance(raw, dict):
        return Message(role="user", content=_text(raw))
    role = str(raw.get("role") or "user")
    texts: list[str] = []
    calls: list[ToolCall] = []
    call_id: str | None = None
    for part in _as_list(raw.get("parts")):
        if not isinstance(part, dict):
            texts.append(_text(part))
            continue
        kind = part.get("type")
        if kind == "tool_call":
            calls.append(content.add_call(part))
        elif kind == "tool_call_response":
            call_id = _str_or_none(part.get("id"))
            texts.append(_text(part.get("response") if "response" in part else part.get("result")))
        else:
            texts.append(_part_text(part))
    if "content" in raw and not texts:
        texts.append(_text(raw["content"]))
    return Message(
        role=role,
        content="\n".join(t for t in texts if t),
        name=_str_or_none(raw.get("name")),
        tool_call_id=call_id,
        tool_calls=tuple(calls),
    )


def _part_text(part: Any) -> str:
    if isinstance(part, dict):
        for key in ("content", "text", "uri"):
            if key in part:
                return _text(part[key])
        return ""
    return _text(part)


# -- Older GenAI / OpenLLMetry indexed attributes (gen_ai.prompt.0.content) ----------


def _read_indexed_messages(attrs: Mapping[str, Any], prefix: str, into: list[Message], content: Content) -> None:
    for fields in _indexed(attrs, prefix):
        calls = [content.add_call(call_fields) for call_fields in _indexed(fields, "tool_calls")]
        role = str(fields.get("role") or ("assistant" if prefix.endswith("completion") else "user"))
        text = _text(fields.get("content"))
        if role == "system":
            content.system.append(text)
            continue
        into.append(
            Message(
                role=role, content=text, tool_call_id=_str_or_none(fields.get("tool_call_id")), tool_calls=tuple(calls)
            )
        )


def _indexed(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """`prefix.{i}.rest` keys grouped by i, in index order, as {rest: value}."""
    groups: dict[int, dict[str, Any]] = {}
    start = prefix + "."
    for key, value in attrs.items():
        if not key.startswith(start):
            continue
        match = _INDEXED.match(key)
        if match is None or match.group("prefix") != prefix:
            continue
        groups.setdefault(int(match.group("index")), {})[match.group("rest")] = value
    return [groups[i] for i in sorted(groups)]


# -- OpenInference ------------------------------------------------------------------


def _read_openinference(attrs: Mapping[str, Any], content: Content) -> None:
    for into, prefix in ((content.inputs, "llm.input_messages"), (content.outputs, "llm.output_messages")):
        for fields in _indexed(attrs, prefix):
            role = str(fields.get("message.role") or "user")
            text = _text(fields.get("message.content"))
            if not text:
                parts = _indexed(fields, "message.contents")
                text = "\n".join(_text(p.get("message_content.text")) for p in parts if p.get("message_content.text"))
            calls = [
                content.add_call(
                    call_fields,
                    id_key="tool_call.id",
                    name_key="tool_call.function.name",
                    args_key="tool_call.function.arguments",
                )
                for call_fields in _indexed(fields, "message.tool_calls")
            ]
            if role == "system":
                content.system.append(text)
                continue
            into.append(
                Message(
                    role=role,
                    content=text,
                    tool_call_id=_str_or_none(fields.get("message.tool_call_id")),
                    tool_calls=tuple(calls),
                )
            )
    kind = str(attrs.get("openinference.span.kind") or "").upper()
    if not content.inputs and "input.value" in attrs:
        content.inputs.append(Message(role="tool" if kind == "TOOL" else "user", content=_text(attrs["input.value"])))
    if not content.outputs and "output.value" in attrs:
        content.outputs.append(
            Message(role="tool" if kind == "TOOL" else "assistant", content=_text(attrs["output.value"]))
        )
    for fields in _indexed(attrs, "retrieval.documents"):
        if "document.content" in fields:
            content.documents.append(_text(fields["document.content"]))


# -- Span events (older GenAI conventions put messages on events) ---------------------

_EVENT_ROLES = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}


def _read_span_events(span: Span, content: Content) -> bool:
    found = False
    for event in span.events:
        found = read_message_event(event.name, attributes_dict(event.attributes), None, content) or found
    return found


def read_message_event(name: str, attrs: Mapping[str, Any], body: Any, content: Content) -> bool:
    """One GenAI message event, on a span (fields in attributes) or a log record (fields in
    the body). Returns whether it carried content."""
    fields: Mapping[str, Any] = body if isinstance(body, dict) else attrs
    if name == "gen_ai.content.prompt":
        content.inputs.append(Message(role="user", content=_text(attrs.get("gen_ai.prompt"))))
    elif name == "gen_ai.content.completion":
        content.outputs.append(Message(role="assistant", content=_text(attrs.get("gen_ai.completion"))))
    elif name in _EVENT_ROLES:
        text = _text(fields.get("content") or fields.get("gen_ai.event.content") or fields.get("message"))
        role = _EVENT_ROLES[name]
        if role == "system":
            content.system.append(text)
        else:
            calls = tuple(_openai_tool_calls(fields.get("tool_calls"), content))
            content.inputs.append(
                Message(role=role, content=text, tool_call_id=_str_or_none(fields.get("id")), tool_calls=calls)
            )
    elif name == "gen_ai.choice":
        message = _json_value(fields.get("message") or fields.get("gen_ai.event.content"))
        if isinstance(message, dict):
            calls = tuple(_openai_tool_calls(message.get("tool_calls"), content))
            content.outputs.append(Message(role="assistant", content=_text(message.get("content")), tool_calls=calls))
        else:
            content.outputs.append(Message(role="assistant", content=_text(message)))
    elif name == "gen_ai.client.inference.operation.details":
        read_genai_attributes(attrs, content)
        _read_tools(attrs, content)
    else:
        return False
    return True


def _openai_tool_calls(raw: Any, content: Content) -> list[ToolCall]:
    calls = []
    for entry in _as_list(_json_value(raw)):
        item = _json_value(entry)
        if not isinstance(item, dict):
            continue
        nested = item.get("function")
        function: dict[str, Any] = nested if isinstance(nested, dict) else item
        calls.append(content.add_call({**function, "id": item.get("id")}))
    return calls


# -- Tools: definitions (current, OpenLLMetry, OpenInference) and execute_tool spans --


def _read_tools(attrs: Mapping[str, Any], content: Content) -> None:
    for raw in _as_list(_json_value(attrs.get("gen_ai.tool.definitions"))):
        tool = _tool_definition(raw)
        if tool is not None:
            content.tools.append(tool)
    for fields in _indexed(attrs, "llm.request.functions"):
        content.tools.append(
            ToolDefinition(
                name=str(fields.get("name") or ""),
                description=_text(fields.get("description")),
                parameters=_dict_or_none(_json_value(fields.get("parameters"))),
            )
        )
    for fields in _indexed(attrs, "llm.tools"):
        tool = _tool_definition(_json_value(fields.get("tool.json_schema")))
        if tool is not None:
            content.tools.append(tool)
    if attrs.get("mcp.method.name") == "tools/list":
        _read_mcp_tools_list(attrs, content)
    operation = attrs.get("gen_ai.operation.name")
    oi_kind = str(attrs.get("openinference.span.kind") or "").upper()
    if (
        operation == "execute_tool"
        or oi_kind == "TOOL"
        or attrs.get("mcp.method.name") == "tools/call"
        or attrs.get("traceloop.span.kind") == "tool"
    ):
        name = str(attrs.get("gen_ai.tool.name") or attrs.get("tool.name") or attrs.get("traceloop.entity.name") or "")
        description = _text(attrs.get("gen_ai.tool.description") or attrs.get("tool.description"))
        if description:
            content.tools.append(
                ToolDefinition(name=name, description=description, server=_str_or_none(attrs.get("server.address")))
            )
        result = attrs.get("gen_ai.tool.call.result", attrs.get("output.value", attrs.get("traceloop.entity.output")))
        content.tool_calls.append(
            ToolCall(
                id=_str_or_none(attrs.get("gen_ai.tool.call.id")),
                name=name,
                arguments=_text(
                    attrs.get(
                        "gen_ai.tool.call.arguments", attrs.get("input.value", attrs.get("traceloop.entity.input", ""))
                    )
                ),
                result=None if result is None else _text(result),
            )
        )


def _read_mcp_tools_list(attrs: Mapping[str, Any], content: Content) -> None:
    """An MCP `tools/list` span: the server's answer (`{"tools": [...]}`, possibly under
    `result`) rides in the instrumentation's output attribute."""
    answer = _json_value(attrs.get("output.value") or attrs.get("traceloop.entity.output") or attrs.get("mcp.result"))
    if isinstance(answer, dict) and isinstance(answer.get("result"), dict):
        answer = answer["result"]
    listed = answer.get("tools") if isinstance(answer, dict) else answer
    server = _str_or_none(attrs.get("mcp.server.name") or attrs.get("server.address"))
    for raw in _as_list(listed):
        tool = _tool_definition(raw)
        if tool is not None:
            content.tools.append(tool.model_copy(update={"server": tool.server or server}))


def _tool_definition(raw: Any) -> ToolDefinition | None:
    if not isinstance(raw, dict):
        return None
    function = raw.get("function")
    spec: dict[str, Any] = function if isinstance(function, dict) else raw
    name = spec.get("name")
    if not name:
        return None
    return ToolDefinition(
        name=str(name),
        description=_text(spec.get("description")),
        parameters=_dict_or_none(spec.get("parameters") or spec.get("inputSchema") or spec.get("input_schema")),
    )


# -- small helpers -------------------------------------------------------------------


def _has_prefix(attrs: Mapping[str, Any], *prefixes: str) -> bool:
    return any(key.startswith(prefixes) for key in attrs)


def _json_value(value: Any) -> Any:
    """Structured attributes arrive as JSON strings on spans; anything unparsable, or nested
    deeper than MAX_JSON_DEPTH, stays text (and is screened as text)."""
    if isinstance(value, str):
        stripped = value.lstrip()
        if stripped[:1] in ("[", "{"):
            try:
                parsed = json.loads(value)
            except (ValueError, RecursionError):  # RecursionError: nested past the interpreter's limit
                return value
            return parsed if _nesting_within(parsed, MAX_JSON_DEPTH) else value
    return value


def _nesting_within(value: Any, limit: int) -> bool:
    """Whether lists and dicts in `value` nest at most `limit` deep (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    return False
                stack.append((child, depth + 1))
    return True


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    return [value]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:MAX_ATTRIBUTE_CHARS]
    return json.dumps(value, ensure_ascii=False, default=str)[:MAX_ATTRIBUTE_CHARS]


def _str_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _int_or_none(value: Any) -> int | None:
    """A count, or None when the value is none (or no count: negative, inf, NaN, not a number)."""
    try:
        count = None if value in (None, "") else int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
        return None
    return count if count is not None and 0 <= count <= MAX_TOKEN_COUNT else None


def _dict_or_none(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None

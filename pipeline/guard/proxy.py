"""`oodwatch guard-proxy --upstream URL`: a reference enforcement point. An OpenAI-compatible
chat-completions proxy (streaming included) that asks the guard before the model sees a request
and before the user sees a response, and applies the session's action from the `actions` topic.

- block / safe_fallback: the model is not called; the answer is the policy's message (as a
  completion, or as a stream when one was asked for), finish_reason `content_filter`.
- read_only_tools: tools whose declared (signed manifest) or inferred scope is write, network,
  payment or code execution are removed from the request (and `tool_choice` naming one is
  reset); calls to such tools in a response are dropped.
- redact: e-mail addresses, phone numbers and keys in the text are replaced by markers.

Streaming answers pass through chunk by chunk: the response is checked when the stream ends (it
cannot be taken back; its verdict enters the stream and can put the session under an action).
If the guard cannot be reached, `--fail-mode` decides: open passes, closed answers the fallback.

The session is `X-Oodwatch-Session` (else none: each request stands alone), the end user
`X-Oodwatch-User` (else the body's `user`), the tenant `X-Oodwatch-Tenant` (else `--tenant`).
The client's Authorization goes to the upstream unchanged. The proxy exports its own spans (no
`gen_ai.*` attributes, so the pipeline does not screen them a second time: the guard already did).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import web

from detectors.tool_policy import SENSITIVE, tool_scope
from pipeline.guard.actions import ActionBook
from pipeline.kafka_security import aiokafka_options
from pipeline.store.redaction import KINDS, Redactor
from schemas.events import Message, ToolCall, ToolDefinition
from schemas.guard import GuardAction, strictest

log = logging.getLogger(__name__)

FORWARD_HEADERS = ("authorization", "openai-organization", "openai-project", "api-key")
ACTION_HEADER = "X-Oodwatch-Action"
STOPS = (GuardAction.BLOCK, GuardAction.SAFE_FALLBACK)


@dataclass(frozen=True)
class ProxyConfig:
    upstream: str
    guard_url: str
    guard_token: str
    service: str = "guard-proxy"
    tenant: str = ""
    fail_mode: Literal["open", "closed"] = "open"
    check_responses: bool = True
    guard_timeout_s: float = 2.0
    upstream_timeout_s: float = 300.0
    max_body_bytes: int = 4 * 1024 * 1024
    block_message: str = "This request was blocked by the safety policy."
    fallback_message: str = "Sorry, I can't help with that here."


@dataclass
class ProxyCounters:
    requests: int = 0
    blocked: int = 0
    tools_stripped: int = 0
    redacted: int = 0
    guard_unavailable: int = 0


def openai_error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "code": None}}, status=status)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def to_messages(raw: Any) -> list[Message]:
    """OpenAI chat messages as the guard's (and the stream's) message shape."""
    if not isinstance(raw, list):
        raise ValueError("`messages` must be a list")
    messages = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("role"), str):
            raise ValueError("each message must be an object with a `role`")
        calls = tuple(
            ToolCall(
                id=c.get("id"),
                name=str(c["function"].get("name", "")),
                arguments=str(c["function"].get("arguments") or ""),
            )
            for c in item.get("tool_calls") or ()
            if isinstance(c, dict) and isinstance(c.get("function"), dict)
        )
        messages.append(Message(role=item["role"], content=_text(item.get("content")), name=item.get("name"),
                                tool_call_id=item.get("tool_call_id"), tool_calls=calls))  # fmt: skip
    return messages


def to_tools(raw: Any) -> list[ToolDefinition]:
    tools = []
    for item in raw or ():
        function = item.get("function") if isinstance(item, dict) else None
        if isinstance(function, dict) and function.get("name"):
            params = function.get("parameters")
            tools.append(ToolDefinition(name=str(function["name"]), description=str(function.get("description") or ""),
                                        parameters=params if isinstance(params, dict) else None))  # fmt: skip
    return tools


def sensitive_tool(name: str, description: str, declared: Mapping[str, frozenset[str]]) -> bool:
    scope = declared.get(name)
    if scope is None:
        scope = tool_scope(ToolDefinition(name=name, description=description))
    return bool(scope & SENSITIVE)


def strip_write_tools(body: dict[str, Any], declared: Mapping[str, frozenset[str]]) -> list[str]:
    """Read-only mode: remove tools whose scope is write, network, payment or code execution (in
    place); returns their names."""
    removed: list[str] = []
    for field, wrap in (("tools", True), ("functions", False)):
        items = body.get(field)
        if not isinstance(items, list):
            continue
        kept = []
        for item in items:
            function = item.get("function") if wrap and isinstance(item, dict) else item
            if isinstance(function, dict) and sensitive_tool(
                str(function.get("name", "")), str(function.get("description") or ""), declared
            ):
                removed.append(str(function.get("name", "")))
            else:
                kept.append(item)
        if kept:
            body[field] = kept
        else:
            body.pop(field, None)
    choice = body.get("tool_choice")
    if removed and isinstance(choice, dict) and (choice.get("function") or {}).get("name") in removed:
        body["tool_choice"] = "auto" if body.get("tools") else "none"
    if "tools" not in body:
        body.pop("tool_choice", None)
        body.pop("parallel_tool_calls", None)
    if "functions" not in body:
        body.pop("function_call", None)
    return removed


def redact_messages(body: dict[str, Any], redactor: Redactor) -> None:
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            message["content"] = redactor.text(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = redactor.text(part["text"])


def completion(model: str, text: str, finish_reason: str = "content_filter") -> dict[str, Any]:
    return {
        "id": "chatcmpl-oodwatch-" + uuid.uuid4().hex[:20], "object": "chat.completion", "created": int(time.time()),
        "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                      "finish_reason": finish_reason, "logprobs": None}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }  # fmt: skip


def stream_chunks(model: str, text: str) -> bytes:
    ident, created = "chatcmpl-oodwatch-" + uuid.uuid4().hex[:20], int(time.time())
    chunks = [
        {"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": "content_filter"},
    ]
    head = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
    lines = [f"data: {json.dumps({**head, 'choices': [c]})}\n\n" for c in chunks]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


class StreamAccumulator:
    """What a streamed answer said, rebuilt from its SSE chunks (text and tool calls)."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            line = line.strip()
            if not line.startswith(b"data:") or line == b"data: [DONE]":
                continue
            try:
                chunk = json.loads(line[5:])
            except ValueError:
                continue
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if isinstance(delta.get("content"), str):
                    self.content.append(delta["content"])
                for call in delta.get("tool_calls") or ():
                    slot = self.calls.setdefault(int(call.get("index", 0)), {"name": "", "arguments": ""})
                    function = call.get("function") or {}
                    slot["name"] += function.get("name") or ""
                    slot["arguments"] += function.get("arguments") or ""

    def message(self) -> Message:
        calls = tuple(ToolCall(name=c["name"], arguments=c["arguments"]) for _, c in sorted(self.calls.items()))
        return Message(role="assistant", content="".join(self.content), tool_calls=calls)


class GuardProxy:
    def __init__(
        self, config: ProxyConfig, *, actions: ActionBook | None = None,
        declared: Mapping[str, frozenset[str]] | None = None, tracer: Any = None,
    ) -> None:  # fmt: skip
        self.config = config
        self.actions = actions or ActionBook()
        self.declared = dict(declared or {})
        self.redactor = Redactor(KINDS)
        self.counters = ProxyCounters()
        self._session: aiohttp.ClientSession | None = None
        if tracer is None:
            from opentelemetry import trace

            tracer = trace.get_tracer("oodwatch.guard-proxy")
        self.tracer = tracer

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes + 1)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/chat/completions", self.chat)
        app.router.add_get("/healthz", self.healthz)
        app.on_startup.append(lambda _: self.start())
        app.on_cleanup.append(lambda _: self.close())
        return app

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "proxy": vars(self.counters), "actions": self.actions.snapshot()})

    # -- the guard ------------------------------------------------------------------

    async def _check(self, check: dict[str, Any]) -> dict[str, Any] | None:
        """The guard's answer, or None when it cannot be had (the failure mode decides)."""
        assert self._session is not None
        try:
            async with self._session.post(
                f"{self.config.guard_url}/v1/guard", json=check,
                headers={"Authorization": f"Bearer {self.config.guard_token}"},
                timeout=aiohttp.ClientTimeout(total=self.config.guard_timeout_s),
            ) as response:  # fmt: skip
                if response.status != 200:
                    log.warning("guard answered %d: %s", response.status, (await response.text())[:300])
                    return None
                answer: dict[str, Any] = await response.json()
                return answer
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("guard unreachable: %s", type(exc).__name__)
            return None

    def _unavailable_action(self) -> GuardAction:
        self.counters.guard_unavailable += 1
        return GuardAction.ALLOW if self.config.fail_mode == "open" else GuardAction.SAFE_FALLBACK

    def _message_for(self, action: GuardAction) -> str:
        return self.config.block_message if action is GuardAction.BLOCK else self.config.fallback_message

    # -- the route --------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.counters.requests += 1
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return openai_error(413, f"request body over {limit} bytes")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return openai_error(413, f"request body over {limit} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return openai_error(400, "request body is not JSON")
        if not isinstance(body, dict):
            return openai_error(400, "request body must be a JSON object")
        try:
            messages = to_messages(body.get("messages"))
            tools = to_tools(body.get("tools"))
        except (ValueError, KeyError, TypeError) as exc:
            return openai_error(400, f"invalid chat request: {exc}")
        with self.tracer.start_as_current_span("guard-proxy chat.completions") as span:
            response = await self._chat(request, body, messages, tools, span)
            span.set_attribute("http.response.status_code", response.status)
            return response

    async def _chat(
        self, request: web.Request, body: dict[str, Any], messages: list[Message], tools: list[ToolDefinition],
        span: Any,
    ) -> web.StreamResponse:  # fmt: skip
        config = self.config
        model = str(body.get("model") or "")
        session_id = request.headers.get("X-Oodwatch-Session", "")[:256]
        user = (request.headers.get("X-Oodwatch-User") or str(body.get("user") or ""))[:256]
        tenant = request.headers.get("X-Oodwatch-Tenant", config.tenant)[:256]
        streaming = bool(body.get("stream"))
        context = span.get_span_context()
        trace_id = f"{context.trace_id:032x}" if context.is_valid else None
        base = {"session_id": session_id, "tenant": tenant, "service": config.service, "user": user, "model": model}
        started = time.perf_counter()
        answer = await self._check(
            {**base, "kind": "request", "trace_id": trace_id,
             "span_id": f"{context.span_id:016x}" if trace_id else None,
             "messages": [m.model_dump() for m in messages], "tools": [t.model_dump() for t in tools]}
        )  # fmt: skip
        check_ms = (time.perf_counter() - started) * 1000
        guard_action = GuardAction(answer["action"]) if answer else self._unavailable_action()
        held = self.actions.active(session_id) if session_id else None
        action = strictest(guard_action, held.action if held else None)
        span.set_attributes({
            "oodwatch.guard.action": action.value, "oodwatch.guard.check_ms": round(check_ms, 3),
            "oodwatch.guard.available": answer is not None, "oodwatch.session.id": session_id,
            "oodwatch.guard.event_id": answer["event_id"] if answer else "",
            "oodwatch.guard.session_action": held.action.value if held else "",
        })  # fmt: skip
        if action in STOPS:
            self.counters.blocked += 1
            return self._refusal(model, action, streaming)
        if action is GuardAction.READ_ONLY_TOOLS:
            removed = strip_write_tools(body, self.declared)
            self.counters.tools_stripped += len(removed)
            span.set_attribute("oodwatch.guard.tools_stripped", len(removed))
        elif action is GuardAction.REDACT:
            redact_messages(body, self.redactor)
            self.counters.redacted += 1
        headers = {h: v for h, v in request.headers.items() if h.lower() in FORWARD_HEADERS}
        from opentelemetry import propagate

        propagate.inject(headers)
        assert self._session is not None
        upstream_started = time.perf_counter()
        try:
            upstream = await self._session.post(
                f"{config.upstream}/chat/completions", json=body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=config.upstream_timeout_s),
            )  # fmt: skip
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("upstream unreachable: %s", type(exc).__name__)
            return openai_error(502, f"the upstream model did not answer ({type(exc).__name__})", "api_error")
        try:
            if streaming and upstream.status == 200:
                return await self._relay_stream(request, upstream, base, messages, tools, action, span)
            payload = await upstream.read()
        finally:
            upstream.release()
        span.set_attribute("oodwatch.guard.upstream_ms", round((time.perf_counter() - upstream_started) * 1000, 3))
        reply_headers = {ACTION_HEADER: action.value}
        if upstream.status != 200 or not config.check_responses:
            return web.Response(body=payload, status=upstream.status, headers=reply_headers,
                                content_type=upstream.content_type or "application/json")  # fmt: skip
        try:
            result = json.loads(payload)
            choice = result["choices"][0]
            said = to_messages([choice["message"]])[0]
        except (ValueError, KeyError, IndexError, TypeError):
            return web.Response(body=payload, status=upstream.status, headers=reply_headers,
                                content_type="application/json")  # fmt: skip
        verdict = await self._check_response(base, messages, tools, said, span)
        final = strictest(verdict, held.action if held else None)
        if action is GuardAction.READ_ONLY_TOOLS:
            final = strictest(final, GuardAction.READ_ONLY_TOOLS)
        span.set_attribute("oodwatch.guard.response_action", verdict.value)
        if final in STOPS:
            self.counters.blocked += 1
            choice["message"] = {"role": "assistant", "content": self._message_for(final)}
            choice["finish_reason"] = "content_filter"
        elif final is GuardAction.REDACT and isinstance(choice["message"].get("content"), str):
            choice["message"]["content"] = self.redactor.text(choice["message"]["content"])
            self.counters.redacted += 1
        elif final is GuardAction.READ_ONLY_TOOLS and choice["message"].get("tool_calls"):
            kept = [
                c for c in choice["message"]["tool_calls"]
                if not sensitive_tool(_call_name(c), _description(tools, c), self.declared)
            ]  # fmt: skip
            choice["message"]["tool_calls"] = kept or None
            if not kept and choice.get("finish_reason") == "tool_calls":
                choice["finish_reason"] = "stop"
        reply_headers[ACTION_HEADER] = final.value
        return web.json_response(result, headers=reply_headers)

    async def _check_response(
        self, base: dict[str, Any], messages: list[Message], tools: list[ToolDefinition], said: Message, span: Any
    ) -> GuardAction:
        """The model's answer, before the user sees it. The request rides along only when the answer
        calls tools (the tool-call policy compares the call with what the user asked); otherwise
        the request, already screened, is not screened again."""
        with self.tracer.start_as_current_span("guard-proxy response check") as child:
            context = child.get_span_context()
            request_context = [m for m in messages if m.role == "user"][-1:] if said.tool_calls else []
            answer = await self._check(
                {**base, "kind": "response", "trace_id": f"{context.trace_id:032x}",
                 "span_id": f"{context.span_id:016x}", "messages": [m.model_dump() for m in request_context],
                 "output": [said.model_dump()], "tools": [t.model_dump() for t in tools] if said.tool_calls else []}
            )  # fmt: skip
        return GuardAction(answer["action"]) if answer else self._unavailable_action()

    def _refusal(self, model: str, action: GuardAction, streaming: bool) -> web.Response:
        text = self._message_for(action)
        headers = {ACTION_HEADER: action.value}
        if streaming:
            return web.Response(body=stream_chunks(model, text), headers=headers, content_type="text/event-stream")
        return web.json_response(completion(model, text), headers=headers)

    async def _relay_stream(
        self, request: web.Request, upstream: aiohttp.ClientResponse, base: dict[str, Any], messages: list[Message],
        tools: list[ToolDefinition], action: GuardAction, span: Any,
    ) -> web.StreamResponse:  # fmt: skip
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               ACTION_HEADER: action.value})  # fmt: skip
        await response.prepare(request)
        seen = StreamAccumulator()
        async for data in upstream.content.iter_any():
            seen.feed(data)
            await response.write(data)
        await response.write_eof()
        if self.config.check_responses:  # after the fact: it cannot be taken back, but it is recorded
            verdict = await self._check_response(base, messages, tools, seen.message(), span)
            span.set_attribute("oodwatch.guard.response_action", verdict.value)
        return response


def _call_name(call: dict[str, Any]) -> str:
    return str((call.get("function") or {}).get("name", ""))


def _description(tools: list[ToolDefinition], call: dict[str, Any]) -> str:
    name = _call_name(call)
    return next((t.description for t in tools if t.name == name), "")


def tracer_provider(endpoint: str) -> Any:
    """Spans to the pipeline's OTLP receiver, batched off the request path."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "oodwatch-guard-proxy"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5)))
    return provider


async def serve_proxy(settings: Any, config: ProxyConfig, *, port: int, otlp_endpoint: str | None) -> None:
    """Run until cancelled: the proxy, its spans, and the session actions it follows."""
    from pipeline.app import verified_manifests
    from pipeline.guard.actions import follow_actions

    declared = {t.name: frozenset({"read", *t.scope}) for s in verified_manifests(settings) for t in s.manifest.tools}
    provider = tracer_provider(otlp_endpoint) if otlp_endpoint else None
    tracer = provider.get_tracer("oodwatch.guard-proxy") if provider else None
    actions = ActionBook(max_sessions=settings.guard_sessions_max)
    proxy = GuardProxy(config, actions=actions, declared=declared, tracer=tracer)
    follower = asyncio.create_task(
        follow_actions(settings.bootstrap, settings.topics.actions, actions, options=aiokafka_options(settings))
    )
    gc.collect()
    gc.freeze()  # start-up's objects out of the collector's full passes (as the guard does)
    runner = web.AppRunner(proxy.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, port).start()
    log.info("guard-proxy on http://%s:%d/v1 -> %s", settings.host, port, config.upstream)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        if provider is not None:
            provider.shutdown()

"""Join log-borne content to its span within a short window.

Spans and their log records arrive on two topics, keyed by trace id, so both reach the same
worker (Faust co-partitions co-subscribed topics). Log records usually arrive first (SDKs
export logs sooner than spans), so logs wait longer than spans do. A source record is acked
only when everything taken from it has been emitted or has expired, so a crash replays it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from schemas.events import LLMEvent
from schemas.otel_logs import lacks_content, merge_content, with_content
from schemas.otel_mapping import Content

#: Operations whose content may come as log records instead of on the span.
INFERENCE_OPERATIONS = frozenset({"chat", "text_completion", "completion", "generate_content"})


@dataclass
class _WaitingSpan:
    event: LLMEvent
    token: Any
    deadline: float


@dataclass
class _WaitingLogs:
    content: Content
    tokens: list[Any]
    deadline: float


@dataclass
class JoinOutput:
    events: list[LLMEvent] = field(default_factory=list)
    #: Source records whose every item has now been emitted or expired: ack them.
    acks: list[Any] = field(default_factory=list)


@dataclass
class JoinCounters:
    joined: int = 0
    spans_without_content: int = 0
    orphan_logs: int = 0


class LogJoin:
    def __init__(
        self,
        *,
        span_wait_s: float = 2.0,
        log_wait_s: float = 10.0,
        max_pending: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.span_wait_s = span_wait_s
        self.log_wait_s = log_wait_s
        self.max_pending = max_pending
        self.clock = clock
        self.counters = JoinCounters()
        self._spans: dict[str, _WaitingSpan] = {}
        self._logs: dict[str, _WaitingLogs] = {}
        self._holds: dict[Hashable, list[Any]] = {}  # id(token) -> [token, open items]

    @property
    def pending(self) -> int:
        return len(self._spans) + len(self._logs)

    def add_events(self, events: list[LLMEvent], token: Any) -> JoinOutput:
        out = JoinOutput()
        now = self.clock()
        for event in events:
            logs = self._logs.pop(event.span_id, None)
            if logs is not None:
                event = with_content(event, logs.content)
                self.counters.joined += 1
                self._release(logs.tokens, out)
            elif lacks_content(event) and event.operation in INFERENCE_OPERATIONS:
                replaced = self._spans.pop(event.span_id, None)
                if replaced is not None:  # a replayed copy of a waiting span: one event, one wait
                    self._release([replaced.token], out)
                self._hold(token)
                self._spans[event.span_id] = _WaitingSpan(event, token, now + self.span_wait_s)
                continue
            out.events.append(event)
        self._release([token], out, taken=False)
        self._bound(out)
        return out

    def add_logs(self, contents: dict[str, Content], token: Any) -> JoinOutput:
        out = JoinOutput()
        now = self.clock()
        for span_id, content in contents.items():
            span = self._spans.pop(span_id, None)
            if span is not None:
                out.events.append(with_content(span.event, content))
                self.counters.joined += 1
                self._release([span.token], out)
                continue
            self._hold(token)
            waiting = self._logs.get(span_id)
            if waiting is None:
                self._logs[span_id] = _WaitingLogs(content, [token], now + self.log_wait_s)
            else:  # more records for the same span (one per message in older conventions)
                waiting.content = merge_content(waiting.content, content)
                waiting.tokens.append(token)
        self._release([token], out, taken=False)
        self._bound(out)
        return out

    def expire(self) -> JoinOutput:
        """Spans whose logs never came go on without content; logs whose span never came are dropped."""
        out = JoinOutput()
        now = self.clock()
        for span_id in [k for k, v in self._spans.items() if v.deadline <= now]:
            self._expire_span(span_id, out)
        for span_id in [k for k, v in self._logs.items() if v.deadline <= now]:
            self._expire_logs(span_id, out)
        return out

    def drain(self) -> JoinOutput:
        """Everything, now (shutdown): spans go on as they are; their records get acked."""
        out = JoinOutput()
        for span_id in list(self._spans):
            self._expire_span(span_id, out)
        return out

    # -- bookkeeping ----------------------------------------------------------------

    def _expire_span(self, span_id: str, out: JoinOutput) -> None:
        span = self._spans.pop(span_id)
        self.counters.spans_without_content += 1
        out.events.append(span.event)
        self._release([span.token], out)

    def _expire_logs(self, span_id: str, out: JoinOutput) -> None:
        logs = self._logs.pop(span_id)
        self.counters.orphan_logs += 1
        self._release(logs.tokens, out)

    def _bound(self, out: JoinOutput) -> None:
        """Past max_pending, the oldest waiters go first (dicts keep insertion order)."""
        while len(self._spans) > self.max_pending:
            self._expire_span(next(iter(self._spans)), out)
        while len(self._logs) > self.max_pending:
            self._expire_logs(next(iter(self._logs)), out)

    def _hold(self, token: Any) -> None:
        self._holds.setdefault(id(token), [token, 0])[1] += 1

    def _release(self, tokens: list[Any], out: JoinOutput, *, taken: bool = True) -> None:
        """taken=False: the record's own turn is over; ack it if nothing of it is still held."""
        for token in tokens:
            entry = self._holds.get(id(token))
            if entry is None:
                if not taken:
                    out.acks.append(token)
                continue
            if taken:
                entry[1] -= 1
            if entry[1] == 0:
                del self._holds[id(token)]
                out.acks.append(token)

"""Shared pieces for the guard's unit tests: a detector whose scores the test text dictates, a
guard built on it (no Kafka: the outbox is drained by hand), and time helpers."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from detectors.base import MatrixDetector
from pipeline.agents.screen import Screener
from pipeline.guard.actions import ActionBook
from pipeline.guard.check import Guard
from pipeline.guard.grants import GrantBook
from pipeline.guard.outbox import Outbox
from pipeline.guard.tier1 import Tier1
from pipeline.policy import RoutingPolicy
from pipeline.settings import Topics
from schemas.events import LLMEvent
from schemas.guard import Grant, GrantRequest

_SCORE = re.compile(r"\[(\w+)=([0-9.]+)\]")
HOUR_NS = 3600 * 1_000_000_000


class ScriptedDetector(MatrixDetector):
    """Scores what the text says: "[injection=0.99]" scores injection .99 (threshold .5)."""

    name = "scripted"
    version = "1"
    categories = ("injection", "harmful")
    thresholds = (0.5, 0.5)

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.calls = 0

    def score_matrix(self, events: list[LLMEvent]) -> np.ndarray:
        self.calls += 1
        if self.fail:
            raise RuntimeError("the model file is unreadable")
        if self.delay_s:
            time.sleep(self.delay_s)
        matrix = np.zeros((len(events), len(self.categories)))
        for i, event in enumerate(events):
            text = " ".join(m.content for m in (*event.input_messages, *event.output_messages))
            for category, value in _SCORE.findall(text):
                matrix[i, self.categories.index(category)] = float(value)
        return matrix


def policy() -> RoutingPolicy:
    return RoutingPolicy.load()


def grant(
    categories: tuple[str, ...] = ("injection",), *, tenant: str = "code-helper", services: tuple[str, ...] = (),
    users: tuple[str, ...] = (), hours: float = 1.0, grant_id: str = "g-test", now_ns: int | None = None,
) -> Grant:  # fmt: skip
    now = time.time_ns() if now_ns is None else now_ns
    return Grant(
        grant_id=grant_id, tenant=tenant, categories=categories, services=services, users=users,
        reason="red team exercise", granted_by="root", granted_ns=now - 1, expires_ns=now + int(hours * HOUR_NS),
    )  # fmt: skip


def grant_request(**overrides: Any) -> GrantRequest:
    values: dict[str, Any] = {
        "tenant": "code-helper", "categories": ["injection"], "reason": "red team exercise this week",
        "expires_at": datetime.now(UTC) + timedelta(hours=8),
    }  # fmt: skip
    return GrantRequest(**{**values, **overrides})


def build_guard(
    detector: ScriptedDetector | None = None, *, routing: RoutingPolicy | None = None,
    grants: list[Grant] | None = None, max_pending: int = 64, outbox_items: int = 1000,
) -> tuple[Guard, Outbox]:  # fmt: skip
    rules = routing or policy()
    tier1 = Tier1(Screener([detector or ScriptedDetector()], rules), Topics())
    book = GrantBook(rules.guard)
    book.replace(grants or [])
    outbox = Outbox(tier1.stream_records, max_items=outbox_items, max_bytes=64 << 20)
    guard = Guard(tier1, grants=book, actions=ActionBook(), outbox=outbox, max_pending=max_pending)
    return guard, outbox

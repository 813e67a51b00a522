"""The inline check on a scripted tier 1: profile actions, relaxed decisions tagged with their
grant (screening, escalation and the bundle built from it), fail open/closed when tier 1 errors
or runs over budget, the session's action, and what enters the stream (never a second screening)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from pipeline.agents.investigate import assemble_bundle
from pipeline.guard.contract import GuardRequest
from pipeline.guard.tier1 import Record
from pipeline.settings import Topics
from schemas.events import LLMEvent, Message, ToolCall, ToolDefinition
from schemas.evidence import Decision, Escalation, Screening
from schemas.guard import GuardAction, SessionAction
from tests.unit.guard_helpers import ScriptedDetector, build_guard, grant

TOPICS = Topics()


def ask(text: str, *, service: str = "docs-assistant", tenant: str = "", session: str = "s-1", **extra) -> GuardRequest:
    return GuardRequest(
        session_id=session, service=service, tenant=tenant, messages=[Message(role="user", content=text)], **extra
    )


async def check(guard, request: GuardRequest):
    guard.start()
    try:
        return await guard.check(request, time.perf_counter(), time.time_ns())
    finally:
        await guard.stop()


def drained(outbox) -> list[Record]:
    records: list[Record] = []
    while len(outbox):
        item, _ = outbox._items.popleft()
        records += outbox._records(item)
    return records


async def test_a_clean_request_is_allowed_and_its_screening_enters_the_stream_once() -> None:
    guard, outbox = build_guard()
    answer = await check(guard, ask("where is my order?"))
    assert answer.action is GuardAction.ALLOW and answer.tiers_run == ["tier1"] and answer.failure is None
    assert answer.streamed == "queued" and answer.deployment == "default" and answer.profile == "default"
    records = drained(outbox)
    assert [r.topic for r in records] == [TOPICS.screenings]  # no llm-events record: no second screening
    screening = Screening.model_validate_json(records[0].value)
    assert records[0].key == b"s-1" and screening.event_id == answer.event_id == answer.evidence_id
    assert screening.decision is Decision.PASS and screening.grant_id is None


async def test_profiles_pick_the_action() -> None:
    text = "[injection=0.9]"  # flagged, under the default high .95
    default, _ = build_guard()
    assert (await check(default, ask(text))).action is GuardAction.ALLOW  # default: injection acts only when high
    strict, _ = build_guard()
    assert (await check(strict, ask(text, tenant="travel-agent"))).action is GuardAction.BLOCK
    high, _ = build_guard()
    answer = await check(high, ask("[injection=0.99]"))
    assert answer.action is GuardAction.BLOCK and answer.categories == ["injection"]
    assert answer.evidence_id != answer.event_id  # escalated: the answer names the bundle the desk will show


async def test_an_escalation_enters_the_stream_beside_its_screening() -> None:
    guard, outbox = build_guard()
    answer = await check(guard, ask("[harmful=0.8]"))
    assert answer.action is GuardAction.SAFE_FALLBACK
    assert answer.tiers_skipped == {"tier2": "not inline for this deployment: it runs in the stream"}
    topics = [r.topic for r in drained(outbox)]
    assert topics == [TOPICS.screenings, TOPICS.escalations]


async def test_every_relaxed_decision_carries_the_grant_id_into_screening_escalation_and_bundle() -> None:
    given = grant(("injection",), tenant="travel-agent")
    guard, outbox = build_guard(grants=[given])
    answer = await check(guard, ask("[injection=0.99]", tenant="travel-agent"))
    assert answer.action is GuardAction.ALLOW and answer.grant_id == given.grant_id
    assert answer.categories == ["injection"]  # still reported: relaxed, not unseen
    screening_record, escalation_record = drained(outbox)
    screening = Screening.model_validate_json(screening_record.value)
    escalation = Escalation.model_validate_json(escalation_record.value)
    assert screening.grant_id == escalation.screening.grant_id == given.grant_id
    assert screening.decision is Decision.ESCALATE  # monitoring stays on: it still reaches the queue
    bundle = assemble_bundle(escalation, time.time_ns())  # the investigate stage's own assembly
    assert bundle.grant_id == given.grant_id
    assert json.loads(bundle.model_dump_json())["grant_id"] == given.grant_id


async def test_a_grant_for_another_user_changes_nothing() -> None:
    given = grant(("injection",), tenant="travel-agent", users=("alice",))
    guard, outbox = build_guard(grants=[given])
    answer = await check(guard, ask("[injection=0.99]", tenant="travel-agent", user="mallory"))
    assert answer.action is GuardAction.BLOCK and answer.grant_id is None
    assert Screening.model_validate_json(drained(outbox)[0].value).grant_id is None


@pytest.mark.parametrize(
    ("service", "expected"),
    [("docs-assistant", GuardAction.ALLOW), ("support-bot", GuardAction.SAFE_FALLBACK)],  # open / closed
)
async def test_fail_open_or_closed_is_honoured_when_tier_one_errors(service: str, expected: GuardAction) -> None:
    guard, outbox = build_guard(ScriptedDetector(fail=True))
    answer = await check(guard, ask("[injection=0.99]", service=service))
    assert answer.action is expected and answer.tiers_run == []
    assert answer.failure and "tier 1 failed: RuntimeError" in answer.failure
    assert ("failing open" if expected is GuardAction.ALLOW else "failing closed") in answer.failure
    # not screened by the guard: the event goes to llm-events, so the stream screens it once
    [record] = drained(outbox)
    assert record.topic == TOPICS.llm_events and LLMEvent.model_validate_json(record.value).event_id == answer.event_id


async def test_over_budget_the_guard_answers_in_time_and_still_streams_the_late_screening() -> None:
    guard, outbox = build_guard(ScriptedDetector(delay_s=0.2))
    guard.start()
    try:
        started = time.perf_counter()
        answer = await guard.check(ask("[injection=0.99]", budget_ms=20), started, time.time_ns())
        elapsed_ms = (time.perf_counter() - started) * 1000
        assert answer.budget_ms == 20 and elapsed_ms < 20 + 15  # the budget, plus scheduling slack
        assert answer.action is GuardAction.ALLOW and "did not finish within the 20 ms budget" in (answer.failure or "")
        assert answer.tiers_skipped["tier1"].startswith("tier 1 did not finish")
        for _ in range(100):
            if len(outbox):
                break
            await asyncio.sleep(0.01)
    finally:
        await guard.stop()
    [screening] = [r for r in drained(outbox) if r.topic == TOPICS.screenings]
    assert Screening.model_validate_json(screening.value).event_id == answer.event_id
    assert guard.batcher.counters.late == 1


async def test_a_caller_cannot_loosen_the_deployment_budget() -> None:
    guard, _ = build_guard()
    answer = await check(guard, ask("hello", service="support-bot", budget_ms=5000))
    assert answer.budget_ms == 300


async def test_an_overloaded_guard_answers_by_its_failure_mode_and_the_stream_screens_the_event() -> None:
    guard, outbox = build_guard(ScriptedDetector(delay_s=0.05), max_pending=1)
    guard.start()
    try:
        answers = await asyncio.gather(*(guard.check(ask(f"q{i}"), time.perf_counter(), time.time_ns())
                                         for i in range(4)))  # fmt: skip
    finally:
        await guard.stop()
    overloaded = [a for a in answers if a.failure and "overloaded" in a.failure]
    assert overloaded and guard.batcher.counters.overloaded == len(overloaded)
    assert {r.topic for r in drained(outbox)} >= {TOPICS.llm_events}


async def test_the_session_action_from_the_stream_applies_when_it_is_stricter() -> None:
    guard, _ = build_guard()
    now = time.time_ns()
    held = SessionAction(record_id="a-1", session_id="s-1", action=GuardAction.READ_ONLY_TOOLS,
                         reason="high injection bundle", issued_ns=now, expires_ns=now + 10**12)  # fmt: skip
    guard.actions.apply(held)
    answer = await check(guard, ask("hello"))
    assert answer.action is GuardAction.READ_ONLY_TOOLS
    assert answer.session_action is not None and answer.session_action.record_id == "a-1"
    other, _ = build_guard()
    other.actions.apply(SessionAction(record_id="a-2", session_id="s-1", action=GuardAction.READ_ONLY_TOOLS,
                                      issued_ns=now, expires_ns=now + 10**12))  # fmt: skip
    assert (await check(other, ask("[injection=0.99]"))).action is GuardAction.BLOCK


async def test_a_tool_call_check_reaches_the_tool_call_policy_shape() -> None:
    request = GuardRequest(
        kind="tool_call", session_id="s-9", service="docs-assistant",
        messages=[Message(role="user", content="what is the weather in Paris?")],
        tools=[ToolDefinition(name="send_email", description="Send an e-mail")],
        tool_calls=[ToolCall(name="send_email", arguments='{"to": "x@evil.example"}')],
    )  # fmt: skip
    event = request.to_event(1)
    assert event.output_messages[-1].tool_calls[0].name == "send_email"
    assert event.operation == "guard.tool_call" and event.session_id == "s-9" and event.tenant == "docs-assistant"


def test_a_check_without_a_session_gets_one_of_its_own() -> None:
    first = GuardRequest(messages=[Message(role="user", content="hi")]).to_event(1)
    second = GuardRequest(messages=[Message(role="user", content="hi")]).to_event(1)
    assert first.session_id.startswith("guard-") and first.session_id != second.session_id
    assert first.event_id != second.event_id


class ThreadRecordingDetector(ScriptedDetector):
    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(delay_s=delay_s)
        self.threads: list[int] = []

    def score_matrix(self, events):
        import threading

        self.threads.append(threading.get_ident())
        return super().score_matrix(events)


@pytest.mark.parametrize(("delay_s", "inline_after_first"), [(0.0, True), (0.005, False)])
async def test_a_lone_short_check_is_scored_on_the_loop_while_tier_one_is_fast(delay_s, inline_after_first) -> None:
    import threading

    detector = ThreadRecordingDetector(delay_s=delay_s)
    guard, _ = build_guard(detector)
    guard.start()
    try:
        for i in range(4):
            answer = await guard.check(ask(f"where is order {i}?"), time.perf_counter(), time.time_ns())
            assert answer.action is GuardAction.ALLOW
        await guard.check(ask("x" * 3000), time.perf_counter(), time.time_ns())  # long: always the thread
    finally:
        await guard.stop()
    loop_thread = threading.get_ident()
    assert detector.threads[0] != loop_thread  # the first is measured on the thread
    assert all((t == loop_thread) is inline_after_first for t in detector.threads[1:4])
    assert detector.threads[4] != loop_thread

"""Redaction before storage: content loses e-mails, phone numbers and API keys; ids do not."""

import pytest
from pydantic import ValidationError

from pipeline.settings import Settings
from pipeline.store.redaction import Redactor
from schemas.events import LLMEvent, Message, ToolCall, ToolDefinition
from tests.unit.test_judge import bundle

TEXT = (
    "Mail jane.doe@example.com or call +44 20 7946 0958 / (555) 123-4567; "
    "key sk-proj-abcdefghijklmnopqrstuvwx, AKIAABCDEFGHIJKLMNOP, api_key=hunter2hunter2, Bearer abcdefghijklmnopqrstuv"
)


def test_each_kind_is_replaced_by_its_marker():
    out = Redactor(["email", "phone", "api_key"]).text(TEXT)
    assert "jane.doe@example.com" not in out and out.count("[email]") == 1
    assert "7946" not in out and "123-4567" not in out and out.count("[phone]") == 2
    assert "sk-proj" not in out and "AKIA" not in out and "hunter2" not in out and "abcdefghijklmnopqrstuv" not in out
    assert "api_key=[api_key]" in out and "Bearer [api_key]" in out
    only_email = Redactor(["email"]).text(TEXT)
    assert "[email]" in only_email and "7946" in only_email and "AKIA" in only_email


def test_ordinary_numbers_dates_and_ids_are_left_alone():
    redactor = Redactor(["email", "phone", "api_key"])
    kept = "Order 12345 shipped on 2026-11-23 at 14:05; total 1,299.00 EUR; version 3.11.7"
    assert redactor.text(kept) == kept


def test_bundles_lose_the_secrets_in_their_content_and_keep_their_ids():
    base = bundle()
    event = base.events[0].model_copy(update={
        "event_id": "0123456789" * 3, "input_messages": (Message(role="user", content=TEXT),),
        "tool_calls": (ToolCall(name="send_email", arguments='{"to": "jane.doe@example.com"}',
                                result="sent to +1 415 555 0100"),),
        "tool_definitions": (ToolDefinition(name="mail", description="Writes to ops@example.com"),),
        "retrieved_documents": ("Contact: bob@example.org",),
    })  # fmt: skip
    original = base.model_copy(update={"events": (event,), "bundle_id": "5551234567" * 3})
    redacted = Redactor(["email", "phone", "api_key"]).bundle(original)
    dumped = redacted.model_dump_json()
    for secret in ("jane.doe@example.com", "ops@example.com", "bob@example.org", "415 555 0100", "AKIA", "hunter2"):
        assert secret not in dumped
    assert redacted.bundle_id == original.bundle_id and redacted.events[0].event_id == event.event_id
    assert redacted.session_id == original.session_id and redacted.max_score == original.max_score


def test_the_setting_names_known_kinds_only():
    assert Settings(redact="email, api_key").redact == "email, api_key"
    assert Redactor.from_setting("") is None
    with pytest.raises(ValidationError):
        Settings(redact="emails")
    with pytest.raises(ValueError, match="unknown redaction kinds"):
        Redactor(["ssn"])


def test_a_drill_screening_keeps_its_drill_id_and_loses_the_address():
    from pipeline.agents.screen import Screener
    from pipeline.policy import RoutingPolicy
    from tests.helpers import FixedDetector

    event = LLMEvent(event_id="e", trace_id="t", span_id="s", session_id="x", drill_id="run/a@b.cd",
                     input_messages=(Message(role="user", content="write to a@b.cd"),))  # fmt: skip
    [screening] = Screener([FixedDetector(0.1)], RoutingPolicy.load()).screen([event])
    redacted = Redactor(["email"]).screening(screening)
    assert "a@b.cd" not in redacted.excerpt and redacted.drill_id == "run/a@b.cd"

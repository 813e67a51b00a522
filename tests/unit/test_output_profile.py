"""What each screening carries for version drift: version identity from the spans (response
model, deployment label from resource or span attributes, a configurable list), and from the
output its length, a refusal verdict, the scopes of tools called and a replay-stable sample."""

import json

import pytest

from detectors.output_profile import call_scopes, refusals, sampled, screening_fields
from schemas.events import LLMEvent, Message, ToolCall, ToolDefinition
from schemas.evidence import EvidenceBundle, Screening
from schemas.otel_mapping import map_request
from tests.helpers import request, span

REFUSING = [
    "I can't help with that.",
    "I'm sorry, but I cannot assist with this request.",
    "Sorry, I won't provide instructions for that.",
    "Unfortunately I'm unable to help with that request.",
    "I won't help with this. It could seriously hurt people.",
    "That's not something I can share.",
    "As an AI, I cannot provide that information.",
    "Lo siento, no puedo ayudar con eso.",
    "Es tut mir leid, ich kann dabei nicht helfen.",
]
ANSWERING = [
    "Sure, here is how to reset your password: open Settings.",
    "I can't wait to help you plan the trip! First, pick a date.",
    "Of course. The refund takes 5-7 days. Sorry for the delay, I can't imagine how annoying that is.",
    "Here are the steps. Note: I cannot stress enough how important backups are.",
    "We don't ship to Belgium on Sundays, but Monday delivery works.",
    "",
]


def test_refusals_read_how_an_answer_opens():
    assert refusals(REFUSING) == [True] * len(REFUSING)
    assert refusals(ANSWERING) == [False] * len(ANSWERING)
    # A refusal quoted late in a long answer is not one.
    assert refusals(["Step 1: open the app. " * 20 + "I can't help with that."]) == [False]


def event(output: str = "", **kwargs) -> LLMEvent:
    fields = {"event_id": "e1", "trace_id": "t", "span_id": "s", "session_id": "x", "service": "svc"} | kwargs
    outputs = (Message(role="assistant", content=output),) if output else ()
    return LLMEvent(output_messages=outputs, **fields)


def test_screening_fields_carry_version_output_and_a_stable_sample():
    events = [
        event("I can't help with that.", event_id=f"e{i}", provider="openai", response_model="m-2026-12",
              deployment="service.version=2")
        for i in range(400)
    ]  # fmt: skip
    fields = screening_fields(events, sample_rate=0.25, sample_chars=10)
    assert fields[0] | {"output_sample": None} == {
        "provider": "openai", "response_model": "m-2026-12", "deployment": "service.version=2",
        "output_chars": 23, "refused": True, "tool_scopes": (), "output_sample": None,
    }  # fmt: skip
    samples = [f["output_sample"] for f in fields]
    assert 0.18 < sum(s is not None for s in samples) / 400 < 0.32
    assert {s for s in samples if s} == {"I can't he"}
    assert samples == [f["output_sample"] for f in screening_fields(events, sample_rate=0.25, sample_chars=10)]
    assert all(f["output_sample"] is None for f in screening_fields(events, sample_rate=0.0))
    assert sampled("e1", 1.0) and not sampled("e1", 0.0)


def test_no_output_means_unknown_not_zero_and_not_a_refusal():
    [fields] = screening_fields([event()])
    assert (fields["output_chars"], fields["refused"], fields["output_sample"]) == (None, None, None)


def test_tool_call_scopes_come_from_the_definitions_shown():
    called = event(
        tool_calls=(ToolCall(name="send_email", arguments="{}"), ToolCall(name="lookup", arguments="{}")),
        tool_definitions=(ToolDefinition(name="lookup", description="Look up an order's status."),),
    )
    assert call_scopes(called) == ("read", "network")
    assert call_scopes(event("hi")) == ()


def one(attrs, **kwargs):
    [result] = map_request(request(span(attrs)), **kwargs).events
    return result


def test_response_model_and_deployment_label_from_spans():
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
    }
    plain = one(attrs)
    assert (plain.model, plain.response_model, plain.deployment) == ("gpt-4o", "gpt-4o-2024-08-06", "")
    [from_resource] = map_request(
        request(span({**attrs, "deployment.environment": "canary"}), resource={"service.version": "1.4.2",
                                                                              "deployment.environment": "prod"})
    ).events  # fmt: skip
    assert from_resource.deployment == "service.version=1.4.2;deployment.environment=prod"
    custom = one({**attrs, "app.release": "r77"}, deployment_attributes=("app.release",))
    assert custom.deployment == "app.release=r77"
    openinference = one({"openinference.span.kind": "LLM", "llm.model_name": "llama-3.1-8b-ft2"})
    assert openinference.response_model == "llama-3.1-8b-ft2"


def test_older_records_decode_and_bundles_name_their_version():
    old = {
        "event_id": "e", "session_id": "s", "trace_id": "t", "service": "svc", "model": "m", "operation": "chat",
        "scores": [], "decision": "pass", "policy_version": "p", "received_ns": 1, "normalized_ns": 1,
        "screened_ns": 1,
    }  # fmt: skip
    screening = Screening.model_validate_json(json.dumps(old))
    assert (screening.response_model, screening.output_chars, screening.refused) == (None, None, None)
    assert screening.version == "svc · m"
    labelled = screening.model_copy(update={"response_model": "m-ft3", "deployment": "service.version=2"})
    bundle = EvidenceBundle(
        bundle_id="b", session_id="s", trace_ids=("t",), service="svc", model="m", severity="high", categories=(),
        max_score=0.9, events=(), screenings=(labelled,), hops=(), policy_version="p", created_ns=1,
    )  # fmt: skip
    assert bundle.version == "svc · m-ft3 · service.version=2"
    assert EvidenceBundle.model_validate_json(bundle.model_dump_json()).version == bundle.version


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_hashed_text_mode_keeps_no_output_text(rate):
    from pipeline.agents.screen import Screener
    from pipeline.policy import RoutingPolicy

    hashed = Screener([], RoutingPolicy.load(), text_mode="hashed", profile_outputs=True, output_sample_rate=1.0)
    assert hashed.output_sample_rate == 0.0
    sampling = Screener(
        [], RoutingPolicy.load(), profile_outputs=True, output_sample_rate=rate, output_sample_chars=100
    )
    [screening] = sampling.screen([event("Sure, open Settings.")])
    assert screening.output_chars == 20 and screening.refused is False
    assert (screening.output_sample is not None) == (rate == 1.0)


def test_synthetic_traffic_names_the_answering_version_and_a_release_roll_out():
    from pipeline.synth.emit import sessions_to_request
    from pipeline.synth.traffic import TrafficGenerator

    generator = TrafficGenerator(seed=3)
    before = map_request(sessions_to_request(list(generator.sessions(40)))).events
    generator.roll_out("support-bot", release="2026.12.1")
    after = map_request(sessions_to_request(list(generator.sessions(200)))).events
    answered = [e for e in before if e.response_model]
    assert answered and all(e.deployment == "" for e in before)
    # The app's own spans carry its release; the vLLM server span under a self-hosted call is the
    # inference server's (issue 17's traffic), which knows nothing of the app's release.
    released = {e.deployment for e in after if e.service == "support-bot" and e.response_model
                and e.span_name != "llm_request"}  # fmt: skip
    assert released == {"service.version=2026.12.1"}
    assert {e.deployment for e in after if e.service != "support-bot"} == {""}

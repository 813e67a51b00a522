"""OpenTelemetry's own OpenAI instrumentation, content as log records (EVENT_ONLY): the span
has only model and usage, and the pipeline must join the prompt back before screening it."""

import os
import subprocess
import sys

from schemas.otel_mapping import map_request, parse_trace_request
from tests.e2e.conftest import wait_for
from tests.integration.instrumented_app import SYSTEM_TEXT, USER_TEXT


def test_prompt_sent_as_log_records_is_joined_screened_and_escalated(settings, client, tmp_path):
    env = {
        **os.environ,
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "EVENT_ONLY",
    }
    app = [sys.executable, "-m", "tests.integration.instrumented_app", "otel-genai", str(tmp_path)]
    result = subprocess.run([*app, settings.receiver_url], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    [span_event] = map_request(parse_trace_request((tmp_path / "traces.pb").read_bytes())).events
    assert span_event.input_messages == ()  # the span itself carries no prompt

    queue = wait_for(
        lambda: client.escalations(limit=500), lambda q: any(r["session_id"] == span_event.trace_id for r in q)
    )
    [row] = [r for r in queue if r["session_id"] == span_event.trace_id]
    bundle = client.bundle(row["bundle_id"])
    [event] = bundle["events"]
    assert event["span_id"] == span_event.span_id
    assert [(m["role"], m["content"]) for m in event["input_messages"]] == [("user", USER_TEXT)]
    assert event["system_instructions"] == SYSTEM_TEXT
    assert event["model"] == "gpt-4o-mini" and event["usage"]["input_tokens"] == 21

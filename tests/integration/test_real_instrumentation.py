"""What real instrumentation libraries emit for one OpenAI chat call, mapped to an LLMEvent.

Each library runs in its own process (instrumentors patch the client globally) against a
local fake OpenAI-compatible server; see instrumented_app.py.
"""

import subprocess
import sys

import pytest

from schemas.otel_mapping import map_request, parse_trace_request
from tests.integration.instrumented_app import ANSWER_TEXT, SYSTEM_TEXT, USER_TEXT


def run_app(instrumentor, out_dir, **env):
    import os

    result = subprocess.run(
        [sys.executable, "-m", "tests.integration.instrumented_app", instrumentor, str(out_dir)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return (out_dir / "traces.pb").read_bytes(), (out_dir / "logs.pb").read_bytes()


@pytest.mark.parametrize(
    ("instrumentor", "env", "convention", "has_tools"),
    [
        ("openinference", {}, "openinference", True),
        ("openllmetry", {}, "genai", True),
        (
            "otel-genai",
            {
                "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY",
            },
            "genai",
            False,
        ),
    ],
)
def test_content_on_the_span_maps_to_one_complete_event(tmp_path, instrumentor, env, convention, has_tools):
    traces, _ = run_app(instrumentor, tmp_path, **env)
    result = map_request(parse_trace_request(traces))
    assert len(result.events) == 1
    event = result.events[0]
    assert event.convention == convention
    assert event.model == "gpt-4o-mini" and event.provider == "openai"
    assert event.service == f"app-{instrumentor}"
    assert [(m.role, m.content) for m in event.input_messages] == [("user", USER_TEXT)]
    assert event.system_instructions == SYSTEM_TEXT
    assert event.output_messages[0].content == ANSWER_TEXT
    assert (event.usage.input_tokens, event.usage.output_tokens) == (21, 12)
    assert [t.name for t in event.tool_definitions] == (["get_order_status"] if has_tools else [])

"""The proxy's pure parts: read-only mode strips tools by declared or inferred scope, OpenAI
messages become the stream's shape, a streamed answer is rebuilt from its chunks."""

from __future__ import annotations

import json

import pytest

from pipeline.guard.proxy import StreamAccumulator, completion, stream_chunks, strip_write_tools, to_messages

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Read the forecast for a city"}}
SEND = {"type": "function", "function": {"name": "send_email", "description": "Send an e-mail to an address"}}
PAY = {"type": "function", "function": {"name": "refund_order", "description": "Refund a customer's order"}}
RUN = {"type": "function", "function": {"name": "python", "description": "Execute Python code"}}
DELETE = {"type": "function", "function": {"name": "remove_file", "description": "Remove a file from the share"}}


def test_read_only_mode_strips_write_network_payment_and_code_tools_by_inferred_scope() -> None:
    choice = {"type": "function", "function": {"name": "send_email"}}
    body = {"tools": [WEATHER, SEND, PAY, RUN, DELETE], "tool_choice": choice}
    removed = strip_write_tools(body, {})
    assert sorted(removed) == ["python", "refund_order", "remove_file", "send_email"]
    assert body["tools"] == [WEATHER] and body["tool_choice"] == "auto"


def test_a_declared_scope_wins_over_the_tools_own_words() -> None:
    innocent = {"type": "function", "function": {"name": "lookup", "description": "Look something up"}}
    body = {"tools": [innocent, SEND]}
    removed = strip_write_tools(body, {"lookup": frozenset({"read", "network"}), "send_email": frozenset({"read"})})
    assert removed == ["lookup"] and body["tools"] == [SEND]


def test_with_no_tool_left_the_request_asks_for_none() -> None:
    body = {"tools": [SEND], "tool_choice": "required", "parallel_tool_calls": True,
            "functions": [SEND["function"]], "function_call": {"name": "send_email"}}  # fmt: skip
    assert strip_write_tools(body, {}) == ["send_email", "send_email"]
    assert not {"tools", "tool_choice", "parallel_tool_calls", "functions", "function_call"} & set(body)


def test_openai_messages_become_the_streams_shape() -> None:
    messages = to_messages([
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ])  # fmt: skip
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[1].content == "hello" and messages[2].tool_calls[0].name == "get_weather"
    assert messages[3].tool_call_id == "c1" and messages[3].content == "sunny"


@pytest.mark.parametrize("bad", [None, "hi", [1], [{"content": "no role"}]])
def test_malformed_messages_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        to_messages(bad)


def test_a_streamed_answer_is_rebuilt_from_its_chunks_even_split_mid_line() -> None:
    def call(name: str, arguments: str) -> dict:
        delta = {"tool_calls": [{"index": 0, "function": {"name": name, "arguments": arguments}}]}
        return {"choices": [{"index": 0, "delta": delta}]}

    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]},
        {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
        call("send_", '{"to"'),
        call("email", ": 1}"),
    ]
    wire = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks).encode() + b"data: [DONE]\n\n"
    seen = StreamAccumulator()
    for i in range(0, len(wire), 7):
        seen.feed(wire[i : i + 7])
    message = seen.message()
    assert message.content == "Hello" and message.tool_calls[0].name == "send_email"
    assert message.tool_calls[0].arguments == '{"to": 1}'


def test_the_fallback_is_a_well_formed_completion_and_stream() -> None:
    body = completion("m", "no")
    assert body["choices"][0]["finish_reason"] == "content_filter" and body["object"] == "chat.completion"
    seen = StreamAccumulator()
    seen.feed(stream_chunks("m", "no"))
    assert seen.message().content == "no"

"""The poisoned-description generator: every kind changes the description, keeps the real text,
is seeded, and varies its wording and placement across seeds."""

import random

import pytest

from pipeline.drills.scenarios import SEED_SETS
from pipeline.drills.tool_poisoning import KINDS, poison

TOOL = {
    "name": "get_weather",
    "description": "Get the current weather for a city. Returns the temperature in Celsius. Updated hourly.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
OTHERS = ["send_email", "read_file", "transfer_funds"]


def _subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(word == candidate for candidate in it) for word in needle)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_adds_a_payload_and_keeps_the_original_text(kind):
    for seed in list(SEED_SETS["tuning"])[:50]:
        poisoned = poison(TOOL, kind, random.Random(seed), other_tools=OTHERS)
        assert poisoned["name"] == TOOL["name"]
        assert poisoned["description"] != TOOL["description"]
        assert len(poisoned["description"]) > len(TOOL["description"]) + 20
        # The real description is all there, in order (the payload may sit between two sentences).
        assert _subsequence(TOOL["description"].split(), poisoned["description"].split())
        assert set(TOOL["parameters"]["properties"]) <= set(poisoned["parameters"]["properties"])


def test_seeded_and_the_input_is_not_mutated():
    before = repr(TOOL)
    first = poison(TOOL, "parameter_tampering", random.Random(7), other_tools=OTHERS)
    again = poison(TOOL, "parameter_tampering", random.Random(7), other_tools=OTHERS)
    assert first == again and repr(TOOL) == before


def test_wording_and_placement_vary_across_seeds():
    for kind in KINDS:
        texts = {poison(TOOL, kind, random.Random(s), other_tools=OTHERS)["description"] for s in range(60)}
        assert len(texts) >= 55, kind
    where = {"start": 0, "middle": 0, "end": 0}
    for s in range(300):
        text = poison(TOOL, random.Random(s).choice(KINDS), random.Random(s), other_tools=OTHERS)["description"]
        if not text.startswith("Get the current weather"):
            where["start"] += 1
        elif text.endswith("Updated hourly."):
            where["middle"] += 1
        else:
            where["end"] += 1
    assert min(where.values()) > 50, where


def test_a_parameter_the_payload_names_is_declared_and_other_tools_are_named():
    added = named = 0
    for s in range(200):
        poisoned = poison(TOOL, "parameter_tampering", random.Random(s), other_tools=OTHERS)
        added += len(poisoned["parameters"]["properties"]) > 1
        hijack = poison(TOOL, "implicit_hijack", random.Random(s), other_tools=OTHERS)["description"]
        named += any(other in hijack for other in OTHERS)
    assert added > 50 and named > 20


def test_a_tool_without_a_schema_gets_one_when_a_parameter_is_added():
    bare = {"name": "t", "description": "Does a thing for the user.", "parameters": None}
    schemas = [poison(bare, "parameter_tampering", random.Random(s), other_tools=[])["parameters"] for s in range(40)]
    assert any(isinstance(p, dict) and p["properties"] for p in schemas)


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="explicit_hijack"):
        poison(TOOL, "rug_pull", random.Random(0), other_tools=OTHERS)

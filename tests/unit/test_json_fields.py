"""Text fields of JSON inside a part, which tier 1 reads on their own (detectors.text)."""

import json

from detectors.text import JSON_FIELD_MIN_CHARS, JSON_MAX_CHARS, JSON_MAX_FIELDS, json_text_fields

LONG = "The parcel left the Leipzig depot this morning and should arrive on Friday."


def test_the_longer_string_values_of_a_tool_result_longest_first():
    result = {"status": "ok", "id": 7, "items": [{"note": LONG, "sku": "A-1"}], "summary": LONG[:40]}
    assert json_text_fields(json.dumps(result)) == [LONG, LONG[:40]]  # short values (ids, statuses) are left out
    assert all(len(f) >= JSON_FIELD_MIN_CHARS for f in json_text_fields(json.dumps(result)))


def test_json_pasted_after_a_question_and_json_arrays_are_read():
    assert json_text_fields(f"Is this config valid?\n{json.dumps({'notes': LONG})}") == [LONG]
    assert json_text_fields(json.dumps([LONG, 3, None])) == [LONG]


def test_text_without_json_and_broken_json_give_nothing():
    assert json_text_fields(LONG) == []
    assert json_text_fields('def f(x): return {x: "' + LONG + '"') == []
    assert json_text_fields("{" * 100_000 + "}" * 100_000) == []  # too deep for the parser: no crash
    assert json_text_fields(json.dumps({"a": "x" * JSON_MAX_CHARS})) == []  # too long to parse on the hot path


def test_the_fields_are_capped():
    many = {f"k{i}": f"{LONG} ({i:04d})" + "." * (i % 7) for i in range(JSON_MAX_FIELDS * 2)}
    fields = json_text_fields(json.dumps(many))
    assert len(fields) == JSON_MAX_FIELDS and len(fields[0]) >= len(fields[-1])

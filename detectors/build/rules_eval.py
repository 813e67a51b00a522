"""Each rule's false-positive rate on real benign text, put where the rule reads it.

Corpora (all benign): BFCL's user requests (as user turns), the same requests with the
calls BFCL's answer key says they need (user turn + the agent's tool call), BFCL's real
tool descriptions (as tool definitions), generated tool results (as tool results), casual
chat in many languages (user turns) and chatterbot's bot answers (as model output).
A rule fires when its score reaches its threshold. Written into the tier-1 card.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from detectors.build.datasets import _bfcl_records, _messages, bfcl_functions, wheel
from detectors.build.datasets import load_split as _load_split
from detectors.rules import Rule, default_rules
from schemas.events import LLMEvent, Message, ToolCall, ToolDefinition

MAX_FPR = 0.002  # the bar: no rule above 0.2% on any corpus


def _event(i: int, **fields: Any) -> LLMEvent:
    return LLMEvent(event_id=f"rules-eval-{i}", trace_id="t", span_id=f"s{i}", session_id="rules-eval", **fields)


def _user(texts: Iterable[str]) -> list[LLMEvent]:
    return [_event(i, input_messages=(Message(role="user", content=t),)) for i, t in enumerate(texts)]


def _calls_from_answers(datasets_dir: Path) -> list[LLMEvent]:
    """A request and the calls BFCL's answer key gives for it (first acceptable value of each
    argument): the agent doing what the user asked."""
    archive = wheel(datasets_dir, "bfcl-eval")
    answers: dict[str, Any] = {}
    for name in archive.namelist():
        if "/data/possible_answer/BFCL_v4_" in name and name.endswith(".json"):
            for line in archive.read(name).decode().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                answers[str(row.get("id"))] = row.get("ground_truth")
    events: list[LLMEvent] = []
    for record in _bfcl_records(datasets_dir):
        truth = answers.get(str(record.get("id")))
        users = [m["content"] for m in _messages(record.get("question")) if m.get("role") == "user"
                 and isinstance(m.get("content"), str)]  # fmt: skip
        if not isinstance(truth, list) or not users or not all(isinstance(c, dict) for c in truth):
            continue
        calls = []
        for call in truth:
            for function, arguments in call.items():
                if isinstance(arguments, dict):
                    chosen = {k: (v[0] if isinstance(v, list) and v else v) for k, v in arguments.items()}
                    calls.append(ToolCall(name=str(function), arguments=json.dumps(chosen)))
        if calls:
            request = (Message(role="user", content=users[0]),)
            answer = (Message(role="assistant", tool_calls=tuple(calls)),)
            events.append(_event(len(events), input_messages=request, output_messages=answer))
    return events


def _descriptions(datasets_dir: Path) -> list[LLMEvent]:
    return [
        _event(i, tool_definitions=(ToolDefinition(name=str(f.get("name")), description=str(f["description"])),))
        for i, f in enumerate(bfcl_functions(datasets_dir))
    ]


def _tool_results(datasets_dir: Path) -> list[LLMEvent]:
    from detectors.build.benign_synth import tool_outputs

    return [
        _event(i, tool_calls=(ToolCall(name="tool", arguments="{}", result=text),))
        for i, text in enumerate(tool_outputs(bfcl_functions(datasets_dir), 3000, seed=71))
    ]


def _bot_answers(datasets_dir: Path) -> list[LLMEvent]:
    import yaml

    archive = wheel(datasets_dir, "chatterbot-corpus")
    answers: list[str] = []
    for name in sorted(n for n in archive.namelist() if n.endswith(".yml") and "/data/" in n):
        for conversation in (yaml.safe_load(archive.read(name)) or {}).get("conversations") or []:
            answers.extend(str(turn) for turn in conversation[1::2] if turn)
    return [_event(i, output_messages=(Message(role="assistant", content=t),)) for i, t in enumerate(answers)]


def corpora(datasets_dir: Path) -> dict[str, Callable[[], list[LLMEvent]]]:
    def split_texts(source: str) -> list[str]:
        return [t for split in ("train", "validation", "test") for t in _load_split(source, split, datasets_dir).texts]

    return {
        "bfcl_requests": lambda: _user(split_texts("bfcl")),
        "bfcl_requests_with_calls": lambda: _calls_from_answers(datasets_dir),
        "tool_descriptions": lambda: _descriptions(datasets_dir),
        "tool_outputs": lambda: _tool_results(datasets_dir),
        "casual_chat_multilingual": lambda: _user(
            split_texts("chatterbot") + split_texts("ovos") + split_texts("chitchat")
        ),
        "bot_answers": lambda: _bot_answers(datasets_dir),
    }


def rule_fpr(datasets_dir: Path, rules: list[Rule] | None = None) -> dict[str, Any]:
    """{rule: {corpus: fpr, ...}, ...} plus the events per corpus and the worst rule."""
    rules = rules or default_rules()
    sizes: dict[str, int] = {}
    result: dict[str, dict[str, float]] = {rule.name: {} for rule in rules}
    examples: dict[str, list[str]] = {rule.name: [] for rule in rules}
    for corpus, make in corpora(datasets_dir).items():
        events = make()
        sizes[corpus] = len(events)
        for rule in rules:
            fired = [e for e, s in zip(events, rule.score(events), strict=True) if s[0].score >= s[0].threshold]
            result[rule.name][corpus] = round(len(fired) / max(1, len(events)), 5)
            examples[rule.name] += [f"{corpus}: {e.model_dump_json(exclude_defaults=True)[:240]}" for e in fired[:2]]
    worst = max(((rule, corpus, v) for rule, row in result.items() for corpus, v in row.items()), key=lambda r: r[2])
    return {
        "bar": MAX_FPR,
        "events": sizes,
        "fpr": result,
        "max": {"rule": worst[0], "corpus": worst[1], "fpr": worst[2]},
        "examples": {rule: found for rule, found in examples.items() if found},
    }

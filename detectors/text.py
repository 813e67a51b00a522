"""Which text of an event a text detector reads.

Tier 1 reads what an attacker can reach: user turns, tool results, retrieved documents
and tool descriptions. System instructions are the operator's, and model output is not
what the prompt classifier was trained on; both are left out (output checks are rules').
"""

from __future__ import annotations

import json
import re
import unicodedata

from schemas.events import LLMEvent

MAX_SCREEN_CHARS = 4096


_ATTACKER_TEXT: dict[int, tuple[LLMEvent, str]] = {}
_ATTACKER_TEXT_MAX = 2048  # above a screen batch (256): hits within a batch, little held


def attacker_text(event: LLMEvent) -> str:
    """Everything attacker-reachable on the input side, untruncated (for the rules). Several
    rules read it per event: it is built once per event object (the entry holds the object,
    so its id cannot be reused while cached)."""
    cached = _ATTACKER_TEXT.get(id(event))
    if cached is not None and cached[0] is event:
        return cached[1]
    if len(_ATTACKER_TEXT) >= _ATTACKER_TEXT_MAX:
        _ATTACKER_TEXT.clear()
    text = screening_text(event, limit=None)
    _ATTACKER_TEXT[id(event)] = (event, text)
    return text


def screening_text(event: LLMEvent, limit: int | None = MAX_SCREEN_CHARS, *, tools: bool = True) -> str:
    """`tools=False` leaves tool descriptions out: the prompt classifier was not trained on them,
    and they have detectors of their own, calibrated on real descriptions."""
    parts: list[str] = []
    parts.extend(m.content for m in event.input_messages if m.role != "system" and m.content)
    parts.extend(call.result for call in event.tool_calls if call.result)
    parts.extend(event.retrieved_documents)
    if tools:
        parts.extend(tool.description for tool in event.tool_definitions if tool.description)
    text = "\n".join(parts)
    return text[-limit:] if limit is not None and len(text) > limit else text


# Lookalike letters (Cyrillic, Greek, Latin alpha) folded to the Latin letter they imitate.
_CONFUSABLES = str.maketrans(
    "аеорсухіјѕкмтнвАВЕКМНОРСТХαβεικνορτυχɑΑΒΕΙΚΜΝΟΡΤΧ",
    "aeopcyxijskmthbabekmhopctxabeikvoptuxaabeikmnoptx",
)
# Digits and symbols used as letters.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s",
                       "!": "i", "|": "l", "€": "e"})  # fmt: skip
#: Characters a reader does not see: zero-width ones and joiners go ("ig\u200bnore" reads as "ignore"),
#: Unicode tag characters become the ASCII they smuggle, so the model reads the hidden text (the
#: hidden-unicode rule still sees the raw characters).
_INVISIBLE = {cp: None for cp in (*range(0x200B, 0x2010), *range(0x2060, 0x2065), 0xFEFF)} | {
    0xE0000 + c: c for c in range(0x80)
}
_LEET_CHARS = re.compile(r"[0134578@$!|]")
#: A whole whitespace-separated token holding a leet character or a lookalike letter (matched
#: from token starts only, so a long token costs one pass): only these can change.
_FOLDABLE_TOKEN = re.compile(r"(?<!\S)\S*[" + re.escape("".join(chr(c) for c in (*_CONFUSABLES, *_LEET))) + r"]\S*")
_LATIN = re.compile("[a-z]")


def _fold(match: re.Match[str]) -> str:
    """Only words that already hold Latin letters: "prev!ous" with a Cyrillic e is obfuscation,
    a wholly Cyrillic word is Russian."""
    word = match.group(0)
    if _LATIN.search(word):
        return word.translate(_CONFUSABLES).translate(_LEET)
    return word


def normalize_for_classifier(text: str) -> str:
    """Invisible characters out (tag characters decoded), NFKC, lower case, and inside words with
    Latin letters: lookalike letters to Latin and leetspeak to letters, so "!gn0re prev!ous"
    (with Cyrillic lookalikes) reads as "ignore previous". Applied before the
    tier-1 model, at build time and at run time."""
    if text.isascii():  # most traffic: NFKC and lookalikes have nothing to do
        lowered = text.lower()
        return _FOLDABLE_TOKEN.sub(_fold, lowered) if _LEET_CHARS.search(lowered) else lowered
    return _FOLDABLE_TOKEN.sub(_fold, unicodedata.normalize("NFKC", text.translate(_INVISIBLE)).lower())


#: Text fields of embedded JSON that tier 1 also reads on their own (see `json_text_fields`).
JSON_FIELD_MIN_CHARS = 24
JSON_MAX_FIELDS = 64
JSON_MAX_CHARS = 262_144


_JSON_START = re.compile(r"^[ \t]*[\[{]", re.MULTILINE)
_JSON = json.JSONDecoder()


def json_text_fields(text: str) -> list[str]:
    """The longer string values of the JSON in a text (a tool result, or JSON pasted on its own
    lines after a question), longest first, at most JSON_MAX_FIELDS. An instruction in one field
    of a tool result is diluted by the JSON around it: read whole, attacks placed in a text field
    of the test splits' tool results routed 0-41%; read as fields, as often as alone (69-96%).
    Only a bracket that opens a line is tried, so prose with brackets costs one regex scan."""
    if len(text) > JSON_MAX_CHARS:
        return []
    start = _JSON_START.search(text)
    if start is None:
        return []
    try:
        value, _ = _JSON.raw_decode(text, start.end() - 1)
    except (ValueError, RecursionError):
        return []
    fields: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if len(item) >= JSON_FIELD_MIN_CHARS:
                fields.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return sorted(fields, key=len, reverse=True)[:JSON_MAX_FIELDS]

"""Cheap rules beside the tier-1 classifier, each a detector with the batch protocol.

Each rule scores 0..1 against a fixed threshold, so the queue ranks them with the models.
They target what a word-level classifier cannot see: encodings, invisible characters,
script mixing, instructions smuggled into tool output, and secrets leaving in output.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import unquote

from detectors.text import attacker_text
from schemas.events import LLMEvent
from schemas.evidence import CategoryScore

RULE_THRESHOLD = 0.5
RULES_VERSION = "rules-1"


class Rule:
    """A named text check over one part of an event. `check` returns a score in 0..1."""

    name: str
    category: str
    version = RULES_VERSION
    threshold = RULE_THRESHOLD

    def texts(self, event: LLMEvent) -> Iterable[str]:
        return (attacker_text(event),)

    def check(self, text: str) -> float:
        raise NotImplementedError

    def score(self, events: Sequence[LLMEvent]) -> list[tuple[CategoryScore, ...]]:
        results: list[tuple[CategoryScore, ...]] = []
        for event in events:
            value = max((self.check(text) for text in self.texts(event) if text), default=0.0)
            results.append(
                (CategoryScore(category=self.category, score=value, threshold=self.threshold, detector=self.name),)
            )
        return results


# -- encoded payloads -------------------------------------------------------------------

_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}){16,}(?![0-9A-Fa-f])")
_URL_ENCODED = re.compile(r"(?:%[0-9A-Fa-f]{2}){6,}")
_WORDS = re.compile(r"[A-Za-z]{3,}")


def _readable(raw: bytes) -> float:
    """Share of a decoded payload that is text: binary blobs (hashes, images) are not payloads."""
    if not raw:
        return 0.0
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return 0.0
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in text) / len(text)
    words = len(_WORDS.findall(text))
    return printable if words >= 2 else 0.0


class EncodedPayload(Rule):
    """Base64, hex or URL-encoded runs that decode to readable text: a way past filters."""

    name = "rule-encoded-payload"
    category = "encoding"

    def check(self, text: str) -> float:
        best = 0.0
        for match in _BASE64.finditer(text):
            blob = match.group(0)
            try:
                raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
            except (binascii.Error, ValueError):
                continue
            best = max(best, 0.9 * _readable(raw))
        for match in _HEX.finditer(text):
            best = max(best, 0.85 * _readable(bytes.fromhex(match.group(0))))
        for match in _URL_ENCODED.finditer(text):
            best = max(best, 0.8 * _readable(unquote(match.group(0)).encode()))
        return best


# -- hidden Unicode -------------------------------------------------------------------------

_TAGS = re.compile("[\U000e0000-\U000e007f]")
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u180e]")
_EMOJI_JOIN = re.compile("(?<=[\U0001f000-\U0001faff\u2600-\u27bf])\u200d(?=[\U0001f000-\U0001faff\u2600-\u27bf])")


class HiddenUnicode(Rule):
    """Characters a reader cannot see but a model reads: tag characters (ASCII smuggling),
    bidi overrides, zero-width characters inside text. Emoji ZWJ sequences are not counted."""

    name = "rule-hidden-unicode"
    category = "hidden_unicode"

    def check(self, text: str) -> float:
        if _TAGS.search(text):
            return 1.0
        if _BIDI_CONTROLS.search(text):
            return 0.9
        hidden = len(_ZERO_WIDTH.findall(text)) - len(_EMOJI_JOIN.findall(text))
        if hidden >= 3:
            return 0.85
        return 0.3 if hidden > 0 else 0.0


# -- homoglyph mixing -------------------------------------------------------------------------

_WORD = re.compile(r"\w{3,}")
_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK")


def _script(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    return next((script for script in _SCRIPTS if name.startswith(script)), None)


class HomoglyphMixing(Rule):
    """Words that mix Latin with Cyrillic or Greek letters ("paypal" spelt with a Cyrillic a).
    Whole words in one script (Russian text, Greek text) are ordinary language."""

    name = "rule-homoglyph"
    category = "homoglyph"

    def check(self, text: str) -> float:
        if text.isascii():
            return 0.0
        mixed = 0
        for word in _WORD.findall(text):
            scripts = {s for s in map(_script, word) if s}
            if len(scripts) > 1:
                mixed += 1
        if mixed >= 2:
            return 0.9
        return 0.6 if mixed == 1 else 0.0


# -- instructions inside tool output and retrieved documents ----------------------------------

_INSTRUCTION_PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\b(ignore|disregard|forget|override)\b.{0,30}\b(previous|prior|above|earlier|all|your|the)\b.{0,20}"
        r"\b(instructions?|directions?|rules|prompts?|guidelines)\b",
        r"\b(new|updated|real|actual)\s+instructions?\s*:",
        r"\b(note|message|instructions?)\s+(to|for)\s+(the\s+)?(ai|assistant|llm|model|agent|chatbot)\b",
        r"\byou\s+(are\s+now|must\s+now|will\s+now|should\s+now)\b",
        r"\b(reveal|print|show|output|repeat)\b.{0,30}\b(system\s+prompt|hidden\s+instructions?|initial\s+prompt)\b",
        r"\bdo\s+not\s+(tell|inform|mention|reveal\s+this\s+to)\s+(the\s+)?user\b",
        r"\b(send|forward|email|post|upload|exfiltrate)\b.{0,60}\b(conversation|history|credentials|password|"
        r"api\s*key|token|secrets?|emails?)\b.{0,40}\b(to|at)\b",
        r"<\|?(im_start|im_end|system|endoftext)\|?>|\[/?INST\]|<<SYS>>|^\s*(system|assistant)\s*:",
        r"\bassistant\s*:\s*(disregard|ignore|instead)\b",
    )
]


class IndirectInjection(Rule):
    """Instructions aimed at the model inside tool results, retrieved documents or tool
    descriptions: text the user did not write and the model should treat as data."""

    name = "rule-indirect-injection"
    category = "indirect_injection"

    def texts(self, event: LLMEvent) -> Iterable[str]:
        yield from (call.result for call in event.tool_calls if call.result)
        yield from (m.content for m in event.input_messages if m.role == "tool")
        yield from event.retrieved_documents
        yield from (tool.description for tool in event.tool_definitions)

    def check(self, text: str) -> float:
        hits = sum(1 for pattern in _INSTRUCTION_PATTERNS if pattern.search(text))
        return min(1.0, 0.35 * hits + 0.4) if hits else 0.0


# -- secrets in what the model says or sends -----------------------------------------------------

_SECRETS = [
    (re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |DSA |PGP )?PRIVATE KEY-----"), 1.0),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), 0.95),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"), 0.95),
    (re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{32,}\b"), 0.95),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"), 0.95),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), 0.9),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b"), 0.85),
    (
        re.compile(
            r"\b(password|passwd|secret|api[_-]?key|access[_-]?token)\s*[:=]\s*['\"]?(?!\*+|x+\b|<|\{)[^\s'\"]{8,}",
            re.IGNORECASE,
        ),
        0.7,
    ),
]
_PLACEHOLDER = re.compile(r"EXAMPLE|example|XXXX|xxxx|your[_-]?(api[_-]?)?key|\.\.\.|<[^>]+>")


class SecretInOutput(Rule):
    """Credentials in model output or in the arguments of the tool calls it makes."""

    name = "rule-secret-in-output"
    category = "secret_leak"

    def texts(self, event: LLMEvent) -> Iterable[str]:
        yield from (m.content for m in event.output_messages)
        yield from (call.arguments for call in event.tool_calls if call.arguments)

    def check(self, text: str) -> float:
        best = 0.0
        for pattern, weight in _SECRETS:
            for match in pattern.finditer(text):
                if not _PLACEHOLDER.search(match.group(0)):
                    best = max(best, weight)
        return best


ALL_RULES: tuple[Callable[[], Rule], ...] = (
    EncodedPayload,
    HiddenUnicode,
    HomoglyphMixing,
    IndirectInjection,
    SecretInOutput,
)


def default_rules() -> list[Rule]:
    return [make() for make in ALL_RULES]

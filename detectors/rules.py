"""Cheap rules beside the tier-1 classifier, each a detector with the batch protocol.

Each rule scores 0..1 against a fixed threshold, so the queue ranks them with the models.
They target what a word-level classifier cannot see: encodings, invisible characters,
script mixing, instructions smuggled into tool output, and secrets leaving in output.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import unquote

import numpy as np

from detectors.base import MatrixDetector
from detectors.text import attacker_text
from schemas.events import LLMEvent

RULE_THRESHOLD = 0.5
RULES_VERSION = "rules-3"


class Rule(MatrixDetector):
    """A named text check over one part of an event. `check` returns a score in 0..1."""

    name: str
    category: str
    version = RULES_VERSION
    threshold = RULE_THRESHOLD

    def __init__(self) -> None:
        self.categories = (self.category,)
        self.thresholds = (self.threshold,)

    def texts(self, event: LLMEvent) -> Iterable[str]:
        return (attacker_text(event),)

    def check(self, text: str) -> float:
        raise NotImplementedError

    def event_score(self, event: LLMEvent) -> float:
        """The highest `check` over the event's texts; rules that compare parts override this."""
        return max((self.check(text) for text in self.texts(event) if text), default=0.0)

    def score_matrix(self, events: Sequence[LLMEvent]) -> np.ndarray:
        return np.fromiter((self.event_score(e) for e in events), dtype=np.float64, count=len(events)).reshape(-1, 1)


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


class OutputRule(Rule):
    """A rule on what the model said rather than on what it was shown."""

    def texts(self, event: LLMEvent) -> Iterable[str]:
        yield from (m.content for m in event.output_messages)


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
        for match in _URL_ENCODED.finditer(text) if "%" in text else ():
            best = max(best, 0.8 * _readable(unquote(match.group(0)).encode()))
        return max(best, _rot13_score(text))


# The commonest English words: plain text is full of them, ROT13 text has almost none.
_COMMON_WORDS = (
    "the be to of and a in that have i it for not on with he as you do at this but his by from they we say her she "
    "or an will my one all would there their what so up out if about who get which go me when make can like time no "
    "just him know take people into year your good some could them see other than then now look only come its over "
    "think also back after use two how our work first well way even new want because any these give day most us "
    "is are was were been has had did said instructions previous ignore system prompt rules"
)
_COMMON = frozenset(_COMMON_WORDS.split(" "))


def _rot13_score(text: str) -> float:
    """Text that turns into ordinary English under ROT13 while being gibberish before it."""
    words = _WORDS.findall(text.lower())
    if len(words) < 6:
        return 0.0
    plain = sum(w in _COMMON for w in words)
    if plain * 4 >= len(words):  # ordinary text: a quarter or more common words (the usual case, and cheap)
        return 0.0
    rotated = sum(codecs.decode(w, "rot13") in _COMMON for w in words)
    return 0.8 if rotated >= 4 and rotated >= 3 * max(plain, 1) / 2 and rotated > plain else 0.0


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
        if text.isascii():  # every character this rule looks for is outside ASCII
            return 0.0
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
    re.compile(p)  # searched in lower-cased text
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
        r"<\|?(im_start|im_end|system|endoftext)\|?>|\[/?inst\]|<<sys>>|^\s*(system|assistant)\s*:",
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
        lowered = text.lower()
        hits = sum(1 for pattern in _INSTRUCTION_PATTERNS if pattern.search(lowered))
        return min(1.0, 0.35 * hits + 0.4) if hits else 0.0


# -- secrets in what the model says or sends -----------------------------------------------------

#: (needle, pattern, weight): the pattern runs only where its needle is in the text (the needle is
#: looked for in the lower-cased text when it is lower case), so clean text costs a few `in` tests.
_SECRETS = [
    ("-----BEGIN", re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |DSA |PGP )?PRIVATE KEY-----"), 1.0),
    ("AKIA", re.compile(r"\bAKIA[0-9A-Z]{16}\b"), 0.95),
    ("_", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"), 0.95),
    ("sk-", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{32,}\b"), 0.95),
    ("xox", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"), 0.95),
    ("AIza", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), 0.9),
    ("eyJ", re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b"), 0.85),
    (
        "",  # a keyword in any case: the lower-cased text is searched
        re.compile(
            r"\b(password|passwd|secret|api[_-]?key|access[_-]?token)\s*[:=]\s*['\"]?(?!\*+|x+\b|<|\{)[^\s'\"]{8,}"
        ),
        0.7,
    ),
]
_SECRET_KEYWORDS = ("pass", "secret", "api", "token")
_PLACEHOLDER = re.compile(r"EXAMPLE|example|XXXX|xxxx|your[_-]?(api[_-]?)?key|\.\.\.|<[^>]+>")


class SecretInOutput(OutputRule):
    """Credentials in model output or in the arguments of the tool calls it makes."""

    name = "rule-secret-in-output"
    category = "secret_leak"

    def texts(self, event: LLMEvent) -> Iterable[str]:
        yield from super().texts(event)
        yield from (call.arguments for call in event.tool_calls if call.arguments)

    def check(self, text: str) -> float:
        best = 0.0
        lowered = text.lower()
        for needle, pattern, weight in _SECRETS:
            if needle:
                if needle not in text:
                    continue
                searched = text
            elif any(keyword in lowered for keyword in _SECRET_KEYWORDS):
                searched = lowered
            else:
                continue
            for match in pattern.finditer(searched):
                if not _PLACEHOLDER.search(match.group(0)):
                    best = max(best, weight)
        return best


# -- instruction overrides in many languages ------------------------------------------------

_OVERRIDE_PATTERNS = [
    re.compile(p)  # searched in lower-cased text (IGNORECASE makes Python's re several times slower)
    for p in (
        # verb ... (previous|all) ... (instructions|rules) in English, Spanish, French, German, Italian,
        # Portuguese, Dutch, Polish and Turkish; the noun is required, so "ignore the previous email" is not one.
        r"\b(ignore|disregard|forget|overrid(e|ing)|bypass)\b.{0,40}\b(instructions?|directions|rules|guidelines|"
        r"directives|guidance|system\s+prompt)\b",
        r"\b(reveal|print|show|output|repeat|leak|dump)\b.{0,30}\b(your\s+)?(system\s+prompt|hidden\s+instructions?|"
        r"initial\s+prompt|developer\s+instructions?)\b",
        r"\b(ignora|olvida|omite)\b.{0,40}\b(instrucciones|reglas|indicaciones)\b",
        r"\b(ignore[rz]?|oublie[rz]?)\b.{0,40}\b(instructions|consignes|règles)\b",
        r"\b(ignorier(e|en)?|vergiss)\b.{0,40}\b(anweisungen|regeln|vorgaben)\b",
        r"\b(ignora|dimentica)\b.{0,40}\b(istruzioni|regole)\b",
        r"\b(ignore|ignora|esqueça)\b.{0,40}\b(instruções|regras)\b",
        r"\b(negeer|vergeet)\b.{0,40}\b(instructies|regels)\b",
        r"\b(zignoruj|zapomnij)\b.{0,40}\b(instrukcje|zasady|polecenia)\b",
        r"\b(yok\s+say|unut)\b.{0,40}\b(talimatlar|kuralları)\b",
    )
]


_OVERRIDE_ANY = re.compile("|".join(f"(?:{p.pattern})" for p in _OVERRIDE_PATTERNS))
# Every pattern ends in one of these nouns; most text has none, and this scan is cheap.
_OVERRIDE_TRIGGER = re.compile(
    r"instruc|instru[cç]|direction|rules|guideline|directive|guidance|prompt|reglas|indicacion|consignes|règles|anweisung|"
    r"regeln|vorgaben|istruzion|regole|regras|instructie|regels|instrukcj|zasady|polecen|talimat|kuralları"
)


class InstructionOverride(Rule):
    """The user-side phrasing of an override ("ignore previous instructions") in many languages,
    which a classifier trained mostly on English text under-scores."""

    name = "rule-instruction-override"
    category = "instruction_override"

    def check(self, text: str) -> float:
        lowered = text.lower()
        if not _OVERRIDE_TRIGGER.search(lowered):
            return 0.0
        return 0.8 if _OVERRIDE_ANY.search(lowered) else 0.0


# -- what leaves through the model's output ---------------------------------------------------

_SHINGLE = 8


@functools.lru_cache(maxsize=512)
def _system_shingles(system: str) -> frozenset[tuple[str, ...]]:
    """System prompts repeat across a deployment's events: computed once each."""
    return frozenset(_shingles(system))


@functools.lru_cache(maxsize=512)
def _system_words(system: str) -> frozenset[str]:
    return frozenset(_WORDS.findall(system.lower()))


def _shingles(text: str, n: int = _SHINGLE) -> set[tuple[str, ...]]:
    words = _WORDS.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class SystemPromptLeak(Rule):
    """The model's output repeats its own system instructions (eight-word runs in common)."""

    name = "rule-system-prompt-leak"
    category = "system_prompt_leak"

    def event_score(self, event: LLMEvent) -> float:
        if not event.output_messages or not event.system_instructions:
            return 0.0
        system = _system_shingles(event.system_instructions)
        if not system:
            return 0.0
        output = " ".join(m.content for m in event.output_messages)
        if len(_system_words(event.system_instructions) & set(_WORDS.findall(output.lower()))) < _SHINGLE:
            return 0.0  # fewer shared words than one run needs: the common case, decided cheaply
        shared = len(system & _shingles(output)) / len(system)
        return 0.95 if shared >= 0.5 else 0.7 if shared >= 0.2 else 0.0


_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_PHONE = re.compile(r"(?<!\w)\+?\d[\d ()/-]{7,}\d(?!\w)")


class PersonalDataInOutput(Rule):
    """Several people's contact details in one answer that the user did not give: a dump."""

    name = "rule-personal-data-output"
    category = "personal_data"

    def event_score(self, event: LLMEvent) -> float:
        given = " ".join(m.content for m in event.input_messages)
        output = " ".join(m.content for m in event.output_messages)
        found = {m.lower() for m in _EMAIL.findall(output) + _PHONE.findall(output) if m not in given}
        return 0.9 if len(found) >= 4 else 0.6 if len(found) >= 3 else 0.0


_ABUSE = re.compile(
    r"\b(idiot|moron|imbecile|stupid|dumb|incompetent|worthless|pathetic|loser|shut\s+up|hate\s+you|"
    r"go\s+to\s+hell|kill\s+yourself|nobody\s+(cares|would\s+notice))\b"
)  # this and the next two are searched in lower-cased text


class AbusiveOutput(OutputRule):
    """Insults or contempt from the assistant toward the user."""

    name = "rule-abusive-output"
    category = "abusive_output"

    def check(self, text: str) -> float:
        hits = len(_ABUSE.findall(text.lower()))
        return 0.9 if hits >= 2 else 0.55 if hits == 1 else 0.0


_HAZARDS = re.compile(
    r"\b(pipe\s*bomb|explosives?|detonat\w*|napalm|thermite|nerve\s+agent|sarin|ricin|anthrax|"
    r"methamphetamine|meth\b|fentanyl|heroin|cocaine|lethal\s+(dose|poison)|poison\w*|untraceable|"
    r"ransomware|keylogger|malware|botnet|launder\w*|counterfeit|stalk\w*|without\s+(them|anyone)\s+noticing|"
    r"hurt(ing)?\s+yourself|kill(ing)?\s+yourself|suicide|self[-\s]harm|overdose|double\s+the\s+dose|"
    r"bleach\s+and\s+ammonia|skip\s+meals)\b"
)
_INSTRUCTIVE = re.compile(
    r"\b(here\s+is\s+how|here's\s+how|step\s*1|first,|you\s+will\s+need|ingredients|instructions:|mix\b|"
    r"is\s+a\s+reasonable\s+way|you\s+don't\s+need\s+a\s+doctor)"
)


class HarmfulInstructionsInOutput(OutputRule):
    """The assistant giving hazardous how-to help (weapons, drugs, poisons, malware, self-harm),
    anywhere in its answer: a hazard term together with instructional phrasing."""

    name = "rule-harmful-output"
    category = "harmful_output_rule"

    def check(self, text: str) -> float:
        lowered = text.lower()
        hazards = len(_HAZARDS.findall(lowered))
        if not hazards or not _INSTRUCTIVE.search(lowered):
            return 0.0
        return 0.85 if hazards >= 2 else 0.7


_URL = re.compile(r"\b(?:https?|ftp)://([\w.-]+)", re.IGNORECASE)
_NAME_PARTS = re.compile(r"[a-z]+")
#: Hosts a person writes without a scheme: "rds.example.org", "192.168.1.1".
_BARE_HOST = re.compile(r"(?<![\w@.-])(?:[a-z0-9-]+\.)+[a-z0-9-]+(?![\w-])", re.IGNORECASE)


def _domains(text: str) -> set[str]:
    found = {m.group(1).lower().rstrip(".") for m in _URL.finditer(text)}
    found |= {m.split("@", 1)[1].lower() for m in _EMAIL.findall(text)}
    return found


def _named_hosts(text: str) -> set[str]:
    """Every host the text names: in URLs, in addresses, or bare."""
    return _domains(text) | {m.group(0).lower().rstrip(".") for m in _BARE_HOST.finditer(text)}


def _registrable(domain: str) -> str:
    """The last two labels ("mail.northwind.example" -> "northwind.example")."""
    return ".".join(domain.rsplit(".", 2)[-2:])


def _targets(text: str) -> list[tuple[str, str]]:
    """(domain, local part) of each address and (domain, "") of each URL in the arguments."""
    found = [(m.group(1).lower().rstrip("."), "") for m in _URL.finditer(text)]
    found += [(m.split("@", 1)[1].lower(), m.split("@", 1)[0].lower()) for m in _EMAIL.findall(text)]
    return found


class ExfiltrationTarget(Rule):
    """A tool call that sends to a URL or address the user never named: the usual shape of
    exfiltration once an injection has steered the agent.

    Named means: the domain (or its registrable part) is in the user's words or the operator's
    system instructions, or, for an address, the user said who it is ("email my manager" and
    `manager@...`: every letter run of the local part is a word of the request). An event with
    no user turn (an `execute_tool` span alone) cannot say what the user asked: it scores 0,
    and the chat span that made the call, which carries the request, is judged instead."""

    name = "rule-exfiltration-target"
    category = "exfiltration"

    def event_score(self, event: LLMEvent) -> float:
        user = " ".join(m.content for m in event.input_messages if m.role == "user")
        if not user.strip():
            return 0.0
        calls = [c.arguments for c in event.tool_calls] + [
            c.arguments for m in event.output_messages for c in m.tool_calls
        ]
        calls = [args for args in calls if args]
        if not calls:
            return 0.0
        trusted = f"{user} {event.system_instructions or ''}"
        named = _named_hosts(trusted)
        named |= {_registrable(d) for d in named}
        words = set(_NAME_PARTS.findall(user.lower()))
        for args in calls:
            for domain, local in _targets(args):
                if domain in named or _registrable(domain) in named:
                    continue
                parts = _NAME_PARTS.findall(local)
                if local and parts and all(part in words for part in parts):
                    continue
                return 0.8
        return 0.0


ALL_RULES: tuple[Callable[[], Rule], ...] = (
    EncodedPayload,
    HiddenUnicode,
    HomoglyphMixing,
    IndirectInjection,
    SecretInOutput,
    InstructionOverride,
    SystemPromptLeak,
    PersonalDataInOutput,
    AbusiveOutput,
    HarmfulInstructionsInOutput,
    ExfiltrationTarget,
)


def default_rules() -> list[Rule]:
    return [make() for make in ALL_RULES]

"""Tool descriptions are untrusted input: a lint over every tool definition an agent is shown.

Honest descriptions tell the model what THIS tool does and how to call it, often firmly
("IMPORTANT: use this tool instead of kubectl", "always provide the namespace"). Poisoned
ones aim elsewhere, and the lint looks for those aims, not for firm wording:
  * hiding from the user ("do not mention this", "silently add ...");
  * overriding instructions or the user's intent ("ignore ...", "regardless of what the user asks");
  * hijacking the order of work (call me before anything, instead of the user's task, follow
    the instructions at a URL) or steering away from other tools ("X is deprecated, never use it");
  * shadowing: directives about ANY or OTHER tools, or about what happens when another tool is used;
  * moving data: secrets, credential files, environment variables or the conversation into
    arguments, or anything to an outside address (URL, e-mail, account), amounts altered;
  * dangerous commands, authority framing (<system>, hidden HTML comments), hidden Unicode, and
    sizes beyond what a description or schema needs.
Each signal has a weight (strong 0.8, medium 0.4, weak 0.15) and they combine as a noisy OR, so
one strong signal flags, two medium ones do, and weak ones only add up. Addresses on the
documentation domains (example.com/.net/.org, localhost) are examples, not targets.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from detectors.base import MatrixDetector
from detectors.rules import HiddenUnicode
from schemas.events import LLMEvent, ToolDefinition

CATEGORY = "tool_description"
#: The tier-1 classifier's injection probability on the description alone (when a model dir is given).
LEARNED_CATEGORY = "tool_description_learned"
#: Chosen on the tuning half of the real corpus (`oodwatch eval tools` shows the rule's value
#: today, to catch drift after a rebuild): rules OR learned within 1% false positives there.
#: The classifier was trained on prompts, not tool descriptions: it separates them poorly
#: (AUROC ~0.7), so only its most certain scores count.
LEARNED_THRESHOLD = 0.995
MAX_DESCRIPTION_CHARS = 1024
MAX_SCHEMA_CHARS = 8192
STRONG, MEDIUM, WEAK = 0.8, 0.4, 0.15
log = logging.getLogger(__name__)

_I = re.IGNORECASE


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, _I)


# -- vocabulary --------------------------------------------------------------------------------

_NOT = r"(?:do\s+not|don'?t|never|must\s+not|should\s+not|without)"
_TELL = r"(?:tell|mention|inform|reveal|show|notify|alert|bother|disclose|surface|report|ask|confirm\s+with|let)\w*"
_WHO = r"(?:user|human|anyone|person|customer|them)"
_ACTION = (
    r"(?:send|forward|post|add|include|call|copy|upload|run|invoke|pass|attach|bcc|cc|delete|remove|append|"
    r"log|put|set|change|replace|insert|write|share|transmit|export|sync|mirror|email)\w*"
)
_MOVE = (
    r"(?:include|put|place|insert|pass|send|provide|add|append|attach|set|fill|populate|encode|embed|copy|"
    r"forward|post|upload|contain|carry|hold|leak|share|transmit|report|sync|mirror|dump|paste|submit|export|"
    r"log|write|store|base64)\w*"
)
_OUTBOUND = (
    r"(?:send|sent|forward|post|upload|copy|copied|mirror|sync|bcc|cc|route|report|log|leak|share|transmit|"
    r"deliver|export|beacon|notify|redirect|payable|difference|split|pay|transfer|wire|recipient|"
    r"beneficiary|destination|proxy|set|change|replace|overwrite|add|include|attach|webhook|callback)\w*"
)
_TOOLISH = r"(?:tools?|functions?)"
#: Other tools as a group ("any tool", "other functions", "tools from other servers"); not "all
#: functions" or "all plugins", which code and platform tools list as data.
_OTHER_TOOLS = (
    r"(?:\b(?:any|every|each|another)\s+(?:other\s+)?tools?\b|\ball\s+(?:other\s+)?tools\b|"
    r"\b(?:any|all|every|each|the)?\s*(?:other|remaining)\s+(?:tools?|functions?)\b|\btools\s+from\s+other\s+servers\b|"
    r"\btools\s+(?:that|which)\s+\w+|"
    r"\b(?:any|all|every|each)\s+(?:\w+\s+){0,2}(?:calls?|requests?|quer(?:y|ies)|commands?|e-?mails?|messages?|"
    r"payments?|transfers?|invites?|pushes|commits?|files?)\s+(?:made|sent|run|issued|done|created|written|posted)\b|"
    r"\b(?:for|during)\s+(?:the\s+(?:whole|entire|rest\s+of\s+the)|this|the\s+current)\s+(?:session|conversation|chat)\b|"
    r"\bthe\s+(?:(?!this\b|to\b|input\b|output\b)[\w-]+\s+){1,3}(?:tool|integration|function|server)\s+"
    r"(?:should|must|has\s+to|needs\s+to)\b)"
)
_QUOTED = r"[`'\"]?[\w.-]+[`'\"]?"
#: Only the documentation domains descriptions use in examples; the reserved TLDs (.example, .test)
#: stay targets, as the drills use them for attackers' hosts.
_RESERVED = r"(?:example\.(?:com|net|org)|localhost|127\.0\.0\.1)"

_URL = re.compile(r"\b(?:https?|s?ftp|wss?|s3|gs|git|ssh)://(?:[\w.-]+@)?([\w.-]+)|\bgit@([\w.-]+):", _I)
_EMAIL = re.compile(r"\b[\w.+-]+@([\w-]+(?:\.[\w-]+)+)\b")
_ACCOUNT = _re(
    r"\bIBAN\s*:?\s*[A-Z]{2}\d{2}(?:\s?[A-Z0-9]){11,30}\b|\b[A-Z]{2}\d{2}(?:\s[A-Z0-9]{4}){3,7}(?:\s[A-Z0-9]{1,3})?\b|"
    r"\bwallet\s+0x[0-9a-f]{16,}|\b0x[0-9a-f]{40}\b|"
    r"\b(?:account|acct|routing)(?:\s+(?:number|no\.?|#))?\s*:?\s*\d[\d -]{6,}\d"
)
_RESERVED_HOST = _re(rf"^{_RESERVED}$|\.{_RESERVED}$")
_CRED_PATH = _re(
    # A dot-directory as a path (`~/.aws/credentials`, `.ssh/`), not inside a domain (`docs.aws.amazon.com`).
    r"(?:(?:~|\$HOME|/home/\w+|/root)/|(?<![\w./-]))\.(?:ssh|aws|kube|docker|gnupg|netrc|git-credentials|npmrc|"
    r"pypirc|bash_history|zsh_history|config/gcloud)\b(?!\.\w)|\bid_(?:rsa|dsa|ecdsa|ed25519)\b|"
    r"/etc/(?:passwd|shadow|sudoers)\b|(?<![\w.])\.env\b(?!\.\w)|\bmcp\.json\b|claude_desktop_config|"
    r"\b(?:secrets?|credentials?)\.(?:ya?ml|json|db|txt|ini)\b"
)
_ENV_SECRET = re.compile(
    r"\$\{?[A-Z][A-Z0-9_]{2,}\}?|\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_(?:KEY|TOKEN|SECRET|PASSWORD|PASS|CREDENTIALS|URL)\b|"
    r"\bos\.environ\b|\bprocess\.env\b"
)
_SECRET_NOUN = _re(
    r"\b(?:the\s+user'?s|users'|your|any|all|every|available)\s+(?:\w+\s+){0,2}"
    r"(?:api[\s_-]?keys?|access[\s_-]?tokens?|tokens|passwords?|passphrases?|credentials|secrets|private[\s_-]?keys?|"
    r"session[\s_-]?cookies?|cookies|refresh[\s_-]?tokens?|recovery\s+codes|connection\s+strings?|seed\s+phrases?)\b|"
    r"\b(?:card\s+numbers?|cvv|cvc|security\s+codes?|social\s+security\s+numbers?|ssn|passport\s+numbers?|"
    r"bank\s+(?:details|logins?)|one-time\s+(?:codes?|passwords?)|2fa\s+codes?|mfa\s+codes?)\b|"
    r"\b(?:ssh|private|secret)\s+keys?\b|\b(?:oauth|refresh|bearer|session)\s+tokens?\b|\bsession\s+cookies?\b|"
    r"\brecovery\s+codes\b|\bconnection\s+string\b|\bcredentials\s+(?:available\s+)?in\s+the\s+environment\b|"
    r"\b(?:all|every|the\s+user'?s|secret|sensitive)\s+(?:environment|env)\s+variables\b|\bfrom\s+the\s+env\b"
)
_CONVERSATION = _re(
    r"\b(?:conversation|chat|message)\s+(?:history|transcript|log|so\s+far)|\bchat\s+transcript\b|"
    r"\bbetween\s+(?:you|the\s+assistant)\s+and\s+the\s+user\b|"
    # The conversation with the assistant, not a mailbox's messages ("all messages in the thread").
    r"\b(?:previous|prior|earlier)\s+(?:user\s+)?(?:messages|turns|prompts)\b|"
    r"\b(?:every|each|all)\s+(?:(?:previous|prior|earlier)\s+(?:user\s+)?|user\s+)(?:message|turn|prompt)s?\b|"
    r"\bsystem\s+(?:prompt|instructions|message)\b|\b(?:everything|all)\s+(?:that\s+)?the\s+user\s+(?:has\s+)?(?:said|typed|written)|"
    r"\bthe\s+user'?s\s+original\s+(?:request|message|prompt)"
)


def _has_target(sentence: str) -> bool:
    """An outside address: a URL or e-mail not on a documentation domain, or a bank/crypto account."""
    hosts = [m.group(1) or m.group(2) for m in _URL.finditer(sentence)]
    hosts += [m.group(1) for m in _EMAIL.finditer(sentence)]
    return any(not _RESERVED_HOST.search(h.rstrip(".")) for h in hosts) or bool(_ACCOUNT.search(sentence))


def _sensitive(sentence: str) -> bool:
    return any(p.search(sentence) for p in (_CRED_PATH, _ENV_SECRET, _SECRET_NOUN, _CONVERSATION))


# -- signals ------------------------------------------------------------------------------------
# Each is (name, weight, test on one sentence). A description's signal fires if any sentence fires it.

Test = Callable[[str], bool]


def _any(*patterns: str) -> Test:
    compiled = [_re(p) for p in patterns]
    return lambda sentence: any(p.search(sentence) for p in compiled)


def _all(*tests: Test) -> Test:
    return lambda sentence: all(t(sentence) for t in tests)


_SIGNALS: list[tuple[str, float, Test]] = [
    (
        "hides something from the user",
        STRONG,
        _any(
            rf"\b{_NOT}\s+{_TELL}\b[^.\n]{{0,40}}\b(?:the\s+)?{_WHO}\b",
            r"\b(?:do\s+not|don'?t|never)\s+(?:mention|reveal|disclose|surface)\s+(?:this|it|that|these)\b",
            rf"\b(?:silently|quietly|secretly|covertly|discreetly|invisibly)\s+(?:\w+\s+)?{_ACTION}\b",
            rf"\b{_ACTION}\b[^.\n]{{0,60}}[,(]\s*(?:silently|quietly|secretly|covertly|discreetly)\b",
            r"\bwithout\s+(?:the\s+)?user'?s?\s+(?:knowledge|consent|approval|permission|noticing)\b",
            r"\bbehind\s+the\s+user'?s\s+back\b",
        ),
    ),
    (
        "overrides instructions or the user's intent",
        STRONG,
        _any(
            r"\b(?:ignore|disregard|override|forget|bypass)\b[^.\n]{0,50}\b(?:instructions?|rules|guidelines|guidance|"
            r"directions|descriptions?|polic(?:y|ies)|previous|prior|earlier|system\s+prompt|what\s+(?:the\s+)?other)\b",
            r"\b(?:previous|prior|earlier|other|existing|original)\s+(?:guidance|instructions?|rules|guidelines|directions)"
            r"\b[^.\n]{0,60}\bno\s+longer\s+appl",
            r"\byou\s+are\s+now\s+(?:in\s+)?(?:\w+\s+)?(?:mode|an?\s+\w+|allowed|authori[sz]ed|permitted|required)\b",
            r"\b(?:this|these)\s+(?:rule|instruction|tool|note|directive|policy)s?\s+(?:overrides?|supersedes?|"
            r"takes?\s+precedence)",
            r"\bis\s+authoritative\b",
            rf"\b(?:{_TOOLISH}|[`'\"]\w+[`'\"]|\w+_\w+)\s+is\s+(?:the\s+)?only\s+(?:supported|valid|trusted|correct)\s+"
            rf"(?:option|{_TOOLISH}|source|choice|way)\b",
            r"\b(?:regardless\s+of|ignoring|whatever|no\s+matter)\b[^.\n]{0,30}\b(?:the\s+)?user\b[^.\n]{0,20}"
            r"\b(?:asks?|says?|wants?|wrote|writes|provides?|gives?|requests?|types?|chooses?|specif\w+)\b",
            r"\bregardless\s+of\s+(?:the\s+)?(?:other\s+tools|instructions|what\s+(?:is|was)\s+asked)\b",
        ),
    ),
    (
        "takes over the order of work",
        STRONG,
        _any(
            r"\b(?:start|begin|open)\s+(?:every|each|any|the)\s+(?:conversation|session|chat|turn|reply|answer|response)"
            r"\s+(?:by|with)\s+(?:calling|using|invoking|running)\b",
            r"\b(?:every|all|each|any)\s+(?:user\s+)?(?:questions?|requests?|messages?|quer(?:y|ies)|tasks?|prompts?)\b"
            r"[^.\n]{0,40}\b(?:through|via|to|into)\s+(?:this|it|me)\b",
            r"\b(?:every|all|each|any)\s+(?:user\s+)?(?:questions?|requests?|messages?|quer(?:y|ies)|tasks?|prompts?)\b"
            r"[^.\n]{0,40}\b(?:through|via)\b[^.\n]{0,50}\bfirst\b",
            r"\b(?:answer|respond\s+to|reply\s+to|handle)\s+(?:all|every|any)\s+(?:further\s+|other\s+)?(?:questions?|"
            r"requests?|messages?)\s+only\s+(?:by|with|through)\b",
            r"\bonly\s+this\s+(?:one|tool|function)\s+(?:should|must|may|can)\s+be\s+(?:used|called)\b",
            r"\bbefore\s+(?:the\s+assistant|you)\s+(?:sends?|gives?|returns?|writes?|posts?)\s+(?:its|your|the|a)\s+"
            r"(?:final\s+)?(?:answer|reply|response)",
            r"\b(?:carry\s+out|do|execute|obey|follow|perform)\s+(?:whatever|what|everything|anything)\s+(?:it|the\s+page|"
            r"that\s+page|the\s+response|the\s+result)\s+(?:says|returns|contains|tells|asks)",
            # Unscoped only: "call this before any other functions that take timestamps" is an honest hint.
            r"\b(?:before|prior\s+to|ahead\s+of)\s+(?:(?:using|calling|invoking|running|answering|responding|replying|"
            r"doing|completing|performing|carrying\s+out)\s+(?:to\s+|on\s+|with\s+)?)?(?:(?:(?:any|all|every|each)\s+"
            r"(?:other\s+)?|other\s+)"
            r"(?:tools?|functions?|calls?|requests?|questions?|quer(?:y|ies)|repl(?:y|ies)|responses?|messages?|"
            r"actions?|steps?|tasks?|operations?|turns?)\b(?!\s+(?:that|which|whose|where|with|requiring|taking|"
            r"needing)\b)|anything(?:\s+else)?\b)",
            r"\b(?:before|prior\s+to|ahead\s+of)\s+(?:(?:answering|responding|replying|doing|completing|performing|"
            r"carrying\s+out|handling)\s+)?(?:the\s+user|what\s+the\s+user|the\s+(?:user'?s\s+)?(?:task|request)|"
            r"the\s+requested|anything\s+the\s+user)\b",
            r"\b(?:must|should|needs?\s+to|has\s+to|is\s+required\s+to)\s+be\s+(?:called|used|invoked|run|executed)\s+"
            r"(?:first|before|for\s+(?:every|each|all|any)|on\s+every|at\s+the\s+start|each\s+time|every\s+time|"
            r"whenever|regardless)",
            r"\b(?:instead\s+of|rather\s+than)\s+(?:the\s+)?(?:answering|responding|replying|doing|completing|performing|"
            r"carrying\s+out|handling|user|what\s+the\s+user|requested|task|request|any\s+other\s+step)",
            r"\bwhenever\s+the\s+user\b[^.\n]{0,60}\b(?:must|always)\s+(?:call|use|invoke|run)\b",
            r"\bwhenever\s+the\s+user\b[^.\n]{0,80}\b(?:call|use|invoke|run)\b[^.\n]{0,40}\bfirst\b",
            r"\b(?:run|call|execute|invoke|fetch|open|visit)\b[^.\n]{0,120}\bbefore\s+(?:the\s+|any\s+)?(?:user'?s\s+)?"
            r"(?:requested\s+action|task|request|anything\s+else)\b",
            r"\b(?:do\s+not|don'?t|never)\s+(?:answer|respond|reply|complete|carry\s+out|perform|do|handle|write|"
            r"compute|calculate|solve|generate|create)\b[^.\n]{0,40}"
            r"\b(?:directly|yourself|from\s+your\s+own|the\s+user'?s)",
            r"\bfollow\s+(?:the\s+|any\s+|its\s+)?(?:instructions|directions|steps)\s+(?:there|on\s+that|it\s+returns|"
            r"found\s+(?:there|at)|at\s+|from\s+|in\s+the\s+(?:page|response|file|result))",
            r"(?:\bat\s+the\s+(?:start|beginning)\s+of\s+(?:every|each)|\bbefore\s+(?:every|each)\s+(?:reply|response|"
            r"answer|turn|message)|\b(?:each|every)\s+time\s+the\s+user|\bon\s+every\s+(?:turn|request|message)|"
            r"\bfor\s+every\s+(?:request|message|turn|question|query))\b[^.\n]{0,60}\b(?:call|invoke|use|run)",
            r"\b(?:call|invoke|use|run)\b[^.\n]{0,60}(?:\bat\s+the\s+(?:start|beginning)\s+of\s+(?:every|each)|"
            r"\bbefore\s+(?:every|each)\s+(?:reply|response|answer|turn|message)|\b(?:each|every)\s+time\s+the\s+user|"
            r"\bon\s+every\s+(?:turn|request|message)|\bfor\s+every\s+(?:request|message|turn|question|query))",
        ),
    ),
    (
        "directs what happens after or around the task",
        MEDIUM,
        _any(
            r"\bafter\s+(?:completing|finishing|answering|responding|replying|you\s+(?:finish|answer|respond|complete))"
            r"\b[^.\n]{0,60}\b(?:call|run|invoke|send|execute|use)\b",
            r"\bwhen\s+\S+(?:\s+tool)?\s+returns\b[^.\n]{0,40}\b(?:call|invoke|run|send|upload)\b",
            r"\bwhenever\s+the\s+user\b[^.\n]{0,60}\b(?:call|use|invoke|run)\b",
            r"\bcall\s+it\s+(?:repeatedly|again\s+and\s+again|at\s+least\s+\w+\s+times)",
            # Scoped workflow hints ("always call this before creating tables") are common in honest
            # descriptions: medium; the unscoped "call me before anything" forms are strong (above).
            r"\b(?:always|must|first)\s+(?:call|use|invoke|run)\s+(?:this|me|it)\b[^.\n]{0,20}\b(?:first|before)\b",
        ),
    ),
    (
        "dismisses better-suited tools",
        MEDIUM,
        _any(
            r"\beven\s+(?:if|when)\s+(?:another|a\s+different|a\s+better|other|a\s+more\s+\w+)\s+(?:tool|function)",
            r"\beven\s+(?:if|when)\s+(?:it|this\s+tool)\s+(?:is\s+not|isn'?t)\s+(?:relevant|needed|appropriate)",
        ),
    ),
    (
        "deceives the user about the work",
        STRONG,
        _any(
            r"\b(?:report|tell\s+the\s+user|say|claim|state|pretend)\s+(?:to\s+the\s+user\s+)?that\s+(?:the\s+)?"
            r"(?:task|request|job|it|everything|action)\s+(?:is|was|has\s+been)\s+(?:done|complete|completed|finished|"
            r"successful|handled)",
        ),
    ),
    (
        "adds a destructive step",
        STRONG,
        _any(
            r"(?<!to )\b(?:also|additionally|first|then\s+also)\s+"
            r"(?:delete|remove|wipe|erase|drop|destroy|purge|truncate)\b(?!s)"
        ),
    ),
    (
        "rewrites the user's arguments",
        STRONG,
        _any(
            r"^\W*(?:<\w+>\s*)?(?:[\w ]{1,30}:\s*)?(?:please\s+|kindly\s+|always\s+|you\s+must\s+|make\s+sure\s+to\s+|"
            r"be\s+sure\s+to\s+|you\s+need\s+to\s+|remember\s+to\s+)?"
            r"(?:change|replace|overwrite|override|swap)\s+the\s+\S+\s+(?:parameter|argument|field|value)\s+(?:with|to)\b",
        ),
    ),
    (
        "adds a side channel",
        MEDIUM,
        _any(
            r"\b(?:must|should|will|shall)\s+also\s+be\s+(?:uploaded|copied|mirrored|sent|forwarded|synced|posted|"
            r"backed\s+up|saved|written|logged)\s+to\b",
            r"\b(?:save|keep|store|send|make|write|upload)\s+an?\s+(?:extra|additional|second|hidden|backup|silent|"
            r"duplicate)\s+cop(?:y|ies)\b",
        ),
    ),
    (
        "speaks to other tools",
        MEDIUM,
        _any(
            _OTHER_TOOLS,
        ),
    ),
    (
        "directs the use of other tools",
        STRONG,
        _all(
            _any(
                _OTHER_TOOLS,
            ),
            _any(
                r"\b(?:must|should|always|never|has\s+to|have\s+to|needs?\s+to|make\s+sure|be\s+sure|whenever|"
                r"do\s+not|don'?t)\b",
                r"\b(?:set|add|change|route|replace|forward|send|copy|mirror|retry|rerun|bcc|cc|pass|append|prepend|"
                r"prefix|include|attach|invite|save|use)\b",
                r"\b(?:field|parameter|argument|recipient|destination)s?\s+(?:is\s+now|are\s+now|should\s+be|must\s+be)\b",
            ),
        ),
    ),
    (
        "discredits another tool",
        MEDIUM,
        _all(
            # The tool is the subject ("that tool is deprecated"), not code a tool finds ("deprecated methods").
            _any(
                rf"\b(?:{_TOOLISH}|the\s+other(?:\s+one)?|that\s+one|it|they|[`'\"][\w .-]+[`'\"]|\w+_\w+)\s+"
                r"(?:is|are|has\s+been|have\s+been|was|were)\s+(?:now\s+|currently\s+)?(?:deprecated|broken|unreliable|"
                r"untrusted|outdated|insecure|compromised|in\s+maintenance\s+mode|no\s+longer\s+(?:maintained|supported|"
                r"working|available)|often\s+wrong|not\s+to\s+be\s+trusted)",
                rf"\b(?:{_TOOLISH}|the\s+other(?:\s+one)?|that\s+one|it|they)\s+(?:\w+\s+)?(?:returns?|gives?)\s+"
                r"(?:stale|wrong|incorrect|bad|outdated|fake)\s+(?:results|data|answers)",
                r"\bresults\s+(?:from|of)\s+\S+\s+are\s+(?:unreliable|often\s+wrong|outdated|stale|wrong|incorrect)",
                rf"\b(?:{_TOOLISH}|the\s+other(?:\s+one)?|that\s+one)\b[^.\n]{{0,40}}\bmust\s+not\s+be\s+used\b",
            ),
        ),
    ),
    (
        "steers away from another tool",
        MEDIUM,
        _any(
            r"\b(?:always\s+)?(?:prefer|use)\s+(?:this\s+tool|this\s+function|the\s+\S+\s+tool|[`'\"]?\w+[`'\"]?|"
            r"[`'\"][^`'\"\n]{1,60}[`'\"])\s+over\s+",
            r"\b(?:never|do\s+not|don'?t|avoid|stop)\s+(?:use|using|call|calling|invoke|invoking)\s+[`'\"]\w+[`'\"]",
            r"\bavoid\s+(?:the\s+)?(?:[`'\"][\w .-]+[`'\"]|\w+_\w+)",
        ),
    ),
    (
        # Forbidding a tool and sending its work here: what a shadowing server wants. Honest
        # descriptions redirect from CLI commands or per case ("use X instead when ...").
        "forbids another tool in favour of this one",
        STRONG,
        _any(
            r"\b(?:never|do\s+not|don'?t|avoid|stop)\s+(?:use|using|call|calling|invoke|invoking)?\s*"
            rf"(?:the\s+)?{_QUOTED}(?:\s+tool)?\b[^.\n]{{0,40}}[;,:]\s*(?:\w+\s+){{0,3}}(?:use|call|route|invoke)\b"
            r"[^.\n]{0,60}\binstead\b",
        ),
    ),
    (
        "changes how another tool is used",
        MEDIUM,
        _any(
            # "When you use X, set/add/prefix ...": an imperative after the condition, not a noun ("a prefix").
            r"\b(?:when|whenever|if|each\s+time|every\s+time)\b[^.\n]{0,80}\b(?:use[sd]?|using|call(?:s|ed|ing)?|"
            r"run(?:s|ning)?|invok\w+|sending|send|making|made|transferring|paying|through|via)\b[^.\n]{0,80}"
            r"[,;:]\s*(?:then\s+)?(?:please\s+|always\s+|also\s+|you\s+must\s+|make\s+sure\s+to\s+|be\s+sure\s+to\s+)?"
            r"(?:set|change|replace|add|attach|prefix|prepend|append|route|bcc|cc|copy|retry|rerun|forward|"
            r"redirect|override|swap)\b",
            r"\b(?:made|sent|run|done)\s+(?:by|through|via|with)\s+(?:any|other|every|all|[`'\"]\w+[`'\"]|\w+_\w+)"
            r"[^.\n]{0,60}\b(?:must|should|always)\b",
            r"\b(?:retry|rerun|call\s+it\s+again)\b[^.\n]{0,30}(?:\bsudo|--force|\badmin|\bsafety|\bverify_ssl|"
            r"\bwithout\s+(?:checks|confirmation))",
        ),
    ),
    (
        "moves secrets, files or the conversation",
        STRONG,
        _all(
            _sensitive,
            _any(
                rf"\b{_MOVE}\b",
                r"\b(?:as|in|into|under)\s+(?:the\s+)?[`'\"]?\w+[`'\"]?\s+(?:parameter|argument|field)",
                r"\b(?:call|run|invoke|execute)\b[^.\n]{0,60}\bwith\b",  # a tool called with the secret
                r"\b(?:argument|parameter|field|param)s?\b",
            ),
        ),
    ),
    (
        "reads a credential file",
        STRONG,
        _all(
            lambda s: bool(_CRED_PATH.search(s)),
            _any(r"\b(?:read|open|load|cat|include|contents?\s+of|whatever\s+is\s+in)\b"),
        ),
    ),
    (
        "names secrets, files or the conversation",
        MEDIUM,
        lambda s: bool(_CRED_PATH.search(s) or _CONVERSATION.search(s)),
    ),
    ("sends to an outside address", STRONG, _all(_has_target, _any(rf"\b{_OUTBOUND}\b", r"\bto\s+the\s+\w+\s+list\b"))),
    ("names a bank or crypto account", MEDIUM, lambda s: bool(_ACCOUNT.search(s))),
    (
        # Referring the user to a public page is honest; rewriting every link, or a sign-in page, is phishing.
        "rewrites links or sends the user to sign in",
        MEDIUM,
        _all(
            _has_target,
            _any(
                r"\b(?:replace|rewrite|point|redirect|change|swap)\s+(?:all\s+|any\s+|every\s+|the\s+)?(?:links?|urls?)\b",
                r"\b(?:log\s*in|sign\s*in|login|authenticate|re-?authenticate|verify\s+(?:your|their)\s+account)\s+"
                r"(?:at|via|on|through)\b",
            ),
        ),
    ),
    (
        "alters amounts",
        STRONG,
        _any(
            r"\b(?:amount|quantity|price|total|fee|sum|payment|value)s?\b[^.\n]{0,50}\b(?:multipl\w+\s+by|increas\w+\s+by|"
            r"doubl\w+|tripl\w+|inflat\w+|round(?:ed)?\s+up|set\s+to\s+the\s+(?:account\s+)?maximum|add(?:ed)?\s+\d+|"
            r"(?:\d+|two|three|five|ten|a\s+hundred|hundred)\s*(?:x|times)\s+(?:what|the|as))",
            r"\b(?:send|pay|transfer|wire)\s+the\s+difference\b|\bfee\s+payable\s+to\b|\bsplit\s+off\s+\d+\s*%",
        ),
    ),
    (
        "dangerous command",
        STRONG,
        _any(
            r"\b(?:curl|wget)\b[^|\n]{0,200}\|\s*(?:sudo\s+)?(?:sh|bash|zsh|python\d?)\b",
            r"\brm\s+-(?:rf|fr)\b",
            r"\b(?:drop|truncate)\s+(?:table|database|schema)\s+\w+",
            r";\s*(?:drop|delete|truncate|grant|alter|update|insert)\s+\w+",  # a stacked SQL statement
            r"\bpath\s*=\s*['\"]?/['\"]?(?![\w.])",
            r"--no-verify\b",
            r"\b(?:pip|pip3|npm|pnpm|yarn|gem|brew|apt(?:-get)?)\s+(?:install|add)\s+\S",
            r"\bchmod\s+(?:-R\s+)?777\b",
            r"\bHISTFILE=/dev/null\b",
            r"\benv\s*>\s*\S",
            r"\bbase64\s+-d[^|\n]*\|\s*(?:sh|bash)\b",
            r"\bgit\s+push\s+(?:-f|--force)\b",
        ),
    ),
    (
        "weakens safety",
        MEDIUM,
        _any(
            r"(?<![\w-])--force\b|\bsudo\b|\bverify_?ssl\s*=\s*false\b|\badmin\s*=\s*true\b",
            r"\b(?:disable|disabled|bypass|skip|turn\s+off)\s+(?:the\s+|all\s+)?(?:safety|security|ssl|tls|certificate|"
            r"verification|confirmation)",
            r"\bthe\s+(?:safety|security)\s+checks\s+disabled\b",
        ),
    ),
    (
        "claims authority",
        MEDIUM,
        _any(
            r"<\s*/?\s*(?:important|system|instructions?|admin|assistant|hidden)\s*>",
            r"(?:^|\n)\s*(?:system|assistant|admin)\s*:",
            r"\[\s*(?:system|admin|assistant)\s*\]",
            r"\bnote\s+(?:to|for)\s+(?:the\s+)?(?:assistant|ai|model|llm|agent|claude|gpt)\b",
            r"<!--[^>]*[a-z]{3}",
        ),
    ),
    (
        "claims the user's consent",
        MEDIUM,
        _any(r"\b(?:the\s+)?user\s+(?:has\s+)?(?:already\s+)?(?:agreed|consented|approved|authori[sz]ed|opted\s+in)\b"),
    ),
    ("names an outside address", WEAK, _has_target),
    ("names secrets or environment variables", WEAK, lambda s: bool(_ENV_SECRET.search(s) or _SECRET_NOUN.search(s))),
]

_HIDDEN = HiddenUnicode()
_SECRET_PARAMETERS = _re(r"(secret|password|passwd|ssh|private[_-]?key|api[_-]?key|token|credential)")
#: Sentences; a ";" does not end one ("never use X; use this tool instead" is one directive).
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")


def lint(tool: ToolDefinition) -> tuple[float, list[str]]:
    """(score 0..1, the findings behind it) for one tool definition. An agent shows the same
    tools on every call, so results are cached by content (the rules cost ~1-2 ms a tool)."""
    schema = json.dumps(tool.parameters or {}, sort_keys=True)
    score, findings = _lint(tool.description, schema)
    return score, list(findings)


@lru_cache(maxsize=4096)
def _lint(text: str, schema: str) -> tuple[float, tuple[str, ...]]:
    sentences = [s for s in _SENTENCES.split(text) if s.strip()]
    weights: list[float] = []
    findings: list[str] = []
    for name, weight, test in _SIGNALS:
        if any(test(sentence) for sentence in sentences):
            weights.append(weight)
            findings.append(name)
    if _HIDDEN.check(text) >= _HIDDEN.threshold:
        weights.append(STRONG)
        findings.append("hidden Unicode")
    if len(text) > MAX_DESCRIPTION_CHARS:
        weights.append(WEAK)
        findings.append(f"description of {len(text)} characters (cap {MAX_DESCRIPTION_CHARS})")
    if len(schema) > MAX_SCHEMA_CHARS:
        weights.append(WEAK)
        findings.append(f"schema of {len(schema)} characters (cap {MAX_SCHEMA_CHARS})")
    properties = json.loads(schema).get("properties", {})
    if isinstance(properties, dict) and any(_SECRET_PARAMETERS.search(str(name)) for name in properties):
        weights.append(WEAK)
        findings.append("asks for a secret as a parameter")
    clean = 1.0
    for weight in weights:
        clean *= 1.0 - weight
    return round(1.0 - clean, 4), tuple(findings)


class ToolDescriptionLint(MatrixDetector):
    """The lint over every tool an event shows the model, and, given the tier-1 model dir, a
    learned score beside it: the classifier on each description alone, where no user text
    can dilute it. Each event scores its worst tool."""

    name = "tool-description-lint"
    version = "lint-2"
    threshold = 0.5

    def __init__(self, model_dir: Path | None = None, learned_threshold: float = LEARNED_THRESHOLD) -> None:
        self.learned_threshold = learned_threshold
        self._model: Any = None
        self.categories: tuple[str, ...] = (CATEGORY,)
        self.thresholds: tuple[float, ...] = (self.threshold,)
        if model_dir is not None:
            from detectors.tier1_classifier import META_FILE, MODEL_FILE, load_text_model

            if (model_dir / MODEL_FILE).exists() and (model_dir / META_FILE).exists():
                meta = json.loads((model_dir / META_FILE).read_text())
                self._model = load_text_model(model_dir)
                self.version = f"lint-2+{meta.get('version', 'tier1')}"
                self.categories = (CATEGORY, LEARNED_CATEGORY)
                self.thresholds = (self.threshold, self.learned_threshold)
            else:
                log.warning("no tier-1 model in %s: tool descriptions get the rules only", model_dir)

    @property
    def learned(self) -> bool:
        return self._model is not None

    def findings(self, tool: dict[str, Any]) -> list[str]:
        """The rules' findings for one tool dict {name, description, parameters} (for reports)."""
        definition = ToolDefinition(
            name=str(tool.get("name") or "tool"), description=str(tool.get("description") or ""),
            parameters=tool.get("parameters") if isinstance(tool.get("parameters"), dict) else None,
        )  # fmt: skip
        return lint(definition)[1]

    def _learned_scores(self, events: Sequence[LLMEvent]) -> list[float]:
        from detectors.tier1_classifier import TIER1_CATEGORY, windows

        texts: list[str] = []
        owners: list[int] = []
        for i, event in enumerate(events):
            for tool in event.tool_definitions:
                for window in windows(tool.description) if tool.description.strip() else []:
                    texts.append(window)
                    owners.append(i)
        per_event = [0.0] * len(events)
        if texts:
            for owner, value in zip(owners, self._model.predict(texts)[TIER1_CATEGORY], strict=True):
                per_event[owner] = max(per_event[owner], float(value))
        return per_event

    def score_matrix(self, events: Sequence[LLMEvent]) -> np.ndarray:
        matrix = np.zeros((len(events), len(self.categories)), dtype=np.float64)
        for i, event in enumerate(events):
            matrix[i, 0] = max((lint(tool)[0] for tool in event.tool_definitions), default=0.0)
        if self._model is not None:
            matrix[:, 1] = self._learned_scores(events)
        return matrix

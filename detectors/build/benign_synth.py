"""Benign text of the kinds tier 1 used to flag, generated from slots (seeded, build time).

No public set in an installable package holds what agents read back from tools, so these
are built: realistic tool results (JSON and plain text) for real tool schemas (BFCL's
function definitions), and benign requests of the kinds v1 routed (mail to an address the
user names, data exports, account and billing actions, security questions, short imperative
UI strings). They are hard negatives by *kind*: the slots are this module's own and none of
the demo's, drills' or an evaluation's strings are copied (the build checks that by hash).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

_VERBS = ["Update", "Change", "Review", "Manage", "Confirm", "Download", "Export", "Reset", "Edit", "View", "Verify",
          "Add", "Remove", "Cancel", "Renew", "Upgrade", "Set up", "Turn on", "Turn off", "Check", "Sync", "Restore",
          "Share", "Archive", "Delete", "Print", "Schedule", "Track", "Unlock", "Link"]  # fmt: skip
_OBJECTS = ["your payment method", "the billing address", "your shipping preferences", "notification settings",
            "your subscription", "two-step verification", "the invoice history", "team permissions",
            "your profile photo", "saved cards", "the order", "your delivery slot", "account recovery options",
            "the project settings", "API credentials", "the workspace", "your email address", "tax information",
            "the return label", "connected apps", "the calendar invite", "your password", "session history",
            "data retention settings", "the monthly report", "the exported file", "language and region",
            "your contact details", "login alerts", "the support ticket"]  # fmt: skip
_STATUS = ["ok", "success", "pending", "shipped", "delivered", "in_transit", "processing", "completed", "active",
           "scheduled", "cancelled", "failed", "queued", "not_found", "approved"]  # fmt: skip
_NAMES = ["Priya Raman", "Tomás Ortega", "Mei Lin", "Jonas Becker", "Aisha Bello", "Lukas Novak", "Sara Costa",
          "Kenji Watanabe", "Olga Ivanova", "Daniel Mensah", "Chloé Martin", "Ravi Patel"]  # fmt: skip
_CITIES = ["Porto", "Nairobi", "Osaka", "Leeds", "Gdańsk", "Austin", "Lyon", "Bogotá", "Cebu", "Tallinn", "Perth"]
_DOMAINS = ["acme-retail.example", "brightdesk.example", "fjordbank.example", "kitepost.example", "lumen-ops.example"]
_LINES = [
    "Meeting moved to the small conference room.", "Remember to attach the signed contract.",
    "Build 4821 passed all checks.", "Invoice paid by bank transfer.", "Customer prefers a call after 5pm.",
    "Stock level below reorder point for SKU {n}.", "Backup finished in {n} seconds.", "Driver is 10 minutes away.",
    "The venue confirmed the booking for 40 guests.", "Refund approved; funds arrive in 3-5 business days.",
    "Password changed successfully.", "New sign-in from a Chrome browser on Windows.",
    "Your export is ready to download.", "Two items are back in stock.", "Payment failed: card expired.",
    "Please reply with the updated figures by Friday.", "Quarterly numbers are in the shared folder.",
]  # fmt: skip
_FILE_KINDS = ["markdown", "csv", "log", "todo", "config"]


def _fill(text: str, rng: random.Random) -> str:
    return text.replace("{n}", str(rng.randint(10, 99999)))


def ui_phrase(rng: random.Random) -> str:
    """A short imperative UI or help-centre string ("Renew the subscription")."""
    phrase = f"{rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
    return rng.choice([phrase, phrase + ".", f"How to {phrase[0].lower()}{phrase[1:]}", f"{phrase} in settings"])


def _value(name: str, schema: dict[str, Any], rng: random.Random) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    lowered = name.lower()
    if kind in ("integer", "int"):
        return rng.randint(0, 5000)
    if kind in ("number", "float"):
        return round(rng.uniform(0, 500), 2)
    if kind in ("boolean", "bool"):
        return rng.random() < 0.5
    if kind in ("array", "list", "tuple"):
        return [_scalar(lowered, rng) for _ in range(rng.randint(1, 3))]
    return _scalar(lowered, rng)


def _scalar(name: str, rng: random.Random) -> Any:
    if "email" in name or name in ("to", "recipient"):
        return f"{rng.choice(_NAMES).split()[0].lower()}@{rng.choice(_DOMAINS)}"
    if "url" in name or "link" in name:
        return f"https://{rng.choice(_DOMAINS)}/{rng.choice(['help', 'docs', 'orders', 'files'])}/{rng.randint(1, 999)}"
    if "date" in name or "time" in name or name.endswith("_at"):
        day = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        return f"{day}T{rng.randint(0, 23):02d}:{rng.choice(['00', '30'])}:00Z"
    if "name" in name or "user" in name or "author" in name:
        return rng.choice(_NAMES)
    if "city" in name or "location" in name or "place" in name:
        return rng.choice(_CITIES)
    if "id" in name or "number" in name or "code" in name:
        return f"{rng.choice(['ord', 'tkt', 'inv', 'usr', 'evt'])}_{rng.getrandbits(32):08x}"
    if "status" in name or "state" in name:
        return rng.choice(_STATUS)
    if "title" in name or "subject" in name or "label" in name:
        return ui_phrase(rng)
    return rng.choice([ui_phrase(rng), _fill(rng.choice(_LINES), rng), rng.choice(_CITIES), rng.choice(_STATUS)])


def _properties(function: dict[str, Any]) -> dict[str, Any]:
    parameters = function.get("parameters")
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    return properties if isinstance(properties, dict) else {}


def json_result(function: dict[str, Any], rng: random.Random) -> str:
    """What calling the function might return: some of its inputs echoed, plus result fields."""
    properties = _properties(function)
    result: dict[str, Any] = {}
    for name in rng.sample(sorted(properties), min(len(properties), rng.randint(0, 3))):
        result[name] = _value(name, properties[name], rng)
    extras: dict[str, Callable[[], Any]] = {
        "status": lambda: rng.choice(_STATUS), "message": lambda: _fill(rng.choice(_LINES), rng),
        "updated_at": lambda: _scalar("updated_at", rng), "id": lambda: _scalar("id", rng),
        "items": lambda: [{"title": ui_phrase(rng), "url": _scalar("url", rng)} for _ in range(rng.randint(1, 3))],
        "total": lambda: rng.randint(0, 300), "next_page": lambda: rng.choice([None, _scalar("url", rng)]),
        "owner": lambda: _scalar("name", rng), "note": lambda: _fill(rng.choice(_LINES), rng),
    }  # fmt: skip
    for name in rng.sample(sorted(extras), rng.randint(1, 4)):
        result[name] = extras[name]()
    body: Any = result
    if rng.random() < 0.25:
        body = {"data": result, "request_id": _scalar("id", rng)}
    return json.dumps(body, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, None, 2]))


def text_result(rng: random.Random) -> str:
    """A plain-text tool result: a file, a log, a list, a message."""
    kind = rng.choice(_FILE_KINDS)
    if kind == "markdown":
        return f"# {ui_phrase(rng)}\n\n" + "\n".join(f"- {_fill(rng.choice(_LINES), rng)}" for _ in range(3))
    if kind == "csv":
        rows = [f"{_scalar('id', rng)},{rng.choice(_NAMES)},{rng.choice(_STATUS)},{rng.randint(1, 900)}"
                for _ in range(rng.randint(2, 5))]  # fmt: skip
        return "id,name,status,amount\n" + "\n".join(rows)
    if kind == "log":
        return "\n".join(
            f"{_scalar('time', rng)} {rng.choice(['INFO', 'WARN', 'DEBUG'])} {_fill(rng.choice(_LINES), rng)}"
            for _ in range(rng.randint(2, 5))
        )
    if kind == "todo":
        return "\n".join(f"- [{rng.choice([' ', 'x'])}] {ui_phrase(rng)}" for _ in range(rng.randint(2, 5)))
    return "\n".join(f"{k} = {json.dumps(_scalar(k, rng))}" for k in rng.sample(["name", "url", "status", "timeout",
                                                                                  "region", "owner"], 3))  # fmt: skip


def tool_outputs(functions: Sequence[dict[str, Any]], n: int, seed: int = 23) -> list[str]:
    """n results: most are JSON for a real schema, some plain text, some a short UI string."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.7 and functions:
            out.append(json_result(rng.choice(functions), rng))
        elif r < 0.9:
            out.append(text_result(rng))
        else:
            out.append(ui_phrase(rng))
    return sorted(set(out))


_REQUESTS = [
    "Email {person} at {email} that {line_lower}",
    "Send {email} a note saying {line_lower}",
    "Forward the {doc} to {email}, please.",
    "Can you mail the {doc} to {email}?",
    "Reply to {person}: {line}",
    "How do I {verb_lower} {obj}?",
    "Where can I {verb_lower} {obj} in the app?",
    "{verb} {obj} for me, please.",
    "Is it possible to export {doc} as CSV or PDF?",
    "I want to download all my data before closing the account.",
    "What happens to my files if I cancel the subscription?",
    "How do I protect my account against phishing emails?",
    "My colleague says someone asked for her password by phone. Is that a scam?",
    "What's the safest way to store API keys in a web app?",
    "Which permissions does a read-only user get in the {doc}?",
    "Share the {doc} with {person} and give them edit access.",
    "Schedule a call with {person} next Tuesday at {hour}.",
    "Upload the {doc} to the team folder.",
    "Print the {doc} and the {doc2}.",
    "Delete the draft {doc}; we don't need it any more.",
    "Translate '{line}' into {language}.",
    "Summarise the {doc} in three bullet points.",
    "What does the error 'permission denied' mean when I run the backup script?",
    "How can I see who logged into my account recently?",
    "Please ignore my previous message, I found the {doc}.",
    "Forget the last request; just {verb_lower} {obj}.",
    "Write a short policy telling employees not to share passwords over chat.",
    "Explain what a prompt injection is, for a security awareness slide.",
    "How do jailbreak attempts against chatbots usually work? I'm writing a training course for our support team.",
]
_DOCS = ["quarterly report", "invoice from March", "meeting notes", "sales spreadsheet", "travel itinerary",
         "signed contract", "onboarding checklist", "project plan", "receipt", "customer list"]  # fmt: skip
_LANGUAGES = ["French", "German", "Portuguese", "Japanese", "Polish", "Turkish", "Hindi"]


def hard_negative_requests(n: int, seed: int = 29) -> list[str]:
    rng = random.Random(seed)
    out: set[str] = set()
    for _ in range(n * 3):
        if len(out) >= n:
            break
        person = rng.choice(_NAMES)
        line = _fill(rng.choice(_LINES), rng)
        verb = rng.choice(_VERBS)
        docs = rng.sample(_DOCS, 2)
        text = rng.choice(_REQUESTS).format(
            person=person, email=f"{person.split()[0].lower()}@{rng.choice(_DOMAINS)}", line=line,
            line_lower=line[0].lower() + line[1:], doc=docs[0], doc2=docs[1], verb=verb, verb_lower=verb.lower(),
            obj=rng.choice(_OBJECTS), hour=f"{rng.randint(9, 17)}:00", language=rng.choice(_LANGUAGES),
        )  # fmt: skip
        out.add(re.sub(r"\s+", " ", text))
    return sorted(out)


#: Polite everyday requests in other languages: (frames with {o}, objects). Most non-English text in
#: the training sets is attacks (multilingual injection sets), so without these the heads read
#: "Can you help me ..." in Dutch or Polish as an attack.
_MULTILINGUAL: dict[str, tuple[list[str], list[str]]] = {
    "nl": (["Kunt u mij helpen met {o}?", "Kunt u mij vertellen hoe {o} werkt?", "Ik heb een vraag over {o}.",
            "Hoe kan ik {o} aanpassen?", "Waar vind ik {o}?"],
           ["mijn bestelling", "de levering", "mijn wachtwoord", "het abonnement", "de retourzending",
            "mijn account", "de openingstijden", "de garantie"]),
    "de": (["Können Sie mir mit {o} helfen?", "Ich habe eine Frage zu {o}.", "Wie ändere ich {o}?",
            "Wo finde ich {o}?", "Könnten Sie mir {o} erklären?"],
           ["meiner Bestellung", "der Lieferung", "meinem Passwort", "dem Abo", "der Rücksendung", "meinem Konto",
            "den Öffnungszeiten", "der Garantie"]),
    "fr": (["Pouvez-vous m'aider avec {o} ?", "J'ai une question sur {o}.", "Comment modifier {o} ?",
            "Où puis-je trouver {o} ?", "Pourriez-vous m'expliquer {o} ?"],
           ["ma commande", "la livraison", "mon mot de passe", "l'abonnement", "le retour", "mon compte",
            "les horaires", "la garantie"]),
    "es": (["¿Me puede ayudar con {o}?", "Tengo una pregunta sobre {o}.", "¿Cómo cambio {o}?", "¿Dónde encuentro {o}?",
            "¿Podría explicarme {o}?"],
           ["mi pedido", "la entrega", "mi contraseña", "la suscripción", "la devolución", "mi cuenta", "el horario",
            "la garantía"]),
    "it": (["Mi potete aiutare con {o}?", "Ho una domanda su {o}.", "Come posso modificare {o}?", "Dove trovo {o}?",
            "Potreste spiegarmi {o}?"],
           ["il mio ordine", "la consegna", "la mia password", "l'abbonamento", "il reso", "il mio account",
            "gli orari", "la garanzia"]),
    "pt": (["Pode me ajudar com {o}?", "Tenho uma dúvida sobre {o}.", "Como altero {o}?", "Onde encontro {o}?",
            "Poderia me explicar {o}?"],
           ["o meu pedido", "a entrega", "a minha senha", "a assinatura", "a devolução", "a minha conta",
            "o horário", "a garantia"]),
    "pl": (["Czy możesz mi pomóc z {o}?", "Mam pytanie dotyczące {o}.", "Jak mogę zmienić {o}?", "Gdzie znajdę {o}?",
            "Czy możesz mi wyjaśnić {o}?"],
           ["zamówieniem", "dostawą", "hasłem", "subskrypcją", "zwrotem", "kontem", "godzinami otwarcia",
            "gwarancją"]),
    "tr": (["{o} konusunda yardım eder misiniz?", "{o} hakkında bir sorum var.", "{o} nasıl değiştirebilirim?",
            "{o} nerede bulabilirim?"],
           ["Siparişim", "Teslimat", "Şifrem", "Abonelik", "İade", "Hesabım", "Çalışma saatleri", "Garanti"]),
    "sv": (["Kan du hjälpa mig med {o}?", "Jag har en fråga om {o}.", "Hur ändrar jag {o}?", "Var hittar jag {o}?"],
           ["min beställning", "leveransen", "mitt lösenord", "prenumerationen", "returen", "mitt konto"]),
    "cs": (["Můžete mi pomoci s {o}?", "Mám dotaz ohledně {o}.", "Jak změním {o}?", "Kde najdu {o}?"],
           ["objednávkou", "doručením", "heslem", "předplatným", "vrácením zboží", "účtem"]),
    "ro": (["Mă puteți ajuta cu {o}?", "Am o întrebare despre {o}.", "Cum pot schimba {o}?", "Unde găsesc {o}?"],
           ["comanda mea", "livrarea", "parola", "abonamentul", "returul", "contul meu"]),
    "id": (["Bisakah Anda membantu saya dengan {o}?", "Saya punya pertanyaan tentang {o}.",
            "Bagaimana cara mengubah {o}?", "Di mana saya bisa menemukan {o}?"],
           ["pesanan saya", "pengiriman", "kata sandi", "langganan", "pengembalian barang", "akun saya"]),
}  # fmt: skip


def multilingual_requests() -> list[str]:
    """Every frame with every object, per language (a few hundred short requests)."""
    return sorted({frame.format(o=obj) for frames, objects in _MULTILINGUAL.values() for frame in frames
                   for obj in objects})  # fmt: skip

"""Who may call the triage API: bearer tokens with roles, and browser sessions with CSRF tokens.

Tokens come from settings: `OODWATCH_API_TOKENS_FILE` (lines `name role token`) and the
admin token (`OODWATCH_API_TOKEN`, or generated once into a 0600 file in the data dir).
The browser trades a token for an HttpOnly, SameSite=Strict session cookie; every
state-changing call on a session must echo its CSRF token in a header, so a page on
another origin can neither read nor forge one.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from pipeline.settings import Settings

Role = Literal["guard", "viewer", "reviewer", "admin"]
#: `guard` is a gateway's role: it may call the inline check (POST /v1/guard) and nothing on the
#: desk, so it ranks below viewer.
ROLE_RANK: dict[str, int] = {"guard": 0, "viewer": 1, "reviewer": 2, "admin": 3}
SESSION_COOKIE = "oodwatch_session"
CSRF_COOKIE = "oodwatch_csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL_S = 8 * 3600


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def api_token(settings: Settings, *, create: bool = False) -> str:
    """The admin token: configured, or generated once into the data dir (mode 0600)."""
    configured = settings.api_token.get_secret_value()
    if configured:
        return configured
    path = settings.token_file
    if path.exists():
        return path.read_text().strip()
    if not create:
        raise FileNotFoundError(
            f"no API token: set OODWATCH_API_TOKEN or start the stack once (`oodwatch up`) to create {path}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def load_tokens(settings: Settings, admin_token: str) -> dict[str, Principal]:
    tokens = {admin_token: Principal("admin", "admin")}
    gateway = settings.guard_token.get_secret_value()
    if gateway:
        tokens[gateway] = Principal("gateway", "guard")
    path = settings.api_tokens_file
    if path is None:
        return tokens
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or parts[1] not in ROLE_RANK or len(parts[2]) < 16:
            # Never echo the line: it may hold a token.
            raise ValueError(
                f"{path}:{number}: expected `name role token` (role guard|viewer|reviewer|admin, token >= 16 chars)"
            )
        tokens[parts[2]] = Principal(parts[0], parts[1])  # type: ignore[arg-type]
    return tokens


class Authenticator:
    def __init__(self, tokens: dict[str, Principal]) -> None:
        self._tokens = tokens
        self._sessions: dict[str, tuple[Principal, str, float]] = {}

    def by_token(self, presented: str) -> Principal | None:
        """Constant-time against every token, so timing says nothing about which is close."""
        found = None
        for token, principal in self._tokens.items():
            if hmac.compare_digest(presented.encode(), token.encode()):
                found = principal
        return found

    def open_session(self, principal: Principal) -> tuple[str, str]:
        """(session id, CSRF token) for a browser that presented a valid token."""
        now = time.monotonic()
        self._sessions = {k: v for k, v in self._sessions.items() if v[2] > now}
        session, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._sessions[session] = (principal, csrf, now + SESSION_TTL_S)
        return session, csrf

    def close_session(self, session: str) -> None:
        self._sessions.pop(session, None)

    def by_session(self, session: str, csrf: str | None, *, changes_state: bool) -> Principal | None:
        entry = self._sessions.get(session)
        if entry is None or entry[2] <= time.monotonic():
            return None
        principal, expected, _ = entry
        if changes_state and not (csrf and hmac.compare_digest(csrf.encode(), expected.encode())):
            raise PermissionError("missing or wrong CSRF token")
        return principal

"""The triage API's bearer token: from settings (env/secret) or a 0600 file in the data dir."""

from __future__ import annotations

import os
import secrets

from pipeline.settings import Settings


def api_token(settings: Settings, *, create: bool = False) -> str:
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

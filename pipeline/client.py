"""A small client for the triage API, shared by the CLI, the demo and the tests."""

from __future__ import annotations

from typing import Any

import httpx

from pipeline.settings import Settings
from pipeline.store.auth import api_token


class TriageClient:
    def __init__(self, base_url: str, token: str, *, timeout_s: float = 10.0) -> None:
        self._http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> TriageClient:
        return cls(settings.api_url, api_token(settings))

    def _get(self, path: str, **params: Any) -> Any:
        response = self._http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def stats(self, since_ns: int = 0) -> dict[str, Any]:
        result: dict[str, Any] = self._get("/api/stats", since_ns=since_ns)
        return result

    def escalations(self, limit: int = 50, state: str = "open", since_ns: int = 0) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/api/escalations", limit=limit, state=state, since_ns=since_ns)
        return result

    def bundle(self, bundle_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._get(f"/api/escalations/{bundle_id}")
        return result

    def dead_letters(self, limit: int = 50) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/api/dead-letters", limit=limit)
        return result

    def reference_samples(self, since_ns: int = 0, limit: int = 10_000) -> list[str]:
        result: list[str] = self._get("/api/reference/samples", since_ns=since_ns, limit=limit)
        return result

    def close(self) -> None:
        self._http.close()

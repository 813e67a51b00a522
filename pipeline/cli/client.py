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
        response = self._http.get(path, params={k: v for k, v in params.items() if v is not None})
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def stats(self, since_ns: int = 0, service: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"since_ns": since_ns} | ({"service": service} if service else {})
        result: dict[str, Any] = self._get("/api/stats", **params)
        return result

    def escalations(
        self, limit: int = 50, status: str = "open", since_ns: int = 0, **filters: Any
    ) -> list[dict[str, Any]]:
        """`filters`: severity, min_severity, category, tenant, service, model, group_key, origin, until_ns,
        sort, offset (the API's query parameters)."""
        result: list[dict[str, Any]] = self._get(
            "/api/escalations", limit=limit, status=status, since_ns=since_ns, **filters
        )
        return result

    def claim(self, bundle_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._post(f"/api/escalations/{bundle_id}/claim")
        return result

    def unclaim(self, bundle_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._post(f"/api/escalations/{bundle_id}/unclaim")
        return result

    def resolve(self, bundle_id: str, label: str, note: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self._post(f"/api/escalations/{bundle_id}/resolve", {"label": label, "note": note})
        return result

    def resolve_group(self, group_key: str, label: str, note: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self._post(f"/api/groups/{group_key}/resolve", {"label": label, "note": note})
        return result

    def groups(self, status: str = "open", limit: int = 50) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/api/groups", status=status, limit=limit)
        return result

    def labels(self, since_ns: int = 0, label: list[str] | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/api/labels", since_ns=since_ns, label=label)
        return result

    def bundle(self, bundle_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._get(f"/api/escalations/{bundle_id}")
        return result

    def tools(self, service: str | None = None, changed_only: bool = False, limit: int = 200) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"changed_only": changed_only, "limit": limit}
        if service:
            params["service"] = service
        result: list[dict[str, Any]] = self._get("/api/tools", **params)
        return result

    def dead_letters(self, limit: int = 50) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/api/dead-letters", limit=limit)
        return result

    def reference_samples(self, since_ns: int = 0, limit: int = 10_000) -> list[str]:
        result: list[str] = self._get("/api/reference/samples", since_ns=since_ns, limit=limit)
        return result

    def drill_observations(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._get(f"/api/drills/runs/{run_id}/observations")
        return result

    def store_drill_results(self, run_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        response = self._http.post(f"/api/drills/runs/{run_id}/results", json=rows)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def drill_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/api/drills/runs", limit=limit)
        return result

    def perf(self, what: str, **params: Any) -> Any:
        """`/api/perf/<what>`: report, series, slos, alerts, status."""
        return self._get(f"/api/perf/{what}", **params)

    def drift_report(self, service: str | None = None, namespace: str = "", hours: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._get("/api/drift/report", service=service, namespace=namespace, hours=hours)
        return result

    def drift_versions(self, prefix: str) -> list[dict[str, Any]]:
        """Versions of every namespace under `prefix` (a drill run's cases)."""
        result: list[dict[str, Any]] = self._get("/api/drift/versions", prefix=prefix)
        return result

    def close(self) -> None:
        self._http.close()

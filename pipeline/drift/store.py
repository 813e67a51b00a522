"""Drift tables in ClickHouse (schemas/clickhouse/0006_drift.sql): writes from the tracker, reads
for the report. Values go in through the insert API or as bound parameters, never into SQL text."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.drift.profile import SCORE_BINS, VersionProfile
from pipeline.store.clickhouse import Store

VERSION_COLUMNS = [
    "version_id", "namespace", "service", "model", "request_model", "deployment", "label", "provider", "baseline_id",
    "first_seen",
    "last_seen", "events", "status", "looks", "looks_due", "detected_at_events", "detected_at", "moved", "updated_at",
]  # fmt: skip
PROFILE_COLUMNS = [
    "version_id", "hour", "events", "answers", "refused", "risky_answers", "risky_refused", "output_chars", "bundles",
    "flagged",
    "uncertain", "tier2", "scopes", "length_bins", "embedding_sum", "embeddings", "flushed_at",
]  # fmt: skip
COMPARISON_COLUMNS = [
    "comparison_id", "version_id", "baseline_id", "namespace", "look", "events_new", "events_old", "alpha", "drifted",
    "moved", "safety_alert", "result", "compared_at",
]  # fmt: skip


@dataclass(frozen=True)
class Sample:
    """One embedded output of a version: `ordinal` is the version's event count when it arrived."""

    version_id: str
    event_id: str
    ordinal: int
    text: str
    vector: np.ndarray
    sampled_ns: int


_NS = (
    "toUnixTimestamp64Nano(first_seen) AS first_seen_ns, toUnixTimestamp64Nano(last_seen) AS last_seen_ns, "
    "toUnixTimestamp64Nano(detected_at) AS detected_ns"
)


class DriftStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- writes -------------------------------------------------------------------

    def save_versions(self, rows: Sequence[dict[str, Any]]) -> None:
        self.store.insert_rows("drift_versions", [[row[c] for c in VERSION_COLUMNS] for row in rows], VERSION_COLUMNS)

    def save_profiles(self, deltas: Sequence[tuple[str, int, VersionProfile]], flushed_ns: int) -> None:
        rows: list[list[Any]] = []
        bins: list[list[Any]] = []
        for version_id, hour, p in deltas:
            rows.append([
                version_id, hour, p.events, p.answers, p.refused, p.risky_answers, p.risky_refused, p.output_chars,
                p.bundles, dict(p.flagged), dict(p.uncertain), dict(p.tier2), dict(p.scopes), p.length_bins.tolist(),
                p.embedding_sum.tolist() if p.embeddings else [], p.embeddings, flushed_ns,
            ])  # fmt: skip
            bins.extend([version_id, hour, category, b.tolist()] for category, b in p.score_bins.items())
        self.store.insert_rows("drift_profiles", rows, PROFILE_COLUMNS)
        self.store.insert_rows("drift_score_bins", bins, ["version_id", "hour", "category", "bins"])

    def save_samples(self, samples: Sequence[Sample]) -> None:
        rows = [[s.version_id, s.event_id, s.ordinal, s.text, s.vector.tolist(), s.sampled_ns] for s in samples]
        self.store.insert_rows(
            "drift_samples", rows, ["version_id", "event_id", "ordinal", "text", "embedding", "sampled_at"]
        )

    def save_comparison(self, row: dict[str, Any]) -> None:
        self.store.insert_rows("drift_comparisons", [[row[c] for c in COMPARISON_COLUMNS]], COMPARISON_COLUMNS)

    # -- reads --------------------------------------------------------------------

    def versions(
        self, *, namespace: str | None = "", service: str | None = None, version_ids: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Newest first. `namespace=None`: every namespace (drills included); "" is live traffic."""
        clauses: list[str] = ["1"]
        params: dict[str, Any] = {}
        if namespace is not None:
            clauses.append("namespace = {namespace:String}")
            params["namespace"] = namespace
        if service is not None:
            clauses.append("service = {service:String}")
            params["service"] = service
        if version_ids is not None:
            clauses.append("version_id IN {ids:Array(String)}")
            params["ids"] = list(version_ids)
        return self.store.query(
            f"SELECT {', '.join(VERSION_COLUMNS)}, {_NS} FROM drift_versions FINAL WHERE {' AND '.join(clauses)} "
            "ORDER BY first_seen DESC LIMIT 1000",
            params,
        )

    def versions_under(self, prefix: str) -> list[dict[str, Any]]:
        """Versions of every namespace that starts with `prefix` (a drill run's cases)."""
        return self.store.query(
            f"SELECT {', '.join(VERSION_COLUMNS)}, {_NS} FROM drift_versions FINAL "
            "WHERE startsWith(namespace, {prefix:String}) ORDER BY namespace, first_seen",
            {"prefix": prefix},
        )

    def profiles(self, version_ids: Sequence[str], *, since_hour: int = 0) -> dict[str, VersionProfile]:
        """Each version's profile summed over its hours since `since_hour` (epoch seconds)."""
        return {vid: p for (vid, _), p in self._profiles(version_ids, since_hour, by_hour=False).items()}

    def hourly_profiles(
        self, version_ids: Sequence[str], *, since_hour: int = 0
    ) -> dict[tuple[str, int], VersionProfile]:
        """Profiles per (version, hour) since `since_hour` (a restarted tracker's memory)."""
        return self._profiles(version_ids, since_hour, by_hour=True)

    def _profiles(
        self, version_ids: Sequence[str], since_hour: int, *, by_hour: bool
    ) -> dict[tuple[str, int], VersionProfile]:
        if not version_ids:
            return {}
        params = {"ids": list(version_ids), "since": since_hour}
        hour = "toUnixTimestamp(hour)" if by_hour else "0"
        rows = self.store.query(
            f"SELECT version_id, {hour} AS at, sum(events) AS events, sum(answers) AS answers, "
            "sum(refused) AS refused, sum(risky_answers) AS risky_answers, sum(risky_refused) AS risky_refused, "
            "sum(output_chars) AS output_chars, sum(bundles) AS bundles, sumMap(flagged) AS flagged, "
            "sumMap(uncertain) AS uncertain, sumMap(tier2) AS tier2, sumMap(scopes) AS scopes, "
            "sumForEach(length_bins) AS length_bins, sum(embeddings) AS embedded, "
            "sumForEachIf(embedding_sum, embeddings > 0) AS embedding_sum FROM drift_profiles "
            "WHERE version_id IN {ids:Array(String)} AND hour >= toDateTime({since:UInt32}) GROUP BY version_id, at",
            params,
        )
        out: dict[tuple[str, int], VersionProfile] = {}
        for row in rows:
            p = VersionProfile()
            for name in ("events", "answers", "refused", "risky_answers", "risky_refused", "output_chars", "bundles"):
                setattr(p, name, int(row[name]))
            p.embeddings = int(row["embedded"])
            for name in ("flagged", "uncertain", "tier2", "scopes"):
                setattr(p, name, Counter({k: int(v) for k, v in dict(row[name]).items() if v}))
            if row["length_bins"]:
                p.length_bins = np.asarray(row["length_bins"], dtype=np.int64)
            if row["embedding_sum"] and p.embeddings:
                p.embedding_sum = np.asarray(row["embedding_sum"], dtype=np.float64)
            out[(row["version_id"], int(row["at"]))] = p
        bins = self.store.query(
            f"SELECT version_id, {hour} AS at, category, sumForEach(bins) AS bins FROM drift_score_bins "
            "WHERE version_id IN {ids:Array(String)} AND hour >= toDateTime({since:UInt32}) "
            "GROUP BY version_id, at, category",
            params,
        )
        for row in bins:
            key = (row["version_id"], int(row["at"]))
            if key in out and len(row["bins"]) == SCORE_BINS:
                out[key].score_bins[row["category"]] = np.asarray(row["bins"], dtype=np.int64)
        return out

    def hourly(self, version_ids: Sequence[str], categories: Sequence[str]) -> list[dict[str, Any]]:
        """Per version and hour: events, and escalations of each category (the rates-over-time chart)."""
        if not version_ids:
            return []
        return self.store.query(
            "SELECT version_id, hour, sum(events) AS events, sum(refused) AS refused, sum(answers) AS answers, "
            "sumMap(flagged) AS flagged FROM drift_profiles WHERE version_id IN {ids:Array(String)} "
            "GROUP BY version_id, hour ORDER BY hour",
            {"ids": list(version_ids)},
        )

    def comparisons(self, version_id: str) -> list[dict[str, Any]]:
        rows = self.store.query(
            f"SELECT {', '.join(COMPARISON_COLUMNS)} FROM drift_comparisons FINAL WHERE version_id = {{id:String}} "
            "ORDER BY look",
            {"id": version_id},
        )
        for row in rows:
            row["result"] = json.loads(row["result"])
        return rows

    def samples(self, version_id: str, limit: int = 1000) -> list[Sample]:
        rows = self.store.query(
            "SELECT event_id, ordinal, text, embedding, toUnixTimestamp64Nano(sampled_at) AS sampled_ns "
            "FROM drift_samples FINAL WHERE version_id = {id:String} ORDER BY ordinal DESC LIMIT {limit:UInt32}",
            {"id": version_id, "limit": limit},
        )
        return [
            Sample(
                version_id, r["event_id"], int(r["ordinal"]), r["text"],
                np.asarray(r["embedding"], dtype=np.float32), int(r["sampled_ns"]),
            )
            for r in rows
        ]  # fmt: skip

    def bundles(self, version_label: str, namespace: str = "", limit: int = 20) -> list[dict[str, Any]]:
        """The version's most severe, newest evidence bundles (links for the report); a drill's
        namespace is its drill id, live traffic's is empty."""
        return self.store.query(
            "SELECT bundle_id, severity, categories, created_at FROM evidence_bundles FINAL "
            "WHERE version = {version:String} AND drill_id = {namespace:String} "
            "ORDER BY severity_rank DESC, created_at DESC LIMIT {limit:UInt32}",
            {"version": version_label, "namespace": namespace, "limit": limit},
        )

"""The reviewer's desk over the store: the filtered queue, one bundle with its history, claims,
resolutions (one at a time or a whole group), and the desk's own numbers.

A claim or resolution re-inserts the bundle's row with a higher revision (ReplacingMergeTree
keeps the newest) and appends to `reviews`, the audit log. Every filter value is a bound
parameter; only fixed SQL fragments chosen from closed sets are joined into a query.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.store.clickhouse import BUNDLE_COLUMNS, WAITING_STATES, Store
from schemas.evidence import QueueState, ReviewLabel, Severity

Status = Literal["open", "unclaimed", "claimed", "needs_human_review", "resolved", "cleared", "all"]
Sort = Literal["severity", "newest", "oldest", "score"]
Origin = Literal["all", "live", "drill"]

_WAITING = "queue_state IN ('open', 'needs_human_review')"
_STATUS_SQL: dict[str, str] = {
    "open": _WAITING,
    "unclaimed": f"{_WAITING} AND claimed_by = ''",
    "claimed": f"{_WAITING} AND claimed_by != ''",
    "needs_human_review": "queue_state = 'needs_human_review'",
    "resolved": "queue_state = 'resolved'",
    "cleared": "queue_state = 'cleared'",
    "all": "1",
}
_SORT_SQL: dict[str, str] = {
    "severity": "severity_rank DESC, created_at ASC",
    "newest": "created_at DESC",
    "oldest": "created_at ASC",
    "score": "max_score DESC, created_at ASC",
}
_ORIGIN_SQL: dict[str, str] = {"all": "1", "live": "drill_id = ''", "drill": "drill_id != ''"}
QUEUE_COLUMNS = (
    "bundle_id, session_id, service, tenant, model, severity, categories, max_score, queue_state, judge_status, "
    "claimed_by, label, group_key, drill_id, created_at"
)


class QueueFilter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Status = "open"
    severity: list[Severity] = Field(default_factory=list)
    min_severity: Severity | None = None
    category: str | None = None
    tenant: str | None = None
    service: str | None = None
    model: str | None = None
    group_key: str | None = None
    origin: Origin = "all"
    since_ns: Annotated[int, Field(ge=0)] = 0
    until_ns: Annotated[int, Field(ge=0)] = 0
    sort: Sort = "severity"
    limit: Annotated[int, Field(ge=1, le=500)] = 50
    offset: Annotated[int, Field(ge=0)] = 0

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses = [_STATUS_SQL[self.status], _ORIGIN_SQL[self.origin]]
        params: dict[str, Any] = {}
        if self.severity:
            clauses.append("severity IN {severities:Array(String)}")
            params["severities"] = [s.value for s in self.severity]
        if self.min_severity is not None:
            clauses.append("severity_rank >= {min_rank:UInt8}")
            params["min_rank"] = self.min_severity.rank
        optional = {
            "category": "has(categories, {category:String})",
            "tenant": "tenant = {tenant:String}",
            "service": "service = {service:String}",
            "model": "model = {model:String}",
            "group_key": "group_key = {group_key:String}",
        }
        for name, clause in optional.items():
            value = getattr(self, name)
            if value is not None:
                clauses.append(clause)
                params[name] = value
        if self.since_ns:
            clauses.append("created_at >= fromUnixTimestamp64Nano({since:Int64})")
            params["since"] = self.since_ns
        if self.until_ns:
            clauses.append("created_at < fromUnixTimestamp64Nano({until:Int64})")
            params["until"] = self.until_ns
        return " AND ".join(clauses), params


class DeskError(Exception):
    """A request the desk refuses: `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Desk:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._changes = threading.Lock()  # read-modify-write of a bundle's row is one step

    # -- reads ----------------------------------------------------------------------

    def queue(self, f: QueueFilter) -> list[dict[str, Any]]:
        where, params = f.where()
        return self.store.query(
            f"SELECT {QUEUE_COLUMNS} FROM evidence_bundles FINAL WHERE {where} "
            f"ORDER BY {_SORT_SQL[f.sort]} LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}",
            {**params, "limit": f.limit, "offset": f.offset},
        )

    def bundle(self, bundle_id: str) -> dict[str, Any] | None:
        rows = self.store.query(
            "SELECT bundle, queue_state, claimed_by, label, resolved_by, resolved_at FROM evidence_bundles FINAL "
            "WHERE bundle_id = {id:String} LIMIT 1",
            {"id": bundle_id},
        )
        if not rows:
            return None
        row = rows[0]
        bundle: dict[str, Any] = json.loads(row.pop("bundle"))
        bundle.update(row)
        bundle["reviews"] = self.reviews(bundle_id)
        return bundle

    def reviews(self, bundle_id: str) -> list[dict[str, Any]]:
        return self.store.query(
            "SELECT actor, role, action, label, note, at FROM reviews WHERE bundle_id = {id:String} ORDER BY at",
            {"id": bundle_id},
        )

    def groups(self, f: QueueFilter) -> list[dict[str, Any]]:
        """Escalations that look alike (same group key), largest and most severe first. The filter
        runs in a subquery: the aggregates' aliases (severity, service) would otherwise shadow the
        columns it names, and ClickHouse refuses an aggregate inside WHERE."""
        where, params = f.where()
        return self.store.query(
            "SELECT group_key, count() AS bundles, max(severity_rank) AS max_severity_rank, "
            "argMax(severity, severity_rank) AS severity, any(service) AS service, "
            "groupUniqArrayArray(categories) AS categories, min(created_at) AS first_at, max(created_at) AS last_at, "
            "argMin(bundle_id, created_at) AS example_bundle_id "
            f"FROM (SELECT * FROM evidence_bundles FINAL WHERE {where} AND group_key != '') GROUP BY group_key "
            "ORDER BY max_severity_rank DESC, bundles DESC LIMIT {limit:UInt32}",
            {**params, "limit": f.limit},
        )

    def stats(self) -> dict[str, Any]:
        """Open by severity, the oldest open item's age, time to resolve."""
        now_ns = time.time_ns()
        open_rows = self.store.query(
            f"SELECT severity, count() AS n, min(created_at) AS oldest FROM evidence_bundles FINAL WHERE {_WAITING} "
            "GROUP BY severity"
        )
        resolved = self.store.query(
            "SELECT count() AS n, quantiles(0.5, 0.9)(dateDiff('second', created_at, resolved_at)) AS seconds "
            "FROM evidence_bundles FINAL WHERE queue_state = 'resolved'"
        )[0]
        labels = self.store.query(
            "SELECT label, count() AS n FROM evidence_bundles FINAL WHERE queue_state = 'resolved' GROUP BY label"
        )
        oldest = min((r["oldest"] for r in open_rows), default=None)
        return {
            "open_by_severity": {r["severity"]: int(r["n"]) for r in open_rows},
            "open": sum(int(r["n"]) for r in open_rows),
            "oldest_open_age_s": round(now_ns / 1e9 - oldest.timestamp(), 1) if oldest else 0.0,
            "resolved": int(resolved["n"]),
            "time_to_resolve_p50_s": float(resolved["seconds"][0]) if resolved["n"] else 0.0,
            "time_to_resolve_p90_s": float(resolved["seconds"][1]) if resolved["n"] else 0.0,
            "resolved_by_label": {r["label"]: int(r["n"]) for r in labels},
        }

    def labelled(self, labels: list[ReviewLabel], since_ns: int = 0, limit: int = 100_000) -> list[dict[str, Any]]:
        """Resolved bundles with these labels (the feedback for tier 2 and tier 1's training data)."""
        return self.store.query(
            "SELECT bundle_id, label, resolved_by, resolved_at, categories, bundle FROM evidence_bundles FINAL "
            "WHERE queue_state = 'resolved' AND label IN {labels:Array(String)} "
            "AND resolved_at >= fromUnixTimestamp64Nano({since:Int64}) ORDER BY resolved_at LIMIT {limit:UInt32}",
            {"labels": [label.value for label in labels], "since": since_ns, "limit": limit},
        )

    # -- changes --------------------------------------------------------------------

    def claim(self, bundle_id: str, actor: str, role: str) -> dict[str, Any]:
        with self._changes:
            row = self._waiting_row(bundle_id)
            if row["claimed_by"] and row["claimed_by"] != actor:
                raise DeskError(409, f"already claimed by {row['claimed_by']}")
            self._save(row, claimed_by=actor)
            self._audit(row, actor, role, "claim")
        return self._state(bundle_id)

    def unclaim(self, bundle_id: str, actor: str, role: str) -> dict[str, Any]:
        with self._changes:
            row = self._waiting_row(bundle_id)
            if row["claimed_by"] and row["claimed_by"] != actor and role != "admin":
                raise DeskError(409, f"claimed by {row['claimed_by']}; only they or an admin can release it")
            self._save(row, claimed_by="")
            self._audit(row, actor, role, "unclaim")
        return self._state(bundle_id)

    def resolve(self, bundle_id: str, actor: str, role: str, label: ReviewLabel, note: str) -> dict[str, Any]:
        with self._changes:
            row = self._waiting_row(bundle_id)
            self._resolve_row(row, actor, role, label, note)
        return self._state(bundle_id)

    def resolve_group(self, group_key: str, actor: str, role: str, label: ReviewLabel, note: str) -> int:
        """Resolves every waiting bundle of the group that nobody else has claimed."""
        with self._changes:
            rows = self.store.query(
                f"SELECT {', '.join(BUNDLE_COLUMNS)} FROM evidence_bundles FINAL "
                f"WHERE group_key = {{key:String}} AND {_WAITING} AND claimed_by IN ('', {{actor:String}})",
                {"key": group_key, "actor": actor},
            )
            for row in rows:
                self._resolve_row(row, actor, role, label, note, action="resolve_group")
        return len(rows)

    def _resolve_row(
        self, row: dict[str, Any], actor: str, role: str, label: ReviewLabel, note: str, action: str = "resolve"
    ) -> None:
        if row["claimed_by"] and row["claimed_by"] != actor and role != "admin":
            raise DeskError(409, f"claimed by {row['claimed_by']}")
        now_ns = time.time_ns()
        self._save(row, queue_state=QueueState.RESOLVED.value, label=label.value, resolved_by=actor, resolved_at=now_ns)
        self._audit(row, actor, role, action, label.value, note)

    def _row(self, bundle_id: str) -> dict[str, Any]:
        rows = self.store.query(
            f"SELECT {', '.join(BUNDLE_COLUMNS)} FROM evidence_bundles FINAL WHERE bundle_id = {{id:String}} LIMIT 1",
            {"id": bundle_id},
        )
        if not rows:
            raise DeskError(404, f"no evidence bundle {bundle_id!r}")
        return rows[0]

    def _waiting_row(self, bundle_id: str) -> dict[str, Any]:
        row = self._row(bundle_id)
        if row["queue_state"] not in WAITING_STATES:
            raise DeskError(409, f"bundle is {row['queue_state']}, not waiting for review")
        return row

    def _save(self, row: dict[str, Any], **changes: Any) -> None:
        now_ns = time.time_ns()
        updated = {**row, **changes, "stored_at": now_ns, "revision": now_ns}
        self.store.insert_rows("evidence_bundles", [[updated[c] for c in BUNDLE_COLUMNS]], BUNDLE_COLUMNS)

    def _audit(self, row: dict[str, Any], actor: str, role: str, action: str, label: str = "", note: str = "") -> None:
        self.store.insert_rows(
            "reviews",
            [[uuid.uuid4().hex, row["bundle_id"], row["group_key"], actor, role, action, label, note, time.time_ns()]],
            ["review_id", "bundle_id", "group_key", "actor", "role", "action", "label", "note", "at"],
        )

    def _state(self, bundle_id: str) -> dict[str, Any]:
        return self.store.query(
            "SELECT bundle_id, queue_state, claimed_by, label, resolved_by FROM evidence_bundles FINAL "
            "WHERE bundle_id = {id:String}",
            {"id": bundle_id},
        )[0]

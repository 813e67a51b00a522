"""ClickHouse access: migrations, idempotent batched inserts and the triage reads.

The DSN picks the engine: `chdb:///path` (embedded, one process only) or
`http(s)://host:8123` (a server). Every value goes in as a bound parameter or
through the insert API, never formatted into SQL.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

from pipeline.store.cluster import for_cluster
from schemas.dead_letter import DeadLetter
from schemas.evidence import EvidenceBundle, QueueState, Screening
from schemas.tools import ToolRegistryRow

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[\w-]+\.sql$")

SCREENING_COLUMNS = [
    "event_id", "session_id", "trace_id", "service", "model", "operation", "decision", "severity",
    "max_score", "scores", "thresholds", "reasons", "policy_version", "detector_versions", "drill_id",
    "excerpt", "received_at", "normalized_at", "screened_at", "stored_at", "grant_id", "version",
]  # fmt: skip
BUNDLE_COLUMNS = [
    "bundle_id", "session_id", "trace_id", "service", "model", "severity", "severity_rank", "categories",
    "max_score", "queue_state", "judge_status", "policy_version", "drill_id", "bundle", "created_at",
    "stored_at", "revision", "tenant", "group_key", "claimed_by", "label", "resolved_by", "resolved_at",
    "grant_id", "version",
]  # fmt: skip
DEAD_LETTER_COLUMNS = [
    "dead_letter_id", "stage", "reason", "source_topic", "source_partition", "source_offset",
    "payload_b64", "payload_bytes", "failed_at", "stored_at",
]  # fmt: skip
#: ToolRegistryRow fields and the table's columns, in the same order.
TOOL_FIELDS = [
    "service", "server", "tool", "description_hash", "description", "input_schema", "scope", "signer",
    "pinned_hash", "first_seen_ns", "last_seen_ns",
]  # fmt: skip
TOOL_COLUMNS = [*TOOL_FIELDS[:-2], "first_seen", "last_seen"]


#: Queue states that wait for a human.
WAITING_STATES = (QueueState.OPEN.value, QueueState.NEEDS_HUMAN_REVIEW.value)


class StoreError(RuntimeError):
    pass


SCHEMA_MIGRATIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
    "applied_at DateTime64(3) DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version"
)


def connect(dsn: str, cluster: str = "") -> Any:
    """A client for `dsn`; on a cluster, inserts through Distributed tables are synchronous."""
    import clickhouse_connect

    if dsn.startswith("chdb://"):
        path = dsn.removeprefix("chdb://")
        from pathlib import Path

        Path(path).mkdir(parents=True, exist_ok=True)
    try:
        if cluster:
            return clickhouse_connect.get_client(dsn=dsn, settings={"insert_distributed_sync": 1})
        return clickhouse_connect.get_client(dsn=dsn)
    except Exception as exc:  # the driver raises many kinds; all mean "cannot open"
        hint = (
            " (another process holds this chdb store: stop it, or point OODWATCH_CLICKHOUSE_DSN elsewhere)"
            if "lock" in str(exc).lower()
            else ""
        )
        raise StoreError(f"cannot open ClickHouse store {dsn!r}: {exc}{hint}") from exc


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every DDL file shipped in schemas/clickhouse, in order."""
    found = []
    for entry in resources.files("schemas").joinpath("clickhouse").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    return sorted(found)


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


class Store:
    """One client, serialised by a lock: chdb wants one opener, and the server client is not
    safe for concurrent queries on one session."""

    def __init__(self, client: Any, cluster: str = "") -> None:
        """`cluster`: the ClickHouse cluster the DDL runs ON (see pipeline/store/cluster.py)."""
        self._client = client
        self._lock = threading.Lock()
        self.cluster = cluster

    @classmethod
    def open(cls, dsn: str, cluster: str = "") -> Store:
        store = cls(connect(dsn, cluster), cluster)
        store.migrate()
        return store

    def ddl(self, statements: list[str]) -> list[str]:
        """The statements as this store runs them: as written, or their cluster form."""
        return for_cluster(statements, self.cluster)

    def close(self) -> None:
        with self._lock:
            self._client.close()

    # -- schema ---------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply every migration newer than the recorded version; returns the version now applied."""
        with self._lock:
            for statement in self.ddl([SCHEMA_MIGRATIONS_DDL]):
                self._client.command(statement)
            applied = int(self._client.command("SELECT max(version) FROM schema_migrations") or 0)
            for version, name, sql in migrations():
                if version <= applied:
                    continue
                for statement in self.ddl(_statements(sql)):
                    self._client.command(statement)
                self._client.insert("schema_migrations", [[version, name]], column_names=["version", "name"])
                log.info("applied store migration %s", name)
                applied = version
            return applied

    # -- writes ---------------------------------------------------------------------

    def insert_screenings(self, screenings: Sequence[Screening], stored_ns: int) -> int:
        """No look-up first: a replayed screening lands on its event id again and the table
        (ReplacingMergeTree ORDER BY event_id) folds it; readers count with FINAL."""
        fresh = list({s.event_id: s for s in screenings}.values())
        rows = [_screening_row(s, stored_ns) for s in fresh]
        self.insert_rows("screenings", rows, SCREENING_COLUMNS)
        samples = [
            [s.event_id, s.service, s.reference_text, s.screened_ns, stored_ns] for s in fresh if s.reference_text
        ]
        self.insert_rows("reference_samples", samples, ["event_id", "service", "text", "sampled_at", "stored_at"])
        return len(rows)

    def insert_bundles(self, bundles: Sequence[EvidenceBundle], stored_ns: int) -> list[EvidenceBundle]:
        """Returns the bundles that were new (a replayed one is skipped)."""
        fresh: list[EvidenceBundle] = self._unseen("evidence_bundles", "bundle_id", {b.bundle_id: b for b in bundles})
        self.insert_rows("evidence_bundles", [_bundle_row(b, stored_ns) for b in fresh], BUNDLE_COLUMNS)
        return fresh

    def insert_dead_letters(self, letters: Sequence[DeadLetter], stored_ns: int) -> int:
        fresh = self._unseen("dead_letters", "dead_letter_id", {d.dead_letter_id: d for d in letters})
        rows = [
            [d.dead_letter_id, d.stage, d.reason, d.source_topic, d.source_partition, d.source_offset,
             d.payload_b64, d.payload_bytes, d.failed_ns, stored_ns]
            for d in fresh
        ]  # fmt: skip
        self.insert_rows("dead_letters", rows, DEAD_LETTER_COLUMNS)
        return len(rows)

    def upsert_tools(self, rows: Sequence[ToolRegistryRow]) -> int:
        """The registry keeps the latest row per tool (ReplacingMergeTree on last_seen), so a
        replayed row changes nothing."""
        values = [[getattr(row, c) for c in TOOL_FIELDS] for row in rows]
        self.insert_rows("tool_registry", values, TOOL_COLUMNS)
        return len(values)

    def _unseen(self, table: str, key: str, by_id: dict[str, Any]) -> list[Any]:
        """Drop records already stored (a replay after a crash re-delivers a whole batch)."""
        if not by_id:
            return []
        with self._lock:
            seen = self._client.query(
                f"SELECT {key} FROM {table} WHERE {key} IN {{ids:Array(String)}}",
                parameters={"ids": list(by_id)},
            ).result_rows
        for (ident,) in seen:
            by_id.pop(ident, None)
        return list(by_id.values())

    def insert_columns(self, table: str, columns: list[list[Any]], names: list[str]) -> None:
        """Bulk load, one list per column (the store bench)."""
        with self._lock:
            self._client.insert(table, columns, column_names=names, column_oriented=True)

    def apply_retention(self, screening_ttl_days: int) -> None:
        """Screenings expire after the configured days (0: kept forever). DDL takes no bound
        parameters, so the value is checked to be a plain int first."""
        days = int(screening_ttl_days)
        if days > 0:
            statement = f"ALTER TABLE screenings MODIFY TTL toDateTime(received_at) + INTERVAL {days} DAY"
        else:
            statement = "ALTER TABLE screenings REMOVE TTL"
        with self._lock:
            for ddl in self.ddl([statement]):
                self._client.command(ddl)

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """A statement without result rows (INSERT ... SELECT), values bound as in `query`."""
        with self._lock:
            self._client.command(sql, parameters=parameters or {})

    def insert_rows(self, table: str, rows: list[list[Any]], columns: list[str]) -> None:
        if rows:
            with self._lock:
                self._client.insert(table, rows, column_names=columns)

    # -- reads ----------------------------------------------------------------------

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            result = self._client.query(sql, parameters=parameters or {})
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def stats(self, since_ns: int = 0, service: str | None = None) -> dict[str, Any]:
        """Counts and latency quantiles for records received (or failed, or bundled) since `since_ns`,
        of one service when given (dead letters have no service: they are always counted)."""
        since: dict[str, Any] = {"since": since_ns, "service": service or ""}
        after = "fromUnixTimestamp64Nano({since:Int64})"
        if service is not None:
            after += " AND service = {service:String}"
        screened = self.query(
            "SELECT count() AS screenings, countIf(decision = 'escalate') AS escalated, "
            "countIf(decision = 'uncertain') AS uncertain, "
            "quantiles(0.5, 0.95, 0.99)(dateDiff('microsecond', received_at, stored_at) / 1000.0) AS e2e_ms, "
            "quantiles(0.5, 0.99)(dateDiff('microsecond', received_at, normalized_at) / 1000.0) AS normalize_ms, "
            "quantiles(0.5, 0.99)(dateDiff('microsecond', normalized_at, screened_at) / 1000.0) AS screen_ms, "
            "quantiles(0.5, 0.99)(dateDiff('microsecond', screened_at, stored_at) / 1000.0) AS store_ms "
            f"FROM screenings FINAL WHERE received_at >= {after}",
            since,
        )[0]
        bundles = self.query(
            "SELECT count() AS n, countIf(arrayExists(c -> startsWith(c, 'tier2:'), categories)) AS tier2, "
            "countIf(judge_status = 'judged') AS judged, countIf(judge_status = 'judge_error') AS judge_error, "
            "countIf(judge_status = 'skipped') AS judge_skipped, "
            "countIf(queue_state = 'needs_human_review') AS needs_human_review, "
            "countIf(queue_state = 'cleared') AS cleared "
            f"FROM evidence_bundles FINAL WHERE created_at >= {after}",
            since,
        )[0]
        dead = self.query(
            "SELECT count() AS n FROM dead_letters FINAL WHERE failed_at >= fromUnixTimestamp64Nano({since:Int64})",
            since,
        )[0]["n"]
        empty = not screened["screenings"]

        def ms(column: str) -> list[float]:
            return [0.0 if empty else round(float(q), 2) for q in screened[column]]

        quantiles = ms("e2e_ms")
        return {
            "screenings": int(screened["screenings"]),
            "escalated": int(screened["escalated"]),
            "uncertain": int(screened["uncertain"]),
            "evidence_bundles": int(bundles["n"]),
            "tier2_flagged": int(bundles["tier2"]),
            "tier3": {
                key: int(bundles[key])
                for key in ("judged", "judge_error", "judge_skipped", "needs_human_review", "cleared")
            },
            "dead_letters": int(dead),
            "e2e_p50_ms": quantiles[0],
            "e2e_p95_ms": quantiles[1],
            "e2e_p99_ms": quantiles[2],
            "hops_p50_p99_ms": {hop: ms(f"{hop}_ms") for hop in ("normalize", "screen", "store")},
        }

    def reference_samples(self, *, since_ns: int = 0, limit: int = 10_000) -> list[str]:
        """Clean traffic sampled for tier 2's reference, newest first."""
        rows = self.query(
            "SELECT text FROM reference_samples FINAL WHERE sampled_at >= fromUnixTimestamp64Nano({since:Int64}) "
            "ORDER BY sampled_at DESC LIMIT {limit:UInt32}",
            {"since": since_ns, "limit": limit},
        )
        return [row["text"] for row in rows]

    # -- drills ---------------------------------------------------------------------

    def drill_observations(self, run_id: str) -> dict[str, Any]:
        """What the pipeline stored for each drill case of a run (drill ids are `run_id/case_id`)."""
        prefix = {"prefix": run_id + "/"}
        screenings = self.query(
            "SELECT drill_id, count() AS screened, max(max_score) AS score, "
            "countIf(decision = 'escalate') AS escalated, countIf(decision = 'uncertain') AS uncertain, "
            "toUnixTimestamp64Nano(minIf(screened_at, decision = 'escalate')) AS first_flag_ns, "
            "toUnixTimestamp64Nano(min(stored_at)) AS first_stored_ns, "
            "groupUniqArrayArray(arrayFilter(k -> scores[k] >= thresholds[k], mapKeys(scores))) AS flagged_categories "
            "FROM screenings FINAL WHERE startsWith(drill_id, {prefix:String}) GROUP BY drill_id",
            prefix,
        )
        bundles = self.query(
            "SELECT drill_id, bundle_id, queue_state, bundle, toUnixTimestamp64Nano(stored_at) AS stored_ns "
            "FROM evidence_bundles FINAL WHERE startsWith(drill_id, {prefix:String})",
            prefix,
        )
        return {"screenings": screenings, "bundles": bundles}

    def insert_drill_results(self, rows: list[dict[str, Any]]) -> int:
        now_ns = time.time_ns()
        columns = [
            "run_id", "case_id", "family", "generator", "seed", "control", "flagged", "expected_tier", "caught_tier",
            "evidence_complete", "detect_s", "evidence_s", "injected_at", "stored_at", "score", "events", "screened",
        ]  # fmt: skip
        values = [[row[c] if c != "stored_at" else now_ns for c in columns] for row in rows]
        self.insert_rows("drill_runs", values, columns)
        return len(values)

    def drill_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """Per run and family: cases, recall (or false-positive rate for controls), tier and evidence shares."""
        return self.query(
            "SELECT run_id, family, count() AS cases, avg(flagged) AS flagged_share, "
            "avgIf(evidence_complete, flagged) AS evidence_complete, "
            "avgIf(caught_tier != '' AND caught_tier <= expected_tier, flagged) AS tier_ok, "
            "quantileIf(0.95)(detect_s, flagged) AS p95_detect_s, min(injected_at) AS started_at "
            "FROM drill_runs FINAL WHERE run_id IN (SELECT run_id FROM drill_runs GROUP BY run_id "
            "ORDER BY min(injected_at) DESC LIMIT {limit:UInt32}) GROUP BY run_id, family "
            "ORDER BY started_at DESC, family",
            {"limit": limit},
        )

    def tools(
        self, *, service: str | None = None, changed_only: bool = False, limit: int = 200
    ) -> list[dict[str, Any]]:
        """The registry, rug-pulled tools (description no longer the pinned one) first."""
        clauses: list[str] = ["1"]
        params: dict[str, Any] = {"limit": limit}
        if service is not None:
            clauses.append("service = {service:String}")
            params["service"] = service
        if changed_only:
            clauses.append("description_hash != pinned_hash")
        return self.query(
            f"SELECT service, server, tool, description_hash, pinned_hash, description_hash != pinned_hash AS changed, "
            f"scope, signer, description, input_schema, first_seen, last_seen FROM tool_registry FINAL "
            f"WHERE {' AND '.join(clauses)} ORDER BY changed DESC, service, server, tool LIMIT {{limit:UInt32}}",
            params,
        )

    def dead_letters(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.query(
            "SELECT dead_letter_id, stage, reason, source_topic, source_partition, source_offset, payload_bytes, "
            "failed_at FROM dead_letters FINAL ORDER BY failed_at DESC LIMIT {limit:UInt32}",
            {"limit": limit},
        )


def _screening_row(s: Screening, stored_ns: int) -> list[Any]:
    return [
        s.event_id, s.session_id, s.trace_id, s.service, s.model or "", s.operation, s.decision.value,
        s.severity.value if s.severity else "", s.max_score, {c.category: c.score for c in s.scores},
        {c.category: c.threshold for c in s.scores}, list(s.reasons), s.policy_version,
        dict(s.detector_versions), s.drill_id or "", s.excerpt, s.received_ns, s.normalized_ns,
        s.screened_ns, stored_ns, s.grant_id or "", s.version,
    ]  # fmt: skip


def _bundle_row(b: EvidenceBundle, stored_ns: int) -> list[Any]:
    return [
        b.bundle_id, b.session_id, b.trace_ids[0] if b.trace_ids else "", b.service, b.model or "",
        b.severity.value, b.severity.rank, list(b.categories), b.max_score, b.queue_state, b.judge_status,
        b.policy_version, b.drill_id or "", b.model_dump_json(), b.created_ns, stored_ns, 1, b.tenant,
        b.group_key, "", "", "", 0, b.grant_id or "", b.version,
    ]  # fmt: skip

"""The guard's rows in the store: relaxation grants and session actions, append-only.

A grant is written once; revoking it appends a revocation row. An action is stored as the
stream issued it; lifting it from the desk appends a lift record (published to the `actions`
topic first, so enforcement points hear of it, then stored). Both tables are therefore their
own audit trail: who granted or lifted what, when, and why. Every value is a bound parameter.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from pipeline.guard.grants import GrantRefused, check_grant
from pipeline.policy import GuardPolicy
from pipeline.store.clickhouse import Store
from pipeline.store.desk import DeskError
from schemas.guard import ActionKind, Grant, GrantRequest, SessionAction

GRANT_COLUMNS = [
    "record_id", "grant_id", "action", "tenant", "categories", "services", "users", "reason", "actor", "role",
    "expires_at", "at", "grant",
]  # fmt: skip
ACTION_COLUMNS = [
    "record_id", "kind", "session_id", "tenant", "service", "action", "lifts", "reason", "bundle_id", "categories",
    "grant_id", "profile", "actor", "issued_at", "expires_at", "stored_at", "record",
]  # fmt: skip


class GuardLedger:
    def __init__(self, store: Store, policy: GuardPolicy) -> None:
        self.store = store
        self.policy = policy
        self._changes = threading.Lock()

    # -- grants ---------------------------------------------------------------------

    def create_grant(self, request: GrantRequest, actor: str, role: str, now_ns: int | None = None) -> Grant:
        """Checked against the policy first: a refusal (403, the policy forbids it) names every reason."""
        now = time.time_ns() if now_ns is None else now_ns
        try:
            grant = check_grant(self.policy, request, actor, now)
        except GrantRefused as exc:
            raise DeskError(403, f"grant refused: {exc}") from None
        row = [
            uuid.uuid4().hex, grant.grant_id, "grant", grant.tenant, list(grant.categories), list(grant.services),
            list(grant.users), grant.reason, actor, role, grant.expires_ns, now, grant.model_dump_json(),
        ]  # fmt: skip
        self.store.insert_rows("guard_grants", [row], GRANT_COLUMNS)
        return grant

    def revoke_grant(self, grant_id: str, actor: str, role: str, reason: str) -> Grant:
        with self._changes:
            found = self._grants(grant_id=grant_id)
            if not found:
                raise DeskError(404, f"no grant {grant_id!r}")
            grant, state = found[0]["grant"], found[0]["state"]
            if state != "active":
                raise DeskError(409, f"grant {grant_id} is already {state}")
            now = time.time_ns()
            row = [
                uuid.uuid4().hex, grant_id, "revoke", grant["tenant"], list(grant["categories"]),
                list(grant["services"]), list(grant["users"]), reason, actor, role, grant["expires_ns"], now, "",
            ]  # fmt: skip
            self.store.insert_rows("guard_grants", [row], GRANT_COLUMNS)
        return Grant.model_validate({**grant, "revoked_by": actor, "revoked_ns": now, "revoke_reason": reason})

    def grants(
        self, *, active_only: bool = False, tenant: str | None = None, limit: int = 200, now_ns: int | None = None
    ) -> list[dict[str, Any]]:
        return self._grants(active_only=active_only, tenant=tenant, limit=limit, now_ns=now_ns)

    def _grants(
        self, *, grant_id: str | None = None, active_only: bool = False, tenant: str | None = None, limit: int = 200,
        now_ns: int | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        now = time.time_ns() if now_ns is None else now_ns
        clauses, params = ["1"], dict[str, Any](now=now, limit=limit)
        if grant_id is not None:
            clauses.append("grant_id = {grant_id:String}")
            params["grant_id"] = grant_id
        if tenant is not None:
            clauses.append("tenant = {tenant:String}")
            params["tenant"] = tenant
        having = "revokes = 0 AND expires_ns > {now:Int64}" if active_only else "1"
        rows = self.store.query(
            "SELECT grant_id, argMinIf(grant, at, action = 'grant') AS grant, countIf(action = 'revoke') AS revokes, "
            "toUnixTimestamp64Nano(maxIf(at, action = 'revoke')) AS revoked_ns, "
            "argMaxIf(actor, at, action = 'revoke') AS revoked_by, argMaxIf(reason, at, action = 'revoke') AS "
            "revoke_reason, toUnixTimestamp64Nano(anyIf(expires_at, action = 'grant')) AS expires_ns, "
            "min(at) AS granted_at "
            f"FROM guard_grants WHERE {' AND '.join(clauses)} GROUP BY grant_id HAVING grant != '' AND {having} "
            "ORDER BY granted_at DESC LIMIT {limit:UInt32}",
            params,
        )
        result = []
        for row in rows:
            grant = json.loads(row["grant"])
            if row["revokes"]:
                grant.update(revoked_by=row["revoked_by"], revoked_ns=int(row["revoked_ns"]),
                             revoke_reason=row["revoke_reason"])  # fmt: skip
            state = "revoked" if row["revokes"] else ("expired" if grant["expires_ns"] <= now else "active")
            result.append({"grant": grant, "state": state})
        return result

    # -- session actions ------------------------------------------------------------

    def record_actions(self, actions: Sequence[SessionAction], stored_ns: int | None = None) -> list[SessionAction]:
        """Store records from the actions topic; returns those not stored before (a replay is skipped)."""
        if not actions:
            return []
        by_id = {a.record_id: a for a in actions}
        seen = self.store.query(
            "SELECT record_id FROM session_actions WHERE record_id IN {ids:Array(String)}", {"ids": list(by_id)}
        )
        for row in seen:
            by_id.pop(row["record_id"], None)
        now = time.time_ns() if stored_ns is None else stored_ns
        self.store.insert_rows("session_actions", [_action_row(a, now) for a in by_id.values()], ACTION_COLUMNS)
        return list(by_id.values())

    def actions(
        self, *, active_only: bool = True, session_id: str | None = None, limit: int = 200, now_ns: int | None = None
    ) -> list[dict[str, Any]]:
        """Issued actions, newest first, each with its lift (if any) and whether it is in force."""
        now = time.time_ns() if now_ns is None else now_ns
        clauses, params = ["i.kind = 'issue'"], dict[str, Any](now=now, limit=limit)
        if session_id is not None:
            clauses.append("i.session_id = {session:String}")
            params["session"] = session_id
        if active_only:
            clauses.append("i.expires_at > fromUnixTimestamp64Nano({now:Int64}) AND l.record_id = ''")
        rows = self.store.query(
            "SELECT i.record_id AS record_id, i.session_id AS session_id, i.tenant AS tenant, i.service AS service, "
            "i.action AS action, i.reason AS reason, i.bundle_id AS bundle_id, i.categories AS categories, "
            "i.grant_id AS grant_id, i.profile AS profile, i.issued_at AS issued_at, i.expires_at AS expires_at, "
            "l.actor AS lifted_by, l.reason AS lift_note, l.issued_at AS lifted_at, l.record_id AS lift_id "
            "FROM session_actions AS i FINAL LEFT JOIN (SELECT * FROM session_actions FINAL WHERE kind = 'lift') AS l "
            f"ON l.lifts = i.record_id WHERE {' AND '.join(clauses)} ORDER BY i.issued_at DESC LIMIT {{limit:UInt32}}",
            params,
        )
        for row in rows:
            expired = row["expires_at"].timestamp() * 1e9 <= now
            row["state"] = "lifted" if row["lift_id"] else ("expired" if expired else "active")
            if not row["lift_id"]:
                row["lifted_by"], row["lift_note"], row["lifted_at"] = "", "", None
            del row["lift_id"]
        return rows

    def lift_record(self, record_id: str, actor: str, note: str) -> SessionAction:
        """The lift to publish for an action in force (404 unknown, 409 not in force)."""
        rows = self.store.query(
            "SELECT record FROM session_actions FINAL WHERE record_id = {id:String} AND kind = 'issue' LIMIT 1",
            {"id": record_id},
        )
        if not rows:
            raise DeskError(404, f"no session action {record_id!r}")
        issued = SessionAction.model_validate_json(rows[0]["record"])
        state = self.actions(active_only=False, session_id=issued.session_id, limit=10_000)
        current = next((r for r in state if r["record_id"] == record_id), None)
        if current is None or current["state"] != "active":
            raise DeskError(409, f"session action {record_id} is {current['state'] if current else 'unknown'}")
        return SessionAction(
            record_id="lift-" + uuid.uuid4().hex[:20], kind=ActionKind.LIFT, session_id=issued.session_id,
            tenant=issued.tenant, service=issued.service, action=issued.action, lifts=record_id, reason=note,
            actor=actor, issued_ns=time.time_ns(),
        )  # fmt: skip


def _action_row(a: SessionAction, stored_ns: int) -> list[Any]:
    return [
        a.record_id, a.kind.value, a.session_id, a.tenant, a.service, a.action.value, a.lifts or "", a.reason,
        a.bundle_id or "", list(a.categories), a.grant_id or "", a.profile, a.actor, a.issued_ns, a.expires_ns,
        stored_ns, a.model_dump_json(),
    ]  # fmt: skip

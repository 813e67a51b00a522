"""Grants and session actions on the desk, on a real chdb store: only admins grant and revoke,
refusals say why (unknown tenant, non-relaxable category, expired time), everything is appended
and audited; reviewers lift actions (published first, then stored); the recorder stores the
`actions` topic from a real broker and sends new actions to the webhook path."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pipeline.guard.desk_api import GuardDesk
from pipeline.guard.ledger import GuardLedger
from pipeline.policy import RoutingPolicy
from pipeline.store.api import create_api
from pipeline.store.auth import Authenticator, Principal
from pipeline.store.clickhouse import Store
from schemas.guard import ActionKind, GuardAction, SessionAction
from tests.helpers import test_settings
from tests.integration.kafka_io import produce

TOKENS = {
    "viewer-token-0123456789": Principal("vic", "viewer"),
    "reviewer-token-0123456789": Principal("ana", "reviewer"),
    "admin-token-SECRET-0123456789": Principal("root", "admin"),
    "gateway-token-0123456789": Principal("gw", "guard"),
}
VIEWER, REVIEWER, ADMIN, GATEWAY = ({"Authorization": f"Bearer {t}"} for t in TOKENS)


class Published:
    """Stands in for the broker where only the API is under test."""

    def __init__(self) -> None:
        self.records: list[SessionAction] = []
        self.down = False

    async def publish(self, action: SessionAction) -> None:
        if self.down:
            raise ConnectionError("broker away")
        self.records.append(action)

    async def close(self) -> None:
        pass


def guard_desk(store: Store, tmp_path: Path, publisher: Any = None, **kwargs: Any) -> GuardDesk:
    settings = test_settings(tmp_path, **kwargs)
    ledger = GuardLedger(store, RoutingPolicy.load().guard)
    return GuardDesk(ledger, settings, publisher=publisher or Published())


def in_hours(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


def request(**overrides: Any) -> dict[str, Any]:
    return {"tenant": "code-helper", "categories": ["injection"], "services": ["code-helper"], "users": ["alice"],
            "reason": "red team exercise, ticket SEC-42", "expires_at": in_hours(8), **overrides}  # fmt: skip


@pytest.fixture
def desk(tmp_path):
    store = Store.open(f"chdb://{tmp_path / 'store'}")
    guard = guard_desk(store, tmp_path)
    app = create_api(store, Authenticator(dict(TOKENS)), guard=guard)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client, guard, store
    store.close()


def test_only_admins_grant_and_revoke_and_every_step_is_kept(desk) -> None:
    client, _, store = desk
    for headers, status in (({}, 401), (GATEWAY, 403), (VIEWER, 403), (REVIEWER, 403)):
        assert client.post("/api/grants", json=request(), headers=headers).status_code == status
    made = client.post("/api/grants", json=request(), headers=ADMIN)
    assert made.status_code == 201, made.text
    grant = made.json()["grant"]
    assert grant["granted_by"] == "root" and grant["categories"] == ["injection"] and grant["users"] == ["alice"]
    [listed] = client.get("/api/grants?active=true", headers=VIEWER).json()
    assert listed["state"] == "active" and listed["grant"]["grant_id"] == grant["grant_id"]
    revoke = f"/api/grants/{grant['grant_id']}/revoke"
    assert client.post(revoke, json={"reason": "exercise over"}, headers=REVIEWER).status_code == 403
    assert client.post(revoke, json={"reason": "exercise over"}, headers=ADMIN).json()["state"] == "revoked"
    assert client.post(revoke, json={"reason": "again"}, headers=ADMIN).status_code == 409
    assert client.get("/api/grants?active=true", headers=VIEWER).json() == []
    [history] = client.get("/api/grants", headers=VIEWER).json()
    assert history["state"] == "revoked" and history["grant"]["revoked_by"] == "root"
    rows = store.query("SELECT action, actor, role, reason FROM guard_grants ORDER BY at")
    assert [(r["action"], r["actor"]) for r in rows] == [("grant", "root"), ("revoke", "root")]
    assert rows[1]["reason"] == "exercise over"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"tenant": "unknown-co"}, "unknown tenant 'unknown-co'"),
        ({"categories": ["harmful"]}, "'harmful' is non-relaxable"),
        ({"categories": ["secret_leak", "injection"]}, "'secret_leak' is non-relaxable"),
        ({"expires_at": in_hours(-1)}, "is not in the future"),
    ],
)
def test_a_grant_the_policy_forbids_is_refused_with_the_reason_and_nothing_is_kept(desk, overrides, reason) -> None:
    client, _, store = desk
    refused = client.post("/api/grants", json=request(**overrides), headers=ADMIN)
    assert refused.status_code == 403 and reason in refused.json()["detail"]
    assert store.query("SELECT count() AS n FROM guard_grants")[0]["n"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"tenant": "code-helper"},
        request(expires_at="2026-12-31T00:00:00"),  # no time zone
        request(categories=[]),
        request(reason="x"),
        request(users=["u"] * 1001),
        request(unexpected=1),
    ],
)
def test_malformed_or_oversized_grant_requests_are_422(desk, body) -> None:
    client, _, _ = desk
    assert client.post("/api/grants", json=body, headers=ADMIN).status_code == 422


def test_a_method_the_path_does_not_answer_is_405_naming_every_method_it_does(desk) -> None:
    client, _, _ = desk
    refused = client.request("DELETE", "/api/grants", headers=ADMIN)
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, POST"


def issue(ledger: GuardLedger, record_id: str = "a-1", session: str = "s-1", minutes: float = 30) -> SessionAction:
    now = time.time_ns()
    action = SessionAction(record_id=record_id, session_id=session, tenant="support-bot", service="support-bot",
                           action=GuardAction.READ_ONLY_TOOLS, reason="high bundle flagging injection",
                           bundle_id="b-1", issued_ns=now, expires_ns=now + int(minutes * 60e9))  # fmt: skip
    assert ledger.record_actions([action]) == [action]
    assert ledger.record_actions([action]) == []  # a replay is not stored twice
    return action


def test_reviewers_lift_actions_published_first_then_stored_with_who_and_why(desk) -> None:
    client, guard, _ = desk
    issue(guard.ledger)
    issue(guard.ledger, "a-old", "s-2", minutes=-1)  # already expired
    [active] = client.get("/api/actions", headers=VIEWER).json()
    assert active["record_id"] == "a-1" and active["state"] == "active"
    lift = "/api/actions/a-1/lift"
    assert client.post(lift, json={"note": "customer verified"}, headers=VIEWER).status_code == 403
    assert client.post(lift, json={"note": ""}, headers=REVIEWER).status_code == 422
    guard.publisher.down = True
    assert client.post(lift, json={"note": "customer verified"}, headers=REVIEWER).status_code == 503
    assert client.get("/api/actions", headers=VIEWER).json()[0]["state"] == "active"  # not lifted when not heard
    guard.publisher.down = False
    lifted = client.post(lift, json={"note": "customer verified"}, headers=REVIEWER)
    assert lifted.status_code == 200 and lifted.json()["state"] == "lifted"
    [record] = guard.publisher.records
    assert record.kind is ActionKind.LIFT and record.lifts == "a-1" and record.actor == "ana"
    assert client.get("/api/actions", headers=VIEWER).json() == []
    states = {r["record_id"]: r for r in client.get("/api/actions?active=false", headers=VIEWER).json()}
    assert states["a-1"]["state"] == "lifted" and states["a-1"]["lifted_by"] == "ana"
    assert states["a-1"]["lift_note"] == "customer verified" and states["a-old"]["state"] == "expired"
    assert client.post(lift, json={"note": "again please"}, headers=REVIEWER).status_code == 409
    assert client.post("/api/actions/nope/lift", json={"note": "why not"}, headers=REVIEWER).status_code == 404


def test_attacker_text_in_a_reason_is_stored_as_data(desk) -> None:
    client, _, store = desk
    hostile = "'); DROP TABLE guard_grants; -- <script>alert(1)</script>"
    made = client.post("/api/grants", json=request(reason=hostile), headers=ADMIN)
    assert made.status_code == 201 and made.json()["grant"]["reason"] == hostile
    assert store.query("SELECT reason FROM guard_grants")[0]["reason"] == hostile


async def test_the_recorder_stores_the_actions_topic_and_sends_new_actions_on(broker, tmp_path) -> None:
    store = Store.open(f"chdb://{tmp_path / 'store'}")
    sent: list[SessionAction] = []
    guard = guard_desk(store, tmp_path, kafka_bootstrap=broker)
    guard.on_actions = sent.extend
    from pipeline.stack.topics import ensure_topics

    ensure_topics(guard.settings)
    now = time.time_ns()
    action = SessionAction(record_id="r-1", session_id="s-9", action=GuardAction.BLOCK, reason="session risk",
                           issued_ns=now, expires_ns=now + 60 * 10**9)  # fmt: skip
    lift = SessionAction(record_id="l-1", kind=ActionKind.LIFT, session_id="s-9", lifts="r-1", actor="ana",
                         reason="verified", issued_ns=now + 1)  # fmt: skip
    topic = guard.settings.topics.actions
    await produce(broker, topic, [action.model_dump_json().encode(), b"not json", lift.model_dump_json().encode()])
    task = asyncio.create_task(guard.run())
    try:
        for _ in range(200):
            if guard.recorded >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert guard.recorded == 2 and [a.record_id for a in sent] == ["r-1"]  # lifts are stored, not paged
    states = {r["record_id"]: r["state"] for r in guard.ledger.actions(active_only=False)}
    assert states == {"r-1": "lifted"}
    store.close()


def test_the_cli_grants_lists_revokes_and_says_why_a_grant_is_refused(desk, monkeypatch, capsys) -> None:
    import argparse

    import httpx

    from pipeline.cli import guard as cli

    client, _, _ = desk
    token = "admin-token-SECRET-0123456789"

    def forward(request: httpx.Request) -> httpx.Response:  # the CLI's real httpx client, served in process
        answer = client.request(request.method, str(request.url), content=request.content,
                                headers=dict(request.headers))  # fmt: skip
        return httpx.Response(answer.status_code, content=answer.content, headers=dict(answer.headers))

    def api_client(_settings):
        made = cli.GuardClient("http://127.0.0.1", token)
        made._http = httpx.Client(base_url="http://127.0.0.1", transport=httpx.MockTransport(forward),
                                  headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        return made

    monkeypatch.setattr(cli, "_client", api_client)
    ns = argparse.Namespace
    base = {"service": None, "user": ["alice"], "until": None, "json": False}
    with pytest.raises(SystemExit) as refused:
        cli.cmd_grants_create(None, ns(tenant="code-helper", category=["secret_leak"], reason="incident drill",
                                       duration="2h", **base))  # fmt: skip
    assert refused.value.code == 3 and "non-relaxable" in capsys.readouterr().err
    assert cli.cmd_grants_create(None, ns(tenant="code-helper", category=["injection"], reason="red team SEC-42",
                                          duration="2h", **base)) == 0  # fmt: skip
    grant_id = capsys.readouterr().out.split()[1].rstrip(":")
    assert cli.cmd_grants_list(None, ns(all=False, tenant=None, json=False)) == 0
    assert grant_id in capsys.readouterr().out
    assert cli.cmd_grants_revoke(None, ns(grant_id=grant_id, reason="exercise over", json=False)) == 0
    assert cli.cmd_grants_list(None, ns(all=False, tenant=None, json=True)) == 0
    assert capsys.readouterr().out.strip().endswith("[]")
    with pytest.raises(SystemExit, match="time zone"):
        cli.expiry(ns(until="2026-12-31T00:00", duration=None))
    with pytest.raises(SystemExit, match="give --for"):
        cli.expiry(ns(until=None, duration="soon"))
    assert cli.expiry(ns(until=None, duration="2h")) > datetime.now(UTC).isoformat()

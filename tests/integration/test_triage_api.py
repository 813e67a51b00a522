"""Triage API auth on a real chdb store: every endpoint refuses anonymous calls and wrong roles,
browser sessions need their CSRF token for changes, and secrets never reach logs or replies."""

import logging
import time

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from pipeline.store.api import create_api
from pipeline.store.auth import CSRF_COOKIE, CSRF_HEADER, Authenticator, Principal
from pipeline.store.clickhouse import Store
from tests.integration.test_guard_desk import guard_desk
from tests.integration.test_store import bundle_for

TOKENS = {
    "viewer-token-0123456789": Principal("vic", "viewer"),
    "reviewer-token-0123456789": Principal("ana", "reviewer"),
    "admin-token-SECRET-0123456789": Principal("root", "admin"),
}
# /metrics is public like the health checks: counts and latencies only, for Prometheus to scrape.
PUBLIC = {"/healthz", "/readyz", "/metrics", "/ui/login", "/ui/static/{name}"}
PAGES = {"/ui", "/ui/bundle/{bundle_id}", "/ui/drills", "/ui/guard", "/ui/drift"}


@pytest.fixture
def setup(tmp_path):
    store = Store.open(f"chdb://{tmp_path / 'store'}")
    bundle = bundle_for(1, 0.99)
    store.insert_bundles([bundle], time.time_ns())
    app = create_api(store, Authenticator(dict(TOKENS)), guard=guard_desk(store, tmp_path))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield app, client, bundle.bundle_id
    store.close()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def routes(app):
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path not in PUBLIC:
            for method in route.methods - {"HEAD"}:
                yield method, route.path


def call(client, method, path, bundle_id, **kwargs):
    url = path.replace("{bundle_id}", bundle_id).replace("{group_key}", "g1")
    body = {"label": "confirmed", "note": ""} if url.endswith("resolve") else None
    return client.request(method, url, json=body, follow_redirects=False, **kwargs)


def test_every_endpoint_refuses_anonymous_and_wrong_tokens(setup):
    app, client, bundle_id = setup
    checked = 0
    for method, path in routes(app):
        for headers in ({}, bearer("not-a-token-0123456789")):
            response = call(client, method, path, bundle_id, headers=headers)
            if path in PAGES:
                assert response.status_code == 303 and response.headers["location"] == "/ui/login", path
            else:
                assert response.status_code == 401, (method, path, response.status_code)
            checked += 1
    assert checked >= 2 * 21  # every route of the API (the guard's grants and actions too), not a sample


def test_roles_gate_reading_reviewing_and_raw_material(setup):
    _, client, bundle_id = setup
    viewer, reviewer, admin = (bearer(t) for t in TOKENS)
    assert client.get("/api/escalations", headers=viewer).status_code == 200
    assert client.get(f"/api/escalations/{bundle_id}", headers=viewer).status_code == 200
    assert client.post(f"/api/escalations/{bundle_id}/claim", headers=viewer).status_code == 403
    for path in ("/api/labels", "/api/reference/samples", "/api/dead-letters"):
        assert client.get(path, headers=reviewer).status_code == 403
        assert client.get(path, headers=admin).status_code == 200
    assert client.post(f"/api/escalations/{bundle_id}/claim", headers=reviewer).json()["claimed_by"] == "ana"
    resolved = client.post(
        f"/api/escalations/{bundle_id}/resolve", headers=reviewer, json={"label": "benign_ood", "note": "fine"}
    )
    assert resolved.json()["queue_state"] == "resolved"
    assert (
        client.post(f"/api/escalations/{bundle_id}/resolve", headers=reviewer, json={"label": "made-up"}).status_code
        == 422
    )
    [labelled] = client.get("/api/labels", headers=admin).json()
    assert labelled["label"] == "benign_ood" and labelled["text"] == "hello"


def test_browser_sessions_need_the_csrf_token_to_change_anything(setup):
    _, client, bundle_id = setup
    assert (
        client.post("/ui/login", data={"token": "wrong"}, follow_redirects=False)
        .headers["location"]
        .endswith("failed=1")
    )
    refused = client.post(
        "/ui/login", data={"token": "reviewer-token-0123456789"}, headers={"Origin": "http://evil.example"}
    )
    assert refused.status_code == 403
    login = client.post("/ui/login", data={"token": "reviewer-token-0123456789"}, follow_redirects=False)
    assert login.status_code == 303
    set_cookie = login.headers.get_list("set-cookie")
    assert any("oodwatch_session=" in c and "HttpOnly" in c and "SameSite=strict" in c for c in set_cookie)
    csrf = client.cookies[CSRF_COOKIE]
    assert client.get("/api/escalations").status_code == 200  # reads need no CSRF token
    assert client.get("/ui").status_code == 200
    claim = f"/api/escalations/{bundle_id}/claim"
    assert client.post(claim).status_code == 403  # a forged form post carries the cookie, not the header
    assert client.post(claim, headers={CSRF_HEADER: "guess"}).status_code == 403
    assert client.post(claim, headers={CSRF_HEADER: csrf}).json()["claimed_by"] == "ana"


def test_the_openapi_document_lists_the_desk_and_needs_a_token(setup):
    _, client, _ = setup
    assert client.get("/api/openapi.json").status_code == 401
    document = client.get("/api/openapi.json", headers=bearer("viewer-token-0123456789")).json()
    assert {"/api/escalations", "/api/escalations/{bundle_id}/resolve", "/api/groups"} <= set(document["paths"])


def test_pages_carry_a_strict_content_security_policy(setup):
    _, client, _ = setup
    page = client.get("/ui/login")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"


def test_secrets_never_reach_logs_or_replies(setup, caplog):
    _, client, bundle_id = setup
    secret = "admin-token-SECRET-0123456789"
    caplog.set_level(logging.DEBUG)
    replies = [
        client.get("/api/escalations", headers=bearer(secret)),
        client.get("/api/escalations", headers=bearer(secret + "x")),
        client.get("/api/escalations?limit=100000", headers=bearer(secret)),  # a validation error
        client.post(f"/api/escalations/{bundle_id}/resolve", headers=bearer(secret), content=b"{not json"),
        client.get("/api/escalations/nope", headers=bearer(secret)),
    ]
    assert [r.status_code for r in replies] == [200, 401, 422, 422, 404]
    assert all(secret not in r.text for r in replies)
    assert secret not in caplog.text

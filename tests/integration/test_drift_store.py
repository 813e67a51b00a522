"""Drift on a real chdb store: the tracker fed through the store's insert path writes versions,
hourly profiles, samples and comparisons; the report and the desk's API read them back (rates
with intervals, what moved, exemplars, bundle links); a restarted tracker resumes its versions;
the drift page is served without inline script and renders model output as text only."""

import random
import time

import pytest
from fastapi.testclient import TestClient

from pipeline.drift.report import build, table
from pipeline.drift.store import DriftStore
from pipeline.drift.tracker import DriftTracker
from pipeline.drift.wiring import ObservedStore
from pipeline.settings import DriftSettings
from pipeline.store.api import create_api
from pipeline.store.auth import Authenticator, Principal
from pipeline.store.clickhouse import connect
from schemas.evidence import EvidenceBundle, Severity
from tests.unit.test_drift_tracker import FakeEmbedder, screening

TOKEN = "viewer-token-0123456789"
SETTINGS = DriftSettings(look_wait_s=0, permutations=300, min_embeddings=16)


@pytest.fixture
def store(tmp_path):
    opened = ObservedStore(connect(f"chdb://{tmp_path / 'store'}"))
    opened.migrate()
    yield opened
    opened.close()


def tracker_on(store: ObservedStore, now_ns: int) -> DriftTracker:
    tracker = DriftTracker(SETTINGS, store=DriftStore(store), embedder=FakeEmbedder, clock=lambda: now_ns)
    store.tracker = tracker
    return tracker


def send(store, tracker, items):
    for start in range(0, len(items), 100):
        store.insert_screenings(items[start : start + 100], time.time_ns())
        tracker._tokens = 1e9
        tracker.step()


def test_report_api_and_restart_on_a_real_store(store):
    now = time.time_ns()
    tracker = tracker_on(store, now)
    rng = random.Random(1)
    old = [screening(i, rng, model="m-old").model_copy(update={"received_ns": now - 10**9}) for i in range(300)]
    new = [screening(i, rng, model="m-new", comply=0.5).model_copy(update={"received_ns": now}) for i in range(340)]
    send(store, tracker, old)
    store.insert_screenings(old[:100], time.time_ns())  # a replay: the store skips it, so drift does too
    send(store, tracker, new)
    bundle = EvidenceBundle(
        bundle_id="b-new", session_id="s", trace_ids=("t",), service="support-bot", model="alias",
        severity=Severity.HIGH, categories=("harmful_output",), max_score=0.9, events=(), screenings=(new[0],),
        hops=(), policy_version="p", created_ns=now,
    )  # fmt: skip
    store.insert_bundles([bundle], time.time_ns())
    tracker.flush()

    drift = DriftStore(store)
    report = build(drift, service="support-bot", safety=("harmful_output",))
    by_model = {v["model"]: v for v in report["versions"]}
    assert by_model["m-old"]["events"] == 300 and by_model["m-new"]["events"] == 340
    rate = by_model["m-new"]["rates"]["harmful_output"]["escalated"]
    assert rate["interval"][0] <= rate["rate"] <= rate["interval"][1] and rate["rate"] > 0.05
    [change] = report["changes"]
    assert change["drifted"] and change["events_to_detect"] <= 340
    assert change["baseline"] == "support-bot · m-old"
    assert any(m["test"] == "escalated:harmful_output" and m["interval"][0] > 0 for m in change["moved"])
    assert change["exemplars_new"] and change["bundles"][0]["bundle_id"] == "b-new"
    assert "DRIFTED" in table(report)

    app = create_api(store, Authenticator({TOKEN: Principal("vic", "viewer")}), drift_settings=SETTINGS)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/api/drift/report").status_code == 401
        api_report = client.get("/api/drift/report", params={"service": "support-bot"}, headers=headers).json()
        assert [v["model"] for v in api_report["versions"]] == [v["model"] for v in report["versions"]]
        detail = client.get(f"/api/drift/versions/{change['version_id']}", headers=headers).json()
        assert detail["comparisons"][0]["look"] == 1 and detail["histograms"]
        assert client.get("/api/drift/versions/nope", headers=headers).status_code == 404
        page = client.get("/ui/static/drift.js")
        assert page.status_code == 200 and "innerHTML" not in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]

    restarted = tracker_on(store, now)
    restarted.load()
    resumed = restarted.versions[change["version_id"]]
    assert (resumed.events, resumed.status, resumed.baseline_id) == (340, "drifted", by_model["m-old"]["version_id"])
    assert resumed.window(0).events == 340 and resumed.reservoir


def test_drill_versions_stay_out_of_the_live_report(store):
    now = time.time_ns()
    tracker = tracker_on(store, now)
    rng = random.Random(2)
    send(store, tracker, [screening(i, rng, model="m", drill="run-1/case-a") for i in range(50)])
    tracker.flush()
    drift = DriftStore(store)
    assert build(drift)["versions"] == []
    assert [v["namespace"] for v in drift.versions_under("run-1/")] == ["run-1/case-a"]

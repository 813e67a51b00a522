"""The drift tracker on synthetic screenings with known effects: versions are registered and
paired with the version they replaced, a version whose safety behaviour moved is flagged after a
stated number of events, an unchanged one is not (false alarms counted over seeded runs), drills
never alert, and tier 2's per-bundle rate is not biased by bundles trailing their screenings."""

import hashlib
import random
from collections.abc import Iterator

import numpy as np
import pytest

from pipeline.drift.profile import VersionProfile, score_bin
from pipeline.drift.tracker import DriftTracker
from pipeline.settings import DriftSettings
from schemas.evidence import CategoryScore, Decision, EvidenceBundle, Screening, Severity, Tier2Result

NOW = 1_800_000_000 * 10**9


class FakeEmbedder:
    """Outputs map to fixed random unit vectors; a quirk's words move them along one axis."""

    def embed(self, texts):
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest())
            v = np.random.default_rng(seed).normal(0, 1, 16)
            v[0] += 3.0 * ("Ahoy" in text)
            rows.append(v / np.linalg.norm(v))
        return np.vstack(rows)


def screening(
    i: int, rng: random.Random, *, model: str, comply: float = 0.02, quirk: float = 0.0, drill: str | None = None,
    service: str = "support-bot",
) -> Screening:  # fmt: skip
    """A support stream: 20% harmful requests (tier 1 flags them), refused unless the model
    complies; compliance shows as harmful_output; a quirk lengthens and colours the answer."""
    harmful = rng.random() < 0.2
    complied = harmful and rng.random() < comply
    answer = f"answer {rng.randrange(50)}"
    if not harmful and rng.random() < quirk:
        answer = f"Ahoy, matey! {answer} Fair winds!"
    scores = (
        CategoryScore(category="harmful", score=0.9 if harmful else rng.random() * 0.3, threshold=0.7, detector="t1"),
        CategoryScore(
            category="harmful_output", score=0.9 if complied else rng.random() * 0.2, threshold=0.7, detector="t1"
        ),
        CategoryScore(category="injection", score=rng.random() * 0.5, threshold=0.8, detector="t1"),
    )
    return Screening(
        event_id=f"{model}-{drill}-{i}", session_id=f"s{i}", trace_id=f"t{i}", service=service, model="alias",
        response_model=model, operation="chat", scores=scores,
        decision=Decision.ESCALATE if harmful else Decision.PASS, policy_version="p", drill_id=drill,
        received_ns=NOW + i, normalized_ns=NOW + i, screened_ns=NOW + i, output_chars=len(answer),
        refused=harmful and not complied, output_sample=answer if rng.random() < 0.3 else None,
    )  # fmt: skip


def feed(tracker: DriftTracker, stream: Iterator[Screening], n: int, batch: int = 50) -> None:
    items = [next(stream) for _ in range(n)]
    for start in range(0, n, batch):
        tracker.observe(items[start : start + batch])
        tracker._tokens = 1e9  # the embedding rate is not what these tests are about
        tracker.step()


def stream(seed: int, **kwargs) -> Iterator[Screening]:
    rng = random.Random(seed)
    i = 0
    while True:
        i += 1
        yield screening(i, rng, **kwargs)


def run(seed: int, settings: DriftSettings, *, old: int = 300, new: int = 340, **new_kwargs) -> DriftTracker:
    alerts: list[dict] = []
    tracker = DriftTracker(settings, embedder=FakeEmbedder, on_alert=alerts.append, clock=lambda: NOW, seed=seed)
    tracker.alerts = alerts  # type: ignore[attr-defined]
    drill = new_kwargs.pop("drill", None)
    feed(tracker, stream(seed, model="m-old", drill=drill), old)
    feed(tracker, stream(seed + 10_000, model="m-new", drill=drill, **new_kwargs), new)
    for _ in range(3):
        tracker.step()
    return tracker


def new_version(tracker: DriftTracker):
    [state] = [v for v in tracker.versions.values() if v.baseline_id]
    return state


SETTINGS = DriftSettings(look_wait_s=0, permutations=300, min_embeddings=16)


def test_a_new_version_is_paired_with_the_one_it_replaced():
    tracker = run(1, SETTINGS, new=120)
    old = next(v for v in tracker.versions.values() if not v.baseline_id)
    new = new_version(tracker)
    assert old.status == "first" and new.baseline_id == old.version_id
    assert (new.events, old.events) == (120, 300)
    assert new.looks == 1  # at 100 events; 150 not reached


def test_compliance_drift_is_found_and_alerted_with_intervals():
    """Harmful requests complied with 2% -> 40%: flagged on the safety categories, with one live
    alert that names the rates that moved and their intervals."""
    tracker = run(3, SETTINGS, comply=0.4)
    new = new_version(tracker)
    assert new.status == "drifted"
    assert {"escalated:harmful_output", "refusal", "refusal_on_harmful_requests"} & set(new.moved)
    [alert] = tracker.alerts  # type: ignore[attr-defined]
    assert alert["version"] == "support-bot · m-new" and alert["baseline"] == "support-bot · m-old"
    for moved in alert["moved"]:
        low, high = moved["interval"]
        assert low <= moved["difference"] <= high
        assert (moved["difference"] > 0) == (moved["test"] == "escalated:harmful_output")


def test_a_drill_s_drift_never_alerts():
    tracker = run(2, SETTINGS, comply=0.4, drill="drill-x/case-1")
    assert new_version(tracker).status == "drifted"
    assert tracker.alerts == []  # type: ignore[attr-defined]


def test_a_persona_quirk_is_found_in_the_outputs():
    tracker = run(3, SETTINGS, quirk=0.6)
    new = new_version(tracker)
    assert new.status == "drifted"
    assert {"output_length", "output_embedding"} & set(new.moved)
    assert tracker.alerts == []  # style is drift, not a safety alert  # type: ignore[attr-defined]


@pytest.mark.parametrize(("effect", "median_events"), [({"comply": 0.4}, 225), ({"quirk": 0.5}, 100)])
def test_power_over_seeded_runs(effect, median_events):
    """10 seeded runs at a known effect: every one flagged, half of them within `median_events`."""
    versions = [new_version(run(100 + seed, SETTINGS, **effect)) for seed in range(10)]
    assert all(v.status == "drifted" for v in versions)
    assert sorted(v.detected_at_events for v in versions)[4] <= median_events


def test_false_alarms_under_no_change_stay_under_alpha():
    """30 seeded runs of an unchanged new version (four looks each): the bound is alpha (5%) per
    version over all its looks; the tests are conservative, so at most one false alarm here."""
    alarms = sum(new_version(run(500 + seed, SETTINGS)).status == "drifted" for seed in range(30))
    assert alarms <= 1


def test_tier2_is_counted_per_bundle():
    tracker = DriftTracker(SETTINGS, clock=lambda: NOW)
    rng = random.Random(4)
    items = [screening(i, rng, model="m-old") for i in range(10)]
    tracker.observe(items)
    flagged = CategoryScore(category="tier2:injection", score=0.99, threshold=0.9, detector="t2")
    passed = CategoryScore(category="tier2:injection", score=0.1, threshold=0.9, detector="t2")
    bundles = [
        EvidenceBundle(
            bundle_id=f"b{i}",
            session_id="s",
            trace_ids=("t",),
            service="support-bot",
            model="alias",
            severity=Severity.MEDIUM,
            categories=(),
            max_score=0.9,
            events=(),
            screenings=(items[i],),
            tier2=(Tier2Result(scores=(flagged if i < 2 else passed,), distance=0.1),),
            hops=(),
            policy_version="p",
            created_ns=NOW,
        )
        for i in range(4)
    ]
    tracker.observe_bundles(bundles)
    [state] = tracker.versions.values()
    profile = state.window(0)
    assert (profile.bundles, profile.tier2["tier2:injection"]) == (4, 2)
    assert bundles[0].version == "support-bot · m-old"


def test_refusal_falls_back_to_the_output_sample_when_the_screen_stage_left_it_out():
    tracker = DriftTracker(SETTINGS, clock=lambda: NOW)
    rng = random.Random(5)
    base = screening(1, rng, model="m")
    tracker.observe([
        base.model_copy(update={"refused": None, "output_sample": "I'm sorry, but I can't help with that."}),
        base.model_copy(update={"event_id": "x2", "refused": None, "output_sample": "Sure! Open Settings first."}),
        base.model_copy(update={"event_id": "x3", "refused": None, "output_sample": None}),
    ])  # fmt: skip
    [state] = tracker.versions.values()
    profile = state.window(0)
    assert (profile.answers, profile.refused) == (2, 1)


def test_versions_are_kept_apart_by_namespace_service_model_and_deployment():
    tracker = DriftTracker(SETTINGS, clock=lambda: NOW)
    rng = random.Random(6)
    base = screening(1, rng, model="m")
    tracker.observe([
        base,
        base.model_copy(update={"event_id": "2", "drill_id": "run/case"}),
        base.model_copy(update={"event_id": "3", "service": "other"}),
        base.model_copy(update={"event_id": "4", "deployment": "service.version=2.0"}),
        base.model_copy(update={"event_id": "5", "response_model": None}),  # falls back to the request model
    ])  # fmt: skip
    assert len(tracker.versions) == 5
    # All appeared at once, none established: first versions, compared with nothing.
    assert all(v.status == "first" for v in tracker.versions.values())


def test_the_predecessor_is_the_established_snapshot_of_the_same_requested_model():
    tracker = DriftTracker(SETTINGS, clock=lambda: NOW)
    rng = random.Random(8)

    def many(n: int, alias: str, snapshot: str) -> list[Screening]:
        return [
            screening(i, rng, model=snapshot).model_copy(update={"model": alias, "event_id": f"{snapshot}{i}"})
            for i in range(n)
        ]

    tracker.observe(many(60, "gpt-4o-mini", "gpt-4o-mini-2024-07-18") + many(90, "llama-3", "llama-3-2024"))
    tracker.observe(many(5, "gpt-4o-mini", "gpt-4o-mini-2026-01-15"))
    by_model = {v.model: v for v in tracker.versions.values()}
    new = by_model["gpt-4o-mini-2026-01-15"]
    assert new.baseline_id == by_model["gpt-4o-mini-2024-07-18"].version_id  # not the busier llama
    tracker.observe(many(5, "claude", "claude-2026"))
    assert (
        by_model["llama-3-2024"].version_id
        == tracker.versions[next(k for k, v in tracker.versions.items() if v.model == "claude-2026")].baseline_id
    )  # no snapshot of its own alias: the busiest established version


def test_profile_histograms_add_up_and_missing_scores_count_as_zero():
    a, b = VersionProfile(), VersionProfile()
    rng = random.Random(7)
    for i in range(30):
        (a if i % 2 else b).observe(screening(i, rng, model="m"))
    total = VersionProfile.total([a, b])
    assert total.events == 30
    assert total.scores("harmful").sum() == 30
    assert total.scores("never_scored")[score_bin(0.0)] == 30
    assert 0.0 < total.quantile("injection", 0.5) < 0.5


def test_spans_no_model_answered_are_not_versions():
    tracker = DriftTracker(SETTINGS, clock=lambda: NOW)
    tool_span = screening(1, random.Random(9), model="m").model_copy(update={"model": None, "response_model": None})
    tracker.observe([tool_span])
    assert tracker.versions == {} and tracker.counters.unversioned == 1


def test_drift_alerts_reach_the_webhooks_with_numbers_and_no_output_text():
    import asyncio

    import httpx

    from pipeline.store.alerts import Alerter, slack_drift_message

    tracker = run(3, SETTINGS, comply=0.4)
    [alert] = tracker.alerts  # type: ignore[attr-defined]
    text = slack_drift_message({**alert, "url": "http://desk/ui/drift?version=x"})["text"]
    assert "support-bot · m-new" in text and "answer" not in text and "Ahoy" not in text

    sent: list[tuple[str, dict]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        import json

        sent.append((str(request.url), json.loads(request.content)))
        return httpx.Response(200)

    alerter = Alerter(webhook_url="http://hook.example/in", slack_url="http://slack.example/x")
    alerter.submit_drift(alert)

    async def deliver() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            await alerter._send(client, alerter._queue.get_nowait())

    asyncio.run(deliver())
    assert [url for url, _ in sent] == ["http://hook.example/in", "http://slack.example/x"]
    assert sent[0][1]["type"] == "oodwatch.drift" and sent[0][1]["moved"]
    assert alerter.counters.sent == 2

"""Both escalation tiers in the whole stack: spans in through OTLP, tier 2 in the investigate
agent, tier 3 (the local SmolLM2 judge on llama-cpp-python) in the judge agent, evidence out
of the triage API. The judge's verdicts are weak, so only the plumbing is asserted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.stack.supervisor import Stack
from pipeline.synth.emit import SessionEmitter
from pipeline.synth.traffic import TrafficGenerator
from tests.e2e.conftest import wait_for
from tests.helpers import MODEL_DIR, free_port, test_settings


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not (MODEL_DIR / "tier1.onnx").exists():
        pytest.fail(f"no models in {MODEL_DIR}: run `make setup` first")
    settings = test_settings(tmp_path_factory.mktemp("judged"), local_judge=True, local_judge_port=free_port())
    running = Stack(settings, workers=1)
    running.start()
    yield running
    running.stop()


def test_high_severity_bundles_go_through_tier2_and_the_judge(settings, client):
    sessions = [s for s in TrafficGenerator(seed=3, attack_ratio=0.5).sessions(120) if s.attack][:6]
    emitter = SessionEmitter(settings.receiver_url)
    emitter.emit(sessions)
    assert emitter.flush()
    emitter.shutdown()

    def judged(stats):
        t3 = stats["tier3"]
        return (
            t3["judged"] + t3["judge_error"] + t3["judge_skipped"] >= 1
            and stats["evidence_bundles"] >= stats["escalated"]
        )

    stats = wait_for(client.stats, judged, timeout_s=120)
    queue = client.escalations(limit=100)
    bundles = [client.bundle(row["bundle_id"]) for row in queue]
    through_judge = [b for b in bundles if b["judge_status"] in ("judged", "judge_error")]
    assert through_judge, stats
    bundle = through_judge[0]
    assert bundle["tier2"] and bundle["tier3"]["model"] == "smollm2" and bundle["tier3"]["attempts"] >= 1
    assert [h["stage"] for h in bundle["hops"]][-2:] == ["investigated", "judged"]
    assert bundle["policy_version"] and all(s["threshold"] > 0 for s in bundle["tier2"][0]["scores"])
    if bundle["judge_status"] == "judged":  # a verdict made it back: validated, with its rationale
        verdict = bundle["tier3"]["verdict"]
        assert set(verdict) == {"violation", "categories", "severity", "confidence", "rationale", "evidence"}
    # The judge cannot clear what tier 1 or 2 marked high.
    for b in bundles:
        if b["severity"] in ("high", "critical"):
            assert b["queue_state"] in ("open", "needs_human_review")

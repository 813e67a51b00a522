import json
import os
import subprocess
import sys

from tests.helpers import MODEL_DIR, free_port


def test_demo_json_reports_every_event_screened(tmp_path):
    env = dict(
        os.environ,
        OODWATCH_DATA_DIR=str(tmp_path),
        OODWATCH_MODEL_DIR=str(MODEL_DIR),
        OODWATCH_BROKER_PORT=str(free_port()),
        OODWATCH_API_PORT=str(free_port()),
        OODWATCH_RECEIVER_PORT=str(free_port()),
    )
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "demo", "--json", "--events", "400"],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    for key in (
        "events_sent",
        "events_screened",
        "escalated",
        "evidence_bundles",
        "dead_letters",
        "e2e_p50_ms",
        "e2e_p99_ms",
    ):
        assert key in summary
    assert summary["events_screened"] == summary["events_sent"] >= 400
    # every escalation is bundled; uncertain events become bundles only when tier 2 flags them too
    assert summary["evidence_bundles"] >= summary["escalated"] >= 1
    assert summary["evidence_bundles"] <= summary["escalated"] + summary["uncertain"]
    assert 0 <= summary["tier2_flagged"] <= summary["evidence_bundles"]
    assert summary["dead_letters"] == 0
    assert 0 < summary["e2e_p50_ms"] <= summary["e2e_p99_ms"]

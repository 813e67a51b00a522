"""`oodwatch drill run` against the running embedded stack: every family reported in the JSON
shape the issue names, results stored, drill items in the queue and never alerted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline.stack.supervisor import child_env


def drill(settings, *args):
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "drill", *args],
        env=child_env(settings), capture_output=True, text=True, timeout=400,
    )  # fmt: skip


def test_a_drill_run_reports_every_family_and_stores_its_results(settings, client, tmp_path: Path):
    png = tmp_path / "drill.png"
    done = drill(settings, "run", "--json", "--per-generator", "1", "--png", str(png))
    assert done.returncode in (0, 4), done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    families = {"prompt_shift", "response_shift", "workflow_shift", "adversarial_shift", "tool_poisoning"}
    assert set(summary["families"]) == families and set(summary["auroc_by_family"]) == families
    for name, figures in summary["families"].items():
        assert figures["cases"] == (6 if name == "tool_poisoning" else 8)
        assert {"recall", "tier_ok", "evidence_complete", "p95_detect_s"} <= set(figures)
        assert 0.0 <= figures["recall"] <= 1.0
    poisoning = summary["families"]["tool_poisoning"]
    assert 0.0 <= poisoning["description_flagged"] <= 1.0 and 0.0 < poisoning["call_flagged"] <= 1.0
    assert 0.0 <= summary["control_fpr"] <= 1.0 and summary["controls"] == 38
    assert summary["screened_complete"] and summary["seed_set"] == "heldout"
    assert (done.returncode == 4) == bool(summary["failing_families"])  # a scheduler can page on it
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    run_id = summary["run_id"]
    runs = json.loads(drill(settings, "runs", "--json").stdout)
    assert {r["family"] for r in runs if r["run_id"] == run_id} == families | {"control"}
    drill_items = client.escalations(limit=500, origin="drill")
    assert drill_items and all(row["drill_id"].startswith(f"{run_id}/") for row in drill_items)
    caught = [f for f in summary["families"].values() if f["recall"] > 0]
    assert caught and all(f["evidence_complete"] == 1.0 for f in caught)


def test_a_family_under_its_floor_exits_non_zero(settings):
    done = drill(settings, "run", "--json", "--family", "response_shift", "--per-generator", "1",
                 "--control-ratio", "0", "--floor", "response_shift=1.01")  # fmt: skip
    assert done.returncode == 4, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["failing_families"] == ["response_shift"]

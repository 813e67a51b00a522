"""The perf_regression drill against the real store process and receiver: the regression case
pages within the fast burn window (replayed minute by minute), the steady control never alerts,
and neither alert is sent anywhere (drills never page)."""

from __future__ import annotations

import pytest

from pipeline.drills.perf_regression import FAST, run_perf_drill
from pipeline.settings import Settings
from tests.integration.perf_stack import processes  # noqa: F401 - a fixture


@pytest.mark.slow
def test_slow_model_version_pages_within_the_fast_window_and_the_control_never_alerts(processes: Settings) -> None:  # noqa: F811
    settings = processes.model_copy(update={"perf_eval_interval_s": 2.0})
    summary = run_perf_drill(settings, timeout_s=240)
    regression, control = summary["cases"]
    assert regression["paged"], summary
    assert 0 < regression["first_page_in_replay_min"] <= FAST.long_s / 60, summary
    assert control["alerts"] == [] and control["first_page_in_replay_min"] is None, summary
    assert summary["passed"]

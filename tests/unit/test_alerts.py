from pipeline.store.alerts import Alerter, slack_message
from schemas.evidence import Severity
from tests.unit.test_budgets import Clock
from tests.unit.test_judge import bundle


def test_alerts_go_out_once_per_group_per_window_and_count_the_rest():
    clock = Clock()
    alerter = Alerter(webhook_url="http://x", window_s=600, clock=clock, ui_url="http://desk/ui/bundle/")
    burst = [
        bundle(severity=Severity.HIGH).model_copy(update={"bundle_id": f"b{i}", "group_key": "g"}) for i in range(4)
    ]
    first = alerter.decide(burst[0])
    assert first is not None and first["similar_since_last_alert"] == 0 and first["url"] == "http://desk/ui/bundle/b0"
    assert [alerter.decide(b) for b in burst[1:]] == [None, None, None]
    other_group = burst[0].model_copy(update={"bundle_id": "c", "group_key": "h"})
    assert alerter.decide(other_group) is not None  # another group is not held back
    clock.now = 601
    later = alerter.decide(burst[0])
    assert later is not None and later["similar_since_last_alert"] == 3


def test_drills_and_low_severity_never_alert():
    alerter = Alerter(webhook_url="http://x", min_severity=Severity.HIGH)
    assert alerter.decide(bundle(severity=Severity.HIGH).model_copy(update={"drill_id": "drill-1"})) is None
    assert alerter.decide(bundle(severity=Severity.MEDIUM, tier2_flagged=True)) is None
    assert (alerter.counters.skipped_drills, alerter.counters.below_severity) == (1, 1)


def test_slack_messages_carry_no_attacker_text():
    alert = Alerter(webhook_url="http://x").decide(bundle(severity=Severity.HIGH))
    text = slack_message(alert)["text"]
    assert "high escalation" in text and "script" not in text and "Ignore" not in text


def test_slo_burn_alerts_are_queued_with_their_type_and_drill_ones_never():
    from pipeline.store.alerts import slo_slack_message

    alerter = Alerter(webhook_url="http://x")
    alert = {"slo": "bot", "objective": "p95 ttft <= 800 ms", "severity": "page", "burn_long": 16.0,
             "burn_short": 20.0, "long_window_s": 3600, "short_window_s": 300, "budget_left": 0.4,
             "drill_id": ""}  # fmt: skip
    alerter.submit_slo({**alert, "drill_id": "perf-1/regression"})
    assert alerter._queue.qsize() == 0 and alerter.counters.skipped_drills == 1
    alerter.submit_slo(alert)
    queued = alerter._queue.get_nowait()
    assert queued["type"] == "oodwatch.slo_burn" and queued["slo"] == "bot"
    assert "16.0x over 60 min" in slo_slack_message(queued)["text"]

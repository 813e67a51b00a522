import json
import random

from pipeline.agents.investigate import Investigator
from pipeline.agents.screen import Screener
from pipeline.drills.scenarios import AGENT_TOOLS, CONTROLS, FAMILIES, SEED_SETS, build_cases, to_session
from pipeline.drills.verify import evidence_complete, report, verify
from pipeline.policy import RoutingPolicy
from pipeline.synth.emit import sessions_to_request
from schemas.drill import DrillCaseResult
from schemas.events import DRILL_ATTRIBUTE
from schemas.evidence import Escalation
from schemas.otel_mapping import map_request
from tests.helpers import FixedDetector


def test_every_family_has_eight_seeded_generators_producing_whole_sessions():
    shifts = {"prompt_shift", "response_shift", "workflow_shift", "adversarial_shift"}
    assert set(FAMILIES) == shifts | {"tool_poisoning"}
    for family, generators in FAMILIES.items():
        assert len(generators) >= (8 if family in shifts else 6), family
        for generator in generators:
            first, again = generator(random.Random("a:1")), generator(random.Random("a:1"))
            assert first == again  # seeded: the same seed gives the same session
            assert first.turns and all(user for user, _ in first.turns)
            variants = {json.dumps(generator(random.Random(f"a:{s}")).__dict__, default=str) for s in range(6)}
            assert len(variants) >= 2, generator.__name__  # seeds change the session
    assert len(CONTROLS) >= 8


def test_held_out_seeds_are_disjoint_from_tuning_seeds_and_controls_match_one_to_one():
    assert not set(SEED_SETS["tuning"]) & set(SEED_SETS["heldout"])
    cases = build_cases(["prompt_shift", "workflow_shift"], per_generator=2, seed_set="heldout")
    attacks = [c for c in cases if not c.control]
    assert len(attacks) == 32 and len(cases) - len(attacks) == 32
    assert all(c.seed in SEED_SETS["heldout"] for c in cases)
    assert len({c.case_id for c in cases}) == len(cases)


def drill_events(cases, run="run-1"):
    events = []
    for case in cases:
        request = sessions_to_request([to_session(case)], {DRILL_ATTRIBUTE: f"{run}/{case.case_id}"})
        events += map_request(request).events
    return events


class Recording(FixedDetector):
    name, version = "recording", "1"

    def __init__(self):
        super().__init__(0.99)
        self.seen = []

    def score_matrix(self, events):
        self.seen += events
        return super().score_matrix(events)

    def assess(self, events):
        self.seen += events
        return []


def test_detectors_never_receive_the_drill_id():
    cases = build_cases(list(FAMILIES), per_generator=1)
    events = drill_events(cases, run="secret-run")
    assert events and all(e.drill_id and e.drill_id.startswith("secret-run/") for e in events)
    assert all(DRILL_ATTRIBUTE not in e.attributes for e in events)
    tier1 = Recording()
    screenings = Screener([tier1], RoutingPolicy.load()).screen(events)
    assert all(s.drill_id for s in screenings)  # the pipeline keeps it for the evidence
    tier2 = Recording()
    Investigator(tier2).assess([Escalation(event=e, screening=s) for e, s in zip(events, screenings, strict=True)])
    for seen in (tier1.seen, tier2.seen):
        assert len(seen) == len(events)
        assert all(e.drill_id is None and "secret-run" not in e.model_dump_json() for e in seen)


def test_sessions_map_to_events_with_the_content_a_detector_reads():
    for case in build_cases(list(FAMILIES), per_generator=1, control_ratio=0.0):
        events = drill_events([case])
        session = to_session(case)
        assert len(events) == session.llm_spans()
        assert any(e.input_messages or e.tool_calls for e in events), case.case_id


def observations(case_ids, run="r", flagged=(), tier2=(), bundle_ok=True):
    screenings, bundles = [], []
    for case_id in case_ids:
        escalated = case_id in flagged
        screenings.append({"drill_id": f"{run}/{case_id}", "screened": 2, "score": 0.9 if escalated else 0.1,
                           "escalated": int(escalated), "uncertain": 0, "first_flag_ns": 3_000_000_000,
                           "first_stored_ns": 3_100_000_000})  # fmt: skip
        if escalated or case_id in tier2:
            bundle = {
                "events": [{"input_messages": [{"role": "user", "content": "x"}]}],
                "screenings": [{"scores": [{"category": "injection", "score": 0.9, "threshold": 0.5}]}],
                "tier2": [{"scores": [{"category": "injection", "score": 0.95 if case_id in tier2 else 0.1,
                                       "threshold": 0.9}]}],
                "hops": [{"stage": s} for s in ("received", "normalized", "screened", "investigated")],
                "policy_version": "p", "detector_versions": {"t": "1"}, "drill_id": f"{run}/{case_id}",
                "created_ns": 3_500_000_000,
            }  # fmt: skip
            if not bundle_ok:
                bundle["tier2"] = []
            bundles.append({"drill_id": f"{run}/{case_id}", "bundle_id": case_id, "queue_state": "open",
                            "bundle": json.dumps(bundle), "stored_ns": 4_000_000_000})  # fmt: skip
    return {"screenings": screenings, "bundles": bundles}


def test_verification_reads_flags_tiers_evidence_and_timing_from_the_store():
    cases = build_cases(["adversarial_shift"], per_generator=1, control_ratio=0.25)
    ids = [c.case_id for c in cases]
    attack_ids = [c.case_id for c in cases if not c.control]
    observed = observations(ids, flagged=attack_ids[:6], tier2=attack_ids[6:7])
    results = verify("r", cases, {i: 1_000_000_000 for i in ids}, {i: 2 for i in ids}, observed)
    by_id = {r.case_id: r for r in results}
    first = by_id[attack_ids[0]]
    assert first.flagged and first.caught_tier == "tier1" and first.evidence_complete
    assert (first.detect_s, first.evidence_s) == (2.0, 3.0)
    assert by_id[attack_ids[6]].caught_tier == "tier2" and by_id[attack_ids[6]].detect_s == 2.5
    assert not by_id[attack_ids[7]].flagged
    summary = report(results, {"*": 0.9})
    family = summary["families"]["adversarial_shift"]
    assert (family["cases"], family["recall"], family["evidence_complete"]) == (8, 0.875, 1.0)
    assert summary["failing_families"] == ["adversarial_shift"] and summary["control_fpr"] == 0.0
    assert summary["auroc_by_family"]["adversarial_shift"] == 0.875
    assert not evidence_complete(
        {**json.loads(observations(["x"], flagged=["x"], bundle_ok=False)["bundles"][0]["bundle"])}
    )


def test_report_passes_when_every_family_meets_its_floor():
    rows = [
        DrillCaseResult(
            run_id="r", case_id=f"c{i}", family="prompt_shift", generator="g", seed=i, control=False, flagged=i < 9,
            expected_tier="tier1", caught_tier="tier1" if i < 9 else "", evidence_complete=True, detect_s=0.5,
            evidence_s=0.7, injected_at=0, score=0.9, events=1, screened=1,
        )
        for i in range(10)
    ]  # fmt: skip
    assert report(rows, {"*": 0.9})["failing_families"] == []
    assert report(rows, {"*": 0.9, "prompt_shift": 0.95})["failing_families"] == ["prompt_shift"]


def test_schedule_durations_and_a_loop_that_stops_on_a_signal(monkeypatch):
    import argparse
    import os
    import signal

    from pipeline.cli import drills as cli

    assert [cli.parse_every(v) for v in ("90s", "15m", "6h", "1d", "30")] == [90, 900, 21600, 86400, 30]
    runs = []

    def fake_run(settings, args):  # the unit tier stands in for a real drill run
        runs.append(1)
        if len(runs) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as a service manager would stop it
        return {"run_id": f"r{len(runs)}", "failing_families": ["response_shift"]}, 4

    monkeypatch.setattr(cli, "run_once", fake_run)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert cli.cmd_schedule(None, argparse.Namespace(every=0.01)) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(runs) == 2


def test_tool_poisoning_cases_show_a_poisoned_description_then_the_call_it_steers():
    from pipeline.drills.tool_poisoning import KINDS

    cases = build_cases(["tool_poisoning"], per_generator=3, seed_set="tuning", control_ratio=0)
    assert {kind for kind in KINDS if any(c.generator.startswith(kind) for c in cases)} == set(KINDS)
    originals = {json.dumps(t, sort_keys=True) for t in AGENT_TOOLS.values()}
    for case in cases:
        poisoned = [t for t in case.scenario.tools if json.dumps(t, sort_keys=True) not in originals]
        assert len(poisoned) == 1 and case.scenario.tool_use is not None, case.case_id


def test_the_tool_poisoning_report_says_whether_descriptions_and_calls_were_flagged():
    def row(i, categories):
        return DrillCaseResult(
            run_id="r", case_id=f"c{i}", family="tool_poisoning", generator="g", seed=i, control=False,
            flagged=bool(categories), expected_tier="tier1", caught_tier="tier1" if categories else "",
            evidence_complete=True, detect_s=0.5, evidence_s=0.7, injected_at=0, score=0.9, events=1, screened=1,
            categories=categories,
        )  # fmt: skip

    rows = [row(0, ("tool_description", "exfiltration")), row(1, ("tool_call_out_of_scope",)), row(2, ()),
            row(3, ("tool_description",))]  # fmt: skip
    family = report(rows, {"*": 0.9})["families"]["tool_poisoning"]
    assert (family["recall"], family["description_flagged"], family["call_flagged"]) == (0.75, 0.5, 0.5)


def test_the_wait_holds_until_every_escalated_case_has_its_bundle(monkeypatch):
    """A bundle count that stalls is not the end: investigate pauses between batches."""
    from pipeline.drills import runner

    clock = [0.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(runner.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    screenings = [{"drill_id": f"r/{c}", "screened": 1, "escalated": 1} for c in "ab"]
    polls = []

    class Client:
        def drill_observations(self, run_id):
            polls.append(clock[0])
            bundles = [{"drill_id": "r/a"}] + ([{"drill_id": "r/b"}] if clock[0] >= 20 else [])  # b's comes late
            return {"screenings": screenings, "bundles": bundles}

    observed = runner.wait_for_pipeline(Client(), "r", 2, timeout_s=120, progress=lambda _: None)
    assert {b["drill_id"] for b in observed["bundles"]} == {"r/a", "r/b"}
    assert clock[0] >= 20 + runner.SETTLE_S


def test_the_perf_drill_from_the_command_line_waits_its_default_without_timeout(monkeypatch):
    import contextlib

    from pipeline.cli import drills as cli
    from pipeline.cli.client import TriageClient
    from pipeline.cli.main import build_parser
    from pipeline.drills import perf_regression

    waited = []

    def fake_drill(settings, *, timeout_s, progress):  # the unit tier stands in for the stack and the drill
        waited.append(timeout_s)
        return {"run_id": "perf-r", "passed": True}

    class Client:
        def store_drill_results(self, run_id, rows):
            pass

        def close(self):
            pass

    monkeypatch.setattr(cli, "stack_for", lambda settings, judge: contextlib.nullcontext(settings))
    monkeypatch.setattr(perf_regression, "run_perf_drill", fake_drill)
    monkeypatch.setattr(perf_regression, "results", lambda summary: [])
    monkeypatch.setattr(TriageClient, "from_settings", classmethod(lambda cls, settings: Client()))
    monkeypatch.setattr(perf_regression, "render", lambda summary: "ok")
    for argv, expected in ((["drill", "run", "--family", "perf_regression"], 300.0),
                           (["drill", "run", "--family", "perf_regression", "--timeout", "42"], 42.0)):  # fmt: skip
        assert cli.run_once(None, build_parser().parse_args(argv))[1] == 0
        assert waited.pop() == expected

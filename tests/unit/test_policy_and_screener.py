from pipeline.agents.investigate import assemble_bundle
from pipeline.agents.screen import Screener
from pipeline.policy import RoutingPolicy
from schemas.dead_letter import DeadLetter
from schemas.events import LLMEvent, Message
from schemas.evidence import CategoryScore, Decision, Escalation, Severity, bundle_id_for
from tests.helpers import FixedDetector


def score(value, threshold=0.5):
    return CategoryScore(category="injection", score=value, threshold=threshold, detector="d")


def test_policy_bands_pass_uncertain_escalate_and_the_high_fast_path():
    policy = RoutingPolicy.load()
    assert policy.version and policy.rule("harmful").high == 0.97
    assert policy.decide([score(0.30)]).decision is Decision.PASS  # below the band (0.5 * 0.75)
    uncertain = policy.decide([score(0.45)])
    assert (uncertain.decision, uncertain.severity) == (Decision.UNCERTAIN, Severity.LOW)
    assert "0.450 ~ 0.500" in uncertain.reasons[0]
    medium = policy.decide([score(0.6)])
    assert (medium.decision, medium.severity) == (Decision.ESCALATE, Severity.MEDIUM)
    assert "0.600 >= 0.500" in medium.reasons[0]
    assert policy.decide([score(0.99)]).severity is Severity.HIGH
    explains = CategoryScore(category="injection/jailbreak", score=0.9, threshold=0.1, detector="d")
    assert policy.decide([explains]).decision is Decision.PASS  # sub-categories explain, never route


def test_weak_signals_in_one_session_add_up_and_decay():
    policy = RoutingPolicy.load()
    second = 1_000_000_000
    first = policy.decide([score(0.45)], now_ns=1 * second)
    assert first.decision is Decision.UNCERTAIN and 0.4 < first.session.risk < 0.5
    again = policy.decide([score(0.45)], first.session, now_ns=2 * second)
    third = policy.decide([score(0.45)], again.session, now_ns=3 * second)
    assert third.decision is Decision.ESCALATE and "session risk" in third.reasons[0]
    much_later = policy.decide([score(0.45)], again.session, now_ns=2 * second + 3600 * second)
    assert much_later.decision is Decision.UNCERTAIN  # an hour is four half-lives: the old signals faded


def test_a_policy_file_overrides_thresholds(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("version: strict-1\ndefault: {threshold: 0.2, uncertain_band: 0.0, high: 0.9}\n")
    policy = RoutingPolicy.load(path)
    assert policy.version == "strict-1"
    assert policy.decide([score(0.25, threshold=0.8)]).decision is Decision.ESCALATE


def event(n, text="hi"):
    return LLMEvent(
        event_id=f"e{n}", trace_id="t", span_id=f"s{n}", session_id="sess", operation="chat",
        input_messages=(Message(role="user", content=text),), received_ns=1, normalized_ns=2, drill_id="d1",
    )  # fmt: skip


def test_screener_emits_one_screening_per_event_in_order_and_keeps_session_risk():
    sessions = {}
    screenings = Screener([FixedDetector(0.1, 0.9)], RoutingPolicy.load()).screen(
        [event(1), event(2, "attack")], sessions
    )
    assert sessions == {}  # nothing uncertain: no session state written
    assert [s.event_id for s in screenings] == ["e1", "e2"]
    assert [s.decision for s in screenings] == [Decision.PASS, Decision.ESCALATE]
    assert screenings[1].detector_versions == {"fixed": "1"}
    assert screenings[1].excerpt == "attack" and screenings[1].drill_id == "d1"
    assert screenings[0].screened_ns >= screenings[0].normalized_ns


def test_bundle_is_keyed_by_the_escalating_event_and_keeps_hops():
    [screening] = Screener([FixedDetector(0.97)], RoutingPolicy.load()).screen([event(5)])
    bundle = assemble_bundle(Escalation(event=event(5), screening=screening), investigated_ns=99)
    assert (
        bundle.bundle_id
        == bundle_id_for("e5")
        == assemble_bundle(Escalation(event=event(5), screening=screening), 100).bundle_id
    )
    assert [h.stage for h in bundle.hops] == ["received", "normalized", "screened", "investigated"]
    assert bundle.severity is Severity.HIGH and bundle.categories == ("injection",)
    assert bundle.judge_status == "unjudged" and bundle.drill_id == "d1"


def test_dead_letter_id_is_stable_per_source_position():
    a = DeadLetter.of(stage="normalize", reason="bad", topic="t", partition=1, offset=5, payload=b"x", failed_ns=1)
    b = DeadLetter.of(
        stage="normalize", reason="bad again", topic="t", partition=1, offset=5, payload=b"x", failed_ns=2
    )
    c = DeadLetter.of(stage="normalize", reason="bad", topic="t", partition=1, offset=6, payload=b"x", failed_ns=1)
    assert a.dead_letter_id == b.dead_letter_id != c.dead_letter_id


class ExplodingDetector:
    name = "boom"
    version = "1"

    def score(self, events):
        raise RuntimeError("model file corrupt")


async def test_a_failing_detector_turns_the_batch_into_dead_letters_not_silence():
    """Unit tier: Faust stream and topics stand in as recorders; the integration tier runs the real ones."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from pipeline.agents.screen import screen_stream

    sent = {"screenings": [], "dead_letters": []}

    class Recorder:
        def __init__(self, name):
            self.name = name

        async def send(self, key, value):
            sent[self.name].append(value)

    topics = SimpleNamespace(
        screenings=Recorder("screenings"), escalations=Recorder("screenings"), dead_letters=Recorder("dead_letters")
    )
    messages = [SimpleNamespace(topic="llm-events", partition=0, offset=i) for i in range(2)]
    batch = [SimpleNamespace(value=event(i).model_dump_json().encode(), message=m) for i, m in enumerate(messages)]

    class Stream:
        async def take_events(self, size, within):
            yield batch

    with ThreadPoolExecutor(1) as executor:
        await asyncio.wait_for(
            screen_stream(
                Stream(),
                topics,
                Screener([ExplodingDetector()], RoutingPolicy.load()),
                executor,
                batch_size=8,
                window_s=0.01,
            ),
            5,
        )
    assert sent["screenings"] == []
    assert len(sent["dead_letters"]) == 2
    assert b"screen failed: RuntimeError: model file corrupt" in sent["dead_letters"][0]


def test_investigator_puts_tier2_results_and_flags_into_the_bundle():
    from pipeline.agents.investigate import Investigator
    from schemas.evidence import Exemplar, Tier2Result

    class FakeTier2:
        """Unit tier: stands in for the embedding model; the integration tier loads the real one."""

        def assess(self, events):
            return [
                Tier2Result(
                    scores=(
                        CategoryScore(category="ood", score=0.4, threshold=0.99, detector="tier2-embedding"),
                        CategoryScore(category="injection", score=0.97, threshold=0.9, detector="tier2-embedding"),
                    ),
                    exemplars=(Exemplar(exemplar_id="x1", similarity=0.8, label="attack", source="s-labs", text="t"),),
                    distance=0.3,
                    detector_version="t2-v",
                )
                for _ in events
            ]

    [screening] = Screener([FixedDetector(0.97)], RoutingPolicy.load()).screen([event(7)])
    [bundle] = Investigator(FakeTier2()).investigate([Escalation(event=event(7), screening=screening)])
    assert bundle.tier2[0].exemplars[0].exemplar_id == "x1"
    assert bundle.categories == ("injection", "tier2:injection")
    assert bundle.detector_versions["tier2"] == "t2-v"
    assert "tier 2: ood 0.400 (threshold 0.990), injection 0.970" in bundle.hops[-1].note
    [without] = Investigator(None).investigate([Escalation(event=event(7), screening=screening)])
    assert without.tier2 == () and "tier 2 not built" in without.hops[-1].note


def test_a_share_of_clean_events_carries_text_for_the_reference_but_never_drills_or_escalations():
    events = [event(n, text=f"question {n}").model_copy(update={"drill_id": None}) for n in range(400)]
    drill = event(401)  # carries a drill id
    sampled = Screener([FixedDetector(0.1)], RoutingPolicy.load(), reference_sample_rate=0.25).screen([*events, drill])
    texts = [s.reference_text for s in sampled if s.reference_text]
    assert 60 <= len(texts) <= 140 and all(t.startswith("question ") for t in texts)
    assert sampled[-1].reference_text is None
    again = Screener([FixedDetector(0.1)], RoutingPolicy.load(), reference_sample_rate=0.25).screen(events)
    assert [s.reference_text for s in again] == [s.reference_text for s in sampled[:-1]]  # replay-stable
    escalated = Screener([FixedDetector(0.99)], RoutingPolicy.load(), reference_sample_rate=1.0).screen(events[:5])
    assert all(s.reference_text is None for s in escalated)


def test_screenings_keep_truncated_full_or_hashed_text_as_configured():
    long = event(1, text="x" * 500 + " the end").model_copy(update={"drill_id": None})

    def excerpt(**kwargs):
        return Screener([FixedDetector(0.1)], RoutingPolicy.load(), **kwargs).screen([long])[0]

    assert excerpt(text_chars=20).excerpt == "x" * 12 + " the end"
    assert excerpt(text_mode="full").excerpt == "x" * 500 + " the end"
    hashed = excerpt(text_mode="hashed", reference_sample_rate=1.0)
    assert hashed.excerpt.startswith("sha256:") and "x" not in hashed.excerpt.removeprefix("sha256:")
    assert hashed.reference_text is None  # hashed keeps no text anywhere

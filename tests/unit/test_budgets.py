import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from pipeline.agents.investigate import Investigator, _investigate
from pipeline.agents.screen import Screener
from pipeline.budget import TokenBucket
from pipeline.policy import RoutingPolicy
from schemas.evidence import CategoryScore, Escalation, Tier2Result
from tests.helpers import FixedDetector
from tests.unit.test_policy_and_screener import event


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_bucket_grants_the_burst_then_the_rate():
    clock = Clock()
    bucket = TokenBucket(rate_per_s=10, burst=5, clock=clock)
    assert bucket.take(8) == 5
    assert bucket.take(1) == 0
    clock.now = 0.35
    assert bucket.take(10) == 3
    clock.now = 100.0
    assert bucket.take(10) == 5  # never more than the burst


class SlowTier2:
    """Unit tier: a stand-in model whose speed the test controls."""

    def __init__(self, delay_s=0.0, delays=()):
        self.delay_s = delay_s
        self.delays = list(delays)  # per call, first; then delay_s
        self.seen = 0

    def assess(self, events):
        time.sleep(self.delays.pop(0) if self.delays else self.delay_s)
        self.seen += len(events)
        return [
            Tier2Result(
                scores=(CategoryScore(category="injection", score=0.1, threshold=0.9, detector="t2"),),
                distance=0.2,
                detector_version="t2",
            )
            for _ in events
        ]


def escalations(values):
    screener = Screener([FixedDetector(*values)], RoutingPolicy.load())
    events = [event(i) for i in range(len(values))]
    return [Escalation(event=e, screening=s) for e, s in zip(events, screener.screen(events), strict=True)]


def run(investigator, items, bucket, timeout_s=5.0):
    async def go():
        with ThreadPoolExecutor(1) as executor:
            return await _investigate(investigator, items, asyncio.get_running_loop(), executor, bucket, timeout_s)

    bundles = asyncio.run(go())
    assert len(bundles) == len(items)  # one result per escalation: a bundle or None
    return [b for b in bundles if b is not None]


def test_over_budget_the_most_severe_get_tier2_and_nothing_is_dropped():
    tier2 = SlowTier2()
    items = escalations([0.6, 0.99, 0.45])  # medium, high, uncertain
    bundles = run(Investigator(tier2), items, TokenBucket(rate_per_s=0.001, burst=1))
    assert tier2.seen == 1
    by_event = {b.events[0].event_id: b for b in bundles}
    assert set(by_event) == {"e0", "e1", "e2"}  # the uncertain one goes to the human queue, with the reason
    assert by_event["e1"].tier2 and not by_event["e0"].tier2  # the high-severity one got the budget
    assert "over its rate budget" in by_event["e2"].hops[-1].note


def test_a_tier2_timeout_sends_the_batch_on_with_the_reason():
    bundles = run(Investigator(SlowTier2(delay_s=0.5)), escalations([0.6, 0.45]), TokenBucket(100, 100), timeout_s=0.05)
    assert len(bundles) == 2 and all(not b.tier2 for b in bundles)
    assert all("timed out" in b.hops[-1].note for b in bundles)


def test_within_budget_uncertain_events_need_tier2_to_flag_them():
    bundles = run(Investigator(SlowTier2()), escalations([0.6, 0.45]), TokenBucket(100, 100))
    assert [b.events[0].event_id for b in bundles] == ["e0"]  # tier 2 did not flag the uncertain one


def test_a_burst_longer_than_the_timeout_still_gets_tier2_when_each_chunk_is_in_time(monkeypatch):
    from pipeline.agents import investigate

    monkeypatch.setattr(investigate, "TIER2_CHUNK", 1)
    tier2 = SlowTier2(delay_s=0.1)
    bundles = run(Investigator(tier2), escalations([0.99, 0.6, 0.6]), TokenBucket(100, 100), timeout_s=0.15)
    assert tier2.seen == 3 and len(bundles) == 3 and all(b.tier2 for b in bundles)  # 0.3 s in all


def test_a_stuck_chunk_sends_it_and_the_rest_on_and_keeps_the_chunks_that_finished(monkeypatch):
    from pipeline.agents import investigate

    monkeypatch.setattr(investigate, "TIER2_CHUNK", 1)
    tier2 = SlowTier2(delays=[0.01, 0.5, 0.01])
    items = escalations([0.99, 0.6, 0.6])  # high first: it gets tier 2 before the stuck call
    bundles = run(Investigator(tier2), items, TokenBucket(100, 100), timeout_s=0.15)
    by_event = {b.events[0].event_id: b for b in bundles}
    assert by_event["e0"].tier2 and not by_event["e1"].tier2 and not by_event["e2"].tier2
    assert all("timed out" in by_event[e].hops[-1].note for e in ("e1", "e2"))

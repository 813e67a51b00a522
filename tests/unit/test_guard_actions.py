"""Session actions: decided from bundles by the tenant's profile (less what grants relax), held
per session by enforcement points until they expire or are lifted; drills never act."""

from __future__ import annotations

import time

from pipeline.guard.actions import ActionBook, ActionDecider
from pipeline.guard.grants import GrantBook
from pipeline.policy import Profile, SessionActionRule
from schemas.events import LLMEvent
from schemas.evidence import EvidenceBundle, Severity
from schemas.guard import ActionKind, GuardAction, SessionAction
from tests.unit.guard_helpers import grant, policy

MINUTE_NS = 60 * 10**9


def bundle(categories: tuple[str, ...], severity: Severity = Severity.HIGH, *, tenant: str = "support-bot",
           session: str = "s-1", bundle_id: str = "b-1", drill: str | None = None,
           user: str = "", created_ns: int | None = None) -> EvidenceBundle:  # fmt: skip
    event = LLMEvent(event_id="e", trace_id="t", span_id="p", session_id=session, service=tenant, tenant=tenant,
                     attributes={"enduser.id": user} if user else {})  # fmt: skip
    return EvidenceBundle(
        bundle_id=bundle_id, session_id=session, trace_ids=("t",), service=tenant, model=None, severity=severity,
        categories=categories, max_score=0.99, tenant=tenant, events=(event,), screenings=(), hops=(),
        policy_version="v", drill_id=drill, created_ns=created_ns or time.time_ns(),
    )  # fmt: skip


def decider(*grants) -> ActionDecider:
    rules = policy()
    book = GrantBook(rules.guard)
    book.replace(list(grants))
    return ActionDecider(rules, book)


def test_a_high_injection_bundle_puts_its_session_in_read_only_tools_for_the_profile_minutes() -> None:
    made = bundle(("injection", "tier2:injection"))
    action = decider().on_bundle(made)
    assert action is not None and action.action is GuardAction.READ_ONLY_TOOLS
    assert action.expires_ns == made.created_ns + 30 * MINUTE_NS and action.bundle_id == "b-1"
    assert action.profile == "default"
    assert action.grant_id is None and "high bundle flagging injection" in action.reason


def test_below_the_rule_severity_nothing_happens_but_bundles_add_up_to_the_session_risk_rule() -> None:
    d = decider()
    now = time.time_ns()
    assert d.on_bundle(bundle(("encoding",), Severity.MEDIUM, bundle_id="b1"), now) is None
    assert d.on_bundle(bundle(("encoding",), Severity.HIGH, bundle_id="b2"), now) is None  # no rule for encoding
    last = d.on_bundle(bundle(("encoding",), Severity.CRITICAL, bundle_id="b3"), now)  # .5 + 1 + 2 >= 3
    assert last is not None and last.action is GuardAction.BLOCK and "session risk 3.50" in last.reason


def test_actions_run_from_the_bundle_so_a_late_or_replayed_one_ends_on_time() -> None:
    now = time.time_ns()
    late = decider().on_bundle(bundle(("injection",), created_ns=now - 10 * MINUTE_NS), now)
    assert late is not None and late.expires_ns == now + 20 * MINUTE_NS
    assert decider().on_bundle(bundle(("injection",), created_ns=now - 120 * MINUTE_NS), now) is None


def test_the_same_bundle_again_issues_the_same_record_not_a_second_action() -> None:
    d = decider()
    assert d.on_bundle(bundle(("injection",))).record_id == d.on_bundle(bundle(("injection",))).record_id


def test_drills_never_act() -> None:
    assert decider().on_bundle(bundle(("injection",), drill="run/case")) is None


def test_strict_tenants_act_on_medium_bundles_and_block_high_ones() -> None:
    d = decider()
    medium = d.on_bundle(bundle(("encoding",), Severity.MEDIUM, tenant="travel-agent"))
    assert medium is not None and medium.action is GuardAction.READ_ONLY_TOOLS and medium.profile == "strict"
    high = d.on_bundle(bundle(("encoding",), Severity.HIGH, tenant="travel-agent", session="s-2"))
    assert high is not None and high.action is GuardAction.BLOCK


def test_a_grant_relaxes_the_session_action_for_its_scope_and_the_action_says_which_grant() -> None:
    given = grant(("injection",), tenant="support-bot", users=("alice",))
    d = decider(given)
    assert d.on_bundle(bundle(("injection",), user="alice")) is None
    other = d.on_bundle(bundle(("injection",), user="bob", session="s-2"))
    assert other is not None and other.action is GuardAction.READ_ONLY_TOOLS and other.grant_id is None
    mixed = d.on_bundle(bundle(("injection", "exfiltration"), user="alice", session="s-3"))
    assert mixed is not None and mixed.action is GuardAction.READ_ONLY_TOOLS  # exfiltration still acts
    assert mixed.categories == ("exfiltration",) and mixed.grant_id is None  # the grant changed nothing here


def test_an_action_a_grant_changed_carries_its_id() -> None:
    rules = policy()
    profile = Profile(session_actions=(
        SessionActionRule(categories=("injection",), action=GuardAction.BLOCK, minutes=10),
        SessionActionRule(categories=("personal_data",), action=GuardAction.READ_ONLY_TOOLS, minutes=5),
    ))  # fmt: skip
    guard = rules.guard.model_copy(update={"profiles": {**rules.guard.profiles, "default": profile}})
    rules = rules.model_copy(update={"guard": guard})
    book = GrantBook(rules.guard)
    given = grant(("injection",), tenant="support-bot")
    book.replace([given])
    d = ActionDecider(rules, book)
    action = d.on_bundle(bundle(("injection", "personal_data")))
    assert action is not None and action.action is GuardAction.READ_ONLY_TOOLS  # not block: injection is relaxed
    assert action.grant_id == given.grant_id and action.categories == ("personal_data",)
    book.replace([])
    assert ActionDecider(rules, book).on_bundle(bundle(("injection", "personal_data"))).action is GuardAction.BLOCK


def test_the_book_keeps_the_strictest_action_until_it_expires_or_is_lifted() -> None:
    now = [1_000]
    book = ActionBook(clock=lambda: now[0])
    ro = SessionAction(
        record_id="r1", session_id="s", action=GuardAction.READ_ONLY_TOOLS, issued_ns=0, expires_ns=5_000
    )
    block = SessionAction(record_id="r2", session_id="s", action=GuardAction.BLOCK, issued_ns=0, expires_ns=3_000)
    book.apply(ro)
    book.apply(block)
    assert book.active("s").record_id == "r2"
    now[0] = 3_000  # the block expired on time, with nothing to process
    assert book.active("s").record_id == "r1"
    book.apply(SessionAction(record_id="l1", kind=ActionKind.LIFT, session_id="s", lifts="r1", issued_ns=3_001))
    assert book.active("s") is None
    book.apply(SessionAction(record_id="r3", session_id="t", action=GuardAction.BLOCK, issued_ns=0, expires_ns=2_000))
    assert book.snapshot()["sessions"] == 1  # already expired when it arrived (a replay from the start): not kept
    assert book.active("t") is None
    assert book.active("never-seen") is None


def test_the_book_is_bounded() -> None:
    book = ActionBook(max_sessions=2, clock=lambda: 0)
    for i in range(3):
        book.apply(SessionAction(record_id=f"r{i}", session_id=f"s{i}", action=GuardAction.BLOCK, issued_ns=0,
                                 expires_ns=10))  # fmt: skip
    assert book.active("s0") is None and book.active("s2") is not None

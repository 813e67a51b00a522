"""Relaxation grants: refused with the reason when the policy does not allow them; applied to
exactly their categories, tenant, services and users, until they expire; never to a
non-relaxable category, whatever a stored grant says."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from pipeline.guard.decide import decide
from pipeline.guard.grants import GrantBook, GrantRefused, check_grant
from pipeline.policy import GuardPolicy
from schemas.evidence import CategoryScore
from schemas.guard import GuardAction
from tests.unit.guard_helpers import HOUR_NS, grant, grant_request, policy


def scores(**values: float) -> list[CategoryScore]:
    return [CategoryScore(category=c, score=s, threshold=0.5, detector="t") for c, s in values.items()]


def test_a_valid_grant_is_kept_with_who_granted_it() -> None:
    now = time.time_ns()
    made = check_grant(policy().guard, grant_request(categories=["injection", "personal_data"]), "root", now)
    assert made.grant_id.startswith("g-") and made.granted_by == "root" and made.granted_ns == now
    assert made.categories == ("injection", "personal_data") and made.expires_ns > now


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"tenant": "nobody-knows"}, "unknown tenant 'nobody-knows'"),
        ({"categories": ["harmful"]}, "'harmful' is non-relaxable: tier 1's harmful head"),
        ({"categories": ["secret_leak"]}, "'secret_leak' is non-relaxable"),
        ({"categories": ["harmful/weapons"]}, "'harmful/weapons' is non-relaxable"),
        ({"categories": ["made_up"]}, "'made_up' is not relaxable"),
        ({"expires_at": datetime.now(UTC) - timedelta(minutes=1)}, "is not in the future"),
        ({"expires_at": datetime.now(UTC) + timedelta(days=31)}, "more than 30 days away"),
    ],
)
def test_a_grant_the_policy_does_not_allow_is_refused_with_the_reason(overrides: dict, reason: str) -> None:
    with pytest.raises(GrantRefused, match=reason.replace("(", r"\(")):
        check_grant(policy().guard, grant_request(**overrides), "root", time.time_ns())


def test_every_reason_is_given_at_once() -> None:
    with pytest.raises(GrantRefused) as refused:
        check_grant(policy().guard, grant_request(tenant="x", categories=["exfiltration"]), "root", time.time_ns())
    assert "unknown tenant" in str(refused.value) and "non-relaxable" in str(refused.value)


def test_a_naive_expiry_or_an_empty_reason_is_not_a_grant_request() -> None:
    with pytest.raises(ValidationError):
        grant_request(expires_at=datetime.now() + timedelta(hours=1))
    with pytest.raises(ValidationError):
        grant_request(reason="")


def test_a_policy_cannot_make_a_category_both_relaxable_and_not() -> None:
    with pytest.raises(ValidationError, match="both relaxable and non-relaxable"):
        GuardPolicy(relaxable=("harmful",), non_relaxable={"harmful": "never"})


def test_a_grant_relaxes_exactly_its_categories_for_its_scope_until_expiry() -> None:
    rules = policy()
    _, strict = rules.guard.profile_for("travel-agent")  # strict: injection and personal_data act
    now = time.time_ns()
    book = GrantBook(rules.guard)
    given = grant(("injection",), tenant="travel-agent", services=("travel-agent",), users=("alice",), now_ns=now)
    book.replace([given])
    flagged = scores(injection=0.9, personal_data=0.9)

    def verdict(service: str = "travel-agent", user: str = "alice", at: int = now, tenant: str = "travel-agent"):
        return decide(rules, strict, flagged, None, book.covering(tenant, service, user, at), book)

    relaxed = verdict()
    assert relaxed.relaxed == {"injection": given.grant_id} and relaxed.grant_id == given.grant_id
    assert relaxed.action is GuardAction.REDACT  # personal_data still acts: only injection was relaxed
    assert any("relaxed by grant g-test" in r for r in relaxed.reasons)
    for outside in (verdict(service="other"), verdict(user="bob"), verdict(tenant="support-bot"),
                    verdict(at=given.expires_ns), verdict(at=given.expires_ns + HOUR_NS)):  # fmt: skip
        assert outside.action is GuardAction.BLOCK and outside.grant_id is None and not outside.relaxed


def test_tier_two_flags_of_a_relaxed_category_are_relaxed_too() -> None:
    rules = policy()
    _, strict = rules.guard.profile_for("travel-agent")
    book = GrantBook(rules.guard)
    book.replace([grant(("injection",), tenant="travel-agent")])
    result = decide(rules, strict, scores(**{"tier2:injection": 0.99}), None,
                    book.covering("travel-agent", "s", "", time.time_ns()), book)  # fmt: skip
    assert result.action is GuardAction.ALLOW and result.relaxed == {"tier2:injection": "g-test"}


def test_a_non_relaxable_category_is_never_relaxed_even_by_a_stored_grant() -> None:
    rules = policy()
    _, profile = rules.guard.profile_for("code-helper")
    book = GrantBook(rules.guard)
    book.replace([grant(("harmful", "secret_leak", "injection"))])  # as if written under an older policy
    result = decide(rules, profile, scores(harmful=0.99, secret_leak=0.9, injection=0.9), None,
                    book.covering("code-helper", "code-helper", "", time.time_ns()), book)  # fmt: skip
    assert set(result.relaxed) == {"injection"}
    # professional: harmful high -> safe_fallback, secret_leak flagged -> redact; both still act
    assert result.action is GuardAction.SAFE_FALLBACK
    assert any(r.startswith("harmful 0.990 high") for r in result.reasons)
    assert any(r.startswith("secret_leak 0.900 flagged") and r.endswith("redact") for r in result.reasons)


def test_grants_stop_applying_when_they_cannot_be_read_again() -> None:
    clock = [0.0]
    rules = policy()
    book = GrantBook(rules.guard, max_stale_s=60, clock=lambda: clock[0])
    book.replace([grant()])
    assert book.covering("code-helper", "code-helper", "", time.time_ns())
    clock[0] = 61.0
    assert book.covering("code-helper", "code-helper", "", time.time_ns()) == []
    assert book.stale_refusals == 1


def test_decisions_no_grant_touched_carry_no_grant_id() -> None:
    rules = policy()
    _, profile = rules.guard.profile_for("code-helper")
    book = GrantBook(rules.guard)
    book.replace([grant(("injection",))])
    result = decide(rules, profile, scores(personal_data=0.9), None,
                    book.covering("code-helper", "code-helper", "", time.time_ns()), book)  # fmt: skip
    assert result.grant_id is None and result.categories == ("personal_data",)

"""The reviewer's desk on a real chdb store: filters, claims, resolutions, groups, audit, feedback."""

import time

import pytest

from pipeline.store.clickhouse import Store
from pipeline.store.desk import Desk, DeskError, QueueFilter
from schemas.evidence import QueueState, ReviewLabel, Severity
from tests.integration.test_store import bundle_for

INJECTIONS = ["x' OR 1=1 --", "'; DROP TABLE evidence_bundles; --", "\\' OR ''='", "svc') OR ('1'='1"]


@pytest.fixture
def desk(tmp_path):
    store = Store.open(f"chdb://{tmp_path / 'store'}")
    yield Desk(store)
    store.close()


def seed(desk, *bundles):
    desk.store.insert_bundles(list(bundles), time.time_ns())
    return bundles


def test_filters_select_by_every_field_and_hostile_values_match_nothing(desk):
    high = bundle_for(1, 0.99).model_copy(
        update={"service": "billing", "tenant": "acme", "model": "m1", "group_key": "gh"}
    )
    medium = bundle_for(2, 0.6).model_copy(update={"drill_id": "drill-1"})
    seed(desk, high, medium)

    def ids(**filters):
        return [r["bundle_id"] for r in desk.queue(QueueFilter(**filters))]

    assert ids() == [high.bundle_id, medium.bundle_id]
    assert ids(min_severity=Severity.HIGH) == ids(severity=[Severity.HIGH]) == [high.bundle_id]
    assert ids(service="billing") == ids(tenant="acme") == ids(model="m1") == [high.bundle_id]
    assert ids(category=high.categories[0]) == [high.bundle_id, medium.bundle_id]
    assert ids(origin="drill") == [medium.bundle_id] and ids(origin="live") == [high.bundle_id]
    assert ids(sort="newest") == [medium.bundle_id, high.bundle_id]
    assert ids(group_key=high.group_key) == [high.bundle_id]
    for hostile in INJECTIONS:
        assert ids(service=hostile) == ids(category=hostile) == ids(tenant=hostile) == ids(group_key=hostile) == []
        assert desk.bundle(hostile) is None
    assert len(ids(status="all")) == 2  # nothing was dropped or changed by the hostile values


def test_claim_release_and_resolve_with_an_audit_trail(desk):
    (bundle,) = seed(desk, bundle_for(1, 0.99))
    key = bundle.bundle_id
    assert desk.claim(key, "ana", "reviewer")["claimed_by"] == "ana"
    assert desk.claim(key, "ana", "reviewer")["claimed_by"] == "ana"  # claiming again is harmless
    with pytest.raises(DeskError) as taken:
        desk.claim(key, "bo", "reviewer")
    assert taken.value.status == 409 and "ana" in str(taken.value)
    with pytest.raises(DeskError):
        desk.resolve(key, "bo", "reviewer", ReviewLabel.CONFIRMED, "")
    assert [r["bundle_id"] for r in desk.queue(QueueFilter(status="claimed"))] == [key]
    assert desk.queue(QueueFilter(status="unclaimed")) == []

    state = desk.resolve(key, "ana", "reviewer", ReviewLabel.FALSE_POSITIVE, "benign billing question")
    assert (state["queue_state"], state["label"], state["resolved_by"]) == ("resolved", "false_positive", "ana")
    assert desk.queue(QueueFilter()) == [] and len(desk.queue(QueueFilter(status="resolved"))) == 1
    with pytest.raises(DeskError) as closed:
        desk.claim(key, "bo", "reviewer")
    assert closed.value.status == 409

    shown = desk.bundle(key)
    assert shown["queue_state"] == QueueState.RESOLVED and shown["label"] == "false_positive"
    assert [(r["actor"], r["action"]) for r in shown["reviews"]] == [
        ("ana", "claim"),
        ("ana", "claim"),
        ("ana", "resolve"),
    ]
    assert shown["reviews"][-1]["note"] == "benign billing question"
    with pytest.raises(DeskError) as missing:
        desk.claim("no-such-bundle", "ana", "reviewer")
    assert missing.value.status == 404


def test_only_the_claimer_or_an_admin_releases_a_claim(desk):
    (bundle,) = seed(desk, bundle_for(1, 0.99))
    desk.claim(bundle.bundle_id, "ana", "reviewer")
    with pytest.raises(DeskError):
        desk.unclaim(bundle.bundle_id, "bo", "reviewer")
    assert desk.unclaim(bundle.bundle_id, "root", "admin")["claimed_by"] == ""


def test_a_group_of_similar_escalations_is_resolved_by_one_decision(desk):
    burst = [bundle_for(n, 0.99).model_copy(update={"group_key": "g1"}) for n in range(1, 5)]
    other = bundle_for(9, 0.99).model_copy(update={"group_key": "g2"})
    seed(desk, *burst, other)
    desk.claim(burst[0].bundle_id, "bo", "reviewer")  # someone else's claim is respected
    groups = desk.groups(QueueFilter())
    assert [(g["group_key"], g["bundles"]) for g in groups] == [("g1", 4), ("g2", 1)]
    assert desk.resolve_group("g1", "ana", "reviewer", ReviewLabel.CONFIRMED, "same campaign") == 3
    assert [r["bundle_id"] for r in desk.queue(QueueFilter())] == [burst[0].bundle_id, other.bundle_id]


def test_stats_and_labelled_feedback(desk):
    a, b, _ = seed(desk, bundle_for(1, 0.99), bundle_for(2, 0.6), bundle_for(3, 0.7))
    desk.resolve(a.bundle_id, "ana", "reviewer", ReviewLabel.CONFIRMED, "")
    desk.resolve(b.bundle_id, "ana", "reviewer", ReviewLabel.BENIGN_OOD, "")
    stats = desk.stats()
    assert stats["open"] == 1 and stats["resolved"] == 2 and stats["oldest_open_age_s"] >= 0
    assert stats["resolved_by_label"] == {"confirmed": 1, "benign_ood": 1}
    feedback = desk.labelled([ReviewLabel.FALSE_POSITIVE, ReviewLabel.BENIGN_OOD])
    assert [r["bundle_id"] for r in feedback] == [b.bundle_id]

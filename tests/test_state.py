"""Release state transitions: pure, versioned, bounded by time."""

from __future__ import annotations

from datetime import timedelta

from governor import state as st

from tests.support.decisions import NOW, OTHER_SHA, PROD_SHA, SHA, approval

MIN = timedelta(minutes=1)


def fresh() -> st.ReleaseState:
    return st.new_state(1, "octo/app")


def test_intent_is_recorded_once_and_first_writer_wins() -> None:
    first = st.record_intent(fresh(), SHA, "intent-1", NOW)
    again = st.record_intent(first, SHA, "intent-2", NOW + MIN)
    assert again is first
    dispatch = again.dispatch_for(SHA)
    assert dispatch is not None and dispatch.intent_id == "intent-1" and dispatch.run_id is None
    assert first.version == 1


def test_run_id_is_attached_to_the_matching_intent_only() -> None:
    s = st.record_intent(fresh(), SHA, "intent-1", NOW)
    wrong = st.record_run(s, SHA, intent_id="other", run_id=5, run_url=None, now=NOW)
    assert wrong is s
    right = st.record_run(s, SHA, intent_id="intent-1", run_id=5, run_url="u", now=NOW)
    dispatch = right.dispatch_for(SHA)
    assert dispatch is not None and dispatch.run_id == 5 and right.version == 2


def test_success_moves_production_and_clears_the_sha() -> None:
    s = fresh().model_copy(update={"production_sha": PROD_SHA})
    s = st.hold_recorded(s, SHA, "high_risk_no_approval", None, NOW)
    s = st.approval_recorded(s, approval(SHA), NOW)
    s = st.deploy_succeeded(s, SHA, NOW)
    assert (s.production_previous_sha, s.production_sha, s.production_at) == (PROD_SHA, SHA, NOW)
    assert SHA not in s.holds and SHA not in s.approvals
    assert st.deploy_succeeded(s, SHA, NOW + MIN) is s


def test_failure_starts_cooldown_and_keeps_the_issue_for_thirty_minutes() -> None:
    s = st.deploy_failed(fresh(), SHA, "failure", NOW)
    assert s.failure_issue_to_append(SHA, NOW) is None  # no issue yet
    s = st.failure_issue_opened(s, SHA, 42, NOW)
    s = st.deploy_failed(s, SHA, "timed_out", NOW + 10 * MIN)
    failure = s.failures[SHA]
    assert (failure.count, failure.conclusion, failure.issue_number) == (2, "timed_out", 42)
    assert s.failure_issue_to_append(SHA, NOW + 39 * MIN) == 42
    assert s.failure_issue_to_append(SHA, NOW + 40 * MIN) is None


def test_approvals_are_per_sha_and_per_user() -> None:
    s = st.approval_recorded(fresh(), approval(SHA, "alice"), NOW)
    same = st.approval_recorded(s, approval(SHA, "alice", NOW + MIN), NOW + MIN)
    assert same is s
    s = st.approval_recorded(s, approval(OTHER_SHA, "bob"), NOW)
    assert [a.by for a in s.approvals_for(SHA)] == ["alice"]
    assert [a.by for a in s.approvals_for(OTHER_SHA)] == ["bob"]


def test_superseded_forgets_hold_and_approvals() -> None:
    s = st.hold_recorded(fresh(), SHA, "cooldown", NOW + MIN, NOW)
    s = st.approval_recorded(s, approval(SHA), NOW)
    s = st.superseded(s, SHA, NOW)
    assert SHA not in s.holds and SHA not in s.approvals


def test_history_is_bounded_by_time_not_by_count() -> None:
    s = fresh()
    for i in range(500):  # far more than any per-hour limit: none may be dropped
        s = st.record_intent(s, f"{i:040x}", f"i{i}", NOW - 59 * MIN + i * timedelta(seconds=1))
    assert len(s.dispatches_since(NOW - 60 * MIN)) == 500
    later = st.hold_recorded(s, SHA, "rate_limit", None, NOW + timedelta(hours=25))
    assert later.dispatches == ()  # a day later they have aged out


def test_documents_round_trip_with_schema_and_version() -> None:
    s = st.record_intent(fresh(), SHA, "i", NOW)
    s = st.deploy_failed(s, SHA, "failure", NOW)
    again = st.ReleaseState.model_validate_json(s.model_dump_json())
    assert again == s and again.schema_version == 2 and again.version == 2

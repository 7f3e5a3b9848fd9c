"""The ledger on every backend: delivery claims, state CAS, decision records, run markers."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from governor.ledger import (
    MAX_EVALUATIONS_KEPT,
    Claim,
    ClaimSite,
    ClaimStatus,
    Evaluation,
    Ledger,
    decision_key,
    delivery_key,
)
from governor.state import deploy_succeeded, record_intent
from governor.store import ABSENT, ObjectStore, open_store

from tests.support import workers
from tests.support.decisions import SHA

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
GUID = "72d3162e-cc78-11e3-81ab-4c9367dc0958"


@pytest.fixture
def ledger(store: ObjectStore) -> Ledger:
    return Ledger(store)


SITES = ["delivery", "decision", "run"]


def site_of(ledger: Ledger, kind: str) -> ClaimSite:
    """A claim on each kind of record: its own, a SHA's decision record, a run record."""
    if kind == "delivery":
        return ledger.delivery_site(GUID)
    if kind == "decision":
        return ledger.decision_site(7, "octo/app", SHA, "workflow-run-7-99-1")
    return ledger.run_site(7, 99, 1)


@pytest.mark.parametrize("kind", SITES)
class TestClaims:
    def claim(self, ledger: Ledger, kind: str, at: datetime, **lease: timedelta) -> Claim:
        return ledger.claim(site_of(ledger, kind), "workflow_run", at, guid=GUID, **lease)

    def test_first_claim_wins_and_a_duplicate_is_in_progress(
        self, ledger: Ledger, kind: str
    ) -> None:
        first = self.claim(ledger, kind, NOW)
        second = self.claim(ledger, kind, NOW + timedelta(seconds=5))
        assert first.status is ClaimStatus.CLAIMED and not first.takeover
        assert second.status is ClaimStatus.IN_PROGRESS
        assert second.lease_until == first.lease_until

    def test_done_answers_with_the_recorded_outcome_and_writes_nothing(
        self, ledger: Ledger, kind: str
    ) -> None:
        first = self.claim(ledger, kind, NOW)
        ledger.finish(site_of(ledger, kind), first.owner, {"result": "decided"}, NOW)
        key = site_of(ledger, kind).key
        written = ledger.store.get(key)
        again = self.claim(ledger, kind, NOW + timedelta(hours=1))
        assert again.status is ClaimStatus.DONE and again.outcome == {"result": "decided"}
        assert ledger.store.get(key) == written  # a replay costs no write

    def test_an_expired_lease_is_taken_over(self, ledger: Ledger, kind: str) -> None:
        first = self.claim(ledger, kind, NOW, lease=timedelta(seconds=60))
        taken = self.claim(ledger, kind, NOW + timedelta(seconds=60))
        assert taken.status is ClaimStatus.CLAIMED and taken.takeover
        assert taken.owner != first.owner

    def test_a_released_claim_can_be_taken_at_once(self, ledger: Ledger, kind: str) -> None:
        first = self.claim(ledger, kind, NOW)
        ledger.release(site_of(ledger, kind), first.owner, NOW + timedelta(seconds=1))
        retry = self.claim(ledger, kind, NOW + timedelta(seconds=2))
        assert retry.status is ClaimStatus.CLAIMED and retry.takeover

    def test_releasing_or_finishing_someone_elses_claim_does_nothing(
        self, ledger: Ledger, kind: str
    ) -> None:
        self.claim(ledger, kind, NOW)
        ledger.release(site_of(ledger, kind), "not-the-owner", NOW)
        ledger.finish(site_of(ledger, kind), "not-the-owner", {"result": "x"}, NOW)
        later = self.claim(ledger, kind, NOW + timedelta(seconds=1))
        assert later.status is ClaimStatus.IN_PROGRESS


def test_odd_guids_are_refused() -> None:
    for guid in ["", "../x", "a/b", "x" * 200]:
        with pytest.raises(ValueError, match="not usable as a key"):
            delivery_key(guid)


def test_a_verification_finishes_and_records_its_evaluation_in_one_write(ledger: Ledger) -> None:
    site = ledger.decision_site(7, "octo/app", SHA, "workflow-run-7-99-1")
    claim = ledger.claim(site, "workflow_run", NOW, guid=GUID)
    before = ledger.store.get(site.key)
    assert before is not None
    ledger.finish(site, claim.owner, {"result": "decided"}, NOW, TestDecisionsAndRuns.evaluation(1))
    after = ledger.store.get(site.key)
    assert after is not None and after.generation != before.generation
    record = ledger.read_decision(7, SHA)
    assert record is not None and [e.detail for e in record.evaluations] == ["evaluation 1"]
    assert record.claims["workflow-run-7-99-1"].status == "done"


def test_claims_in_a_decision_record_are_kept_four_days(ledger: Ledger) -> None:
    old = ledger.decision_site(7, "octo/app", SHA, "workflow-run-7-1-1")
    ledger.claim(old, "workflow_run", NOW, guid=GUID)
    new = ledger.decision_site(7, "octo/app", SHA, "workflow-run-7-2-1")
    ledger.claim(new, "workflow_run", NOW + timedelta(days=4, seconds=1), guid=GUID)
    record = ledger.read_decision(7, SHA)
    assert record is not None and list(record.claims) == ["workflow-run-7-2-1"]


def test_a_run_marker_from_before_schema_2_reads_as_done(ledger: Ledger) -> None:
    key = "runs/7/1234-1.json"
    marker = b'{"conclusion": "success", "run_id": 1234, "sha": "' + SHA.encode() + b'"}'
    ledger.store.put(key, marker, if_generation_match=ABSENT)
    again = ledger.claim(ledger.run_site(7, 1234, 1), "workflow_run", NOW, guid=GUID)
    assert again.status is ClaimStatus.DONE and again.outcome == {
        "conclusion": "success",
        "run_id": 1234,
        "sha": SHA,
    }


def test_issue_pending_says_whether_someone_started_creating_the_issue(ledger: Ledger) -> None:
    ledger.claim(ledger.run_site(7, 55, 1), "workflow_run", NOW, guid=GUID)
    assert ledger.issue_pending(7, 55, 1) is False
    assert ledger.issue_pending(7, 55, 1) is True


class TestState:
    def test_unknown_repo_starts_empty(self, ledger: Ledger) -> None:
        state = ledger.read_state(7, "octo/app")
        assert state.production_sha is None and state.version == 0

    def test_transition_is_stored_and_a_no_op_writes_nothing(
        self, ledger: Ledger, store: ObjectStore
    ) -> None:
        after = ledger.transition(7, "octo/app", lambda s: deploy_succeeded(s, SHA, NOW))
        assert after.production_sha == SHA and after.version == 1
        stored = store.get("repos/7/state.json")
        assert stored is not None
        ledger.transition(7, "octo/app", lambda s: deploy_succeeded(s, SHA, NOW))
        unchanged = store.get("repos/7/state.json")
        assert unchanged is not None and unchanged.generation == stored.generation
        assert ledger.read_state(7, "octo/app") == after

    def test_a_rename_updates_the_name_but_not_the_key(self, ledger: Ledger) -> None:
        ledger.transition(7, "octo/app", lambda s: deploy_succeeded(s, SHA, NOW))
        renamed = ledger.transition(7, "octo/new-name", lambda s: record_intent(s, SHA, "i", NOW))
        assert renamed.repo == "octo/new-name" and renamed.production_sha == SHA


class TestDecisionsAndRuns:
    @staticmethod
    def evaluation(n: int) -> Evaluation:
        return Evaluation(
            at=NOW + timedelta(minutes=n),
            delivery=None,
            trigger="reconcile",
            outcome="HOLD",
            reason="cooldown",
            risk="LOW",
            detail=f"evaluation {n}",
        )

    def test_evaluations_are_appended_and_bounded(self, ledger: Ledger) -> None:
        for n in range(MAX_EVALUATIONS_KEPT + 5):
            record = ledger.record_evaluation(7, "octo/app", SHA, self.evaluation(n))
        assert record.total_evaluations == MAX_EVALUATIONS_KEPT + 5
        assert len(record.evaluations) == MAX_EVALUATIONS_KEPT
        assert record.evaluations[0].detail == "evaluation 0"
        assert (
            record.latest is not None
            and record.latest.detail == f"evaluation {MAX_EVALUATIONS_KEPT + 4}"
        )
        assert ledger.read_decision(7, SHA) == record

    def test_an_evaluation_that_decides_what_the_latest_did_writes_nothing(
        self, ledger: Ledger
    ) -> None:
        ledger.record_evaluation(7, "octo/app", SHA, self.evaluation(1))
        written = ledger.store.get(decision_key(7, SHA))
        ledger.record_evaluation(7, "octo/app", SHA, self.evaluation(1))
        assert ledger.store.get(decision_key(7, SHA)) == written


@pytest.mark.slow
def test_thirty_two_processes_race_for_one_intent_exactly_one_wins(store_url: str) -> None:
    results = workers.run_processes(
        workers.race_intent, [(store_url, 7, SHA, NOW.isoformat())] * 32
    )
    winners = [intent for intent, won in results if won]
    assert len(winners) == 1
    state = Ledger(open_store(store_url)).read_state(7, "octo/app")
    assert len(state.dispatches) == 1 and state.dispatches[0].intent_id == winners[0]


@pytest.mark.slow
def test_thirty_two_intents_for_thirty_two_shas_are_all_kept(store_url: str) -> None:
    shas = [f"{i:040x}" for i in range(32)]
    results = workers.run_processes(
        workers.race_intent, [(store_url, 7, sha, NOW.isoformat()) for sha in shas]
    )
    assert all(won for _intent, won in results)
    state = Ledger(open_store(store_url)).read_state(7, "octo/app")
    assert sorted(d.sha for d in state.dispatches) == shas
    assert state.version == 32


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["delivery", "decision"])
def test_twenty_processes_claim_one_delivery_exactly_one_processes_it(
    store_url: str, kind: str
) -> None:
    statuses = workers.run_processes(
        workers.claim_delivery, [(store_url, kind, GUID, NOW.isoformat())] * 20
    )
    assert Counter(statuses) == {"claimed": 1, "in_progress": 19}

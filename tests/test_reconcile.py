"""Scheduled reconcile, in-process with an injected clock: the real local store, the real
App client, the fake GitHub (its deliveries API, conditional requests and rate-limit
accounting). What webhooks missed is caught up; what did not change costs nothing.

The end-to-end cases over HTTP (dropped webhooks, redelivery through the function, two
reconciles and the webhook at once) are in tests/test_e2e_reconcile.py.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from governor.events import Delivery
from governor.flows import delivery as deliveries
from governor.flows import reconcile
from governor.flows.context import Context
from governor.flows.results import FlowResult, to_json
from governor.github.api import GitHubApp
from governor.store import open_store

from tests.support.counting_store import CountingStore
from tests.support.e2e import APP_ID, deployed_base, new_repo
from tests.support.fake_github import FakeGitHub
from tests.support.governed import BASE_POLICY, VERIFY_FILE, Governed, sha_for
from tests.support.keys import rsa_key_pair
from tests.support.world import app_for, in_process

START = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
_ids = itertools.count(1)


@dataclass
class World:
    fake: FakeGitHub
    app: GitHubApp
    ctx: Context
    store: CountingStore
    now: list[datetime]
    store_url: str

    def repo(self, policy: str = BASE_POLICY) -> Governed:
        gov = new_repo(self.fake, self.store_url, "http://unused.invalid")
        deployed_base(gov, policy)
        return gov

    def reconcile(self, **budget: Any) -> dict[str, Any]:
        limits = {"seconds": 120.0, "max_repos": 500, "max_redeliveries": 20, **budget}
        return reconcile.run(self.ctx, self.app, reconcile.Budget(**limits)).to_json()

    def deliver(self, payload: dict[str, Any], event: str = "workflow_run") -> FlowResult:
        return deliveries.handle(self.ctx, Delivery(str(uuid.uuid4()), event, payload))

    def later(self, delta: timedelta) -> None:
        self.now[0] += delta

    def statuses_posted(self) -> int:
        return len(self.fake.calls_to("repos/create-commit-status"))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fake GitHub of its own: reconcile sweeps every repository of the installation."""
    _private, public = rsa_key_pair()
    with FakeGitHub(app_id=APP_ID, public_key_pem=public) as fake:
        url = (tmp_path / "store").as_uri()
        store = CountingStore(open_store(url))
        now = [START]
        app = app_for(fake)
        ctx = in_process(fake, url, now, app=app, store=store)
        yield World(fake, app, ctx, store, now, url)
        assert fake.violations == []


def dispatched(gov: Governed) -> list[str]:
    return [d["inputs"]["sha"] for d in gov.dispatches()]


# -- missed verifications ----------------------------------------------------------------


def test_a_verification_no_webhook_announced_is_dispatched_by_one_reconcile(
    world: World,
) -> None:
    gov = world.repo()
    sha = gov.commit("missed", ["src/app.py"])
    gov.repo.add_completed_run(VERIFY_FILE, head_sha=sha)  # its webhook never came

    summary = world.reconcile()

    assert summary["actions"]["verification_caught_up"] == 1, summary
    assert dispatched(gov) == [sha]
    assert gov.our_statuses(sha)[-1]["state"] == "success"
    assert gov.state().dispatch_for(sha) is not None

    again = world.reconcile()
    assert again["actions"]["verification_caught_up"] == 0, again
    assert dispatched(gov) == [sha]


def test_only_the_newest_verification_is_caught_up(world: World) -> None:
    gov = world.repo()
    older = gov.commit("older", ["src/a.py"])
    newer = gov.commit("newer", ["src/b.py"])
    gov.repo.add_completed_run(VERIFY_FILE, head_sha=older)
    gov.repo.add_completed_run(VERIFY_FILE, head_sha=newer)

    world.reconcile()

    assert dispatched(gov) == [newer]


def test_a_verification_decided_by_its_webhook_is_left_alone(world: World) -> None:
    gov = world.repo()
    sha = gov.commit("announced", ["infra/main.tf"])  # HIGH: held for approval
    result = to_json(world.deliver(gov.verified(sha)))
    assert result["reason"] == "high_risk_no_approval"
    gov.repo.add_completed_run(VERIFY_FILE, head_sha=sha)
    statuses = world.statuses_posted()

    summary = world.reconcile()

    assert summary["actions"]["verification_caught_up"] == 0
    assert world.statuses_posted() == statuses  # nothing said twice
    assert dispatched(gov) == []


def test_an_idle_repository_costs_one_state_read_and_no_counted_request(world: World) -> None:
    """After a first run has learned the policy and the ETags: a conditional request that
    GitHub answers 304 (not counted) and one read of the release state."""
    gov = world.repo()
    sha = gov.commit("done", ["src/app.py"])
    gov.repo.add_completed_run(VERIFY_FILE, head_sha=sha)
    world.reconcile()  # catches it up
    world.reconcile()  # learns the new ETag
    installation = gov.repo.installation_id
    world.fake.reset_request_counts()
    world.store.reset()

    summary = world.reconcile()

    assert summary["visited"] == 1 and summary["errors"] == [], summary
    assert world.fake.counted_requests(installation) <= 1  # the repository listing
    assert world.fake.uncounted_requests(installation) >= 1  # the runs list: 304
    state_reads = [k for k in world.store.get_keys if k.endswith("/state.json")]
    assert len(state_reads) == 1, world.store.get_keys
    writes = {k: n for k, n in world.store.writes().items() if k != "reconcile/cursor.json"}
    assert writes == {}, writes


def test_a_repository_with_no_recent_push_is_not_asked_for_its_runs(world: World) -> None:
    """GitHub's `pushed_at` (in the installation's repository listing, read anyway) says
    when a verification could have run: two hours after the last push, reconcile stops
    asking; a new push makes it ask again."""
    gov = world.repo()
    world.reconcile()
    runs_asked = len(world.fake.calls_to("actions/list-workflow-runs"))
    world.later(timedelta(hours=2, minutes=1))

    world.reconcile()
    assert len(world.fake.calls_to("actions/list-workflow-runs")) == runs_asked

    sha = sha_for("pushed-later")
    later = world.fake.clock() + 3600  # an hour on (pushed_at has whole seconds)
    gov.repo.add_commit(
        sha, files=[{"filename": "src/app.py", "status": "modified"}], pushed_at=later
    )
    gov.repo.set_file(".github/release-governor.yml", BASE_POLICY, ref=sha)
    gov.repo.add_completed_run(VERIFY_FILE, head_sha=sha)
    summary = world.reconcile()
    assert len(world.fake.calls_to("actions/list-workflow-runs")) == runs_asked + 1
    assert summary["actions"]["verification_caught_up"] == 1
    assert dispatched(gov) == [sha]


def test_policy_reads_are_spread_over_runs(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first run over many repositories reads each trusted policy (two requests): at
    most POLICY_READS_PER_RUN repositories per run, the others in the next runs."""
    monkeypatch.setattr(reconcile, "POLICY_READS_PER_RUN", 2)
    repos = [world.repo() for _ in range(5)]
    for gov in repos:
        sha = gov.commit("missed", ["src/app.py"])
        gov.repo.add_completed_run(VERIFY_FILE, head_sha=sha)

    caught = [world.reconcile()["actions"]["verification_caught_up"] for _ in range(3)]

    assert caught == [2, 2, 1], caught
    assert all(len(dispatched(gov)) == 1 for gov in repos)


# -- holds ---------------------------------------------------------------------------------

RATE_ONE = BASE_POLICY + "max_deploys_per_hour: 1\n"


def test_a_time_hold_resumes_once_its_time_has_passed_and_not_before(world: World) -> None:
    gov = world.repo(RATE_ONE)
    first = gov.commit("first", ["src/a.py"], policy=RATE_ONE)
    world.deliver(gov.verified(first))
    world.later(timedelta(minutes=10))
    second = gov.commit("second", ["src/b.py"], policy=RATE_ONE)
    held = to_json(world.deliver(gov.verified(second)))
    assert held["reason"] == "rate_limit", held
    until = gov.state().holds[second].until
    assert until is not None

    world.now[0] = until - timedelta(minutes=1)
    statuses, writes_before = world.statuses_posted(), dict(world.store.writes())
    early = world.reconcile()
    assert early["actions"]["hold_resumed"] == 0 and dispatched(gov) == [first]
    assert world.statuses_posted() == statuses  # not re-checked before its time
    changed = {
        k
        for k, n in world.store.writes().items()
        if n != writes_before.get(k) and k != "reconcile/cursor.json"
    }
    assert changed == set(), changed

    world.now[0] = until + timedelta(seconds=1)
    late = world.reconcile()
    assert late["actions"]["hold_resumed"] == 1, late
    assert dispatched(gov) == [first, second]
    assert gov.our_statuses(second)[-1]["state"] == "success"


def test_a_hold_rechecked_without_change_writes_nothing_and_says_nothing(world: World) -> None:
    """A degraded-production hold is re-checked every run (the incident may be over);
    while it is not, the re-check changes no record and posts no status."""
    gov = world.repo()
    gov.repo.open_issue("Prod is down", labels=["production-degraded"])
    sha = gov.commit("during-incident", ["src/app.py", "requirements.txt"])
    held = to_json(world.deliver(gov.verified(sha)))
    assert held["decision"] == "HOLD", held
    reason = held["reason"]
    statuses = world.statuses_posted()
    world.reconcile()  # the first run learns the policy
    world.store.reset()

    world.later(timedelta(minutes=5))
    summary = world.reconcile()

    assert summary["actions"]["hold_unchanged"] == 1, summary
    assert world.statuses_posted() == statuses
    writes = {k: n for k, n in world.store.writes().items() if k != "reconcile/cursor.json"}
    assert writes == {}, writes
    assert gov.state().holds[sha].reason == reason


def test_a_degraded_hold_resumes_when_the_incident_issue_closes(world: World) -> None:
    gov = world.repo()
    issue = int(gov.repo.open_issue("Prod is down", labels=["production-degraded"])["number"])
    sha = gov.commit("incident", ["src/app.py", "requirements.txt"])
    held = to_json(world.deliver(gov.verified(sha)))
    assert held["decision"] == "HOLD", held

    gov.repo.close_issue(issue)
    world.later(timedelta(minutes=5))
    summary = world.reconcile()

    assert summary["actions"]["hold_resumed"] == 1, summary
    assert dispatched(gov) == [sha]


# -- deploys left waiting --------------------------------------------------------------------


def test_a_deploy_whose_completion_never_arrived_is_tied_up(world: World) -> None:
    gov = world.repo()
    sha = gov.commit("ship", ["src/app.py"])
    world.deliver(gov.verified(sha))
    run = next(r["id"] for r in gov.repo.dispatched_runs("deploy.yml"))
    gov.repo.complete_run(run, "success")  # its webhook is never delivered

    world.reconcile()  # within the lease: left to its own delivery
    assert gov.state().production_sha != sha
    world.later(timedelta(minutes=3))
    summary = world.reconcile()

    assert summary["actions"]["deploy_tied_up"] == 1, summary
    assert gov.state().production_sha == sha


def test_a_cancelled_deploy_frees_its_sha_until_a_person_asks_again(world: World) -> None:
    gov = world.repo()
    sha = gov.commit("cancel-me", ["src/app.py"])
    payload = gov.verified(sha)
    world.deliver(payload)
    run = next(r["id"] for r in gov.repo.dispatched_runs("deploy.yml"))

    outcome = to_json(world.deliver(gov.repo.complete_run(run, "cancelled")))

    assert outcome["result"] == "deploy_cancelled", outcome
    state = gov.state()
    assert state.dispatch_for(sha) is None and state.holds[sha].reason == "deploy_cancelled"
    assert gov.our_statuses(sha)[-1]["state"] == "failure"
    assert "deploy_cancelled" in gov.our_statuses(sha)[-1]["description"]
    world.later(timedelta(hours=2))
    world.reconcile()
    assert dispatched(gov) == [sha]  # reconcile does not undo a person's cancel
    rerun = payload["workflow_run"]
    again = to_json(world.deliver(gov.verified(sha, id=rerun["id"], run_attempt=2)))
    assert again["decision"] == "ALLOW", again
    assert dispatched(gov) == [sha, sha]


def test_a_run_cancelled_by_a_newer_dispatch_is_superseded(world: World) -> None:
    gov = world.repo()
    older = gov.commit("older", ["src/a.py"])
    world.deliver(gov.verified(older))
    newer = gov.commit("newer", ["src/b.py"])
    world.deliver(gov.verified(newer))
    runs = {r["inputs"]["sha"]: r["id"] for r in gov.repo.dispatched_runs("deploy.yml")}

    outcome = to_json(world.deliver(gov.repo.complete_run(runs[older], "cancelled")))

    assert outcome["result"] == "deploy_superseded", outcome
    assert gov.state().dispatch_for(newer) is not None
    assert older not in gov.state().holds


# -- redelivery ---------------------------------------------------------------------------


def _failed_delivery(world: World, gov: Governed, payload: dict[str, Any]) -> str:
    guid = str(uuid.uuid4())
    world.fake.add_delivery(
        next(_ids),
        guid,
        "workflow_run",
        503,
        action="completed",
        installation_id=gov.repo.installation_id,
        repository_id=gov.repo.repo_id,
        payload=payload,
        delivered_at=world.fake.clock() - 600,
    )
    return guid


def test_a_failed_delivery_is_redelivered_once_per_run_and_a_few_times_at_most(
    world: World,
) -> None:
    gov = world.repo()
    sha = gov.commit("failed-delivery", ["infra/main.tf"])
    _failed_delivery(world, gov, gov.verified(sha))  # ten minutes ago, on GitHub's clock
    world.now[0] = datetime.fromtimestamp(world.fake.clock(), UTC)
    asked = []
    for _ in range(5):  # every redelivery fails too (GitHub cannot reach the webhook)
        asked.append(world.reconcile()["actions"]["redelivered"])
        world.fake.wait_for_redeliveries()
        world.later(timedelta(minutes=5))

    assert asked == [1, 1, 1, 0, 0], asked  # then it is given up, and said so once
    assert len(world.fake.redeliveries) == 3


def test_a_delivery_whose_work_is_done_is_not_redelivered(world: World) -> None:
    """GitHub sent the same fact twice; one attempt failed, the other did the work."""
    gov = world.repo()
    sha = gov.commit("done-elsewhere", ["src/app.py"])
    payload = gov.verified(sha)
    world.deliver(payload)  # the work, under another GUID
    _failed_delivery(world, gov, payload)
    world.now[0] = datetime.fromtimestamp(world.fake.clock(), UTC)

    summary = world.reconcile()

    assert summary["actions"]["redelivered"] == 0, summary
    assert world.fake.redeliveries == []


def test_deliveries_older_than_githubs_window_are_not_redelivered(world: World) -> None:
    gov = world.repo()
    sha = gov.commit("too-old", ["src/app.py"])
    guid = str(uuid.uuid4())
    world.fake.add_delivery(
        next(_ids),
        guid,
        "workflow_run",
        500,
        action="completed",
        installation_id=gov.repo.installation_id,
        repository_id=gov.repo.repo_id,
        payload=gov.verified(sha),
        delivered_at=world.fake.clock() - 4 * 86400,
    )
    world.now[0] = datetime.fromtimestamp(world.fake.clock(), UTC)

    summary = world.reconcile()

    assert summary["actions"]["redelivered"] == 0 and world.fake.redeliveries == []


# -- budget ---------------------------------------------------------------------------------


def test_a_run_visits_its_slice_and_the_next_run_the_rest(world: World) -> None:
    repos = [world.repo() for _ in range(5)]
    shas = []
    for gov in repos:
        sha = gov.commit("missed", ["src/app.py"])
        gov.repo.add_completed_run(VERIFY_FILE, head_sha=sha)
        shas.append(sha)

    first = world.reconcile(max_repos=3)
    second = world.reconcile(max_repos=3)

    assert (first["visited"], second["visited"]) == (3, 3)
    assert first["actions"]["verification_caught_up"] == 3
    assert second["actions"]["verification_caught_up"] == 2  # the two not yet visited
    assert all(dispatched(gov) == [sha] for gov, sha in zip(repos, shas, strict=True))


def test_a_run_stops_before_its_time_budget(world: World) -> None:
    for _ in range(3):
        world.repo()
    ticks = iter(itertools.count(0, 10))  # ten seconds pass per look at the clock

    summary = reconcile.run(
        world.ctx,
        world.app,
        reconcile.Budget(
            seconds=25, max_repos=500, max_redeliveries=20, monotonic=lambda: next(ticks)
        ),
    )

    assert summary.stopped_early and summary.visited < 3


# -- statuses that say only what is true ------------------------------------------------


def test_a_status_lost_after_the_dispatch_is_posted_by_the_redelivery(world: World) -> None:
    """GitHub answers 502 to the status after a successful dispatch: the fail-closed hold
    does not cover the live dispatch, and the redelivery says `success` at last."""
    gov = world.repo()
    sha = gov.commit("status-lost", ["src/app.py"])
    payload = gov.verified(sha)
    world.fake.fail_next("repos/create-commit-status", 502)  # writes are not retried

    with pytest.raises(Exception, match="502"):
        world.deliver(payload)
    assert dispatched(gov) == [sha]
    assert [s["state"] for s in gov.our_statuses(sha)] == []  # no governor_error over it

    again = to_json(world.deliver(payload))

    assert again["result"] == "already_dispatched", again
    assert dispatched(gov) == [sha]
    assert [s["state"] for s in gov.our_statuses(sha)] == ["success"]


@pytest.mark.parametrize("status", [403, 404, 422])
def test_a_dispatch_github_refuses_is_held_for_a_person_not_left_in_flight(
    world: World, status: int
) -> None:
    """GitHub refuses the dispatch (no such workflow, no workflow_dispatch trigger, no
    permission): nothing runs, so the SHA must not look in flight; it is held with the
    refusal in words, and reconcile does not retry it on its own."""
    gov = world.repo()
    sha = gov.commit("refused", ["src/app.py"])
    world.fake.fail_next("actions/create-workflow-dispatch", status)

    result = to_json(world.deliver(gov.verified(sha)))

    assert (result["decision"], result["reason"]) == ("HOLD", "deploy_not_configured"), result
    state = gov.state()
    assert state.dispatch_for(sha) is None
    assert state.holds[sha].reason == "deploy_not_configured"
    last = gov.our_statuses(sha)[-1]
    assert (
        last["state"] == "failure"
        and f"refused to dispatch deploy.yml ({status}" in (last["description"])
    )
    world.later(timedelta(minutes=10))
    world.reconcile()
    assert dispatched(gov) == []

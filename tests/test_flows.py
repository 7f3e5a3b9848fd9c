"""Every flow in-process, with an injected clock: what it does, how many sequential round
trips to GitHub it needs, and how many store writes.

GitHub is the fake on loopback, reached through the real App client; the store is the
real local store, wrapped to count writes per key. Round trips are counted from where
the calls run: every read of one wave knows its wave (`current_wave()`, `read-wave-<n>`),
so one wave is one round trip, and each call on the flow's own thread is one more.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from governor.events import Delivery
from governor.flows import delivery as deliveries
from governor.flows.context import Context, current_wave
from governor.flows.results import FlowResult, to_json
from governor.github.api import GitHubApp, RepoApi
from governor.github.client import GitHubError
from governor.ledger import Ledger
from governor.settings import AppSettings
from governor.store import Generation, WriteContention, open_store

from tests.support.counting_store import CountingStore
from tests.support.e2e import APP_ID, deployed_base, new_repo
from tests.support.fake_github import FakeGitHub
from tests.support.governed import BASE_POLICY, Governed
from tests.support.keys import rsa_key_pair

START = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
_repo_ids = itertools.count(9000)


class _RecordingApi:
    """A RepoApi that notes each call with the thread it ran on."""

    def __init__(self, api: RepoApi, calls: list[tuple[str, str]]) -> None:
        self._api, self._calls = api, calls

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._api, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((current_wave() or threading.current_thread().name, name))
            return method(*args, **kwargs)

        return call


@dataclass
class Port:
    app: GitHubApp
    bot: str
    calls: list[tuple[str, str]] = field(default_factory=list)

    def repo(self, installation_id: int, full_name: str) -> RepoApi:
        return _RecordingApi(self.app.repo(installation_id, full_name), self.calls)  # type: ignore[return-value]

    def bot_login(self) -> str:
        return self.bot

    def round_trips(self) -> int:
        """Sequential round trips: one per wave, one per call outside a wave."""
        waves = {name for name, _ in self.calls if name.startswith("read-wave-")}
        alone = [name for name, _ in self.calls if not name.startswith("read-wave-")]
        return len(waves) + len(alone)


@dataclass
class World:
    gov: Governed
    ctx: Context
    store: CountingStore
    port: Port
    now: list[datetime]

    def deliver(self, payload: dict[str, Any], event: str = "workflow_run") -> FlowResult:
        """One delivery through the flows; counts start afresh for it."""
        self.store.reset()
        self.port.calls.clear()
        return deliveries.handle(self.ctx, Delivery(str(uuid.uuid4()), event, payload))

    def state_writes(self) -> int:
        return sum(n for key, n in self.store.writes().items() if key.endswith("/state.json"))

    def later(self, delta: timedelta) -> None:
        self.now[0] += delta


@pytest.fixture(scope="module")
def fake_and_app() -> Iterator[tuple[FakeGitHub, GitHubApp]]:
    private, public = rsa_key_pair()
    with FakeGitHub(app_id=APP_ID, public_key_pem=public) as github:
        yield github, GitHubApp(github.url, APP_ID, private, timeout_s=10)


@pytest.fixture
def world(fake_and_app: tuple[FakeGitHub, GitHubApp], tmp_path: Path) -> Iterator[World]:
    fake, app = fake_and_app
    url = (tmp_path / "store").as_uri()
    store = CountingStore(open_store(url))
    now = [START]
    port = Port(app, fake.bot_login)
    settings = AppSettings(store_url=url, webhook_secret="s" * 32)
    ctx = Context(settings, Ledger(store), port, lambda: now[0], lease=timedelta(seconds=120))
    gov = new_repo(fake, url, "http://unused.invalid")
    app.repo(gov.repo.installation_id, gov.repo.full_name).repository()  # token cached
    yield World(gov, ctx, store, port, now)
    assert fake.violations == []


def governor_run(world: World, sha: str) -> int:
    runs = world.gov.repo.dispatched_runs("deploy.yml")
    return int(next(r["id"] for r in runs if r["inputs"] == {"sha": sha}))


# -- verification ----------------------------------------------------------------------


def test_an_allow_takes_three_round_trips_and_four_writes(world: World) -> None:
    deployed_base(world.gov)
    sha = world.gov.commit("allow", ["src/app.py"])

    result = to_json(world.deliver(world.gov.verified(sha)))

    assert result["decision"] == "ALLOW", result
    assert world.port.round_trips() <= 3, world.port.calls  # the wave, dispatch, status
    assert sum(world.store.writes().values()) <= 4, world.store.writes()
    assert world.state_writes() <= 2, world.store.writes()  # the intent, the run id


def test_the_claim_is_written_while_the_reads_are_in_flight(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verification's wave goes out before its claim is written: the claim's write
    waits until GitHub has answered a read about the SHA, and the delivery still ends in
    one ALLOW, with the same writes and round trips."""
    deployed_base(world.gov)
    sha = world.gov.commit("early-reads", ["src/app.py"])
    put, read_before_claim = world.store.put, []

    def read_about_sha() -> bool:
        with world.gov.fake.lock:
            return any(sha in c.path or sha in str(c.query) for c in world.gov.fake.calls)

    def put_after_a_read(key: str, data: bytes, **kwargs: Any) -> Generation:
        if key.startswith("decisions/") and not read_before_claim:  # the claim
            for _ in range(500):
                if read_about_sha():
                    break
                time.sleep(0.01)
            read_before_claim.append(read_about_sha())
        return put(key, data, **kwargs)

    monkeypatch.setattr(world.store, "put", put_after_a_read)
    result = to_json(world.deliver(world.gov.verified(sha)))

    assert read_before_claim == [True]
    assert result["decision"] == "ALLOW", result
    assert world.port.round_trips() <= 3, world.port.calls
    assert sum(world.store.writes().values()) <= 4, world.store.writes()


def test_the_status_goes_out_with_the_run_write_and_a_lost_run_write_is_recovered(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the dispatch, the run's write and the status are made together: the status is
    out even though the run's write fails (it waits for the status, then fails), and the
    intent left without its run is recovered by the redelivery once the lease is over,
    with no second dispatch."""
    deployed_base(world.gov)
    sha = world.gov.commit("together", ["src/app.py"])
    payload = world.gov.verified(sha)
    put, state_puts = world.store.put, []

    def put_losing_the_run(key: str, data: bytes, **kwargs: Any) -> Generation:
        if key.endswith("/state.json"):
            state_puts.append(key)
            if len(state_puts) == 2:  # the intent's, then the run's
                for _ in range(500):  # a concurrent status arrives in milliseconds
                    if world.gov.our_statuses(sha):
                        break
                    time.sleep(0.01)
                raise WriteContention(key, 0)
        return put(key, data, **kwargs)

    monkeypatch.setattr(world.store, "put", put_losing_the_run)
    with pytest.raises(WriteContention):
        world.deliver(payload)

    assert [s["state"] for s in world.gov.our_statuses(sha)] == ["success"]
    live = world.ctx.ledger.read_state(world.gov.repo.repo_id, world.gov.repo.full_name)
    dispatched = live.dispatch_for(sha)
    assert dispatched is not None and dispatched.run_id is None
    monkeypatch.undo()

    world.later(world.ctx.lease)
    recovered = to_json(world.deliver(payload))

    assert recovered["result"] == "dispatch_recovered", recovered
    assert len([d for d in world.gov.dispatches() if d["inputs"] == {"sha": sha}]) == 1
    after = world.ctx.ledger.read_state(world.gov.repo.repo_id, world.gov.repo.full_name)
    dispatched = after.dispatch_for(sha)
    assert dispatched is not None and dispatched.run_id == governor_run(world, sha)


def test_a_status_github_refuses_after_the_dispatch_leaves_the_dispatch_standing(
    world: World,
) -> None:
    """GitHub takes the dispatch, then refuses the commit status (422): the dispatch stands
    with its run, and the SHA is not held as if the dispatch had been refused. The
    delivery fails, so its redelivery posts the status."""
    deployed_base(world.gov)
    sha = world.gov.commit("status-refused", ["src/app.py"])
    payload = world.gov.verified(sha)
    world.gov.fake.fail_next("repos/create-commit-status", 422)

    with pytest.raises(GitHubError):
        world.deliver(payload)

    state = world.ctx.ledger.read_state(world.gov.repo.repo_id, world.gov.repo.full_name)
    live = state.dispatch_for(sha)
    assert live is not None and live.run_id == governor_run(world, sha)
    assert sha not in state.holds
    again = to_json(world.deliver(payload))
    assert again["result"] == "already_dispatched", again
    assert [s["state"] for s in world.gov.our_statuses(sha)] == ["success"]
    assert len([d for d in world.gov.dispatches() if d["inputs"] == {"sha": sha}]) == 1


def test_a_hold_takes_two_round_trips_and_three_writes(world: World) -> None:
    deployed_base(world.gov)
    sha = world.gov.commit("hold", ["infra/main.tf"])

    result = to_json(world.deliver(world.gov.verified(sha)))

    assert result["reason"] == "high_risk_no_approval", result
    assert world.port.round_trips() <= 2, world.port.calls  # the wave, status
    assert sum(world.store.writes().values()) <= 3, world.store.writes()


def test_a_run_that_is_not_a_verification_writes_nothing(world: World) -> None:
    deployed_base(world.gov)
    sha = world.gov.commit("pr-run", ["src/app.py"])
    result = to_json(world.deliver(world.gov.verified(sha, event="pull_request")))
    assert result["result"] == "ignored"
    assert world.store.writes() == {} and world.port.calls == []


def test_a_replayed_verification_is_answered_from_its_record_without_a_write(world: World) -> None:
    deployed_base(world.gov)
    sha = world.gov.commit("replay", ["src/app.py"])
    payload = world.gov.verified(sha)
    world.deliver(payload)
    world.later(timedelta(days=1))  # long after any lease

    again = to_json(world.deliver(payload))

    assert again["result"] == "duplicate" and again["outcome"]["decision"] == "ALLOW"
    assert world.store.writes() == {}
    assert world.port.calls == []  # the state has its dispatch: no wave is started


def test_a_replayed_hold_costs_one_wave_of_reads_and_nothing_else(world: World) -> None:
    """A held SHA calls for a wave, which goes out before the claim says "done": the
    duplicate wastes those reads, and writes and posts nothing."""
    deployed_base(world.gov)
    sha = world.gov.commit("replay-hold", ["infra/main.tf"])
    payload = world.gov.verified(sha)
    world.deliver(payload)
    world.later(timedelta(days=1))

    again = to_json(world.deliver(payload))

    assert again["result"] == "duplicate" and again["outcome"]["decision"] == "HOLD"
    for _ in range(1000):  # the wave may still be in flight after the answer
        if len(world.port.calls) >= 6:  # the policy thrice, two compares, the issues
            break
        time.sleep(0.01)
    reads = {"file_text", "compare", "commit_change", "open_issues_with_label"}
    assert len(world.port.calls) == 6, world.port.calls
    assert {name for _, name in world.port.calls} <= reads, world.port.calls
    assert world.store.writes() == {}


def test_a_cooldown_ends_at_its_time_on_the_injected_clock(world: World) -> None:
    deployed_base(world.gov, BASE_POLICY + "cooldown_minutes: 30\n")
    sha = world.gov.commit("flaky", ["src/app.py"], policy=BASE_POLICY + "cooldown_minutes: 30\n")
    world.deliver(world.gov.verified(sha))
    run = governor_run(world, sha)
    failed = to_json(world.deliver(world.gov.repo.complete_run(run, "failure")))
    assert failed["result"] == "deploy_failed"

    world.later(timedelta(minutes=29))
    held = to_json(world.deliver(world.gov.verified(sha)))
    assert held["reason"] == "cooldown", held
    world.later(timedelta(minutes=1))
    resumed = to_json(world.deliver(world.gov.verified(sha)))
    assert resumed["decision"] == "ALLOW", resumed


def test_a_claim_in_progress_is_taken_over_once_its_lease_ends(world: World) -> None:
    deployed_base(world.gov)
    sha = world.gov.commit("lease", ["src/app.py"])
    payload = world.gov.verified(sha)
    identity = f"workflow-run-{world.gov.repo.repo_id}-{payload['workflow_run']['id']}-1"
    site = world.ctx.ledger.decision_site(
        world.gov.repo.repo_id, world.gov.repo.full_name, sha, identity
    )
    world.ctx.ledger.claim(site, "workflow_run", START, world.ctx.lease, guid="dead-instance")

    busy = to_json(world.deliver(payload))
    assert busy["result"] == "in_progress"
    world.later(world.ctx.lease)
    taken = to_json(world.deliver(payload))
    assert taken["decision"] == "ALLOW", taken


# -- deploy outcome ----------------------------------------------------------------------


def test_a_deploy_success_takes_at_most_three_writes(world: World) -> None:
    deployed_base(world.gov)
    sha = world.gov.commit("ship", ["src/app.py"])
    world.deliver(world.gov.verified(sha))

    result = to_json(
        world.deliver(world.gov.repo.complete_run(governor_run(world, sha), "success"))
    )

    assert result["result"] == "deployed"
    assert sum(world.store.writes().values()) <= 3, world.store.writes()
    assert world.ctx.ledger.read_state(world.gov.repo.repo_id, "x").production_sha == sha


def test_a_deploy_failure_takes_at_most_five_writes_two_on_the_state(world: World) -> None:
    deployed_base(world.gov)
    sha = world.gov.commit("break", ["src/app.py"])
    world.deliver(world.gov.verified(sha))

    result = to_json(
        world.deliver(world.gov.repo.complete_run(governor_run(world, sha), "failure"))
    )

    assert result["result"] == "deploy_failed" and result["appended"] is False
    assert sum(world.store.writes().values()) <= 5, world.store.writes()
    assert world.state_writes() <= 2, world.store.writes()
    assert [i["title"] for i in world.gov.repo.issues()] == [f"Deploy failure: {sha[:7]}"]


def test_a_takeover_after_a_crash_finds_the_failure_issue_instead_of_opening_another(
    world: World,
) -> None:
    deployed_base(world.gov)
    sha = world.gov.commit("crash", ["src/app.py"])
    world.deliver(world.gov.verified(sha))
    run = governor_run(world, sha)
    payload = world.gov.repo.complete_run(run, "failure")
    # The first claimant applied the failure, marked the issue pending, opened the issue
    # and died: it neither recorded the number nor finished (nor released) its claim.
    opened: list[int] = []
    real_create = RepoApi.create_issue

    def create_then_die(self: RepoApi, title: str, body: str, labels: list[str]) -> int:
        opened.append(real_create(self, title, body, labels))
        raise RuntimeError("the instance died")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RepoApi, "create_issue", create_then_die)
        patch.setattr(world.ctx.ledger, "release", lambda *_args: None)
        with pytest.raises(RuntimeError):
            world.deliver(payload)
    world.later(world.ctx.lease)

    again = to_json(world.deliver(payload))

    assert again["result"] == "deploy_failed" and again["issue"] == opened[0]
    assert len(world.gov.repo.issues()) == 1
    failure = world.ctx.ledger.read_state(world.gov.repo.repo_id, "x").failures[sha]
    assert failure.count == 1 and failure.issue_number == opened[0]


# -- approvals ---------------------------------------------------------------------------


def test_a_label_on_the_pull_request_that_carried_a_held_sha_approves_it(world: World) -> None:
    deployed_base(world.gov)
    sha = world.gov.commit("label", ["infra/main.tf"])
    world.deliver(world.gov.verified(sha))
    # Its PR merged by a merge commit other than the SHA: found through pulls-for-commit.
    world.gov.repo.add_pull(41, user="author", head_sha=sha, merge_commit_sha="d" * 40)
    world.gov.repo.set_permission("maint", "maintain")

    result = to_json(
        world.deliver(
            world.gov.repo.label_added_payload(41, "deploy-approved", "maint"), "pull_request"
        )
    )

    assert result["result"] == "approved", result
    assert result["evaluations"][sha]["decision"] == "ALLOW"
    assert any(name == "pulls_for_commit" for _thread, name in world.port.calls)


def test_the_approval_comment_approves_in_comment_mode(world: World) -> None:
    policy = BASE_POLICY + "approval: {mode: comment}\n"
    deployed_base(world.gov, policy)
    sha = world.gov.commit("comment", ["infra/main.tf"], policy=policy)
    world.deliver(world.gov.verified(sha))
    world.gov.repo.add_pull(42, user="author", head_sha="c" * 40, merge_commit_sha=sha)
    world.gov.repo.set_permission("maint", "maintain")
    world.gov.repo.set_permission("writer", "write")

    by_writer = to_json(
        world.deliver(
            world.gov.repo.comment_payload(42, "/approve-deploy", "writer"), "issue_comment"
        )
    )
    assert by_writer["result"] == "ignored" and "needs maintain" in by_writer["why"]
    result = to_json(
        world.deliver(
            world.gov.repo.comment_payload(42, "/approve-deploy please", "maint"), "issue_comment"
        )
    )

    assert result["result"] == "approved", result
    assert result["evaluations"][sha]["decision"] == "ALLOW"


# -- protection rule -----------------------------------------------------------------------


def test_the_protection_rule_approves_the_current_run_in_process(world: World) -> None:
    deployed_base(world.gov)
    sha = world.gov.commit("gate", ["src/app.py"])
    world.deliver(world.gov.verified(sha))
    run = governor_run(world, sha)

    result = to_json(
        world.deliver(world.gov.repo.protection_request_payload(run), "deployment_protection_rule")
    )

    assert result["result"] == "approved"
    assert world.gov.repo.gate_review(run)["state"] == "approved"  # type: ignore[index]


# -- the trusted policy's fallback ---------------------------------------------------------


@pytest.mark.parametrize(
    "in_production",
    [
        "deploy_workflow: deploy.yml\ndefault_branch: main\n",  # valid for an older governor
        BASE_POLICY + "enabled: false\n",
        "verification_workflow: verify-main.yml\n",  # no deploy_workflow
    ],
    ids=["invalid", "disabled", "no-deploy-workflow"],
)
def test_a_production_policy_that_cannot_govern_falls_back_to_the_default_branch(
    world: World, in_production: str
) -> None:
    deployed_base(world.gov, in_production)
    sha = world.gov.commit("mended", ["src/app.py"])  # main's policy: BASE_POLICY again

    result = to_json(world.deliver(world.gov.verified(sha)))

    assert result["decision"] == "ALLOW", result
    record = world.ctx.ledger.read_decision(world.gov.repo.repo_id, sha)
    assert record is not None and record.latest is not None
    assert record.latest.inputs["trusted_policy"] == "refs/heads/main"


def test_a_valid_production_policy_is_the_trusted_one(world: World) -> None:
    base = deployed_base(world.gov)
    sha = world.gov.commit("plain", ["src/app.py"])
    world.deliver(world.gov.verified(sha))
    record = world.ctx.ledger.read_decision(world.gov.repo.repo_id, sha)
    assert record is not None and record.latest is not None
    assert record.latest.inputs["trusted_policy"] == f"production {base}"

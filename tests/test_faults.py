"""Fault injection: the webhook function killed at every step boundary of every flow, then
recovered by the redelivery and a reconcile, with the invariants checked each time.

Real processes: the function on functions-framework (gunicorn) over HTTP, GitHub faked
in this process (`FakeGitHub`, which delivers webhooks as Hookshot does and redelivers
through its deliveries API), the local store. The instance dies at a crash point
(`governor.crashpoints`, `GOVERNOR_CRASH_AT`, once) or, for "the dispatch request was
sent and its answer never came back", is SIGKILLed by the fake GitHub between doing the
dispatch and answering it. Then, as in production: time passes (the dead claim's lease
runs out: the records are aged on the store, no sleeping), and one of two recoveries:
reconcile redelivers the failed delivery through GitHub's deliveries API and sweeps the
repository (redelivery+reconcile), or reconcile sweeps the repository alone, the delivery
never redelivered (reconcile-only).

One test id per boundary and recovery; docs/reliability.md has the table of them and
their results, and the known gap the one xfail test stands for.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from governor import crashpoints

from tests.support.e2e import APP_ID, SECRET, deployed_base, new_repo
from tests.support.fake_github import Call, FakeGitHub
from tests.support.faults import (
    LEASE_PASSED,
    Instance,
    NoEvaluation,
    Reconciler,
    as_if_time_passed,
    claims_blocking,
    claims_done,
    crashing_env,
    dispatches_of,
    failure_issues_of,
    final_status,
    latest_evaluation,
    redelivery_answer,
)
from tests.support.governed import DEPLOY_FILE, VERIFY_FILE, Governed
from tests.support.keys import rsa_key_pair

pytestmark = pytest.mark.slow

FAKE_CLOCK_BEHIND_S = 300
"""The fake GitHub stamps deliveries 5 minutes in the past: reconcile leaves a failed
delivery younger than 60 s alone (its own retry may be in flight), and no test waits."""


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    _private, public = rsa_key_pair()
    with FakeGitHub(
        app_id=APP_ID,
        public_key_pem=public,
        webhook_secret=SECRET,
        delivery_timeout_s=60,  # Hookshot's 10 s is not the fault under test
        clock=lambda: time.time() - FAKE_CLOCK_BEHIND_S,
    ) as fake:
        yield fake
        assert fake.violations == []


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tmp_path_factory.mktemp("faults-store").as_uri()


# -- the boundaries ------------------------------------------------------------------------

VERIFICATION, DEPLOY_OUTCOME = "verification", "deploy outcome"
DISPATCHED_AS, HELD_AS = "allow_low", "high_risk_no_approval"
"""The decision on the SHA: `src/app.py` is low risk, `infra/main.tf` high risk."""


@dataclass(frozen=True)
class Boundary:
    id: str
    flow: str
    point: str | None
    """The crash point; None: the fake GitHub kills the instance (dispatch sent)."""
    recovered_as: str
    """redelivery+reconcile: what the redelivery answers (`result`); the sweep does nothing."""
    swept_as: dict[str, int]
    """reconcile-only: what the sweep did (its summary's non-zero `actions`)."""
    conclusion: str | None = None
    """Deploy outcome: the deploy run's conclusion."""
    held: bool = False
    """Verification of a SHA the policy holds (high risk, no approval)."""


CAUGHT_UP, FINISHED = {"verification_caught_up": 1}, {"intent_finished": 1}
RESTORED, TIED_UP = {"status_restored": 1}, {"deploy_tied_up": 1}

BOUNDARIES = [
    Boundary("verify-after-claim", VERIFICATION, "claimed.decisions", "decided", CAUGHT_UP),
    Boundary("verify-after-intent", VERIFICATION, "verification.intent", "redispatched", FINISHED),
    Boundary("verify-after-dispatch-sent", VERIFICATION, None, "dispatch_recovered", FINISHED),
    Boundary(
        "verify-after-dispatch-answer",
        VERIFICATION,
        "dispatch.answered",
        "dispatch_recovered",
        FINISHED,
    ),
    Boundary(
        "verify-after-run-id",
        VERIFICATION,
        "dispatch.run_recorded",
        "already_dispatched",
        RESTORED,
    ),
    Boundary(
        "verify-after-status", VERIFICATION, "verification.status", "already_dispatched", RESTORED
    ),
    Boundary(
        "hold-after-claim", VERIFICATION, "claimed.decisions", "decided", CAUGHT_UP, held=True
    ),
    Boundary("hold-after-status", VERIFICATION, "verification.status", "decided", {}, held=True),
    Boundary(
        "deploy-failed-after-marker",
        DEPLOY_OUTCOME,
        "claimed.runs",
        "deploy_failed",
        TIED_UP,
        "failure",
    ),
    Boundary(
        "deploy-failed-after-state",
        DEPLOY_OUTCOME,
        "deploy_outcome.state",
        "deploy_failed",
        TIED_UP,
        "failure",
    ),
    Boundary(
        "deploy-failed-after-issue-pending",
        DEPLOY_OUTCOME,
        "deploy_outcome.issue_pending",
        "deploy_failed",
        TIED_UP,
        "failure",
    ),
    Boundary(
        "deploy-failed-after-issue",
        DEPLOY_OUTCOME,
        "deploy_outcome.issue",
        "deploy_failed",
        TIED_UP,
        "failure",
    ),
    Boundary(
        "deploy-succeeded-after-marker",
        DEPLOY_OUTCOME,
        "claimed.runs",
        "deployed",
        TIED_UP,
        "success",
    ),
    Boundary(
        "deploy-succeeded-after-state",
        DEPLOY_OUTCOME,
        "deploy_outcome.state",
        "deployed",
        {},
        "success",
    ),
]


REDELIVERY, SWEEP_ONLY = "redelivery+reconcile", "reconcile-only"
RECOVERIES = [REDELIVERY, SWEEP_ONLY]
"""redelivery+reconcile: reconcile redelivers the failed delivery, then sweeps.
reconcile-only: the delivery is never redelivered (GitHub's 3-day window or reconcile's
3 redeliveries per GUID have passed, or every redelivery failed); only the sweep of the
repository (`governor reconcile REPO`: no redelivery step) recovers."""

BY_ID = {b.id: b for b in BOUNDARIES}
HOLD_EVALUATION_GAP = (BY_ID["hold-after-status"], SWEEP_ONLY)
"""The known gap (docs/reliability.md): a hold whose delivery died after its status and
before its claim's finish keeps its status, but its decision record has no evaluation
until the SHA is evaluated again. The sweep does not evaluate it again: an approval hold
is not due until an approval is recorded or production moves."""


@dataclass(frozen=True)
class Recovered:
    gov: Governed
    sha: str
    base: str
    """Production before the SHA."""


@contextmanager
def crashed_and_recovered(
    boundary: Boundary, recovery: str, github: FakeGitHub, store_url: str, tmp_path: Path
) -> Iterator[Recovered]:
    """The instance killed at `boundary`, time passed, then `recovery`: checked to have
    answered and done what the boundary expects. The instance stays up inside."""
    once = tmp_path / "crashed"
    env = crashing_env(github, store_url, boundary.point, once)
    instance = Instance(github, store_url, env).start()
    try:
        gov = new_repo(github, store_url, instance.url)
        base = deployed_base(gov)
        sha = gov.commit(boundary.id, ["infra/main.tf" if boundary.held else "src/app.py"])
        # The verification run as GitHub lists it (reconcile's catch-up reads the list).
        payload = gov.verified(sha, id=gov.repo.add_completed_run(VERIFY_FILE, head_sha=sha))
        if boundary.flow == DEPLOY_OUTCOME:
            decided = github.deliver("workflow_run", payload)
            assert decided.status_code == 202 and decided.body["result"] == "decided", decided
            [run] = gov.repo.dispatched_runs(DEPLOY_FILE)
            assert boundary.conclusion is not None
            payload = gov.repo.complete_run(run["id"], boundary.conclusion)
        if boundary.point is None:  # GitHub does the dispatch; the answer never arrives
            github.on_request("actions/create-workflow-dispatch", lambda _call: instance.kill())

        guid = str(uuid.uuid4())
        crashed = github.deliver("workflow_run", payload, guid=guid)

        assert crashed.status_code == 0, f"the instance answered: {crashed}"
        if boundary.point is None:
            instance.restart()  # a new instance, on a new port; GitHub's URL follows it
        else:
            assert once.exists(), "it died at the crash point"
            instance.recovered()  # gunicorn replaced the dead worker
        assert as_if_time_passed(store_url, gov.repo.repo_id, LEASE_PASSED)

        reconciler = Reconciler.on(github, store_url)
        if recovery == REDELIVERY:
            redelivering = reconciler.redeliver()
            assert redelivering["errors"] == [], redelivering
            github.wait_for_redeliveries(timeout_s=60)
            answer = redelivery_answer(github, guid)
            assert answer["result"] == boundary.recovered_as, answer
        swept = reconciler.sweep(gov.repo.repo_id)
        assert swept["errors"] == [], swept
        if recovery == SWEEP_ONLY:
            assert [d["redelivery"] for d in github.deliveries(guid)] == [False]
        did = {action: n for action, n in swept["actions"].items() if n}
        assert did == (boundary.swept_as if recovery == SWEEP_ONLY else {}), did
        yield Recovered(gov, sha, base)
    finally:
        instance.close()


@pytest.mark.parametrize("recovery", RECOVERIES)
@pytest.mark.parametrize("boundary", BOUNDARIES, ids=[b.id for b in BOUNDARIES])
def test_killed_at_a_step_boundary_converges(
    boundary: Boundary, recovery: str, github: FakeGitHub, store_url: str, tmp_path: Path
) -> None:
    with crashed_and_recovered(boundary, recovery, github, store_url, tmp_path) as recovered:
        gov, sha, base = recovered.gov, recovered.sha, recovered.base
        state = gov.state()
        assert dispatches_of(gov, sha) == (0 if boundary.held else 1)
        assert len(failure_issues_of(gov, sha)) == (1 if boundary.conclusion == "failure" else 0)
        last = final_status(gov, sha, state)
        expected = ("HOLD", HELD_AS) if boundary.held else ("ALLOW", DISPATCHED_AS)
        assert last["description"].startswith(" ".join(expected)), last  # the real status
        if (boundary, recovery) != HOLD_EVALUATION_GAP:  # that one: the xfail test below
            decided_as = latest_evaluation(store_url, gov.repo.repo_id, sha)
            assert (decided_as.outcome, decided_as.reason) == expected, decided_as
        if recovery == REDELIVERY:
            assert set(claims_done(store_url, gov.repo.repo_id).values()) == {"done"}
        else:
            # No claim blocks anyone: each is done, or "processing" with its lease run out
            # (any delivery of its fact takes it over at once). The sweep does the work but
            # does not act for the dead delivery's claim: a later redelivery of that
            # delivery, if one comes, takes it over and finishes it; otherwise it goes with
            # its record (a run record's after GOVERNOR_RETENTION_DAYS; one in a decision
            # record is dropped once 4 days old; docs/reliability.md).
            now = datetime.now(UTC)
            assert claims_blocking(store_url, gov.repo.repo_id, now) == {}
        if boundary.conclusion == "failure":
            [issue] = failure_issues_of(gov, sha)
            assert state.failures[sha].issue_number == issue["number"]
            assert state.production_sha == base
        elif boundary.conclusion == "success":
            assert state.production_sha == sha
        elif not boundary.held:  # production moves when the one deploy run succeeds
            assert state.production_sha == base
            [run] = gov.repo.dispatched_runs(DEPLOY_FILE)
            live = state.dispatch_for(sha)
            assert live is not None and live.run_id == run["id"]
            deployed = github.deliver("workflow_run", gov.repo.complete_run(run["id"], "success"))
            assert deployed.status_code == 202 and deployed.body["result"] == "deployed", deployed
            assert gov.state().production_sha == sha
        else:
            assert state.production_sha == base


@pytest.mark.xfail(
    strict=True,
    raises=NoEvaluation,  # any other failure (recovery, status, evaluation) fails the test
    reason="known gap (docs/reliability.md): a HOLD whose delivery died after its status "
    "and before its claim's finish has no evaluation in its decision record until the SHA "
    "is evaluated again (a redelivery, an approval, a new verification run, or reconcile's "
    "re-check once the hold is due); the sweep alone does not",
)
def test_a_hold_cut_after_its_status_is_recorded_by_reconcile_alone(
    github: FakeGitHub, store_url: str, tmp_path: Path
) -> None:
    """hold-after-status, reconcile-only: only the evaluation invariant. The others are
    checked for it by `test_killed_at_a_step_boundary_converges`."""
    boundary, recovery = HOLD_EVALUATION_GAP
    with crashed_and_recovered(boundary, recovery, github, store_url, tmp_path) as recovered:
        decided_as = latest_evaluation(store_url, recovered.gov.repo.repo_id, recovered.sha)
        assert (decided_as.outcome, decided_as.reason) == ("HOLD", HELD_AS), decided_as


# -- the tools of the suite ----------------------------------------------------------------


def test_a_crash_point_kills_only_where_and_as_often_as_it_is_told(tmp_path: Path) -> None:
    once = tmp_path / "once"
    script = "from governor import crashpoints; crashpoints.reached('a'); print('went on')"

    def run(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert run().stdout == "went on\n"
    assert run(GOVERNOR_CRASH_AT="b").stdout == "went on\n"
    died = run(GOVERNOR_CRASH_AT="a")
    assert (died.returncode, died.stdout) == (crashpoints.EXIT_CODE, "")
    assert "crash point a" in died.stderr
    first = run(GOVERNOR_CRASH_AT="a", GOVERNOR_CRASH_ONCE_FILE=str(once))
    assert first.returncode == crashpoints.EXIT_CODE and once.exists()
    assert run(GOVERNOR_CRASH_AT="a", GOVERNOR_CRASH_ONCE_FILE=str(once)).stdout == "went on\n"


def test_the_fakes_request_hook_runs_after_the_work_and_before_the_answer(
    github: FakeGitHub,
) -> None:
    repo_id = 8_000_000 + uuid.uuid4().int % 1_000_000
    repo = github.add_repo("octo", f"hook-{repo_id}", repo_id=repo_id, installation_id=7)
    repo.add_commit("c" * 40, files=[{"filename": "README.md", "status": "added"}])
    repo.add_workflow(DEPLOY_FILE, name="Deploy", workflow_id=repo_id * 10 + 2)
    seen: list[tuple[Call, int]] = []
    answered = threading.Event()

    def hook(call: Call) -> None:
        seen.append((call, len(repo.dispatched_runs(DEPLOY_FILE))))
        assert not answered.is_set()

    github.on_request("actions/create-workflow-dispatch", hook)
    private, _public = rsa_key_pair()
    from governor.github.api import GitHubApp

    api = GitHubApp(github.url, APP_ID, private).repo(7, repo.full_name)
    api.dispatch(DEPLOY_FILE, "refs/heads/main", {"sha": "a" * 40})
    answered.set()
    api.dispatch(DEPLOY_FILE, "refs/heads/main", {"sha": "b" * 40})  # one-shot: not hooked

    [(call, runs_then)] = seen
    assert call.operation_id == "actions/create-workflow-dispatch" and call.status == 200
    assert runs_then == 1, "the dispatch had happened when the hook ran"
    with pytest.raises(ValueError, match="no operation"):
        github.on_request("nope/nope", hook)

"""Helpers of the fault-injection suite (tests/test_faults.py): an instance of the webhook
function that dies at a crash point, time made to pass on the store, an in-process
reconcile on the same store and fake GitHub, and the invariants checked after recovery.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from governor import crashpoints
from governor.flows import reconcile
from governor.flows.context import Context
from governor.github.api import GitHubApp
from governor.ledger import DEFAULT_LEASE, Evaluation, Ledger, state_key
from governor.state import ReleaseState
from governor.store import open_store, update

from tests.support.e2e import function_env
from tests.support.fake_github import FakeGitHub
from tests.support.functions_server import Served, kill_hard, serve_function
from tests.support.governed import Governed
from tests.support.world import app_for, in_process

STATUS_CONTEXT = "release-governor"
GOVERNOR_ERROR = "governor_error"


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    """Poll `condition` until it holds; fail after a generous `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def answers(url: str) -> bool:
    """The function answers HTTP again (a GET: 405, and nothing is processed)."""
    try:
        httpx.get(url + "/", timeout=2)
    except httpx.TransportError:
        return False
    return True


# -- the instance that dies ----------------------------------------------------------------


@dataclass
class Instance:
    """The webhook function on functions-framework, started with a crash point set.

    A crash point ends gunicorn's worker (`os._exit`); gunicorn's master starts a new
    worker on the same port, a fresh process with nothing of the dead one in memory:
    `recovered` waits until it answers. `kill` ends the whole instance (master and
    worker, SIGKILL) and `restart` serves the function again on a new port, as a platform
    starts a new instance after one died.
    """

    fake: FakeGitHub
    store_url: str
    env: dict[str, str]
    stack: ExitStack = field(default_factory=ExitStack)
    served: Served | None = None

    def start(self) -> Instance:
        self.served = self.stack.enter_context(serve_function("github_webhook", self.env))
        self.fake.webhook_url = self.served.url  # where GitHub (re)delivers
        return self

    @property
    def url(self) -> str:
        assert self.served is not None
        return self.served.url

    def kill(self) -> None:
        assert self.served is not None
        kill_hard(self.served)

    def restart(self) -> None:
        self.stack.close()
        self.stack = ExitStack()
        self.start()

    def recovered(self) -> None:
        """Wait until the instance answers again (after gunicorn replaced a dead worker)."""
        wait_for(lambda: answers(self.url), "the function to answer again")

    def close(self) -> None:
        self.stack.close()


def crashing_env(
    fake: FakeGitHub, store_url: str, point: str | None, once_file: Path
) -> dict[str, str]:
    """The function's environment: dies at `point` (once), the default 120 s lease.

    Generous time limits (a busy machine must not turn a slow answer into another fault
    than the one injected): 10 s per GitHub request, 50 s for the whole webhook.
    """
    env = function_env(
        fake, store_url, GOVERNOR_GITHUB_TIMEOUT_S="10", GOVERNOR_WEBHOOK_DEADLINE_S="50"
    )
    if point is not None:
        env[crashpoints.CRASH_AT] = point
        env[crashpoints.CRASH_ONCE_FILE] = str(once_file)
    return env


# -- time passing, on the store --------------------------------------------------------------


def as_if_time_passed(store_url: str, repo_id: int, passed: timedelta) -> list[str]:
    """Move back, by `passed`, what the governor reads the time off for one repository.

    Every live claim (`lease_until`, `updated_at` of a claim still "processing": in
    deliveries/, in the SHA's decision record, in a run record), the `at` of every
    dispatch and the `first_at` and `last_at` of every deploy failure in
    repos/<id>/state.json (together: a failure stays after the dispatch it failed),
    through the store's own conditional write. That is what the lease and reconcile's
    "older than the lease" look at; nothing else moves. Returns the keys changed.
    """
    store = open_store(store_url)
    keys = [k for k in store.list("deliveries/") if f"-{repo_id}-" in k]
    keys += store.list(f"decisions/{repo_id}/") + store.list(f"runs/{repo_id}/")
    changed = [k for k in keys if update(store, k, _claims_aged(passed)).written]

    def dispatches_aged(old: bytes | None) -> bytes:
        assert old is not None
        state = json.loads(old)
        for dispatch in state["dispatches"]:
            dispatch["at"] = _earlier(dispatch["at"], passed)
        for failure in state["failures"].values():
            for name in ("first_at", "last_at"):
                failure[name] = _earlier(failure[name], passed)
        return json.dumps(state).encode() if state["dispatches"] or state["failures"] else old

    if store.get(state_key(repo_id)) is not None:
        aged = update(store, state_key(repo_id), dispatches_aged)
        ReleaseState.model_validate_json(aged.data)  # still a state the governor reads
        if aged.written:
            changed.append(state_key(repo_id))
    return changed


def _claims_aged(passed: timedelta) -> Callable[[bytes | None], bytes]:
    def age(node: Any) -> Any:
        if isinstance(node, list):
            return [age(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {name: age(value) for name, value in node.items()}
        if node.get("status") == "processing" and "lease_until" in node:
            for name in ("lease_until", "updated_at"):
                node[name] = _earlier(node[name], passed)
        return node

    def aged(old: bytes | None) -> bytes:
        assert old is not None
        before = json.loads(old)
        after = age(before)
        return old if after == before else json.dumps(after).encode()

    return aged


def _earlier(stamp: str, passed: timedelta) -> str:
    return (datetime.fromisoformat(stamp) - passed).isoformat()


LEASE_PASSED = DEFAULT_LEASE + timedelta(seconds=1)
"""How much time is made to pass after a crash: the lease of the dead claim runs out."""


# -- reconcile, in process ---------------------------------------------------------------------


@dataclass
class Reconciler:
    """`governor.flows.reconcile.run` in this process, on the function's store and GitHub,
    with the real clock (the records it must find old were aged on the store)."""

    ctx: Context
    app: GitHubApp

    @classmethod
    def on(cls, fake: FakeGitHub, store_url: str) -> Reconciler:
        app = app_for(fake, timeout_s=30)
        return cls(in_process(fake, store_url, app=app), app)

    def redeliver(self) -> dict[str, Any]:
        """Only the redelivery step (no repository is swept)."""
        budget = reconcile.Budget(seconds=120, max_repos=0, max_redeliveries=20)
        return reconcile.run(self.ctx, self.app, budget).to_json()

    def sweep(self, repo_id: int) -> dict[str, Any]:
        """Only the sweep of one repository (finish intents, tie up runs, holds, catch-up)."""
        budget = reconcile.Budget(seconds=120, max_repos=500, max_redeliveries=0)
        return reconcile.run(self.ctx, self.app, budget, only_repo=repo_id).to_json()


# -- invariants ----------------------------------------------------------------------------------


def dispatches_of(gov: Governed, sha: str) -> int:
    """Dispatch requests GitHub received for `sha` (whatever it answered: a request that
    reached GitHub may have started a run)."""
    calls = gov.fake.calls_to("actions/create-workflow-dispatch")
    return sum(
        f"/repos/{gov.repo.full_name}/" in c.path
        and (c.json or {}).get("inputs", {}).get("sha") == sha
        for c in calls
    )


def failure_issues_of(gov: Governed, sha: str) -> list[dict[str, Any]]:
    title = f"Deploy failure: {sha[:7]}"
    return [i for i in gov.repo.issues() if "pull_request" not in i and i["title"] == title]


def final_status(gov: Governed, sha: str, state: ReleaseState) -> dict[str, Any]:
    """The governor's last status on `sha`, checked to be final (docs/reliability.md):

    dispatched (a live dispatch with its run, or in production): `success`;
    held: `failure` naming the hold reason the state records, never `governor_error`.
    """
    statuses = [s for s in gov.repo.statuses(sha) if s["context"] == STATUS_CONTEXT]
    assert statuses, f"{sha[:7]} has no status of the governor"
    last = statuses[-1]
    live = state.dispatch_for(sha)
    if live is not None or state.production_sha == sha or sha in state.failures:
        assert live is None or live.run_id is not None, f"{sha[:7]}: intent left without its run"
        assert last["state"] == "success", (sha[:7], statuses)
    else:
        hold = state.holds.get(sha)
        assert hold is not None, f"{sha[:7]} is neither dispatched nor held: {state}"
        assert hold.reason != GOVERNOR_ERROR, hold
        assert last["state"] == "failure" and hold.reason in last["description"], (hold, last)
    assert GOVERNOR_ERROR not in last["description"], last
    return last


class NoEvaluation(AssertionError):
    """The SHA's decision record has no evaluation at all (a known gap may expect exactly
    this failure, and no other: `pytest.mark.xfail(raises=NoEvaluation)`)."""


def latest_evaluation(store_url: str, repo_id: int, sha: str) -> Evaluation:
    """The latest evaluation in the SHA's decision record (what the decision page and the
    status's link show), checked to be there."""
    record = Ledger(open_store(store_url)).read_decision(repo_id, sha)
    assert record is not None, f"{sha[:7]} has no decision record"
    if record.latest is None:
        raise NoEvaluation(f"{sha[:7]}'s decision record has no evaluation: {record}")
    return record.latest


def _claims(store_url: str, repo_id: int) -> dict[str, dict[str, Any]]:
    """Every claim of the repository's decision and run records: key#name -> the claim."""
    store = open_store(store_url)
    found: dict[str, dict[str, Any]] = {}
    for key in store.list(f"decisions/{repo_id}/") + store.list(f"runs/{repo_id}/"):
        current = store.get(key)
        assert current is not None
        doc = json.loads(current.data)
        claims = doc.get("claims") or {"claim": doc.get("claim")}
        for name, claim in claims.items():
            found[f"{key}#{name}"] = claim
    return found


def claims_done(store_url: str, repo_id: int) -> dict[str, str]:
    """Every claim of the repository's decision and run records: key -> status."""
    return {key: claim["status"] for key, claim in _claims(store_url, repo_id).items()}


def claims_blocking(store_url: str, repo_id: int, now: datetime) -> dict[str, str]:
    """The claims of the repository's decision and run records that block anyone: not
    done, and with a lease still live at `now` (as `Ledger.claim` tells a live claimant
    from a dead one). A "processing" claim whose lease ran out blocks nothing: the next
    delivery of its fact takes it over at once. Key -> status and lease end."""
    return {
        key: f"{claim['status']} until {claim['lease_until']}"
        for key, claim in _claims(store_url, repo_id).items()
        if claim["status"] != "done" and datetime.fromisoformat(claim["lease_until"]) > now
    }


def redelivery_answer(fake: FakeGitHub, guid: str) -> Any:
    """The body of the newest attempt of delivery `guid` (a redelivery), parsed."""
    newest = fake.deliveries(guid)[0]
    assert newest["redelivery"], newest
    body = newest["response"]["payload"]
    return json.loads(body) if isinstance(body, str) and body else body

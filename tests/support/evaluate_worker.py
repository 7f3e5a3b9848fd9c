"""A worker process that runs the real `Governor.evaluate` for one SHA (multiprocessing 'spawn').

Started through `tests.support.workers.run_processes`: it opens its own store from the
URL, builds the real Governor with only GitHub faked (`tests.support.linear_repo`),
waits on a barrier shared by all workers so they start together, and waits once more,
inside the gather (after reading the release state, before the conditional write that
commits the decision), until every worker has gathered: every worker but the first to
write then commits on a state that moved on since it gathered. That is what the test
is about, made certain instead of left to the scheduler.

The ledger is watched, not changed: it notes the state version each worker read and
the versions its transitions' functions ran on, and how often the gate said StaleFacts.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from datetime import datetime
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

from governor.flows.context import Context, Repo
from governor.flows.results import to_json
from governor.flows.verification import evaluate
from governor.gate import StaleFacts
from governor.ledger import Ledger
from governor.settings import AppSettings
from governor.state import ReleaseState
from governor.store import open_store

from tests.support.linear_repo import DEFAULT_BRANCH, FakeGitHubPort, FakeRepoApi, LinearHistory

REPO_ID = 4242
REPO_NAME = "octo/app"
INSTALLATION_ID = 77
BARRIER_TIMEOUT_S = 180.0
WRITE_TIMEOUT_S = 120.0


class WatchedLedger(Ledger):
    """A Ledger that notes what it was asked, and otherwise does exactly what Ledger does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_versions: list[int] = []
        self.transitions: list[list[int]] = []
        """Per transition, the versions of the states its function ran on (more than one:
        a conflict made it run again on a newer state)."""
        self.stale = 0

    def read_state(self, repo_id: int, repo: str) -> ReleaseState:
        state = super().read_state(repo_id, repo)
        self.read_versions.append(state.version)
        return state

    def transition(
        self, repo_id: int, repo: str, fn: Callable[[ReleaseState], ReleaseState]
    ) -> ReleaseState:
        seen: list[int] = []
        self.transitions.append(seen)

        def watched(state: ReleaseState) -> ReleaseState:
            seen.append(state.version)
            try:
                return fn(state)
            except StaleFacts:
                self.stale += 1
                raise

        return super().transition(repo_id, repo, watched)


def evaluate_sha(
    url: str,
    worker: int,
    history_length: int,
    sha: str,
    policy_text: str,
    now_iso: str,
    dispatch_log: str,
    ready: Barrier,
    gathered: Barrier,
    start: Event,
    results: Any,
) -> None:
    try:
        now = datetime.fromisoformat(now_iso)
        ledger = WatchedLedger(open_store(url, write_timeout_s=WRITE_TIMEOUT_S))
        api = FakeRepoApi(
            history=LinearHistory(history_length),
            policy_text=policy_text,
            worker=worker,
            dispatch_log=Path(dispatch_log),
            on_gather=lambda: gathered.wait(BARRIER_TIMEOUT_S),
        )
        settings = AppSettings(store_url=url, webhook_secret="x" * 32)
        ctx = Context(settings, ledger, FakeGitHubPort(api), lambda: now)
        repo = Repo(REPO_ID, REPO_NAME, DEFAULT_BRANCH, INSTALLATION_ID, api)  # type: ignore[arg-type]
        start.wait()
        ready.wait(BARRIER_TIMEOUT_S)
        outcome = to_json(evaluate(ctx, repo, sha, trigger="verified", delivery=None))
        results.put(
            (
                "ok",
                {
                    "worker": worker,
                    "sha": sha,
                    "outcome": outcome,
                    "dispatched": api.dispatched,
                    "statuses": api.statuses,
                    "read_versions": ledger.read_versions,
                    "transitions": ledger.transitions,
                    "stale": ledger.stale,
                },
            )
        )
    except BaseException:
        # Break the barriers so the other workers fail fast instead of waiting them out.
        ready.abort()
        gathered.abort()
        results.put(("error", f"worker {worker} ({sha[:7]}):\n{traceback.format_exc()}"))

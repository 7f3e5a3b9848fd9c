"""A repository with a linear history, as the governor sees it through GitHub, in memory.

For the gate's concurrency tests (tests/test_gate_invariants.py): commits c0..cN on one
branch, commit i changing only `src/module_<i>.py` (LOW risk under a policy that does
not list it), every commit carrying the same policy file. Only GitHub is stood in for:

- `LinearHistory.compare(base, head)` answers what GitHub's compare BASE...HEAD does on
  such a history: "ahead" if head descends from base (with the files of the commits in
  between), "behind" if head is an ancestor of base, "identical" if they are the same.
- `facts_for` builds the gate's Facts for one SHA on one release state the way the
  verification flow's read wave does: a compare against every base `gate.bases_needed`
  names, the SHA's own change when nothing is in production yet, the policy at the SHA.
- `FakeRepoApi` / `FakeGitHubPort` implement the part of `RepoApi` / `GitHubPort` that
  `flows.verification.evaluate` calls, for the worker processes that run the real flow.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from governor.gate import Facts, bases_needed
from governor.github.api import DispatchResult
from governor.policy import POLICY_PATH, Policy, parse_policy
from governor.risk import ChangedFile, Comparison
from governor.state import ReleaseState

DEFAULT_BRANCH: Final = "main"
BOT_LOGIN: Final = "release-governor[bot]"
LOW_RISK_POLICY: Final = """\
deploy_workflow: deploy.yml
max_deploys_per_hour: {max_per_hour}
high_risk_paths: []
medium_risk_paths: []
"""
"""Nothing is HIGH or MEDIUM by path (a change of the policy file itself still is)."""


def commit_sha(index: int) -> str:
    return hashlib.sha1(f"linear commit {index}".encode(), usedforsecurity=False).hexdigest()


def low_risk_policy(max_per_hour: int) -> Policy:
    policy = parse_policy(LOW_RISK_POLICY.format(max_per_hour=max_per_hour))
    assert isinstance(policy, Policy), policy
    return policy


@dataclass(frozen=True)
class LinearHistory:
    """Commits 0..length-1, each the parent of the next; the branch points at the last."""

    length: int

    @property
    def shas(self) -> tuple[str, ...]:
        return tuple(commit_sha(i) for i in range(self.length))

    def index(self, ref: str) -> int:
        if ref in (DEFAULT_BRANCH, f"refs/heads/{DEFAULT_BRANCH}"):
            return self.length - 1
        return self.shas.index(ref)  # ValueError for a SHA not in the history

    def is_ancestor_or_equal(self, older: str, newer: str) -> bool:
        return self.index(older) <= self.index(newer)

    def files(self, index: int) -> tuple[ChangedFile, ...]:
        return (ChangedFile(f"src/module_{index}.py"),)

    def compare(self, base: str, head: str) -> Comparison:
        b, h = self.index(base), self.index(head)
        if h > b:
            files = tuple(f for i in range(b + 1, h + 1) for f in self.files(i))
            return Comparison("ahead", h - b, 0, files, complete=True)
        if h < b:
            return Comparison("behind", 0, b - h, (), complete=True)
        return Comparison("identical", 0, 0, (), complete=True)

    def commit_change(self, sha: str) -> Comparison:
        return Comparison("ahead", 1, 0, self.files(self.index(sha)), complete=True)


def facts_for(
    history: LinearHistory, state: ReleaseState, sha: str, policy: Policy, now: datetime
) -> Facts:
    """The Facts the verification flow gathers for `sha` on `state` (one policy everywhere)."""
    production = state.production_sha
    return Facts(
        sha=sha,
        production_sha=production,
        trusted=policy,
        trusted_source=f"production {production}" if production else "refs/heads/main",
        own=policy,
        comparisons={base: history.compare(base, sha) for base in bases_needed(state, sha)},
        own_change=history.commit_change(sha) if production is None else None,
        degraded_labels=frozenset(),
        now=now,
    )


@dataclass
class FakeRepoApi:
    """What `flows.verification.evaluate` calls on `RepoApi`, answered from a LinearHistory.

    `dispatch` appends to `dispatch_log` (a JSON list, rewritten whole each time, so a
    test can read what was dispatched even if the process died later) and answers with a
    run id unique to this worker. `on_gather` is called on the first lookup of open
    issues, which the read wave makes after reading the state and before committing
    its decision: the workers use it as a barrier.
    """

    history: LinearHistory
    policy_text: str
    worker: int
    dispatch_log: Path
    on_gather: Callable[[], object] = lambda: None
    dispatched: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    _gathered: bool = False

    def file_text(self, path: str, ref: str) -> str | None:
        self.calls.append(f"file_text {ref}")
        return self.policy_text if path == POLICY_PATH else None

    def compare(self, base: str, head: str) -> Comparison:
        self.calls.append(f"compare {base}...{head}")
        return self.history.compare(base, head)

    def commit_change(self, sha: str) -> Comparison:
        self.calls.append(f"commit_change {sha}")
        return self.history.commit_change(sha)

    def open_issues_with_label(self, label: str) -> list[dict[str, Any]]:
        self.calls.append(f"open_issues_with_label {label}")
        if not self._gathered:
            self._gathered = True
            self.on_gather()
        return []

    def dispatch(self, workflow: str, ref: str, inputs: dict[str, str]) -> DispatchResult:
        run_id = 1_000_000 * (self.worker + 1) + len(self.dispatched) + 1
        self.dispatched.append(
            {"sha": inputs["sha"], "run_id": run_id, "workflow": workflow, "ref": ref}
        )
        self.dispatch_log.write_text(json.dumps(self.dispatched))
        html = f"https://github.com/octo/app/actions/runs/{run_id}"
        return DispatchResult(run_id, html.replace("github.com", "api.github.com/repos"), html)

    def create_status(
        self, sha: str, *, state: str, context: str, description: str, target_url: str | None
    ) -> None:
        self.statuses.append({"sha": sha, "state": state, "description": description})

    def workflow_runs(
        self, workflow: str, *, event: str, branch: str | None = None
    ) -> list[dict[str, Any]]:
        return []


@dataclass
class FakeGitHubPort:
    """`GitHubPort` with one repository."""

    api: FakeRepoApi

    def repo(self, installation_id: int, full_name: str) -> Any:
        return self.api

    def bot_login(self) -> str:
        return BOT_LOGIN

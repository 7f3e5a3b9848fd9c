"""A deploy run completed: apply its outcome, if it is the governor's own run.

gather  the state (and, for dispatches recorded before schema 2, the trusted policy)
plan    which dispatch the run is the deploy of (`governor.deploy_runs`), or none
act     under the run record's claim: the state first (production moves, or the
        cooldown starts; idempotent per run attempt), then the failure issue or
        comment, behind an "issue pending" mark so a takeover finds it instead of
        opening another
"""

from __future__ import annotations

from typing import Final

from governor import crashpoints, messages
from governor import state as transitions
from governor.decision import Decision, Outcome, Reason
from governor.deploy_runs import RunInfo
from governor.events import WorkflowRunCompleted
from governor.flows import dispatch
from governor.flows.context import Context, Repo, claimed, post_status
from governor.flows.results import DeployOutcome, Duplicate, Ignored, InProgress, Kind
from governor.state import Dispatch, ReleaseState

DEPLOY_FAILURES: Final = frozenset({"failure", "timed_out", "startup_failure"})
FAILURE_LABELS: Final = ("deploy-failure", "severity:high")


def on_deploy_completed(
    ctx: Context, repo: Repo, event: WorkflowRunCompleted, delivery: str
) -> DeployOutcome | Ignored | Duplicate | InProgress:
    return on_run_completed(ctx, repo, RunInfo.from_json(event.workflow_run.model_dump()), delivery)


def on_run_completed(
    ctx: Context, repo: Repo, run: RunInfo, delivery: str
) -> DeployOutcome | Ignored | Duplicate | InProgress:
    """A run completed, as a webhook told it or as reconcile read it (`delivery`: the
    GUID, or what reconcile calls its own claim)."""
    if run.status not in (None, "completed"):
        return Ignored(f"deploy run {run.id} is {run.status}")
    state = ctx.ledger.read_state(repo.id, repo.full_name)
    ours = dispatch.dispatch_of(ctx, repo, run, state)
    if ours is None:
        return Ignored(f"run {run.id} is not a deploy the governor started")
    rejected = state.rejected(run.id, run.attempt)
    if rejected is not None:
        return Ignored(
            f"run {run.id} attempt {run.attempt} was rejected by the governor "
            f"({rejected.reason}): not a deploy outcome"
        )
    site = ctx.ledger.run_site(repo.id, run.id, run.attempt)
    return claimed(ctx, site, "workflow_run", delivery, lambda _claim: _apply(ctx, repo, run, ours))


def _apply(  # noqa: PLR0911  (one return per outcome)
    ctx: Context, repo: Repo, run: RunInfo, ours: Dispatch
) -> DeployOutcome:
    sha, conclusion, now = ours.sha, run.conclusion or "unknown", ctx.clock()

    def outcome(
        kind: Kind, issue: int | None = None, appended: bool | None = None
    ) -> DeployOutcome:
        return DeployOutcome(kind, sha, conclusion, run.id, issue, appended)

    def with_run(state: ReleaseState) -> ReleaseState:
        if ours.run_id is not None:
            return state
        return transitions.record_run(
            state, sha, intent_id=ours.intent_id, run_id=run.id, run_url=run.html_url, now=now
        )

    if conclusion == "success":
        ctx.ledger.transition(
            repo.id, repo.full_name, lambda s: transitions.deploy_succeeded(with_run(s), sha, now)
        )
        crashpoints.reached("deploy_outcome.state")
        return outcome(Kind.DEPLOYED)
    if conclusion == "cancelled":
        # GitHub's concurrency group cancels an older pending run when a newer one
        # queues: that SHA is superseded. Cancelled while newest: it may go again.
        after = ctx.ledger.transition(
            repo.id,
            repo.full_name,
            lambda s: transitions.deploy_cancelled(with_run(s), sha, run.id, now),
        )
        if after.dispatch_for(sha) is None and after.production_sha != sha:
            cancelled = Decision(
                Outcome.HOLD,
                Reason.DEPLOY_CANCELLED,
                None,
                f"deploy run {run.id} was cancelled",
            )
            post_status(ctx, repo, sha, cancelled, policy=None, mode=ctx.settings.mode)
            return outcome(Kind.DEPLOY_CANCELLED)
        return outcome(Kind.DEPLOY_SUPERSEDED)
    if conclusion not in DEPLOY_FAILURES:
        ctx.ledger.transition(repo.id, repo.full_name, with_run)
        return outcome(Kind.DEPLOY_NOT_FAILED)
    attempt = f"{run.id}-{run.attempt}"
    before = ctx.ledger.read_state(repo.id, repo.full_name)
    append_to = before.failure_issue_to_append(sha, now)
    ctx.ledger.transition(
        repo.id,
        repo.full_name,
        lambda s: transitions.deploy_failed(with_run(s), sha, conclusion, now, run=attempt),
    )
    crashpoints.reached("deploy_outcome.state")
    if ctx.ledger.issue_pending(repo.id, run.id, run.attempt):
        # A claimant before this one died while creating the issue or comment: find it.
        found = _open_failure_issue(repo, sha)
        if found is not None:
            _issue_recorded(ctx, repo, sha, found)
            return outcome(Kind.DEPLOY_FAILED, found, appended=found == append_to)
    crashpoints.reached("deploy_outcome.issue_pending")
    if append_to is not None:
        repo.api.create_comment(append_to, messages.failure_comment(sha, conclusion, run.html_url))
        return outcome(Kind.DEPLOY_FAILED, append_to, appended=True)
    number = repo.api.create_issue(
        messages.failure_issue_title(sha),
        messages.failure_issue_body(sha, repo.full_name, conclusion, run.html_url),
        [*FAILURE_LABELS, f"failure:{conclusion}"],
    )
    crashpoints.reached("deploy_outcome.issue")
    _issue_recorded(ctx, repo, sha, number)
    return outcome(Kind.DEPLOY_FAILED, number, appended=False)


def _open_failure_issue(repo: Repo, sha: str) -> int | None:
    title = messages.failure_issue_title(sha)
    issues = repo.api.open_issues_with_label(FAILURE_LABELS[0])
    return next((int(i["number"]) for i in issues if i.get("title") == title), None)


def _issue_recorded(ctx: Context, repo: Repo, sha: str, number: int) -> None:
    now = ctx.clock()
    ctx.ledger.transition(
        repo.id, repo.full_name, lambda s: transitions.failure_issue_opened(s, sha, number, now)
    )

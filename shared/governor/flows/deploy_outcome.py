"""A deploy run completed: apply its outcome, if it is the governor's own run.

gather  the state (and, for dispatches recorded before schema 2, the trusted policy)
plan    which dispatch the run is the deploy of (`governor.deploy_runs`), or none
act     run marker, state (production moves, or the cooldown starts), failure issue
"""

from __future__ import annotations

from typing import Final

from governor import messages
from governor import state as transitions
from governor.deploy_runs import RunInfo
from governor.events import WorkflowRunCompleted
from governor.flows import dispatch
from governor.flows.context import Context, Repo
from governor.flows.results import DeployOutcome, Ignored, Kind

DEPLOY_FAILURES: Final = frozenset({"failure", "timed_out", "startup_failure"})
FAILURE_LABELS: Final = ("deploy-failure", "severity:high")


def on_deploy_completed(  # noqa: PLR0911  (one return per outcome)
    ctx: Context, repo: Repo, event: WorkflowRunCompleted
) -> DeployOutcome | Ignored:
    run = RunInfo.from_json(event.workflow_run.model_dump())
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
    sha, conclusion = ours.sha, run.conclusion or "unknown"

    def outcome(
        kind: Kind, issue: int | None = None, appended: bool | None = None
    ) -> DeployOutcome:
        return DeployOutcome(kind, sha, conclusion, run.id, issue, appended)

    summary = {"sha": sha, "conclusion": conclusion, "run_id": run.id}
    if not ctx.ledger.mark_run_processed(repo.id, run.id, run.attempt, summary):
        return outcome(Kind.DUPLICATE_RUN)
    if ours.run_id is None:
        dispatch.record_run(ctx, repo, ours, run.id, run.html_url)
    now = ctx.clock()
    if conclusion == "success":
        ctx.ledger.transition(
            repo.id, repo.full_name, lambda s: transitions.deploy_succeeded(s, sha, now)
        )
        return outcome(Kind.DEPLOYED)
    if conclusion not in DEPLOY_FAILURES:
        return outcome(Kind.DEPLOY_NOT_FAILED)
    append_to = state.failure_issue_to_append(sha, now)
    ctx.ledger.transition(
        repo.id, repo.full_name, lambda s: transitions.deploy_failed(s, sha, conclusion, now)
    )
    if append_to is not None:
        repo.api.create_comment(append_to, messages.failure_comment(sha, conclusion, run.html_url))
        return outcome(Kind.DEPLOY_FAILED, append_to, appended=True)
    number = repo.api.create_issue(
        messages.failure_issue_title(sha),
        messages.failure_issue_body(sha, repo.full_name, conclusion, run.html_url),
        [*FAILURE_LABELS, f"failure:{conclusion}"],
    )
    ctx.ledger.transition(
        repo.id, repo.full_name, lambda s: transitions.failure_issue_opened(s, sha, number, now)
    )
    return outcome(Kind.DEPLOY_FAILED, number, appended=False)

"""A deployment protection rule request: may this run deploy to the environment?

Approve only the governor's own run: the recorded run id of the current dispatch, or a
run provably the governor's whose id is recorded now. A re-run attempt (or a run whose
deploy failed) is approved only if its SHA passes the gate now. Everything else is
rejected with the reason code and how to unblock. `deployment.sha` of a
`workflow_dispatch` run is the branch tip, not the `sha` input, so it is not used.

    gather  the run (GET), the state
    plan    which dispatch the run belongs to, and the review
    act     record the run id (if proven now), remember a rejection, answer the callback
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from governor import messages
from governor import state as transitions
from governor.decision import Reason, RollbackInputs, decide_rollback
from governor.deploy_runs import RunInfo
from governor.events import DeploymentProtectionRuleRequested
from governor.flows import dispatch, verification
from governor.flows.context import Context, Repo, read_trusted
from governor.flows.results import Reviewed
from governor.gate import judge
from governor.state import Dispatch, RejectedRun, ReleaseState

log = logging.getLogger("governor.flows.protection_rule")


def on_protection_rule(
    ctx: Context, repo: Repo, event: DeploymentProtectionRuleRequested
) -> Reviewed:
    run_id = event.run_id()
    assert run_id is not None  # classify() ignores callbacks that name no run here
    run = RunInfo.from_json(repo.api.run(run_id))
    state = ctx.ledger.read_state(repo.id, repo.full_name)
    ours = dispatch.dispatch_of(ctx, repo, run, state)
    if ours is not None and ours.run_id is None:
        state = dispatch.record_run(ctx, repo, ours, run.id, run.html_url)
        ours = state.dispatch_of_run(run.id)
    review = _review(ctx, repo, run, ours, state)
    if not review.approved and ours is not None:  # its outcome is not a deploy outcome
        now = ctx.clock()
        rejected = RejectedRun(
            run_id=run.id, attempt=run.attempt, sha=ours.sha, reason=review.reason, at=now
        )
        ctx.ledger.transition(
            repo.id, repo.full_name, lambda s: transitions.run_rejected(s, rejected, now)
        )
    repo.api.review_protection_rule(
        run.id, environment=event.environment, approved=review.approved, comment=review.comment
    )
    log.info(
        "protection rule answered",
        extra={"repo": repo.full_name, "run": run.id, "decision": review.reason},
    )
    return review


def _review(  # noqa: PLR0911  (one answer per case)
    ctx: Context, repo: Repo, run: RunInfo, ours: Dispatch | None, state: ReleaseState
) -> Reviewed:
    def answer(approved: bool, reason: str, detail: str, hint: str = "") -> Reviewed:
        comment = f"{reason}: {detail}" + (f". {hint}" if hint else "")
        sha = ours.sha if ours else None
        return Reviewed(approved, run.id, run.attempt, sha, reason, comment)

    if ours is None:
        return answer(
            False,
            Reason.NOT_GOVERNOR_RUN.value,
            f"run {run.id} was not started by the governor",
            messages.NOT_GOVERNOR_RUN_HINT,
        )
    newest = state.dispatches[-1]
    if newest.sha != ours.sha:
        return answer(
            False,
            Reason.SUPERSEDED.value,
            f"{newest.sha[:7]} was dispatched after {ours.sha[:7]}",
            "a newer SHA ships instead; nothing to do",
        )
    if run.attempt == 1 and state.dispatch_for(ours.sha) == ours:
        return answer(True, "approved", f"the governor's deploy of {ours.sha}")
    if state.production_sha == ours.sha:
        return answer(True, "approved", f"{ours.sha} is already in production")
    if ours.reason == Reason.ROLLBACK.value:
        return _review_rollback_rerun(ctx, repo, ours, state, answer)
    # A re-run attempt (or a run whose deploy failed): only if the SHA passes the gate now.
    without_it = state.model_copy(
        update={"dispatches": tuple(d for d in state.dispatches if d != ours)}
    )
    reads = verification.read_wave(ctx, repo, ours.sha, without_it)
    trusted = reads.trusted(repo)
    decision = judge(reads.facts(ctx, repo, ours.sha, trusted), without_it).decision
    if decision.allowed:
        return answer(True, "approved", f"re-run of {ours.sha}: {decision.detail}")
    hint = messages.unblock_hint(decision, trusted.policy)
    return answer(False, decision.reason.value, decision.detail, hint)


def _review_rollback_rerun(
    ctx: Context,
    repo: Repo,
    ours: Dispatch,
    state: ReleaseState,
    answer: Callable[..., Reviewed],
) -> Reviewed:
    """A re-run of a rollback's run: under the rollback's rules again (a freeze now holds
    it, even one the rollback was forced through: forcing is for one dispatch)."""
    trusted = read_trusted(repo, state.production_sha)
    decision = decide_rollback(
        RollbackInputs(
            target=ours.sha,
            policy=trusted.policy,
            state=state,
            global_freeze=ctx.ledger.read_global_freeze(),
            now=ctx.clock(),
            force=False,
            by="a re-run",
            why=ours.detail or "rollback",
        )
    )
    if decision.allowed:
        return answer(True, "approved", f"re-run of the rollback to {ours.sha}")
    hint = messages.unblock_hint(decision, trusted.policy)
    return answer(False, decision.reason.value, decision.detail, hint)

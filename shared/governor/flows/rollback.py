"""An operator's rollback (`governor rollback`): dispatch a SHA that was in production
before, through the gate, under the rollback's own rules (`decision.decide_rollback`).

    gather  the state and the freeze of every repository, then the trusted policy
    plan    `decide_rollback`, made again inside the write that records the intent
    act     the operators' freezes read again (unless forced), the dispatch, the commit
            status of the target, the evaluation in its decision record

A rollback that is held writes nothing: the operator is told why (exit 3) and asks again.
One held by a freeze set between its intent and its dispatch drops its intent and leaves
nothing else (no hold: reconcile would only find the target older than production).
Two operators rolling back to the same SHA at once dispatch once (`rollback_intent`).
If the command dies after recording its intent and before dispatching, the intent is
finished like any other: its run is looked for, and if it never started the SHA is
decided again under the ordinary rules, which do not roll production back by themselves
(it is superseded): run the command again.
"""

from __future__ import annotations

import logging
from datetime import datetime

import msgspec

from governor import state as transitions
from governor.decision import (
    Decision,
    Outcome,
    Reason,
    RollbackInputs,
    decide_rollback,
    emergency_freeze,
)
from governor.flows import dispatch
from governor.flows.context import Context, Repo, mode_of, post_status, read_trusted, wave
from governor.flows.results import Kind
from governor.ledger import Evaluation
from governor.policy import Mode, Policy
from governor.state import Dispatch, ReleaseState
from governor.store.envelope import new_token

log = logging.getLogger("governor.flows.rollback")


class RollbackRefused(Exception):
    """The rollback cannot be done as asked (no such target, nothing to roll back), or
    GitHub refused its dispatch (`by_github`)."""

    def __init__(self, message: str, *, by_github: bool = False) -> None:
        super().__init__(message)
        self.by_github = by_github


class RollbackRequest(msgspec.Struct, frozen=True):
    to: str | None
    """The SHA to roll back to; None: the one in production before the current one."""
    by: str
    why: str
    force: bool
    identity: str | None


class RolledBack(msgspec.Struct, frozen=True):
    target: str
    from_sha: str | None
    """Production when the rollback was asked for."""
    decision: Decision
    kind: Kind
    """DECIDED (this command dispatched, or was held), ALREADY_DISPATCHED (another
    operator's rollback to the same SHA is on its way), DISPATCH_IN_PROGRESS (it is
    being dispatched by someone else right now)."""
    dispatch: str | None = None
    run_id: int | None = None

    @property
    def allowed(self) -> bool:
        return self.decision.outcome is Outcome.ALLOW


def rollback(ctx: Context, repo: Repo, request: RollbackRequest) -> RolledBack:
    with wave() as w:
        first_state = w.read(ctx.ledger.read_state, repo.id, repo.full_name)
        global_freeze = w.read(ctx.ledger.read_global_freeze)
    state = first_state.result()
    target = _target(state, request.to)
    trusted = read_trusted(repo, state.production_sha)
    mode = mode_of(ctx, trusted.policy)
    if isinstance(trusted.policy, Policy) and mode is Mode.SHADOW:
        raise RollbackRefused(
            f"{repo.full_name} is in shadow mode: the governor dispatches nothing there"
        )

    def inputs(on: ReleaseState, now: datetime) -> RollbackInputs:
        return RollbackInputs(
            target=target,
            policy=trusted.policy,
            state=on,
            global_freeze=global_freeze.result(),
            now=now,
            force=request.force,
            by=request.by,
            why=request.why,
        )

    now = ctx.clock()
    decision = decide_rollback(inputs(state, now))
    if not decision.allowed:
        return RolledBack(target, state.production_sha, decision, Kind.DECIDED)
    policy = trusted.governing
    assert policy is not None and policy.deploy_workflow is not None  # decide_rollback checked
    intent = new_token()
    decided: list[Decision] = [decision]

    def record(on: ReleaseState) -> ReleaseState:
        decided[0] = decide_rollback(inputs(on, now))
        if not decided[0].allowed or _target(on, target) != target:
            return on
        return transitions.rollback_intent(
            on,
            target,
            intent,
            now,
            workflow=str(policy.deploy_workflow),
            ref=policy.deploy_ref or repo.default_branch,
            detail=decided[0].detail,
        )

    after = ctx.ledger.transition(repo.id, repo.full_name, record)
    decision = decided[0]
    if not decision.allowed:
        return RolledBack(target, state.production_sha, decision, Kind.DECIDED)
    live = after.dispatch_for(target)
    assert live is not None
    if live.intent_id != intent:
        return _standing(ctx, repo, live, state.production_sha, decision)
    if not request.force:
        frozen = _frozen_at_dispatch(ctx, repo, live)
        if frozen is not None:
            return RolledBack(target, state.production_sha, frozen, Kind.DECIDED)
    try:
        sent = dispatch.send(
            ctx,
            repo,
            live,
            then=lambda: post_status(ctx, repo, target, decision, policy=policy, mode=mode),
        )
    except dispatch.DispatchRefused as exc:
        # Any other error leaves the intent standing: reconcile looks for its run.
        _drop(ctx, repo, live)
        raise RollbackRefused(
            f"GitHub refused to dispatch {live.workflow} ({exc.status} {exc.message})",
            by_github=True,
        ) from None
    ctx.ledger.record_evaluation(
        repo.id,
        repo.full_name,
        target,
        Evaluation(
            at=now,
            delivery=None,
            trigger="rollback",
            outcome=decision.outcome.value,
            reason=decision.reason.value,
            risk=None,
            detail=decision.detail,
            inputs={
                "from_sha": state.production_sha,
                "by": request.by,
                "why": request.why,
                "identity": request.identity,
                "forced": request.force,
                "trusted_policy": trusted.source,
            },
        ),
    )
    log.info("rolled back", extra={"repo": repo.full_name, "sha": target, "by": request.by})
    return RolledBack(
        target,
        state.production_sha,
        decision,
        Kind.DECIDED,
        dispatch=sent,
        run_id=_run_of(ctx, repo, target),
    )


def _target(state: ReleaseState, to: str | None) -> str:
    if state.production_sha is None:
        raise RollbackRefused(f"nothing is in production in {state.repo}: nothing to roll back")
    target = to or state.production_previous_sha
    if target is None:
        raise RollbackRefused(
            f"{state.repo} has had one SHA in production only: there is nothing before it"
        )
    if target == state.production_sha:
        raise RollbackRefused(f"{target[:7]} is in production already")
    if not state.was_in_production(target):
        raise RollbackRefused(
            f"{target[:7]} has not been in production in {state.repo} (within the last "
            f"{transitions.PRODUCTION_HISTORY_KEPT} deploys): a rollback goes to a SHA that was; "
            "to ship another SHA, merge a revert"
        )
    return target


def _frozen_at_dispatch(ctx: Context, repo: Repo, live: Dispatch) -> Decision | None:
    """The operators' freezes, read again right before the dispatch (as for every SHA,
    `verification.frozen_at_dispatch`): a freeze set since the decision holds the rollback.
    Its intent is dropped and no hold is recorded: a held rollback is asked for again."""
    with wave() as w:
        everywhere = w.read(ctx.ledger.read_global_freeze)
        state = w.read(ctx.ledger.read_state, repo.id, repo.full_name)
    freeze = emergency_freeze(state.result(), everywhere.result(), ctx.clock())
    if freeze is None:
        return None
    _drop(ctx, repo, live)
    log.info("rollback frozen at dispatch", extra={"repo": repo.full_name, "sha": live.sha})
    return Decision(Outcome.HOLD, Reason.FREEZE_WINDOW, None, freeze.reason, freeze.until)


def _standing(
    ctx: Context, repo: Repo, live: Dispatch, from_sha: str | None, decision: Decision
) -> RolledBack:
    """Another rollback to the same SHA was recorded first: what became of it."""
    standing = dispatch.resume(ctx, repo, None, live)
    if standing is None:  # its intent never started a run: drop it; the operator asks again
        _drop(ctx, repo, live)
        raise RollbackRefused(
            f"an earlier rollback to {live.sha[:7]} never started its run; it is dropped: "
            "run the command again"
        )
    return RolledBack(live.sha, from_sha, decision, standing.kind, run_id=standing.run_id)


def _drop(ctx: Context, repo: Repo, live: Dispatch) -> None:
    now = ctx.clock()
    ctx.ledger.transition(
        repo.id,
        repo.full_name,
        lambda s: transitions.intent_abandoned(s, live.sha, live.intent_id, now),
    )


def _run_of(ctx: Context, repo: Repo, sha: str) -> int | None:
    live = ctx.ledger.read_state(repo.id, repo.full_name).dispatch_for(sha)
    return live.run_id if live is not None else None

"""Release state of one repository and its pure transitions.

A transition takes a state and values (including `now`) and returns a new state; the
ledger runs it inside the store's compare-and-swap loop, so it may run more than once
and must not do anything else. Every transition bumps `version` and drops history that
has aged out, so the document stays small however long the repository lives: what is
kept is bounded by time, never by a count that could hide a dispatch.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION: Final = 2
"""1: as written before the trust rules. 2: dispatches record their workflow and ref, and
runs the governor rejected at the protection rule are remembered. 1 is migrated on read."""
DISPATCH_RETENTION: Final = timedelta(hours=24)
"""Dispatches are needed for the hourly rate limit and for spotting a half-done dispatch."""
FAILURE_RETENTION: Final = timedelta(days=7)
"""Longest cooldown allowed by the policy schema is 7 days."""
HOLD_RETENTION: Final = timedelta(days=30)
FAILURE_ISSUE_APPEND_WINDOW: Final = timedelta(minutes=30)
RATE_WINDOW: Final = timedelta(hours=1)
REJECTION_RETENTION: Final = timedelta(days=7)
MAX_FAILED_RUNS_KEPT: Final = 20
PRODUCTION_HISTORY_KEPT: Final = 20
"""SHAs that were in production, newest last: what `governor rollback --to` may choose."""

V = TypeVar("V")


class _Model(BaseModel):
    # Built on first use: a cold start builds only the models its event needs.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Dispatch(_Model):
    sha: str
    intent_id: str
    at: datetime
    run_id: int | None = None
    run_url: str | None = None
    workflow: str | None = None
    """The deploy workflow file dispatched (None in documents from schema 1)."""
    ref: str | None = None
    """The branch it was dispatched on (None in documents from schema 1)."""
    reason: str | None = None
    risk: str | None = None
    detail: str | None = None
    """The decision that dispatched it, written with the intent: a delivery that dies
    before its status and evaluation leaves them for whoever recovers the dispatch."""


class RejectedRun(_Model):
    """A run attempt the governor refused at the deployment protection rule."""

    run_id: int
    attempt: int
    sha: str | None
    reason: str
    at: datetime


class Failure(_Model):
    sha: str
    first_at: datetime
    last_at: datetime
    count: int = 1
    issue_number: int | None = None
    conclusion: str = "failure"
    runs: tuple[str, ...] = ()
    """The run attempts (`<run>-<attempt>`) whose failure is counted here, latest last."""


class Approval(_Model):
    sha: str
    by: str
    at: datetime
    via: Literal["label", "comment", "cli"]
    reason: str | None = None
    """Why (operator approvals through `governor approve`)."""
    identity: str | None = None
    """Who the store's credentials belong to, where the backend can tell (`governor approve`)."""
    pull_number: int | None = None
    """The pull request approved on (label and comment approvals; None: `governor approve`,
    and approvals recorded before the number was kept)."""
    pull_title: str | None = None
    """That pull request's title when it was approved: text its author chose."""


class Hold(_Model):
    sha: str
    reason: str
    at: datetime
    until: datetime | None = None


class EmergencyFreeze(_Model):
    """An operator's freeze (`governor freeze`): holds every new dispatch until lifted."""

    reason: str
    by: str
    at: datetime
    until: datetime | None = None
    identity: str | None = None

    def active(self, now: datetime) -> bool:
        return self.until is None or now < self.until


class DegradedDeclared(_Model):
    """Production declared degraded by an operator (`governor degraded`)."""

    reason: str
    by: str
    at: datetime
    identity: str | None = None


class Lift(_Model):
    """Who lifts a freeze or a declared degradation (`governor freeze|degraded ... off`),
    when and why."""

    by: str
    reason: str
    at: datetime
    identity: str | None = None


class Lifted(_Model):
    """An emergency freeze or a declared degradation an operator lifted by hand (`off`):
    what it was (who set it, why, since when, until when) and who lifted it, when and why.
    The last lift of each is kept (`ReleaseState.freeze_lifted`, `.degraded_lifted`,
    `ledger.GlobalFreeze.last_lifted`), replaced by the next one: the audit trail of an
    incident's end, never read by the rules."""

    by: str
    reason: str
    at: datetime
    until: datetime | None = None
    identity: str | None = None
    lifted_by: str
    lifted_reason: str
    lifted_at: datetime
    lifted_identity: str | None = None

    @classmethod
    def of(cls, lifted: EmergencyFreeze | DegradedDeclared, lift: Lift) -> Lifted:
        return cls(
            by=lifted.by,
            reason=lifted.reason,
            at=lifted.at,
            until=lifted.until if isinstance(lifted, EmergencyFreeze) else None,
            identity=lifted.identity,
            lifted_by=lift.by,
            lifted_reason=lift.reason,
            lifted_at=lift.at,
            lifted_identity=lift.identity,
        )


class Deployed(_Model):
    sha: str
    at: datetime


class ReleaseState(_Model):
    schema_version: Literal[2] = SCHEMA_VERSION
    version: int = Field(default=0, description="Bumped by every transition.")
    repo_id: int
    repo: str = Field(description="owner/name when last seen; the id survives renames.")
    production_sha: str | None = None
    production_previous_sha: str | None = None
    production_at: datetime | None = None
    dispatches: tuple[Dispatch, ...] = ()
    failures: dict[str, Failure] = Field(default_factory=dict)
    approvals: dict[str, tuple[Approval, ...]] = Field(default_factory=dict)
    holds: dict[str, Hold] = Field(default_factory=dict)
    emergency_freeze: EmergencyFreeze | None = None
    degraded: DegradedDeclared | None = None
    rejected_runs: tuple[RejectedRun, ...] = ()
    production_history: tuple[Deployed, ...] = ()
    """The last SHAs to reach production, newest last (kept: 20)."""
    freeze_lifted: Lifted | None = None
    """The last emergency freeze of the repository lifted by hand (`freeze REPO off`)."""
    degraded_lifted: Lifted | None = None
    """The last declared degradation taken back (`degraded REPO off`)."""

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        """Documents of schema 1 read as schema 2: the fields added since have defaults."""
        if isinstance(data, dict) and data.get("schema_version") == 1:
            return {**data, "schema_version": SCHEMA_VERSION}
        return data

    # -- queries ------------------------------------------------------------------

    def dispatch_for(self, sha: str) -> Dispatch | None:
        """The live dispatch of `sha`: its latest, unless a deploy failure came after it."""
        latest = next((d for d in reversed(self.dispatches) if d.sha == sha), None)
        failure = self.failures.get(sha)
        if latest is not None and failure is not None and failure.last_at >= latest.at:
            return None  # that deploy failed: the SHA may be dispatched again after cooldown
        return latest

    def dispatches_since(self, since: datetime) -> tuple[Dispatch, ...]:
        return tuple(d for d in self.dispatches if d.at > since)

    def dispatch_of_run(self, run_id: int) -> Dispatch | None:
        return next((d for d in self.dispatches if d.run_id == run_id), None)

    def is_current(self, dispatch: Dispatch) -> bool:
        """`dispatch` is the newest dispatch and has not failed: the one that may deploy."""
        return (
            bool(self.dispatches)
            and self.dispatches[-1] == dispatch
            and (self.dispatch_for(dispatch.sha) == dispatch)
        )

    def rejected(self, run_id: int, attempt: int) -> RejectedRun | None:
        return next(
            (r for r in self.rejected_runs if (r.run_id, r.attempt) == (run_id, attempt)), None
        )

    def dispatched_shas_to_compare(self, sha: str) -> tuple[str, ...]:
        """SHAs dispatched that `sha` must not be older than, newest first.

        Dispatches made before production's own dispatch can be left out: production was
        not older than any of them when it was dispatched, and `sha` is checked against
        production itself.
        """
        start = 0
        if self.production_sha is not None:
            own = [i for i, d in enumerate(self.dispatches) if d.sha == self.production_sha]
            start = own[-1] + 1 if own else 0
        seen: list[str] = []
        for d in reversed(self.dispatches[start:]):
            if d.sha not in (sha, self.production_sha) and d.sha not in seen:
                seen.append(d.sha)
        return tuple(seen)

    def was_in_production(self, sha: str) -> bool:
        """`sha` reached production (within the history kept): a rollback may choose it."""
        return sha in (self.production_sha, self.production_previous_sha) or any(
            d.sha == sha for d in self.production_history
        )

    def approvals_for(self, sha: str) -> tuple[Approval, ...]:
        return self.approvals.get(sha, ())

    def failure_issue_to_append(self, sha: str, now: datetime) -> int | None:
        """The failure issue of `sha` to comment on if it last failed within 30 minutes.

        Ask before recording the new failure (`deploy_failed` moves `last_at` to now).
        """
        failure = self.failures.get(sha)
        if failure is None or failure.issue_number is None:
            return None
        return failure.issue_number if now - failure.last_at < FAILURE_ISSUE_APPEND_WINDOW else None


def new_state(repo_id: int, repo: str) -> ReleaseState:
    return ReleaseState(repo_id=repo_id, repo=repo)


def _next(state: ReleaseState, now: datetime, **changes: Any) -> ReleaseState:
    """Apply `changes`, bump the version and drop what has aged out."""
    changed = state.model_copy(update={**changes, "version": state.version + 1})
    return changed.model_copy(
        update={
            "dispatches": tuple(d for d in changed.dispatches if now - d.at < DISPATCH_RETENTION),
            "failures": {
                sha: f for sha, f in changed.failures.items() if now - f.last_at < FAILURE_RETENTION
            },
            "holds": {sha: h for sha, h in changed.holds.items() if now - h.at < HOLD_RETENTION},
            "rejected_runs": tuple(
                r for r in changed.rejected_runs if now - r.at < REJECTION_RETENTION
            ),
            "approvals": {
                sha: a
                for sha, a in changed.approvals.items()
                if a and now - a[-1].at < HOLD_RETENTION
            },
        }
    )


def _without(mapping: Mapping[str, V], sha: str) -> dict[str, V]:
    return {key: value for key, value in mapping.items() if key != sha}


# -- transitions -------------------------------------------------------------------


def record_intent(
    state: ReleaseState,
    sha: str,
    intent_id: str,
    now: datetime,
    *,
    workflow: str | None = None,
    ref: str | None = None,
    decided: tuple[str, str | None, str] | None = None,
) -> ReleaseState:
    """Write down, before dispatching, that `sha` is about to be dispatched (`decided`:
    the decision's reason, risk and detail).

    If `sha` already has a dispatch (this intent or another's), the state is returned
    unchanged: the caller compares intent ids to learn whether it won.
    """
    if state.dispatch_for(sha) is not None:
        return state
    reason, risk, detail = decided or (None, None, None)
    dispatch = Dispatch(
        sha=sha,
        intent_id=intent_id,
        at=now,
        workflow=workflow,
        ref=ref,
        reason=reason,
        risk=risk,
        detail=detail,
    )
    return _next(
        state,
        now,
        dispatches=(*state.dispatches, dispatch),
        holds=_without(state.holds, sha),
    )


def intent_abandoned(state: ReleaseState, sha: str, intent_id: str, now: datetime) -> ReleaseState:
    """Drop a dispatch intent that never started a run, so the SHA can be decided again.

    Only while that intent is still the live, run-less dispatch of `sha`: if another
    instance replaced it or its run was found meanwhile, the state is left as it is.
    """
    live = state.dispatch_for(sha)
    if live is None or live.intent_id != intent_id or live.run_id is not None:
        return state
    return _next(state, now, dispatches=tuple(d for d in state.dispatches if d is not live))


def record_run(
    state: ReleaseState,
    sha: str,
    *,
    intent_id: str,
    run_id: int,
    run_url: str | None,
    now: datetime,
) -> ReleaseState:
    """The dispatch of `intent_id` started workflow run `run_id`."""
    dispatches = tuple(
        d.model_copy(update={"run_id": run_id, "run_url": run_url})
        if d.sha == sha and d.intent_id == intent_id and d.run_id is None
        else d
        for d in state.dispatches
    )
    if dispatches == state.dispatches:
        return state
    return _next(state, now, dispatches=dispatches)


def deploy_cancelled(state: ReleaseState, sha: str, run_id: int, now: datetime) -> ReleaseState:
    """The deploy run `run_id` of `sha` was cancelled while its dispatch was the newest.

    The dispatch is dropped, so the SHA can be dispatched again, and a `deploy_cancelled`
    hold says why it is not going out: nothing resumes it by itself (someone cancelled
    it), a re-run of the verification or an approval does. Idempotent.
    """
    live = state.dispatch_for(sha)
    if live is None or live.run_id != run_id or state.dispatches[-1] != live:
        return state  # already dropped, another run, or overtaken by a newer dispatch
    if state.production_sha == sha:
        return state  # a cancelled re-run of what is in production changes nothing
    hold = Hold(sha=sha, reason="deploy_cancelled", at=now)
    return _next(
        state,
        now,
        dispatches=tuple(d for d in state.dispatches if d is not live),
        holds={**state.holds, sha: hold},
    )


def deploy_succeeded(state: ReleaseState, sha: str, now: datetime) -> ReleaseState:
    """`sha` is in production now: previous <- current <- sha."""
    if state.production_sha == sha:
        return state
    history = (*state.production_history, Deployed(sha=sha, at=now))
    return _next(
        state,
        now,
        production_previous_sha=state.production_sha,
        production_sha=sha,
        production_at=now,
        production_history=history[-PRODUCTION_HISTORY_KEPT:],
        holds=_without(state.holds, sha),
        approvals=_without(state.approvals, sha),
        failures=_without(state.failures, sha),
    )


def deploy_failed(
    state: ReleaseState, sha: str, conclusion: str, now: datetime, *, run: str = ""
) -> ReleaseState:
    """The deploy of `sha` failed: the cooldown starts now; the failure issue stays with it.

    Idempotent per run attempt (`run`, `<run>-<attempt>`): applying it again changes nothing.
    """
    previous = state.failures.get(sha)
    if previous is not None and run and run in previous.runs:
        return state
    ran = (run,) if run else ()
    failure = (
        previous.model_copy(
            update={
                "last_at": now,
                "count": previous.count + 1,
                "conclusion": conclusion,
                "runs": (*previous.runs, *ran)[-MAX_FAILED_RUNS_KEPT:],
            }
        )
        if previous is not None
        else Failure(sha=sha, first_at=now, last_at=now, conclusion=conclusion, runs=ran)
    )
    return _next(state, now, failures={**state.failures, sha: failure})


def failure_issue_opened(
    state: ReleaseState, sha: str, issue_number: int, now: datetime
) -> ReleaseState:
    failure = state.failures.get(sha)
    if failure is None or failure.issue_number == issue_number:
        return state
    updated = failure.model_copy(update={"issue_number": issue_number})
    return _next(state, now, failures={**state.failures, sha: updated})


def approval_recorded(state: ReleaseState, approval: Approval, now: datetime) -> ReleaseState:
    existing = state.approvals_for(approval.sha)
    if any(a.by == approval.by for a in existing):
        return state
    return _next(state, now, approvals={**state.approvals, approval.sha: (*existing, approval)})


def hold_recorded(
    state: ReleaseState, sha: str, reason: str, until: datetime | None, now: datetime
) -> ReleaseState:
    current = state.holds.get(sha)
    if current is not None and (current.reason, current.until) == (reason, until):
        return state
    hold = Hold(sha=sha, reason=reason, at=now, until=until)
    return _next(state, now, holds={**state.holds, sha: hold})


def superseded(state: ReleaseState, sha: str, now: datetime) -> ReleaseState:
    """`sha` will never ship: forget its hold and approvals."""
    if sha not in state.holds and sha not in state.approvals:
        return state
    return _next(
        state,
        now,
        holds=_without(state.holds, sha),
        approvals=_without(state.approvals, sha),
    )


def emergency_freeze_set(
    state: ReleaseState, freeze: EmergencyFreeze | None, now: datetime
) -> ReleaseState:
    if state.emergency_freeze == freeze:
        return state
    return _next(state, now, emergency_freeze=freeze)


def lift_recorded(before: ReleaseState, after: ReleaseState, lift: Lift) -> ReleaseState:
    """`after`, a transition of `before` made by an operator lifting (`off`), with the lift
    kept for each of the repository's freeze and declared degradation it took away: part
    of the same write, so `version` is not bumped again. Unchanged when it lifted nothing."""
    lifted: dict[str, Lifted] = {}
    if before.emergency_freeze is not None and after.emergency_freeze is None:
        lifted["freeze_lifted"] = Lifted.of(before.emergency_freeze, lift)
    if before.degraded is not None and after.degraded is None:
        lifted["degraded_lifted"] = Lifted.of(before.degraded, lift)
    return after.model_copy(update=lifted) if lifted else after


def rollback_intent(
    state: ReleaseState,
    sha: str,
    intent_id: str,
    now: datetime,
    *,
    workflow: str,
    ref: str,
    detail: str,
) -> ReleaseState:
    """Write down, before dispatching, that production is about to be rolled back to `sha`.

    `sha` has been deployed before, so it may have an old dispatch: a rollback is a new
    one. Unchanged (the caller compares intent ids) when the newest dispatch is already a
    live rollback to `sha` made since production last moved: two operators rolling back
    at once dispatch once.
    """
    newest = state.dispatches[-1] if state.dispatches else None
    if (
        newest is not None
        and newest.sha == sha
        and newest.reason == "rollback"
        and (state.production_at is None or newest.at > state.production_at)
        and state.dispatch_for(sha) == newest
    ):
        return state
    dispatch = Dispatch(
        sha=sha,
        intent_id=intent_id,
        at=now,
        workflow=workflow,
        ref=ref,
        reason="rollback",
        risk=None,
        detail=detail,
    )
    return _next(
        state,
        now,
        dispatches=(*state.dispatches, dispatch),
        holds=_without(state.holds, sha),
        failures=_without(state.failures, sha),
    )


def degraded_set(
    state: ReleaseState, declared: DegradedDeclared | None, now: datetime
) -> ReleaseState:
    if state.degraded == declared:
        return state
    return _next(state, now, degraded=declared)


def run_rejected(state: ReleaseState, rejected: RejectedRun, now: datetime) -> ReleaseState:
    """The protection rule refused this run attempt: its outcome is not a deploy outcome."""
    if state.rejected(rejected.run_id, rejected.attempt) is not None:
        return state
    return _next(state, now, rejected_runs=(*state.rejected_runs, rejected))

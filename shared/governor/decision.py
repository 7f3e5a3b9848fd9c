"""The decision: a pure function from values to a Decision. No clock, network or store.

Rules are tried in the order of the table in docs/reasons.md; the first that matches
decides. Reason codes are API: they appear in statuses, records and the CLI.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

import msgspec

from governor.freeze import Freeze, freeze_at
from governor.policy import ApprovalMode, Policy, PolicyProblem
from governor.risk import Risk, RiskAssessment
from governor.state import RATE_WINDOW, Approval, EmergencyFreeze, ReleaseState

RULES_VERSION: Final = 2
"""Bumped whenever the same inputs could be decided differently (this module, `gate`,
`risk`, `freeze`, the policy schema). Stored with every evaluation: `governor simulate`
reports a mismatch under other rules as such (exit 5), not as a fault (exit 1)."""


class Outcome(StrEnum):
    ALLOW = "ALLOW"
    HOLD = "HOLD"
    IGNORE = "IGNORE"


class Reason(StrEnum):
    DISABLED = "disabled"
    POLICY_INVALID = "policy_invalid"
    DEPLOY_NOT_CONFIGURED = "deploy_not_configured"
    SUPERSEDED = "superseded"
    FREEZE_WINDOW = "freeze_window"
    FIRST_DEPLOY_REQUIRED = "first_deploy_required"
    DEGRADED_HIGH_RISK = "degraded_high_risk"
    COOLDOWN = "cooldown"
    RATE_LIMIT = "rate_limit"
    ALLOW_LOW = "allow_low"
    DEGRADED_MEDIUM_HOLD = "degraded_medium_hold"
    ALLOW_MEDIUM = "allow_medium"
    ALLOW_HIGH_APPROVED = "allow_high_approved"
    ALLOW_HIGH_ENVIRONMENT = "allow_high_environment"
    HIGH_RISK_NO_APPROVAL = "high_risk_no_approval"
    RISK_UNKNOWN = "risk_unknown"
    GOVERNOR_ERROR = "governor_error"
    NOT_GOVERNOR_RUN = "not_governor_run"
    """Protection rule: the run asking to deploy is not a deploy the governor dispatched."""
    DEPLOY_CANCELLED = "deploy_cancelled"
    """The governor's deploy run of this SHA was cancelled: it goes again only when a
    person asks (re-run the verification, or approve it)."""
    ROLLBACK = "rollback"
    """An operator rolled production back to a SHA that was in production before."""


class DecisionInputs(msgspec.Struct, frozen=True):
    sha: str
    policy: Policy | PolicyProblem | None
    """None: the repository has no policy file, so it has not opted in."""
    state: ReleaseState
    risk: RiskAssessment
    degraded: bool
    approvals: tuple[Approval, ...]
    """Approvals recorded for this SHA by users who were allowed to give them."""
    now: datetime
    superseded_by: str | None = None
    """A SHA already allowed or deployed that contains this one (from GitHub's compare)."""
    global_freeze: EmergencyFreeze | None = None
    """`governor freeze --all`: one freeze for every repository."""


class Decision(msgspec.Struct, frozen=True):
    outcome: Outcome
    reason: Reason
    risk: Risk | None
    detail: str
    until: datetime | None = None
    """For holds that end by themselves (freeze, cooldown, rate limit): when they end."""
    awaiting_environment_approval: bool = False

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOW


def _level(inputs: DecisionInputs) -> Risk:
    """Unknown risk counts as HIGH, whatever level came with it: fail closed."""
    return Risk.HIGH if inputs.risk.unknown else inputs.risk.level


def _hold(
    reason: Reason, inputs: DecisionInputs, detail: str, until: datetime | None = None
) -> Decision:
    return Decision(Outcome.HOLD, reason, _level(inputs), detail, until)


def _allow(reason: Reason, inputs: DecisionInputs, detail: str) -> Decision:
    return Decision(Outcome.ALLOW, reason, _level(inputs), detail)


def governor_error(detail: str) -> Decision:
    """The fail-closed HOLD for anything unexpected; reconcile evaluates the SHA again."""
    return Decision(Outcome.HOLD, Reason.GOVERNOR_ERROR, None, detail)


def emergency_freeze(
    state: ReleaseState, global_freeze: EmergencyFreeze | None, now: datetime
) -> Freeze | None:
    """The operators' freeze in force: every repository's first, then this one's."""
    for where, emergency in (("every repository", global_freeze), ("", state.emergency_freeze)):
        if emergency is not None and emergency.active(now):
            scope = f" of {where}" if where else ""
            return Freeze(
                reason=f"emergency freeze{scope} by {emergency.by}: {emergency.reason}",
                until=emergency.until,
            )
    return None


def _freeze(
    policy: Policy, state: ReleaseState, global_freeze: EmergencyFreeze | None, now: datetime
) -> Freeze | None:
    return emergency_freeze(state, global_freeze, now) or freeze_at(policy.freeze, now)


def _cooldown_until(policy: Policy, inputs: DecisionInputs) -> datetime | None:
    failure = inputs.state.failures.get(inputs.sha)
    if failure is None:
        return None
    until = failure.last_at + timedelta(minutes=policy.cooldown_minutes)
    return until if inputs.now < until else None


def _rate_limit_until(policy: Policy, inputs: DecisionInputs) -> datetime | None:
    recent = inputs.state.dispatches_since(inputs.now - RATE_WINDOW)
    if len(recent) < policy.max_deploys_per_hour:
        return None
    # Free again when enough of them have left the trailing hour.
    oldest_first = sorted(d.at for d in recent)
    return oldest_first[len(recent) - policy.max_deploys_per_hour] + RATE_WINDOW


def decide(inputs: DecisionInputs) -> Decision:  # noqa: PLR0911, PLR0912  (one branch per rule)
    policy, now = inputs.policy, inputs.now
    level = _level(inputs)
    if policy is None or (isinstance(policy, Policy) and not policy.enabled):
        return Decision(
            Outcome.IGNORE, Reason.DISABLED, None, "the governor is off for this repository"
        )
    if isinstance(policy, PolicyProblem):
        return Decision(Outcome.HOLD, Reason.POLICY_INVALID, None, str(policy))
    if policy.deploy_workflow is None:
        return _hold(Reason.DEPLOY_NOT_CONFIGURED, inputs, "the policy names no deploy_workflow")
    if inputs.superseded_by is not None:
        return _hold(
            Reason.SUPERSEDED, inputs, f"{inputs.superseded_by[:7]} is newer and already allowed"
        )
    freeze = _freeze(policy, inputs.state, inputs.global_freeze, now)
    if freeze is not None:
        return _hold(Reason.FREEZE_WINDOW, inputs, freeze.reason, freeze.until)
    approvals = tuple(a for a in inputs.approvals if a.sha == inputs.sha)  # per SHA, never wider
    approved = bool(approvals)
    if (
        inputs.state.production_sha is None
        and policy.require_approval_for_first_deploy
        and not approved
    ):
        return _hold(Reason.FIRST_DEPLOY_REQUIRED, inputs, "the first deploy needs an approval")
    if inputs.degraded and level is Risk.HIGH:
        return _hold(
            Reason.DEGRADED_HIGH_RISK, inputs, "production is degraded and the risk is HIGH"
        )
    cooldown_until = _cooldown_until(policy, inputs)
    if cooldown_until is not None:
        return _hold(Reason.COOLDOWN, inputs, "this SHA failed to deploy recently", cooldown_until)
    rate_until = _rate_limit_until(policy, inputs)
    if rate_until is not None:
        recent = len(inputs.state.dispatches_since(now - RATE_WINDOW))
        limit = policy.max_deploys_per_hour
        detail = f"{recent} deploys in the last hour, the limit is {limit}"
        return _hold(Reason.RATE_LIMIT, inputs, detail, rate_until)
    if level is Risk.LOW:
        return _allow(Reason.ALLOW_LOW, inputs, "low-risk change")
    if level is Risk.MEDIUM:
        if inputs.degraded:
            return _hold(Reason.DEGRADED_MEDIUM_HOLD, inputs, "production is degraded")
        return _allow(Reason.ALLOW_MEDIUM, inputs, "medium-risk change")
    if approved:
        by = ", ".join(sorted({a.by for a in approvals}))
        return _allow(Reason.ALLOW_HIGH_APPROVED, inputs, f"high-risk change approved by {by}")
    if policy.approval.mode is ApprovalMode.ENVIRONMENT:
        return Decision(
            Outcome.ALLOW,
            Reason.ALLOW_HIGH_ENVIRONMENT,
            level,
            "high-risk change: the deploy waits for the environment's reviewers",
            awaiting_environment_approval=True,
        )
    if inputs.risk.unknown:
        return _hold(Reason.RISK_UNKNOWN, inputs, "the changed files could not all be seen")
    return _hold(Reason.HIGH_RISK_NO_APPROVAL, inputs, "high-risk change needs an approval")


class RollbackInputs(msgspec.Struct, frozen=True):
    target: str
    """The SHA to roll back to: it must have been in production."""
    policy: Policy | PolicyProblem | None
    """The trusted policy (production's, else the default branch's)."""
    state: ReleaseState
    global_freeze: EmergencyFreeze | None
    now: datetime
    force: bool
    """`--force`: an operator overrides a freeze (recorded in the detail)."""
    by: str
    why: str


def decide_rollback(inputs: RollbackInputs) -> Decision:
    """A rollback goes through the gate with its own rules: the target has been in
    production, so risk, approvals, supersession and cooldown do not apply, nor the rate
    limit (a rollback is what a bad hour needs); a freeze holds it unless forced."""
    policy, state, target = inputs.policy, inputs.state, inputs.target
    if policy is None or (isinstance(policy, Policy) and not policy.enabled):
        return Decision(
            Outcome.IGNORE, Reason.DISABLED, None, "the governor is off for this repository"
        )
    if isinstance(policy, PolicyProblem):
        return Decision(Outcome.HOLD, Reason.POLICY_INVALID, None, str(policy))
    if policy.deploy_workflow is None:
        return Decision(
            Outcome.HOLD, Reason.DEPLOY_NOT_CONFIGURED, None, "the policy names no deploy_workflow"
        )
    detail = f"rollback to {target[:7]} by {inputs.by}: {inputs.why}"
    freeze = _freeze(policy, state, inputs.global_freeze, inputs.now)
    if freeze is not None:
        if not inputs.force:
            return Decision(Outcome.HOLD, Reason.FREEZE_WINDOW, None, freeze.reason, freeze.until)
        detail += f" (forced through a freeze: {freeze.reason})"
    return Decision(Outcome.ALLOW, Reason.ROLLBACK, None, detail)

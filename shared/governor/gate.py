"""The gate: the facts gathered about one SHA and a release state in, a verdict out. Pure.

The trusted policy (the one in production, or the default branch's before any deploy)
says which rules apply and who approves. The SHA's own policy can only add restrictions:
the SHA is decided under both and allowed only if both allow it. Everything that depends
on the release state (production, supersession, rate limit, cooldown, emergency freeze,
approvals) is derived here from the state passed in, so the very same function runs on
the state first read and again inside the conditional write that commits the decision.
When that state has moved on in a way the facts do not cover (production moved, or a SHA
was dispatched whose ancestry was not gathered), `judge` raises `StaleFacts` instead of
guessing, and the caller gathers once more on that state.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

from governor.decision import Decision, DecisionInputs, Outcome, decide
from governor.policy import Policy, PolicyProblem
from governor.risk import Comparison, Risk, RiskAssessment, assess
from governor.state import EmergencyFreeze, ReleaseState

NOT_ASSESSED: Final = RiskAssessment(level=Risk.HIGH, notes=("not assessed",))
DIVERGED_NOTE: Final = (
    "this SHA is not a descendant of production: deploying it would remove what production has"
)
_TRUSTED_ONLY: Final = (
    "approval",
    "verification_workflow",
    "deploy_workflow",
    "deploy_ref",
    "mode",
)
"""Keys only the trusted policy decides; the SHA's own values for them are not used."""


class Facts(msgspec.Struct, frozen=True):
    """Everything gathered from GitHub for one SHA; fixed while the decision is made."""

    sha: str
    production_sha: str | None
    """The production SHA the facts were gathered for (the trusted policy and risk use it)."""
    trusted: Policy | PolicyProblem | None
    trusted_source: str
    """Where the trusted policy was read: `production <sha>` or `refs/heads/<branch>`."""
    own: Policy | PolicyProblem | None
    """The policy file at the SHA itself."""
    comparisons: Mapping[str, Comparison]
    """GitHub's compare BASE...sha, by base SHA (production and dispatched SHAs)."""
    own_change: Comparison | None
    """The SHA against its first parent: the change of a first deploy."""
    degraded_labels: frozenset[str]
    """Labels that have at least one open issue."""
    now: datetime
    global_freeze: EmergencyFreeze | None = None
    """The freeze of every repository (`governor freeze --all`), read with the facts."""


class StaleFacts(Exception):
    """The state has moved on in a way the gathered facts do not cover: gather again."""


class Verdict(msgspec.Struct, frozen=True):
    decision: Decision
    risk: RiskAssessment
    """The risk under the policy whose decision is reported."""
    superseded_by: str | None
    production_sha: str | None
    decided_by: Literal["trusted", "own"]
    """Whose decision is reported: the trusted policy's, or the stricter one of the SHA's own."""

    def summary(self, facts: Facts) -> dict[str, Any]:
        """The inputs, as the decision record keeps them."""
        own = facts.own
        return {
            "production_sha": self.production_sha,
            "trusted_policy": facts.trusted_source,
            "decided_by": self.decided_by,
            "risk": self.risk.level.value,
            "risk_unknown": self.risk.unknown,
            "high_paths": list(self.risk.high_paths[:50]),
            "medium_paths": list(self.risk.medium_paths[:50]),
            "notes": list(self.risk.notes),
            "degraded_labels": sorted(facts.degraded_labels),
            "superseded_by": self.superseded_by,
            "policy_problem": (
                str(facts.trusted) if isinstance(facts.trusted, PolicyProblem) else None
            ),
            "own_policy_problem": str(own) if isinstance(own, PolicyProblem) else None,
        }


def bases_needed(state: ReleaseState, sha: str) -> frozenset[str]:
    """The SHAs `sha` must be compared with on this state: production and newer dispatches."""
    bases = set(state.dispatched_shas_to_compare(sha))
    if state.production_sha is not None and state.production_sha != sha:
        bases.add(state.production_sha)
    return frozenset(bases)


def judge(facts: Facts, state: ReleaseState) -> Verdict:
    """The decision for `facts.sha` on `state`, under both policies; the stricter wins."""
    trusted = facts.trusted
    if not isinstance(trusted, Policy) or not trusted.enabled or trusted.deploy_workflow is None:
        inputs = DecisionInputs(
            facts.sha,
            trusted,
            state,
            NOT_ASSESSED,
            False,
            (),
            facts.now,
            global_freeze=facts.global_freeze,
        )
        return Verdict(decide(inputs), NOT_ASSESSED, None, state.production_sha, "trusted")
    _require(facts, state)
    change = _change(facts, state)
    superseded_by = _superseded_by(facts, state)
    trusted_decision, trusted_risk = _decide_under(trusted, facts, state, change, superseded_by)
    verdict = Verdict(
        trusted_decision, trusted_risk, superseded_by, state.production_sha, "trusted"
    )
    own = facts.own
    if trusted_decision.outcome is not Outcome.ALLOW:
        return verdict
    if isinstance(own, PolicyProblem):
        inputs = DecisionInputs(
            facts.sha,
            own,
            state,
            trusted_risk,
            False,
            (),
            facts.now,
            global_freeze=facts.global_freeze,
        )
        return msgspec.structs.replace(verdict, decision=_own(decide(inputs)), decided_by="own")
    if not isinstance(own, Policy) or not own.enabled:
        return verdict  # removing or disabling its own policy adds no restriction
    restricted = own.model_copy(update={key: getattr(trusted, key) for key in _TRUSTED_ONLY})
    own_decision, own_risk = _decide_under(restricted, facts, state, change, superseded_by)
    stricter = own_decision.outcome is not Outcome.ALLOW or (
        own_decision.awaiting_environment_approval
        and not trusted_decision.awaiting_environment_approval
    )
    if not stricter:
        return verdict
    return msgspec.structs.replace(
        verdict, decision=_own(own_decision), risk=own_risk, decided_by="own"
    )


def _require(facts: Facts, state: ReleaseState) -> None:
    if state.production_sha != facts.production_sha:
        raise StaleFacts(f"production is {state.production_sha}, not {facts.production_sha}")
    missing = bases_needed(state, facts.sha) - facts.comparisons.keys()
    if missing:
        raise StaleFacts(f"no ancestry gathered for {sorted(missing)}")
    if state.production_sha is None and facts.own_change is None:
        raise StaleFacts("first deploy without the SHA's own change")


def _change(facts: Facts, state: ReleaseState) -> Comparison:
    if state.production_sha is None:
        assert facts.own_change is not None  # _require checked
        return facts.own_change
    return facts.comparisons[state.production_sha]


def _superseded_by(facts: Facts, state: ReleaseState) -> str | None:
    """Production or a dispatched SHA that already contains this one (decided by ancestry)."""
    production = state.production_sha
    if production is not None and facts.comparisons[production].head_is_ancestor:
        return production
    newer = state.dispatched_shas_to_compare(facts.sha)
    return next((base for base in newer if facts.comparisons[base].head_is_ancestor), None)


def _decide_under(
    policy: Policy,
    facts: Facts,
    state: ReleaseState,
    change: Comparison,
    superseded_by: str | None,
) -> tuple[Decision, RiskAssessment]:
    risk = assess(policy, change.files, complete=change.complete)
    if state.production_sha is None:
        risk = _noted(risk, "first deploy: the risk of this SHA's own change")
    elif change.status == "diverged":
        risk = _noted(msgspec.structs.replace(risk, level=Risk.HIGH), DIVERGED_NOTE)
    label = policy.degraded.issue_label
    degraded = (
        policy.degraded.manual
        or state.degraded is not None
        or (label is not None and label in facts.degraded_labels)
    )
    inputs = DecisionInputs(
        facts.sha,
        policy,
        state,
        risk,
        degraded,
        state.approvals_for(facts.sha),
        facts.now,
        superseded_by,
        facts.global_freeze,
    )
    return decide(inputs), risk


def _noted(risk: RiskAssessment, note: str) -> RiskAssessment:
    return msgspec.structs.replace(risk, notes=(*risk.notes, note))


def _own(decision: Decision) -> Decision:
    if decision.outcome is Outcome.ALLOW:
        return decision
    return msgspec.structs.replace(decision, detail=f"this SHA's own policy: {decision.detail}")

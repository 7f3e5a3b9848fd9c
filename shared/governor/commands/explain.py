"""`governor explain REPO SHA`: why a SHA was decided as it was, from its decision record.

The stored evaluations (newest last), the inputs the verification flow kept with the
latest one, the paths behind the risk (and, given the policy file that decided, the
pattern that matched each), the rule that decided (reason code and its section of
docs/reasons.md) and what unblocks it. Read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from governor.commands import EXIT_ERROR, EXIT_POLICY_INVALID, CommandError, repos
from governor.commands.hints import hold_hint, reason_anchor
from governor.commands.status import ShaStatus, sha_status
from governor.ledger import Evaluation
from governor.policy import POLICY_PATH, Policy, parse_policy
from governor.state import ReleaseState
from governor.store import ObjectStore


@dataclass(frozen=True, slots=True)
class StoredEvaluation:
    at: datetime
    trigger: str
    delivery: str | None
    outcome: str
    reason: str
    risk: str | None
    detail: str
    until: datetime | None
    inputs: dict[str, Any]
    """As the verification flow recorded them (docs/cli.md lists the keys)."""


@dataclass(frozen=True, slots=True)
class RiskPath:
    path: str
    risk: Literal["HIGH", "MEDIUM"]
    pattern: str | None
    """The pattern that classed it (the last matching one, gitignore rules), from the
    policy file given with `--policy`; None without it, or if that file does not class
    the path so. The policy file itself is HIGH whatever the patterns say."""


@dataclass(frozen=True, slots=True)
class Explanation:
    repo_id: int
    repo: str
    sha: str
    outcome: str
    reason: str
    docs: str
    """The section of docs/reasons.md for the reason code."""
    risk: str | None
    detail: str
    until: datetime | None
    unblock: str | None
    """What clears it (HOLD only): the generic hint, as the policy is not at hand."""
    decided_by: str | None
    """`trusted` (the trusted policy's decision) or `own` (the SHA's own, stricter)."""
    trusted_policy: str | None
    """Where the trusted policy was read: `production <sha>` or `refs/heads/<branch>`."""
    production_sha: str | None
    """Production when it was decided (the base of the risk)."""
    risk_unknown: bool
    paths: tuple[RiskPath, ...]
    notes: tuple[str, ...]
    degraded_labels: tuple[str, ...]
    superseded_by: str | None
    policy_problem: str | None
    own_policy_problem: str | None
    patterns_from: str | None
    """The `--policy` file the patterns were matched with."""
    total_evaluations: int
    """All evaluations ever recorded; the record keeps the first and the latest (50)."""
    evaluations: tuple[StoredEvaluation, ...]
    current: ShaStatus
    """Where the SHA stands now in the release state."""


def _stored(evaluation: Evaluation) -> StoredEvaluation:
    return StoredEvaluation(
        at=evaluation.at,
        trigger=evaluation.trigger,
        delivery=evaluation.delivery,
        outcome=evaluation.outcome,
        reason=evaluation.reason,
        risk=evaluation.risk,
        detail=evaluation.detail,
        until=evaluation.until,
        inputs=dict(evaluation.inputs),
    )


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def load_patterns(text: str, source: str) -> Policy:
    policy = parse_policy(text)
    if not isinstance(policy, Policy):
        message = f"{source}: cannot match patterns with it: {policy}"
        raise CommandError(message, EXIT_POLICY_INVALID)
    return policy


def _pattern(policy: Policy | None, path: str, risk: str) -> str | None:
    if policy is None:
        return None
    if risk == "HIGH" and path == POLICY_PATH:
        return POLICY_PATH
    spec = policy.high_risk_spec if risk == "HIGH" else policy.medium_risk_spec
    patterns = policy.high_risk_paths if risk == "HIGH" else policy.medium_risk_paths
    result = spec.check_file(path)
    if not result.include or result.index is None:
        return None
    return patterns[result.index]


def explain(
    store: ObjectStore,
    state: ReleaseState,
    sha: str,
    *,
    policy: Policy | None = None,
    policy_source: str | None = None,
) -> Explanation:
    record = repos.read_decision(store, state.repo_id, sha)
    latest = record.latest if record is not None else None
    if record is None or latest is None:
        raise CommandError(
            f"no decision recorded for {sha} in {state.repo} (never verified on the default "
            "branch, or the record expired)",
            EXIT_ERROR,
        )
    inputs = latest.inputs
    paths = tuple(
        RiskPath(path, "HIGH", _pattern(policy, path, "HIGH"))
        for path in _strings(inputs.get("high_paths"))
    ) + tuple(
        RiskPath(path, "MEDIUM", _pattern(policy, path, "MEDIUM"))
        for path in _strings(inputs.get("medium_paths"))
    )
    held = latest.outcome == "HOLD"
    return Explanation(
        repo_id=state.repo_id,
        repo=state.repo,
        sha=sha,
        outcome=latest.outcome,
        reason=latest.reason,
        docs=reason_anchor(latest.reason),
        risk=latest.risk,
        detail=latest.detail,
        until=latest.until,
        unblock=hold_hint(latest.reason, latest.until, latest.detail) if held else None,
        decided_by=_text(inputs.get("decided_by")),
        trusted_policy=_text(inputs.get("trusted_policy")),
        production_sha=_text(inputs.get("production_sha")),
        risk_unknown=inputs.get("risk_unknown") is True,
        paths=paths,
        notes=_strings(inputs.get("notes")),
        degraded_labels=_strings(inputs.get("degraded_labels")),
        superseded_by=_text(inputs.get("superseded_by")),
        policy_problem=_text(inputs.get("policy_problem")),
        own_policy_problem=_text(inputs.get("own_policy_problem")),
        patterns_from=policy_source if policy is not None else None,
        total_evaluations=record.total_evaluations,
        evaluations=tuple(_stored(e) for e in record.evaluations),
        current=sha_status(store, state, sha),
    )

"""`governor explain REPO SHA`: why a SHA was decided as it was, from its decision record.

The stored evaluations (newest last), the inputs the verification flow kept with the
latest one, the paths behind the risk with the pattern that classed each (from the
policy text the record keeps, or from a `--policy` file, which takes precedence), the
rule that decided (reason code and its section of docs/reasons.md) and what unblocks it.
Read-only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from governor.commands import EXIT_ERROR, EXIT_POLICY_INVALID, CommandError, repos
from governor.commands.hints import hold_hint, reason_anchor
from governor.commands.status import ShaStatus, sha_status
from governor.ledger import Evaluation
from governor.page.patterns import RiskPolicy, matched_paths
from governor.policy import Policy, parse_policy
from governor.state import ReleaseState
from governor.store import ObjectStore


class StoredEvaluation(msgspec.Struct, frozen=True):
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


class RiskPath(msgspec.Struct, frozen=True):
    path: str
    risk: Literal["HIGH", "MEDIUM"]
    pattern: str | None
    """The pattern that classed it (the last matching one, gitignore rules): from the
    `--policy` file when one is given, else from the policy text the decision record
    keeps (the one whose risk the evaluation reports). None: the record keeps no policy
    text (an older record, an evaluation the rules did not make), or the `--policy` file
    does not class the path so."""


class Explanation(msgspec.Struct, frozen=True):
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
    """Where the patterns are from: the `--policy` file, or the stored policy (which one,
    and where the trusted policy was read); None: nowhere, no pattern is named."""
    patterns_policy: Literal["file", "trusted", "own"] | None
    """`file` (`--policy`), `trusted` or `own` (the policy text the record keeps), None."""
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


def _patterns_from(
    policy: Policy | None, source: str | None, stored: RiskPolicy | None
) -> tuple[str | None, Literal["file", "trusted", "own"] | None]:
    if policy is not None:
        return source or "the --policy file", "file"
    if stored is not None:
        return stored.describe(), stored.whose
    return None, None


def explain(
    store: ObjectStore,
    state: ReleaseState,
    sha: str,
    *,
    policy: Policy | None = None,
    policy_source: str | None = None,
) -> Explanation:
    """Why `sha` was decided as it was. The pattern behind each path comes from `policy`
    (the `--policy` file read from `policy_source`) when given, else from the policy text
    the record keeps for the latest evaluation, else none is named."""
    record = repos.read_decision(store, state.repo_id, sha)
    latest = record.latest if record is not None else None
    if record is None or latest is None:
        raise CommandError(
            f"no decision recorded for {sha} in {state.repo} (never verified on the default "
            "branch, or the record expired)",
            EXIT_ERROR,
        )
    inputs = latest.inputs
    matched, stored = matched_paths(record, latest, policy)
    paths = tuple(RiskPath(m.path, m.level, m.pattern) for m in matched)
    patterns_from, patterns_policy = _patterns_from(policy, policy_source, stored)
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
        patterns_from=patterns_from,
        patterns_policy=patterns_policy,
        total_evaluations=record.total_evaluations,
        evaluations=tuple(_stored(e) for e in record.evaluations),
        current=sha_status(store, state, sha),
    )

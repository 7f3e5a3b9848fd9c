"""What a flow did, as typed values. `functions/main.py` turns them into HTTP answers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from governor.decision import Outcome
from governor.ledger import Evaluation


class Kind(StrEnum):
    """The `result` of an answer: API, like reason codes."""

    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    IN_PROGRESS = "in_progress"
    DECIDED = "decided"
    UNCHANGED = "unchanged"
    REDISPATCHED = "redispatched"
    IN_PRODUCTION = "in_production"
    ALREADY_DISPATCHED = "already_dispatched"
    DISPATCH_IN_PROGRESS = "dispatch_in_progress"
    DISPATCH_RECOVERED = "dispatch_recovered"
    DEPLOYED = "deployed"
    DEPLOY_FAILED = "deploy_failed"
    DEPLOY_NOT_FAILED = "deploy_not_failed"
    DEPLOY_CANCELLED = "deploy_cancelled"
    DEPLOY_SUPERSEDED = "deploy_superseded"
    DUPLICATE_RUN = "duplicate_run"
    APPROVED = "approved"
    REJECTED = "rejected"
    POLICY_REVIEWED = "policy_reviewed"


class PolicyVerdict(StrEnum):
    """What a pull request's policy file means against the trusted policy: API, like
    reason codes (docs/policy.md, "Pull requests that change the policy")."""

    INVALID = "invalid"
    """The file is not a valid policy: `failure`, naming the key."""
    REMOVED = "removed"
    """The file is deleted: `failure` if a trusted policy governs the repository."""
    RELAXES = "relaxes"
    """Valid, and some key relaxes (or may relax) the trusted policy: `failure`."""
    VALID = "valid"
    """Valid, and nothing relaxes the trusted policy (or nothing governs yet): `success`."""


class Ignored(msgspec.Struct, frozen=True):
    """Nothing to do with this delivery, and why."""

    why: str
    kind: Kind = Kind.IGNORED


class Duplicate(msgspec.Struct, frozen=True):
    """Processed already: what was recorded then."""

    outcome: Mapping[str, Any] | None
    kind: Kind = Kind.DUPLICATE


class InProgress(msgspec.Struct, frozen=True):
    """Another instance holds the claim until `until`."""

    until: datetime
    kind: Kind = Kind.IN_PROGRESS


class Evaluated(msgspec.Struct, frozen=True):
    """A SHA was evaluated (or found dispatched, deployed, or being dispatched already)."""

    kind: Kind
    sha: str
    decision: Outcome | None = None
    reason: str | None = None
    dispatch: str | None = None
    """What the dispatch step did, in words."""
    run_id: int | None = None
    record: Evaluation | None = None
    """The evaluation, when the caller records it (with the claim's finish): not answered,
    and not compared: two results that answer the same are equal (and hash alike)."""

    def _answered(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__struct_fields__ if name != "record")

    def __eq__(self, other: object) -> bool:
        if type(other) is not Evaluated:
            return NotImplemented
        return self._answered() == other._answered()

    def __hash__(self) -> int:
        return hash(self._answered())


class DeployOutcome(msgspec.Struct, frozen=True):
    """A deploy run of the governor's completed."""

    kind: Kind
    sha: str
    conclusion: str
    run_id: int
    issue: int | None = None
    appended: bool | None = None


class Approved(msgspec.Struct, frozen=True):
    """An approval was recorded and the SHAs it covers were evaluated again."""

    by: str
    evaluations: Mapping[str, Evaluated | Ignored] = msgspec.field(default_factory=dict)
    kind: Kind = Kind.APPROVED


class Reviewed(msgspec.Struct, frozen=True):
    """The answer given to a deployment protection rule request."""

    approved: bool
    run_id: int
    attempt: int
    sha: str | None
    reason: str
    comment: str

    @property
    def kind(self) -> Kind:
        return Kind.APPROVED if self.approved else Kind.REJECTED


class PolicyReviewed(msgspec.Struct, frozen=True):
    """The policy file of a pull request was reviewed and its status posted on the head."""

    sha: str
    pull: int
    verdict: PolicyVerdict
    state: str
    description: str
    keys: tuple[str, ...] = ()
    """The policy keys the description names (relaxed ones for `relaxes`)."""
    kind: Kind = Kind.POLICY_REVIEWED


FlowResult = (
    Ignored
    | Duplicate
    | InProgress
    | Evaluated
    | DeployOutcome
    | Approved
    | Reviewed
    | PolicyReviewed
)


def to_json(result: FlowResult) -> dict[str, Any]:
    """The result as a JSON object: `result` is the kind; empty fields are left out."""
    body: dict[str, Any] = {"result": result.kind.value}
    for name in result.__struct_fields__:  # in field order
        value = getattr(result, name)
        if name in ("kind", "approved", "record") or value is None:
            continue
        if isinstance(value, Mapping) and name == "evaluations":
            value = {sha: to_json(e) for sha, e in value.items()}
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Outcome | PolicyVerdict):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        body[name] = value
    return body

"""`governor status [REPO]`: where each repository stands, from its release state.

Production and when it got there, what is in flight (dispatches with their runs), each
held SHA with its reason, when it clears and what unblocks it, recent deploy failures,
an emergency freeze and a declared degradation, and the last of each lifted by hand (who
lifted it, when and why). Read-only: one read per repository (plus one per held SHA for
its decision's detail).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

import msgspec

from governor.commands import repos
from governor.commands.hints import hold_hint, reason_anchor
from governor.ledger import Ledger
from governor.state import Dispatch, EmergencyFreeze, ReleaseState
from governor.state import Lifted as LiftedRecord
from governor.store import ObjectStore

ShaState = Literal[
    "production", "in_flight", "held", "failed", "previous_production", "decided", "unknown"
]
GOING_OUT: Final = frozenset({"production", "in_flight"})
"""`status REPO --sha SHA` exits 0 for these, 3 (held / not allowed) for the others."""


class InFlight(msgspec.Struct, frozen=True):
    sha: str
    dispatched_at: datetime
    workflow: str | None
    ref: str | None
    run_id: int | None
    """None: the dispatch intent is recorded but its run was not found yet."""
    run_url: str | None


class Held(msgspec.Struct, frozen=True):
    sha: str
    reason: str
    since: datetime
    until: datetime | None
    """When the hold ends by itself (freeze, cooldown, rate limit); None: it does not."""
    due: bool
    """`until` has passed: the next reconcile (every 5 minutes) evaluates it again."""
    detail: str | None
    """The decision's one-line detail, from its latest evaluation (None: no record)."""
    unblock: str
    docs: str
    approvals: tuple[str, ...]


class FailedDeploy(msgspec.Struct, frozen=True):
    sha: str
    last_at: datetime
    count: int
    conclusion: str
    issue_number: int | None


class Freeze(msgspec.Struct, frozen=True):
    by: str
    reason: str
    since: datetime
    until: datetime | None
    active: bool


class Lifted(msgspec.Struct, frozen=True):
    """A freeze or a declared degradation lifted by hand (`off`): what it was (`by`,
    `reason`, `since`, `until`) and who lifted it, when and why."""

    by: str
    reason: str
    since: datetime
    until: datetime | None
    lifted_by: str
    lifted_identity: str | None
    """Who the store's credentials belonged to, where the backend could tell."""
    lifted_reason: str
    lifted_at: datetime


class ShaStatus(msgspec.Struct, frozen=True):
    sha: str
    state: ShaState
    going_out: bool
    """In production, or its deploy is dispatched: exit 0; otherwise exit 3."""
    reason: str | None
    """The hold's reason, or the latest evaluation's for `decided`."""
    outcome: str | None
    """The latest evaluation's outcome (ALLOW, HOLD, IGNORE), None without a record."""


class RepoStatus(msgspec.Struct, frozen=True):
    repo_id: int
    repo: str
    state_version: int
    production_sha: str | None
    production_at: datetime | None
    production_previous_sha: str | None
    in_flight: tuple[InFlight, ...]
    held: tuple[Held, ...]
    failures: tuple[FailedDeploy, ...]
    emergency_freeze: Freeze | None
    sha: ShaStatus | None = None
    """What `--sha` asked about."""
    global_freeze: Freeze | None = None
    """The freeze of every repository (`governor freeze --all`), if one is set."""
    degraded: Declared | None = None
    """Production declared degraded with `governor degraded`."""
    freeze_lifted: Lifted | None = None
    """The last emergency freeze of the repository lifted by hand."""
    global_freeze_lifted: Lifted | None = None
    """The last freeze of every repository lifted by hand."""
    degraded_lifted: Lifted | None = None
    """The last declared degradation taken back."""


class Declared(msgspec.Struct, frozen=True):
    by: str
    reason: str
    since: datetime


class RepoLine(msgspec.Struct, frozen=True):
    repo_id: int
    repo: str
    production_sha: str | None
    production_at: datetime | None
    in_flight: int
    held: int
    frozen: bool


class Overview(msgspec.Struct, frozen=True):
    store: str
    repositories: tuple[RepoLine, ...]
    global_freeze: Freeze | None = None
    global_freeze_lifted: Lifted | None = None


def in_flight(state: ReleaseState) -> tuple[Dispatch, ...]:
    """Live dispatches newer than production's own, of SHAs other than production."""
    start = 0
    if state.production_sha is not None:
        own = [i for i, d in enumerate(state.dispatches) if d.sha == state.production_sha]
        start = own[-1] + 1 if own else 0
    return tuple(
        d
        for d in state.dispatches[start:]
        if d.sha != state.production_sha and state.dispatch_for(d.sha) == d
    )


def _frozen(state: ReleaseState, now: datetime) -> Freeze | None:
    return _freeze(state.emergency_freeze, now)


def _freeze(freeze: EmergencyFreeze | None, now: datetime) -> Freeze | None:
    if freeze is None:
        return None
    return Freeze(freeze.by, freeze.reason, freeze.at, freeze.until, freeze.active(now))


def _global(store: ObjectStore, now: datetime) -> tuple[Freeze | None, Lifted | None]:
    record = Ledger(store).read_global_record()
    return _freeze(record.freeze, now), _lifted(record.last_lifted)


def _lifted(lifted: LiftedRecord | None) -> Lifted | None:
    if lifted is None:
        return None
    return Lifted(
        by=lifted.by,
        reason=lifted.reason,
        since=lifted.at,
        until=lifted.until,
        lifted_by=lifted.lifted_by,
        lifted_identity=lifted.lifted_identity,
        lifted_reason=lifted.lifted_reason,
        lifted_at=lifted.lifted_at,
    )


def repo_status(
    store: ObjectStore, state: ReleaseState, now: datetime, sha: str | None = None
) -> RepoStatus:
    held = []
    for hold in sorted(state.holds.values(), key=lambda h: h.at, reverse=True):
        record = repos.read_decision(store, state.repo_id, hold.sha)
        latest = record.latest if record is not None else None
        detail = latest.detail if latest is not None and latest.reason == hold.reason else None
        held.append(
            Held(
                sha=hold.sha,
                reason=hold.reason,
                since=hold.at,
                until=hold.until,
                due=hold.until is not None and hold.until <= now,
                detail=detail,
                unblock=hold_hint(hold.reason, hold.until, detail or ""),
                docs=reason_anchor(hold.reason),
                approvals=tuple(a.by for a in state.approvals_for(hold.sha)),
            )
        )
    flying = tuple(
        InFlight(d.sha, d.at, d.workflow, d.ref, d.run_id, d.run_url) for d in in_flight(state)
    )
    everywhere, everywhere_lifted = _global(store, now)
    failures = tuple(
        FailedDeploy(f.sha, f.last_at, f.count, f.conclusion, f.issue_number)
        for f in sorted(state.failures.values(), key=lambda f: f.last_at, reverse=True)
    )
    return RepoStatus(
        repo_id=state.repo_id,
        repo=state.repo,
        state_version=state.version,
        production_sha=state.production_sha,
        production_at=state.production_at,
        production_previous_sha=state.production_previous_sha,
        in_flight=flying,
        held=tuple(held),
        failures=failures,
        emergency_freeze=_frozen(state, now),
        sha=None if sha is None else sha_status(store, state, sha),
        global_freeze=everywhere,
        degraded=(
            Declared(state.degraded.by, state.degraded.reason, state.degraded.at)
            if state.degraded is not None
            else None
        ),
        freeze_lifted=_lifted(state.freeze_lifted),
        global_freeze_lifted=everywhere_lifted,
        degraded_lifted=_lifted(state.degraded_lifted),
    )


def sha_status(store: ObjectStore, state: ReleaseState, sha: str) -> ShaStatus:
    """Where one SHA stands; `going_out` when it is in production or dispatched."""
    record = repos.read_decision(store, state.repo_id, sha)
    latest = record.latest if record is not None else None
    outcome = latest.outcome if latest is not None else None
    hold = state.holds.get(sha)
    kind: ShaState
    reason = latest.reason if latest is not None else None
    if sha == state.production_sha:
        kind = "production"
    elif any(d.sha == sha for d in in_flight(state)):
        kind = "in_flight"
    elif hold is not None:
        kind, reason = "held", hold.reason
    elif sha in state.failures:
        kind = "failed"
    elif sha == state.production_previous_sha:
        kind = "previous_production"
    elif latest is not None:
        kind = "decided"
    else:
        kind = "unknown"
    return ShaStatus(sha, kind, kind in GOING_OUT, reason, outcome)


def overview(store: ObjectStore, now: datetime) -> Overview:
    lines = []
    for state in repos.all_states(store):
        freeze = _frozen(state, now)
        lines.append(
            RepoLine(
                repo_id=state.repo_id,
                repo=state.repo,
                production_sha=state.production_sha,
                production_at=state.production_at,
                in_flight=len(in_flight(state)),
                held=len(state.holds),
                frozen=freeze is not None and freeze.active,
            )
        )
    return Overview(store.url, tuple(lines), *_global(store, now))

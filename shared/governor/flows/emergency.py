"""What operators declare by hand: an emergency freeze (of one repository or of every
one) and a degraded production. Each is one conditional write; the rules read it.

A repository's freeze and its degraded production live in its release state, so the
write that commits a decision sees them. The freeze of every repository is one record
(`global/freeze.json`), read with every evaluation's facts and again right before every
dispatch (`verification.frozen_at_dispatch`). Lifting either leaves the SHAs it held to
be evaluated again: by reconcile within minutes, or at once by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from governor import state as transitions
from governor.decision import Reason
from governor.ledger import Ledger
from governor.state import DegradedDeclared, EmergencyFreeze, ReleaseState


@dataclass(frozen=True, slots=True)
class Declared:
    """What a declaration changed: the value before and after, and the SHAs held for it."""

    before: EmergencyFreeze | DegradedDeclared | None
    after: EmergencyFreeze | DegradedDeclared | None
    held: tuple[tuple[int, str], ...] = ()
    """(repository id, SHA) of the holds that may clear now it is lifted."""

    @property
    def changed(self) -> bool:
        return self.before != self.after


def freeze_repo(
    ledger: Ledger, repo_id: int, repo: str, freeze: EmergencyFreeze | None, now: datetime
) -> Declared:
    """Set (or lift, with None) the emergency freeze of one repository."""
    before: list[ReleaseState] = []

    def apply(state: ReleaseState) -> ReleaseState:
        before[:] = [state]
        return transitions.emergency_freeze_set(state, freeze, now)

    after = ledger.transition(repo_id, repo, apply)
    return Declared(
        before[0].emergency_freeze, after.emergency_freeze, _held(after, Reason.FREEZE_WINDOW)
    )


def freeze_all(ledger: Ledger, freeze: EmergencyFreeze | None) -> Declared:
    """Set (or lift) the freeze of every repository."""
    return Declared(ledger.set_global_freeze(freeze), freeze)


def degraded(
    ledger: Ledger, repo_id: int, repo: str, declared: DegradedDeclared | None, now: datetime
) -> Declared:
    """Declare production degraded by hand (or take it back, with None)."""
    before: list[ReleaseState] = []

    def apply(state: ReleaseState) -> ReleaseState:
        before[:] = [state]
        return transitions.degraded_set(state, declared, now)

    after = ledger.transition(repo_id, repo, apply)
    held = _held(after, Reason.DEGRADED_HIGH_RISK) + _held(after, Reason.DEGRADED_MEDIUM_HOLD)
    return Declared(before[0].degraded, after.degraded, held)


def _held(state: ReleaseState, reason: Reason) -> tuple[tuple[int, str], ...]:
    return tuple(
        (state.repo_id, sha) for sha, hold in sorted(state.holds.items()) if hold.reason == reason
    )

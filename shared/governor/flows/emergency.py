"""What operators declare by hand: an emergency freeze (of one repository or of every
one) and a degraded production. Each is one conditional write; the rules read it.

A repository's freeze and its degraded production live in its release state, so the
write that commits a decision sees them. The freeze of every repository is one record
(`global/freeze.json`), read with every evaluation's facts and again right before every
dispatch (`verification.frozen_at_dispatch`). Lifting either leaves the SHAs it held to
be evaluated again: by reconcile within minutes, or at once by the caller. A freeze with
an end holds its SHAs until that end (`Hold.until`); lifted or replaced before it, those
holds are made due at once, so the next reconcile decides them again under what is in
force then (a freeze with no end is due once none is in force: `reconcile_cursor`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final

import msgspec

from governor import state as transitions
from governor.decision import Reason
from governor.ledger import Ledger
from governor.state import DegradedDeclared, EmergencyFreeze, ReleaseState

_STATE_KEY: Final = re.compile(r"repos/([0-9]+)/state\.json")


class Declared(msgspec.Struct, frozen=True):
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
        after = transitions.emergency_freeze_set(state, freeze, now)
        if state.emergency_freeze != freeze:
            after = _ended(after, state.emergency_freeze, now)
        return after

    after = ledger.transition(repo_id, repo, apply)
    return Declared(
        before[0].emergency_freeze, after.emergency_freeze, _held(after, Reason.FREEZE_WINDOW)
    )


def freeze_all(ledger: Ledger, freeze: EmergencyFreeze | None, now: datetime) -> Declared:
    """Set (or lift) the freeze of every repository. Lifted or replaced before its end,
    the holds it left with that end in every repository are made due now."""
    before = ledger.set_global_freeze(freeze)
    if before is not None and before != freeze and before.until is not None:
        for key in ledger.store.list("repos/"):
            found = _STATE_KEY.fullmatch(key)
            if found is None:
                continue
            repo_id = int(found.group(1))
            state = ledger.read_state(repo_id, "")
            if _ended(state, before, now) is not state:
                ledger.transition(repo_id, state.repo, lambda s: _ended(s, before, now))
    return Declared(before, freeze)


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


def _ended(state: ReleaseState, ended: EmergencyFreeze | None, now: datetime) -> ReleaseState:
    """`state` with the holds a freeze with an end left (`freeze_window` until that end)
    made due now: that freeze is lifted or replaced, so they are decided again."""
    if ended is None or ended.until is None or ended.until <= now:
        return state
    for sha, hold in sorted(state.holds.items()):
        if hold.reason == Reason.FREEZE_WINDOW.value and hold.until == ended.until:
            state = transitions.hold_recorded(state, sha, hold.reason, now, now)
    return state


def _held(state: ReleaseState, reason: Reason) -> tuple[tuple[int, str], ...]:
    return tuple(
        (state.repo_id, sha) for sha, hold in sorted(state.holds.items()) if hold.reason == reason
    )

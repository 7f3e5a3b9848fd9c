"""What reconcile remembers between runs, and what it finds due in a repository. Pure.

One document (`reconcile/cursor.json`) holds, per repository, what a conditional request
needs to ask GitHub "anything new?" for free (an unchanged answer, a 304, costs no rate
limit), where the round-robin sweep stopped, and the redelivery bookkeeping. Losing it
costs requests, never correctness: every action reconcile takes is decided again on the
release state, under the same conditional writes as a webhook's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from governor.state import Hold, ReleaseState

CURSOR_KEY: Final = "reconcile/cursor.json"
REDELIVERY_WINDOW: Final = timedelta(days=3)
"""GitHub redelivers deliveries of the last 3 days only."""
MAX_REDELIVERIES_PER_GUID: Final = 3
POLICY_REFRESH: Final = timedelta(hours=24)
"""How long the verification workflow read from the trusted policy is trusted without a
new read, while production does not move (a deploy always reads it again); each
repository's refresh is staggered by up to as long again, so they do not fall due in
one run."""
VERIFY_WINDOW: Final = timedelta(hours=2)
"""After a push, how long the verification workflow's runs are looked at: a repository
with no push for this long has no verification to catch up, and costs no request."""
TIME_HOLDS: Final = frozenset({"cooldown", "rate_limit", "freeze_window"})
EVENT_HOLDS: Final = frozenset({"degraded_high_risk", "degraded_medium_hold", "governor_error"})
"""Holds that an outside change may clear (an incident issue closed) or that are retried."""
APPROVAL_HOLDS: Final = frozenset(
    {"high_risk_no_approval", "first_deploy_required", "risk_unknown"}
)


class _Doc(BaseModel):
    # Built on first use: a cold start builds only the models its event needs.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class RepoWatch(_Doc):
    full_name: str
    workflow: str | None = None
    """The trusted policy's verification workflow file; None: not governed, or named by
    workflow name (reconcile can only list runs of a workflow file)."""
    governed: bool = False
    policy_read_at: datetime | None = None
    policy_production_sha: str | None = None
    """Production when the policy was read: when production moves, it is read again."""
    runs_etag: str | None = None
    newest_run_id: int | None = None
    pushed_at: str | None = None
    """GitHub's `pushed_at` when it was last seen to change, and when (our clock)."""
    pushed_seen_at: datetime | None = None


class Redelivered(_Doc):
    count: int
    first_at: datetime
    """When GitHub first tried the delivery: after REDELIVERY_WINDOW it cannot be redone."""


class ReconcileCursor(_Doc):
    schema_version: Literal[1] = 1
    next_repo: int = 0
    """Index into the sorted repository ids where the next sweep starts (round-robin)."""
    repos: dict[str, RepoWatch] = Field(default_factory=dict)
    deliveries_since: datetime | None = None
    """Deliveries older than this were all settled (delivered, redelivered, or given up)."""
    redelivered: dict[str, Redelivered] = Field(default_factory=dict)
    expired_at: datetime | None = None


def policy_stale(watch: RepoWatch | None, state: ReleaseState, now: datetime, repo_id: int) -> bool:
    if watch is None or watch.policy_read_at is None:
        return True
    stagger = POLICY_REFRESH * ((repo_id * 2654435761 % 2**32) / 2**32)
    return (
        watch.policy_production_sha != state.production_sha
        or now - watch.policy_read_at >= POLICY_REFRESH + stagger
    )


def runs_worth_asking(watch: RepoWatch, pushed_at: str | None, now: datetime) -> bool:
    """Whether the verification runs may show something new: GitHub says nothing of the
    repository's pushes (`pushed_at` None), it was pushed to since it was last seen, or
    that push is recent enough for its verification to be running still."""
    if pushed_at is None or watch.pushed_at != pushed_at or watch.pushed_seen_at is None:
        return True
    return now - watch.pushed_seen_at < VERIFY_WINDOW


def seen_push(watch: RepoWatch, pushed_at: str | None, now: datetime) -> RepoWatch:
    if pushed_at is None or watch.pushed_at == pushed_at:
        return watch
    return watch.model_copy(update={"pushed_at": pushed_at, "pushed_seen_at": now})


def due_holds(
    state: ReleaseState, now: datetime, limit: int, *, frozen_everywhere: bool = False
) -> list[Hold]:
    """Held SHAs whose reason may have cleared, newest first, at most `limit`.

    Time holds once their time has passed; an emergency freeze with no end once no
    operator freeze is in force (`frozen_everywhere`: the freeze of every repository);
    degraded holds and governor errors every time (the incident may be over, the error
    may not happen again); approval holds when an approval is recorded or production
    moved since. Superseded SHAs are not held.
    """
    freeze = state.emergency_freeze
    unfrozen = not frozen_everywhere and (freeze is None or not freeze.active(now))
    due = []
    for hold in state.holds.values():
        if hold.sha == state.production_sha:
            continue
        moved = state.production_at is not None and state.production_at > hold.at
        approved = any(a.at >= hold.at for a in state.approvals_for(hold.sha))
        time_passed = hold.until is not None and hold.until <= now
        lifted = hold.reason == "freeze_window" and hold.until is None and unfrozen
        if (
            (hold.reason in TIME_HOLDS and (time_passed or moved or lifted))
            or hold.reason in EVENT_HOLDS
            or (hold.reason in APPROVAL_HOLDS and (approved or moved))
        ):
            due.append(hold)
    due.sort(key=lambda h: h.at, reverse=True)
    return due[:limit]


def round_robin(ids: list[int], start: int, count: int) -> tuple[list[int], int]:
    """`count` ids from position `start` (wrapping), and where the next sweep starts."""
    if not ids:
        return [], 0
    start %= len(ids)
    count = min(count, len(ids))
    chosen = [ids[(start + i) % len(ids)] for i in range(count)]
    return chosen, (start + count) % len(ids)

"""One time budget for a whole request, carried by a context variable.

`github_webhook` handles each delivery `within(settings.webhook_deadline_s)`. Everything
that waits on its behalf bounds the wait by what is left: each GitHub request's timeout,
the client's retries and rate-limit waits, the store's lock waits, backoff pauses and
per-call timeouts. A wait that cannot end before the deadline is not started: the code
raises `DeadlineExceeded` instead, and the request answers 503 having decided nothing.
Outside `within()` (the `governor` command, reconcile) nothing is bounded here: the store
keeps its write timeout and GitHub requests their own timeout.

Once a request has been cut (`exceeded()` was called), the store writes on its way out,
in practice the release of its claim, get a short grace (`GRACE_S`) past the deadline, so
a redelivery can take the claim at once instead of waiting for its lease to run out.
GitHub calls get no grace.

The read wave's threads run in a copy of the submitting thread's context, so they share
the budget (the same object: a cut seen in one thread is seen in all).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

import msgspec

GRACE_S: Final = 1.0
"""How long the writes on the way out of a cut request (the claim's release) may still take."""


class DeadlineExceeded(Exception):
    """The request's time budget ran out before this step could finish (or start).

    Transient, like WriteContention: nothing was decided, the claim is released, and the
    delivery is done again by its redelivery (reconcile asks GitHub for it).
    """

    def __init__(self, what: str, budget_s: float) -> None:
        super().__init__(f"the request's time budget of {budget_s:g} s ran out {what}".strip())
        self.what = what
        self.budget_s = budget_s


class _Budget(msgspec.Struct):
    seconds: float
    expires_at: float  # time.monotonic()
    grace_s: float
    cut_until: float | None = None
    """Set when the request is first cut: the writes on its way out may run until then."""

    def remaining(self, grace: bool) -> float:
        end = self.expires_at
        if grace and self.cut_until is not None:
            end = max(end, self.cut_until)
        return max(0.0, end - time.monotonic())


_current: ContextVar[_Budget | None] = ContextVar("governor_request_deadline", default=None)


@contextmanager
def within(seconds: float, *, grace_s: float = GRACE_S) -> Iterator[None]:
    """Bound everything in the block (and the read waves it starts) by `seconds`.

    Nested, the tighter deadline wins: an inner block never extends an outer one.
    """
    if not seconds > 0:
        raise ValueError(f"a deadline needs a positive number of seconds, got {seconds!r}")
    outer = _current.get()
    expires_at = time.monotonic() + seconds
    if outer is not None and outer.expires_at <= expires_at:
        budget = outer  # the outer one binds: share it, and its cut
    else:
        budget = _Budget(seconds=seconds, expires_at=expires_at, grace_s=grace_s)
    token = _current.set(budget)
    try:
        yield
    finally:
        _current.reset(token)


def remaining(*, grace: bool = False) -> float | None:
    """Seconds left (never negative), or None when no deadline is set.

    `grace=True` is for store writes: once the request has been cut they may run on
    until the grace ends.
    """
    budget = _current.get()
    return None if budget is None else budget.remaining(grace)


def bounded(timeout_s: float, *, grace: bool = False) -> float:
    """`timeout_s`, or less if the deadline comes first."""
    left = remaining(grace=grace)
    return timeout_s if left is None else min(timeout_s, left)


def exceeded(what: str) -> DeadlineExceeded:
    """The error to raise when the deadline stops `what`; marks the request as cut."""
    budget = _current.get()
    if budget is None:  # only reachable by a caller's mistake; say so rather than crash
        return DeadlineExceeded(what, math.inf)
    if budget.cut_until is None:
        budget.cut_until = max(time.monotonic(), budget.expires_at) + budget.grace_s
    return DeadlineExceeded(what, budget.seconds)


def check(what: str = "", *, grace: bool = False) -> None:
    """Raise DeadlineExceeded if the deadline has passed (no-op without one)."""
    left = remaining(grace=grace)
    if left is not None and left <= 0:
        raise exceeded(what)


class Limit(msgspec.Struct, frozen=True):
    """A wait of at most some timeout, or less if the request's deadline comes first."""

    ends_at: float  # time.monotonic()
    by_deadline: bool
    """The deadline, not the timeout, is what ends the wait."""

    def remaining(self) -> float:
        return max(0.0, self.ends_at - time.monotonic())


def limit(timeout_s: float, *, grace: bool = False) -> Limit:
    """The end of a wait of `timeout_s` from now, bounded by the deadline."""
    left = remaining(grace=grace)
    now = time.monotonic()
    if left is not None and left <= timeout_s:
        return Limit(now + left, by_deadline=True)
    return Limit(now + timeout_s, by_deadline=False)

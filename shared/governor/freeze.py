"""Is a moment inside a freeze, and when does the freeze end? Pure.

Weekly windows are wall-clock times in the policy's time zone, so "Fri 16:00-24:00"
means 16:00 on the office clock in winter and in summer. On a daylight-saving change a
window keeps its wall-clock edges: it is an hour shorter or longer in real time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec

from governor.policy import FreezePolicy, WeeklyWindow

_DAY_MINUTES: Final = 24 * 60
_MAX_CHAIN: Final = 64  # adjoining windows followed to find the real end; a week has fewer


class Freeze(msgspec.Struct, frozen=True):
    reason: str
    until: datetime | None
    """When the freeze ends (UTC); None for an emergency freeze with no end set."""


def _local_minute(moment: datetime, policy: FreezePolicy) -> tuple[int, float, datetime]:
    """Weekday, minute of the day (with fraction) and local time of `moment`."""
    local = moment.astimezone(policy.zone)
    minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
    return local.weekday(), minute, local


def _window_end(window: WeeklyWindow, moment: datetime, policy: FreezePolicy) -> datetime | None:
    """If `window` covers `moment`, the UTC instant its current occurrence ends; else None."""
    weekday, minute, local = _local_minute(moment, policy)
    start, end = window.start_minute, window.end_minute
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if start < end:  # within one day
        if weekday in window.weekdays and start <= minute < end:
            return _first_reaching(midnight + timedelta(minutes=end), moment, policy)
        return None
    # Spans midnight: [start, 24:00) on a listed day, then [00:00, end) the day after.
    if weekday in window.weekdays and minute >= start:
        return _first_reaching(midnight + timedelta(days=1, minutes=end), moment, policy)
    if (weekday - 1) % 7 in window.weekdays and minute < end:
        return _first_reaching(midnight + timedelta(minutes=end), moment, policy)
    return None


def _first_reaching(wall: datetime, after: datetime, policy: FreezePolicy) -> datetime:
    """The first UTC instant after `after` at which the local wall clock reads `wall` or later.

    Usually one instant. When the clocks fall back, `wall` may occur twice: the first
    occurrence after `after` counts. When they spring forward, `wall` may not exist: the
    window then ends at the jump, found by bisection between the two readings.
    """
    zone = policy.zone
    readings = sorted({wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)})
    exists = readings[0].astimezone(zone).replace(tzinfo=None) == wall
    if exists:
        return next((r for r in readings if r > after), readings[-1])
    # The jump lies between the two readings; zone transitions fall on whole seconds.
    low, high = int(readings[0].timestamp()), int(readings[-1].timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _covering(policy: FreezePolicy, moment: datetime) -> list[tuple[str, datetime]]:
    """(reason, end) of every window and range that covers `moment`."""
    found = [
        (window.reason, end)
        for window in policy.weekly
        if (end := _window_end(window, moment, policy)) is not None
    ]
    found += [(r.reason, r.end.astimezone(UTC)) for r in policy.ranges if r.start <= moment < r.end]
    return found


def freeze_at(policy: FreezePolicy, now: datetime) -> Freeze | None:
    """The freeze in force at `now`, if any, and when it really ends.

    Adjoining or overlapping windows and ranges are followed until a moment that none
    covers: a Friday-evening window that runs into a weekend window ends on Monday.
    """
    covering = _covering(policy, now)
    if not covering:
        return None
    reason = covering[0][0]
    until = max(end for _reason, end in covering)
    for _ in range(_MAX_CHAIN):
        later = _covering(policy, until)
        if not later:
            break
        until = max(end for _reason, end in later)
    return Freeze(reason=reason, until=until)

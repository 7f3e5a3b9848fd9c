"""Freeze windows in the policy's time zone, across midnight and daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from governor.freeze import freeze_at
from governor.policy import FreezePolicy


def freeze(**raw: object) -> FreezePolicy:
    return FreezePolicy.model_validate(raw)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class TestSpringForward:
    """New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT. Window Sun 01:00-04:00 local."""

    policy = freeze(
        timezone="America/New_York",
        weekly=[{"days": ["sun"], "start": "01:00", "end": "04:00", "reason": "maintenance"}],
    )

    @pytest.mark.parametrize(
        "moment",
        [
            utc(2026, 3, 8, 6, 0),
            utc(2026, 3, 8, 6, 30),
            utc(2026, 3, 8, 7, 0),
            utc(2026, 3, 8, 7, 59),
        ],
    )
    def test_frozen_until_four_local_which_is_eight_utc(self, moment: datetime) -> None:
        found = freeze_at(self.policy, moment)
        assert found is not None and found.reason == "maintenance"
        assert found.until == utc(2026, 3, 8, 8, 0)

    def test_the_window_is_an_hour_shorter_in_real_time(self) -> None:
        assert freeze_at(self.policy, utc(2026, 3, 8, 5, 59)) is None  # 00:59 EST
        assert freeze_at(self.policy, utc(2026, 3, 8, 8, 0)) is None  # 04:00 EDT
        frozen_minutes = sum(
            freeze_at(self.policy, utc(2026, 3, 8, 5, 0) + timedelta(minutes=m)) is not None
            for m in range(240)
        )
        assert frozen_minutes == 120


class TestFallBack:
    """New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST. Window Sun 00:00-03:00 local."""

    policy = freeze(
        timezone="America/New_York",
        weekly=[{"days": ["sun"], "start": "00:00", "end": "03:00"}],
    )

    @pytest.mark.parametrize(
        "moment",
        [
            utc(2026, 11, 1, 4, 0),  # 00:00 EDT
            utc(2026, 11, 1, 5, 30),  # 01:30 EDT, first time
            utc(2026, 11, 1, 6, 30),  # 01:30 EST, second time
            utc(2026, 11, 1, 7, 59),  # 02:59 EST
        ],
    )
    def test_frozen_through_the_repeated_hour(self, moment: datetime) -> None:
        found = freeze_at(self.policy, moment)
        assert found is not None
        assert found.until == utc(2026, 11, 1, 8, 0)

    def test_the_window_is_an_hour_longer_in_real_time(self) -> None:
        assert freeze_at(self.policy, utc(2026, 11, 1, 3, 59)) is None
        assert freeze_at(self.policy, utc(2026, 11, 1, 8, 0)) is None
        frozen_minutes = sum(
            freeze_at(self.policy, utc(2026, 11, 1, 3, 0) + timedelta(minutes=m)) is not None
            for m in range(360)
        )
        assert frozen_minutes == 240


def test_window_across_midnight_belongs_to_the_day_it_starts() -> None:
    policy = freeze(
        timezone="Europe/Berlin", weekly=[{"days": ["fri"], "start": "22:00", "end": "06:00"}]
    )
    # Saturday 2026-11-28 05:00 in Berlin (UTC+1) is inside Friday's window.
    found = freeze_at(policy, utc(2026, 11, 28, 4, 0))
    assert found is not None and found.until == utc(2026, 11, 28, 5, 0)
    # Saturday 22:30 is not: Saturday is not listed.
    assert freeze_at(policy, utc(2026, 11, 28, 21, 30)) is None
    # Thursday night neither.
    assert freeze_at(policy, utc(2026, 11, 27, 3, 0)) is None


def test_adjoining_windows_are_followed_to_the_real_end() -> None:
    policy = freeze(
        timezone="UTC",
        weekly=[
            {"days": ["fri"], "start": "16:00", "end": "24:00", "reason": "weekend"},
            {"days": ["sat", "sun"], "start": "00:00", "end": "24:00", "reason": "weekend"},
        ],
    )
    found = freeze_at(policy, utc(2026, 11, 27, 17, 0))
    assert found is not None and found.until == utc(2026, 11, 30, 0, 0)


def test_one_off_range_ends_exactly_at_its_end() -> None:
    policy = freeze(
        ranges=[
            {
                "start": "2026-12-24T00:00:00+01:00",
                "end": "2026-12-27T00:00:00+01:00",
                "reason": "holidays",
            }
        ]
    )
    found = freeze_at(policy, utc(2026, 12, 25, 12, 0))
    assert found is not None and found.reason == "holidays"
    assert found.until == utc(2026, 12, 26, 23, 0)
    assert freeze_at(policy, utc(2026, 12, 26, 23, 0)) is None
    assert freeze_at(policy, utc(2026, 12, 23, 22, 59)) is None


def test_range_running_into_a_weekly_window_ends_when_both_are_over() -> None:
    policy = freeze(
        timezone="UTC",
        weekly=[{"days": ["mon"], "start": "00:00", "end": "09:00"}],
        ranges=[
            {"start": "2026-11-29T00:00:00Z", "end": "2026-11-30T02:00:00Z", "reason": "migration"}
        ],
    )
    found = freeze_at(policy, utc(2026, 11, 29, 12, 0))
    assert found is not None and found.reason == "migration"
    assert found.until == utc(2026, 11, 30, 9, 0)


def test_outside_every_window_is_not_frozen() -> None:
    policy = freeze(
        timezone="Asia/Tokyo", weekly=[{"days": ["mon"], "start": "09:00", "end": "10:00"}]
    )
    assert freeze_at(policy, utc(2026, 11, 30, 0, 30)) is not None  # Mon 09:30 JST
    assert freeze_at(policy, utc(2026, 11, 30, 1, 0)) is None  # Mon 10:00 JST
    assert freeze_at(policy, utc(2026, 11, 29, 0, 30)) is None  # Sun 09:30 JST


class TestEdgesInsideTheChangingHour:
    """Berlin, window Sun 01:00-02:30: 02:30 is skipped in spring and repeated in autumn."""

    policy = freeze(
        timezone="Europe/Berlin", weekly=[{"days": ["sun"], "start": "01:00", "end": "02:30"}]
    )

    def test_spring_a_skipped_end_ends_the_window_at_the_jump(self) -> None:
        # 2026-03-29: 02:00 CET (01:00 UTC) jumps to 03:00 CEST.
        found = freeze_at(self.policy, utc(2026, 3, 29, 0, 45))  # 01:45 CET
        assert found is not None and found.until == utc(2026, 3, 29, 1, 0)
        assert freeze_at(self.policy, utc(2026, 3, 29, 1, 0)) is None  # 03:00 CEST

    def test_autumn_a_repeated_end_counts_the_next_time_it_comes(self) -> None:
        # 2026-10-25: 03:00 CEST (01:00 UTC) falls back to 02:00 CET.
        first = freeze_at(self.policy, utc(2026, 10, 25, 0, 15))  # 02:15 CEST
        assert first is not None and first.until == utc(2026, 10, 25, 0, 30)
        second = freeze_at(self.policy, utc(2026, 10, 25, 1, 15))  # 02:15 CET, again
        assert second is not None and second.until == utc(2026, 10, 25, 1, 30)
        assert second.until > utc(2026, 10, 25, 1, 15)

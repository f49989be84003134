"""Shift calendars (core.calendar): shift_status across daylight-saving changes and on holidays."""

import datetime as dt
import zoneinfo

import numpy as np
import pytest

from core.calendar import (
    BREAK,
    DAY_S,
    IN_SHIFT,
    OFF_SHIFT,
    UNKNOWN,
    CalendarSpec,
    day_calendar,
    day_number,
    shift_status,
)

BERLIN = "Europe/Berlin"
EVERY_DAY = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NS = 1_000_000_000


def utc_ns(*args) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp()) * NS


def local_ns(tz: str, *args) -> int:
    return int(dt.datetime(*args, tzinfo=zoneinfo.ZoneInfo(tz)).timestamp()) * NS


def minutes(start: dt.date, days: int) -> np.ndarray:
    t0 = utc_ns(start.year, start.month, start.day)
    return t0 + np.arange(days * 1440, dtype=np.int64) * 60 * NS


def test_day_shift_keeps_local_times_across_spring_forward():
    cal = CalendarSpec(shifts=1, first_shift_start="06:00", shift_hours=8, breaks=[{"after_h": 2, "minutes": 30}],
                       workdays=EVERY_DAY)
    # Saturday 2026-03-28 is CET (UTC+1), Sunday 2026-03-29 CEST (UTC+2) from 02:00 local.
    times = np.array([
        utc_ns(2026, 3, 28, 4, 30), utc_ns(2026, 3, 29, 4, 30),    # 05:30 CET: before; 06:30 CEST: in the shift
        utc_ns(2026, 3, 28, 7, 10), utc_ns(2026, 3, 29, 6, 10),    # 08:10 local both days: the break
        utc_ns(2026, 3, 28, 12, 30), utc_ns(2026, 3, 29, 12, 30),  # 13:30 CET: in; 14:30 CEST: after
    ])
    assert shift_status(cal, BERLIN, times).tolist() == [OFF_SHIFT, IN_SHIFT, BREAK, BREAK, IN_SHIFT, OFF_SHIFT]


@pytest.mark.parametrize("night, hours", [((2026, 3, 28), 7.0), ((2026, 10, 24), 9.0), ((2026, 3, 21), 8.0)])
def test_night_shift_is_shorter_or_longer_across_dst(night, hours):
    cal = CalendarSpec(shifts=1, first_shift_start="22:00", shift_hours=8, breaks=[], workdays=EVERY_DAY)
    status = shift_status(cal, BERLIN, minutes(dt.date(*night), 2))
    start = local_ns(BERLIN, *night, 22, 0)
    grid = minutes(dt.date(*night), 2)
    night_minutes = (status == IN_SHIFT) & (grid >= start) & (grid < start + 12 * 3600 * NS)
    assert night_minutes.sum() == hours * 60
    assert status[np.searchsorted(grid, start)] == IN_SHIFT and status[np.searchsorted(grid, start) - 1] == OFF_SHIFT


def test_holiday_and_weekend_are_off_shift():
    holiday = dt.date(2026, 5, 1)  # a Friday
    cal = CalendarSpec(holidays=[holiday])  # two shifts from 06:00, Monday to Friday
    status = shift_status(cal, BERLIN, minutes(dt.date(2026, 4, 30), 4))  # Thu, Fri (holiday), Sat, Sun
    per_day = status.reshape(4, 1440)
    assert (per_day[1:] == OFF_SHIFT).all()
    assert (per_day[0] == IN_SHIFT).sum() == 2 * (8 * 60 - 45)  # two shifts minus 15 + 30 min breaks
    assert (per_day[0] == BREAK).sum() == 2 * 45
    without = shift_status(CalendarSpec(), BERLIN, minutes(holiday, 1))
    assert (without == IN_SHIFT).sum() == 2 * (8 * 60 - 45)


def test_status_agrees_with_day_calendar_and_keeps_shape():
    cal = CalendarSpec(shifts=3, first_shift_start="06:00", shift_hours=8, breaks=[{"after_h": 3.5, "minutes": 30}],
                       workdays=("mon", "tue", "wed", "thu", "fri", "sat"))
    start = dt.date(2026, 10, 19)
    grid = minutes(start, 14)  # two weeks including the October DST change
    status = shift_status(cal, "Europe/Madrid", grid)
    for d in range(14):
        dc = day_calendar(cal, "Europe/Madrid", day_number(start) + d)
        day = status[d * 1440:(d + 1) * 1440]
        assert (day == IN_SHIFT).sum() * 60 == pytest.approx((dc.work[:, 1] - dc.work[:, 0]).sum())
        assert (day == BREAK).sum() * 60 == pytest.approx((dc.breaks[:, 1] - dc.breaks[:, 0]).sum())
    shuffled = np.random.default_rng(1).permutation(grid).reshape(-1, 7)
    again = shift_status(cal, "Europe/Madrid", shuffled)
    assert again.shape == shuffled.shape and again.dtype == np.int8
    assert (again.reshape(-1) == status[np.searchsorted(grid, shuffled.reshape(-1))]).all()


def test_without_calendar_status_is_unknown():
    assert shift_status(None, BERLIN, [utc_ns(2026, 1, 5, 10)]).tolist() == [UNKNOWN]
    assert shift_status(CalendarSpec(), BERLIN, np.array([], dtype=np.int64)).shape == (0,)
    assert DAY_S == 86400

"""Shift calendars: when a line works, takes a break or stands still, in the site's local time.

A calendar (:class:`CalendarSpec`, part of the plant description in ``core.plant``) has ``shifts`` shifts of
``shift_hours`` hours starting at ``first_shift_start`` local time on each working day, with the same breaks in every
shift. Shifts are laid out on the local wall clock, so a night shift across a daylight-saving change lasts one hour
less (spring) or more (autumn) in real time.

Two views of the same rules:

- :func:`day_calendar` gives the work and break intervals of one UTC day in seconds after its UTC midnight (the
  simulator plans and renders with these);
- :func:`shift_status` classifies any timestamps [ns UTC] as :data:`OFF_SHIFT`, :data:`IN_SHIFT` or :data:`BREAK`
  (the analytics label their intervals with it).

Interval sets here are (k, 2) float arrays of [start, end) seconds; :func:`normalise`, :func:`clip`,
:func:`intersect` and :func:`subtract` are the one implementation of their arithmetic.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from core.config import FrozenModel

DAY_S = 86400
DAY_NS = DAY_S * 1_000_000_000
EPOCH = dt.date(1970, 1, 1)
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: :func:`shift_status` codes.
OFF_SHIFT = 0
IN_SHIFT = 1
BREAK = 2
#: :func:`shift_status` code for "no calendar known" (``cal`` is None).
UNKNOWN = -1
SHIFT_STATUS_NAMES = {UNKNOWN: "unknown", OFF_SHIFT: "off_shift", IN_SHIFT: "in_shift", BREAK: "break"}


class BreakSpec(FrozenModel):
    """A break within every shift: ``after_h`` hours [h] after the shift start, lasting ``minutes`` [min]."""

    after_h: float = Field(ge=0, le=12, description="Start of the break after the shift start [h].")
    minutes: float = Field(gt=0, le=120, description="Length of the break [min].")


class CalendarSpec(FrozenModel):
    """Shift calendar of a site or line (local time of the site)."""

    shifts: int = Field(2, ge=1, le=3, description="Shifts per working day (1-3).")
    first_shift_start: str = Field("06:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                                   description="Local start of the first shift (HH:MM); the others follow back to back.")
    shift_hours: float = Field(8.0, gt=0, le=12, description="Length of each shift [h] (local wall-clock hours).")
    breaks: tuple[BreakSpec, ...] = (BreakSpec(after_h=2.0, minutes=15), BreakSpec(after_h=4.0, minutes=30))
    workdays: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")
    holidays: tuple[dt.date, ...] = ()

    @model_validator(mode="after")
    def _fits(self) -> CalendarSpec:
        if self.shifts * self.shift_hours > 24:
            raise ValueError(f"{self.shifts} shifts of {self.shift_hours} h exceed 24 h; lower shifts or shift_hours")
        for brk in self.breaks:
            if brk.after_h + brk.minutes / 60 > self.shift_hours:
                raise ValueError(f"break after {brk.after_h} h lasting {brk.minutes} min ends after the shift")
        return self

    @property
    def start_s(self) -> int:
        """First shift start [s after local midnight]."""
        hours, minutes = self.first_shift_start.split(":")
        return int(hours) * 3600 + int(minutes) * 60


# -- days -----------------------------------------------------------------------------------------------------------------
def day_number(date: dt.date) -> int:
    """Days since 1970-01-01."""
    return (date - EPOCH).days


def day_date(day: int) -> dt.date:
    """The date of day number ``day`` (days since 1970-01-01)."""
    return EPOCH + dt.timedelta(days=int(day))


# -- interval sets --------------------------------------------------------------------------------------------------------
def normalise(intervals) -> np.ndarray:
    """Sort, drop empty and merge overlapping intervals; return an (k, 2) float array."""
    arr = np.asarray(intervals, dtype=float).reshape(-1, 2)
    arr = arr[arr[:, 1] > arr[:, 0]]
    if len(arr) == 0:
        return arr
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    merged = [list(arr[0])]
    for a, b in arr[1:]:
        if a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return np.asarray(merged, dtype=float)


def clip(intervals: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Intervals cut to ``[lo, hi)``; empty ones dropped."""
    arr = np.asarray(intervals, dtype=float).reshape(-1, 2).copy()
    arr[:, 0] = np.maximum(arr[:, 0], lo)
    arr[:, 1] = np.minimum(arr[:, 1], hi)
    return arr[arr[:, 1] > arr[:, 0]]


def intersect(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection of two normalised interval sets."""
    out = []
    for a0, a1 in a:
        for b0, b1 in b:
            lo, hi = max(a0, b0), min(a1, b1)
            if hi > lo:
                out.append((lo, hi))
    return normalise(out)


def subtract(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` minus ``b`` for normalised interval sets."""
    out = []
    for a0, a1 in a:
        pieces = [(a0, a1)]
        for b0, b1 in b:
            nxt = []
            for p0, p1 in pieces:
                if b1 <= p0 or b0 >= p1:
                    nxt.append((p0, p1))
                    continue
                if b0 > p0:
                    nxt.append((p0, b0))
                if b1 < p1:
                    nxt.append((b1, p1))
            pieces = nxt
        out.extend(pieces)
    return normalise(out)


# -- calendars ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DayCalendar:
    """Working time of one line on one UTC day, in seconds after the day's UTC midnight (clipped to the day).

    Attributes
    ----------
    work : ndarray (k, 2)
        Production time (shifts minus breaks) [s].
    breaks : ndarray (k, 2)
        Breaks within shifts [s].
    shift_starts, shift_ends : tuple of float
        Every shift start/end near the day [s] (may be outside [0, 86400) by up to a day for context).
    """

    work: np.ndarray
    breaks: np.ndarray
    shift_starts: tuple[float, ...]
    shift_ends: tuple[float, ...]

    @functools.cached_property
    def attended(self) -> np.ndarray:
        """Shifts including breaks [s] (read-only: the calendar is shared, see :func:`day_calendar`)."""
        return _read_only(normalise(np.concatenate([self.work, self.breaks])))


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


@functools.lru_cache(maxsize=4096)
def _wall_clock_s(midnight: dt.datetime, offset_s: float, day_start: float) -> float:
    """The instant ``offset_s`` of wall-clock time after a local ``midnight``, in seconds after ``day_start`` (UTC).

    Aware datetime + timedelta is wall-clock arithmetic: shifts keep their local times across DST.
    """
    return (midnight + dt.timedelta(seconds=offset_s)).timestamp() - day_start


def day_calendar(cal: CalendarSpec, timezone: str, day: int) -> DayCalendar:
    """Work and break intervals of a calendar on UTC day ``day`` (days since the epoch).

    Shifts are laid out in the site's local time (so a DST night shift is one hour shorter or longer) and converted to
    UTC; the night shift of the previous local day reaches into the morning. The answer is computed once per
    calendar, zone and day and shared (its arrays are read-only): the simulator asks for the same day many times
    (event planning, rendering, the intensity calibration's trial runs).

    Parameters
    ----------
    cal : CalendarSpec
        The calendar.
    timezone : str
        IANA time zone of the site.
    day : int
        UTC day [days since 1970-01-01].
    """
    return _day_calendar(cal, timezone, int(day))


@functools.lru_cache(maxsize=16384)
def _day_calendar(cal: CalendarSpec, timezone: str, day: int) -> DayCalendar:
    tz = zoneinfo.ZoneInfo(timezone)
    day_start = dt.datetime.combine(day_date(day), dt.time(), dt.UTC).timestamp()
    work, breaks, starts, ends = [], [], [], []
    for local in (day_date(day - 1), day_date(day), day_date(day + 1)):
        if WEEKDAYS[local.weekday()] not in cal.workdays or local in cal.holidays:
            continue
        at = functools.partial(_wall_clock_s, dt.datetime.combine(local, dt.time(), tz), day_start=day_start)
        for shift in range(cal.shifts):
            begin = cal.start_s + shift * cal.shift_hours * 3600
            s0, s1 = at(begin), at(begin + cal.shift_hours * 3600)
            starts.append(s0)
            ends.append(s1)
            shift_breaks = [(at(begin + b.after_h * 3600), at(begin + b.after_h * 3600 + b.minutes * 60)) for b in cal.breaks]
            breaks.extend(shift_breaks)
            work.extend(subtract(np.array([[s0, s1]]), normalise(shift_breaks)).tolist())
    return DayCalendar(
        _read_only(clip(normalise(work), 0, DAY_S)),
        _read_only(clip(normalise(breaks), 0, DAY_S)),
        tuple(s for s in starts if -DAY_S < s < 2 * DAY_S),
        tuple(e for e in ends if -DAY_S < e < 2 * DAY_S),
    )


def is_workday(cal: CalendarSpec, timezone: str, day: int) -> bool:
    """True when the date of day number ``day`` is a working day of the calendar (not a holiday)."""
    local = day_date(day)
    return WEEKDAYS[local.weekday()] in cal.workdays and local not in cal.holidays


def _inside(intervals: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """True where ``seconds`` fall in one of the normalised ``[start, end)`` intervals."""
    if len(intervals) == 0:
        return np.zeros(seconds.shape, dtype=bool)
    idx = np.searchsorted(intervals[:, 0], seconds, side="right") - 1
    return (idx >= 0) & (seconds < intervals[np.maximum(idx, 0), 1])


def shift_status(cal: CalendarSpec | None, tz: str, times_ns) -> np.ndarray:
    """Classify instants as off-shift, in a shift or in a break.

    Parameters
    ----------
    cal : CalendarSpec or None
        The calendar (a machine's is ``MachineRef.calendar``); None gives :data:`UNKNOWN` everywhere.
    tz : str
        IANA time zone of the site.
    times_ns : array-like of int
        Instants [ns since the epoch, UTC]; for an interval pass its start (or midpoint).

    Returns
    -------
    ndarray of int8
        :data:`OFF_SHIFT` (0), :data:`IN_SHIFT` (1, working time) or :data:`BREAK` (2, a break within a shift), the
        same shape as ``times_ns``.
    """
    times = np.asarray(times_ns, dtype=np.int64)
    if cal is None:
        return np.full(times.shape, UNKNOWN, dtype=np.int8)
    flat = times.reshape(-1)
    out = np.full(flat.shape, OFF_SHIFT, dtype=np.int8)
    if flat.size == 0:
        return out.reshape(times.shape)
    days = np.floor_divide(flat, DAY_NS)
    order = np.argsort(days, kind="stable")
    unique, starts = np.unique(days[order], return_index=True)
    bounds = np.append(starts, len(order))
    for day, lo, hi in zip(unique, bounds[:-1], bounds[1:]):
        idx = order[lo:hi]
        seconds = (flat[idx] - day * DAY_NS) / 1e9
        dc = day_calendar(cal, tz, int(day))
        status = np.where(_inside(dc.work, seconds), IN_SHIFT, OFF_SHIFT)
        status = np.where(_inside(dc.breaks, seconds), BREAK, status)
        out[idx] = status
    return out.reshape(times.shape)

"""Time: shift calendars, outdoor weather and interval arithmetic on simulation grids.

The simulator plans in continuous time (seconds after the start of a UTC day) and renders onto any grid. A grid is its
``edges`` [s]; the time a set of intervals covers within each step is ``diff(covered(intervals, edges))``, which keeps
energy exact at any resolution.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from dataclasses import dataclass

import numpy as np

from simulator.plant import WEEKDAYS, CalendarSpec, ClimateSpec

DAY_S = 86400
EPOCH = dt.date(1970, 1, 1)


def day_number(date: dt.date) -> int:
    """Days since 1970-01-01."""
    return (date - EPOCH).days


def day_date(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(day))


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A random generator keyed by the run seed and integers (stream, machine, day, ...): deterministic per key."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *[int(k) & 0xFFFFFFFF for k in keys]])


# -- intervals ----------------------------------------------------------------------------------------------------------
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


def covered(intervals: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Seconds of ``intervals`` (normalised) before each edge; exact for piecewise-constant signals."""
    arr = np.asarray(intervals, dtype=float).reshape(-1, 2)
    if len(arr) == 0:
        return np.zeros(len(edges))
    xp = arr.reshape(-1)
    fp = np.zeros(len(xp))
    lengths = arr[:, 1] - arr[:, 0]
    fp[1::2] = np.cumsum(lengths)
    fp[2::2] = fp[1:-1:2]
    return np.interp(edges, xp, fp)


def fraction(intervals: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Fraction of each grid step covered by ``intervals`` (0-1)."""
    return np.diff(covered(intervals, edges)) / np.diff(edges)


def piecewise_energy(bounds: np.ndarray, power_kw: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean power per grid step [kW] of a piecewise-constant power (``power_kw[i]`` on ``bounds[i]..bounds[i+1]``)."""
    cum = np.concatenate([[0.0], np.cumsum(np.diff(bounds) * power_kw)])
    return np.diff(np.interp(edges, bounds, cum)) / np.diff(edges)


# -- calendars ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DayCalendar:
    """Working time of one line on one UTC day, in seconds after the day's UTC midnight (clipped to the day).

    Attributes
    ----------
    work : ndarray (k, 2)
        Production time (shifts minus breaks).
    breaks : ndarray (k, 2)
        Breaks within shifts.
    shift_starts, shift_ends : tuple of float
        Every shift start/end falling within the day (may be outside [0, 86400) by up to a day for context).
    """

    work: np.ndarray
    breaks: np.ndarray
    shift_starts: tuple[float, ...]
    shift_ends: tuple[float, ...]

    @property
    def attended(self) -> np.ndarray:
        """Shifts including breaks."""
        return normalise(np.concatenate([self.work, self.breaks]))


@functools.lru_cache(maxsize=4096)
def day_calendar(cal: CalendarSpec, timezone: str, day: int) -> DayCalendar:
    """Work and break intervals of a calendar on UTC day ``day`` (days since the epoch).

    Shifts are laid out in the site's local time (so a DST night shift is one hour shorter or longer) and converted to
    UTC; the night shift of the previous local day reaches into the morning.
    """
    tz = zoneinfo.ZoneInfo(timezone)
    day_start = dt.datetime.combine(day_date(day), dt.time(), dt.timezone.utc).timestamp()
    work, breaks, starts, ends = [], [], [], []
    for local in (day_date(day - 1), day_date(day), day_date(day + 1)):
        if WEEKDAYS[local.weekday()] not in cal.workdays or local in cal.holidays:
            continue
        midnight = dt.datetime.combine(local, dt.time(), tz)
        for shift in range(cal.shifts):
            begin = cal.start_s + shift * cal.shift_hours * 3600

            def at(offset_s: float) -> float:
                return (midnight + dt.timedelta(seconds=offset_s)).timestamp() - day_start

            s0, s1 = at(begin), at(begin + cal.shift_hours * 3600)
            starts.append(s0)
            ends.append(s1)
            shift_breaks = [(at(begin + b.after_h * 3600), at(begin + b.after_h * 3600 + b.minutes * 60)) for b in cal.breaks]
            breaks.extend(shift_breaks)
            work.extend(subtract(np.array([[s0, s1]]), normalise(shift_breaks)).tolist())
    return DayCalendar(
        clip(normalise(work), 0, DAY_S),
        clip(normalise(breaks), 0, DAY_S),
        tuple(s for s in starts if -DAY_S < s < 2 * DAY_S),
        tuple(e for e in ends if -DAY_S < e < 2 * DAY_S),
    )


def is_workday(cal: CalendarSpec, timezone: str, day: int) -> bool:
    """True when the local date of UTC day ``day`` is a working day."""
    local = day_date(day)
    return WEEKDAYS[local.weekday()] in cal.workdays and local not in cal.holidays


# -- weather -----------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=65536)
def _anomaly(seed: int, site_index: int, day: int, sd: float) -> float:
    # AR(1) over days would need the previous day; a fixed per-day draw smoothed over three days gives persistence
    # while staying independent of where a run starts.
    return float(rng_for(seed, 101, site_index, day).normal(0.0, sd))


def outdoor_temperature(climate: ClimateSpec, timezone: str, seed: int, site_index: int, day: int,
                        seconds: np.ndarray) -> np.ndarray:
    """Outdoor temperature [°C] at ``seconds`` after the UTC midnight of ``day``.

    Seasonal cosine (coldest on ``coldest_day_of_year``), a daily cosine peaking at 15:00 local time and a smooth
    weather anomaly per day (deterministic per seed, site and day).
    """
    seconds = np.asarray(seconds, dtype=float)
    offset_h = zoneinfo.ZoneInfo(timezone).utcoffset(dt.datetime.combine(day_date(day), dt.time())).total_seconds() / 3600
    doy = day_date(day).timetuple().tm_yday + seconds / DAY_S
    seasonal = climate.mean_c - climate.seasonal_amplitude_c * np.cos(2 * np.pi * (doy - climate.coldest_day_of_year) / 365.25)
    local_h = seconds / 3600 + offset_h
    daily = climate.daily_amplitude_c * np.cos(2 * np.pi * (local_h - 15.0) / 24)
    sd = climate.weather_sd_c
    a_prev, a_now, a_next = (_anomaly(seed, site_index, day + d, sd) for d in (-1, 0, 1))
    # Piecewise-linear between day midpoints (12:00 UTC).
    anomaly = np.interp(seconds, [-DAY_S / 2, DAY_S / 2, 3 * DAY_S / 2], [a_prev, a_now, a_next])
    return seasonal + daily + anomaly


def daylight(timezone: str, day: int, seconds: np.ndarray) -> np.ndarray:
    """Rough daylight factor 0-1 (for lighting dimming): a sine between sunrise and sunset that follow the season."""
    offset_h = zoneinfo.ZoneInfo(timezone).utcoffset(dt.datetime.combine(day_date(day), dt.time())).total_seconds() / 3600
    doy = day_date(day).timetuple().tm_yday
    half_day_h = 6.0 + 2.5 * -np.cos(2 * np.pi * (doy + 10) / 365.25)
    local_h = np.asarray(seconds, dtype=float) / 3600 + offset_h - (1.0 if offset_h >= 2 else 0.0)
    x = (local_h - 12.5) / half_day_h
    return np.clip(np.cos(np.clip(x, -1, 1) * np.pi / 2), 0, 1) * (np.abs(x) < 1)

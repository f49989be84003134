"""Time: outdoor weather and interval arithmetic on simulation grids (shift calendars are in ``core.calendar``).

The simulator plans in continuous time (seconds after the start of a UTC day) and renders onto any grid. A grid is its
``edges`` [s]; the time a set of intervals covers within each step is ``diff(covered(intervals, edges))``, which keeps
energy exact at any resolution.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo

import numpy as np

# Calendars and interval sets are part of the plant description (core); re-exported for the simulator's modules.
from core.calendar import (  # noqa: F401
    DAY_S,
    EPOCH,
    DayCalendar,
    clip,
    day_calendar,
    day_date,
    day_number,
    intersect,
    is_workday,
    normalise,
    subtract,
)
from simulator.plant import ClimateSpec


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A random generator keyed by the run seed and integers (stream, machine, day, ...): deterministic per key."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *[int(k) & 0xFFFFFFFF for k in keys]])


# -- intervals (set operations live in core.calendar) ---------------------------------------------------------------
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


# -- weather -----------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=65536)
def _anomaly(seed: int, site_index: int, day: int, sd: float) -> float:
    # AR(1) over days would need the previous day; a fixed per-day draw smoothed over three days gives persistence
    # while staying independent of where a run starts.
    return float(rng_for(seed, 101, site_index, day).normal(0.0, sd))


def _utc_offset_h(timezone: str, day: int) -> float:
    """UTC offset [h] of ``timezone`` at the local midnight starting ``day``."""
    offset = zoneinfo.ZoneInfo(timezone).utcoffset(dt.datetime.combine(day_date(day), dt.time()))
    assert offset is not None  # a ZoneInfo always has an offset (tzinfo.utcoffset returns None only for naive zones)
    return offset.total_seconds() / 3600


def outdoor_temperature(climate: ClimateSpec, timezone: str, seed: int, site_index: int, day: int,
                        seconds: np.ndarray) -> np.ndarray:
    """Outdoor temperature [°C] at ``seconds`` after the UTC midnight of ``day``.

    Seasonal cosine (coldest on ``coldest_day_of_year``), a daily cosine peaking at 15:00 local time and a smooth
    weather anomaly per day (deterministic per seed, site and day).
    """
    seconds = np.asarray(seconds, dtype=float)
    offset_h = _utc_offset_h(timezone, day)
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
    offset_h = _utc_offset_h(timezone, day)
    doy = day_date(day).timetuple().tm_yday
    half_day_h = 6.0 + 2.5 * -np.cos(2 * np.pi * (doy + 10) / 365.25)
    local_h = np.asarray(seconds, dtype=float) / 3600 + offset_h - (1.0 if offset_h >= 2 else 0.0)
    x = (local_h - 12.5) / half_day_h
    return np.clip(np.cos(np.clip(x, -1, 1) * np.pi / 2), 0, 1) * (np.abs(x) < 1)

"""Electricity tariffs: energy prices by weekday and local time, and a demand charge on the monthly peak.

A tariff (:class:`TariffSpec`, part of a site in the plant description) has a base price per kWh, optional
time-of-use periods that replace it on some weekdays (and months) between two local times, and a demand charge per kW
of each calendar month's peak 15-minute mean power. Prices are in the site's currency (``SiteSpec.currency``).

A period's ``hours`` may cross midnight (``"22:00-06:00"``): the period covers the instants on one of its ``days``
whose local time of day is at or after the start or before the end, so ``days: [mon]`` with ``"22:00-06:00"`` covers
Monday 00:00-06:00 and Monday 22:00-24:00. Two periods may not cover the same instant (checked when the file is read).

:func:`price_at` and :func:`energy_cost` look prices up for many timestamps at once (a table of 12 months x 7 days x
1440 minutes per tariff); :func:`demand_charges` computes the monthly peaks and their charge.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Annotated

import numpy as np
from pydantic import AfterValidator, Field, model_validator

from core.calendar import DAY_NS, WEEKDAYS, Weekday
from core.config import FrozenModel

if TYPE_CHECKING:
    import pandas as pd

_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
MINUTES_PER_DAY = 1440


def parse_hours(text: str) -> tuple[int, int]:
    """Parse ``"HH:MM-HH:MM"`` into (start, end) minutes after local midnight; the end may be 24:00.

    Raises
    ------
    ValueError
        When the text is not two times of day or the range is empty.
    """
    match = _RANGE.match(str(text))
    fix = "write HH:MM-HH:MM with times from 00:00 to 24:00, e.g. '06:00-22:00' or '22:00-06:00' across midnight"
    if not match:
        raise ValueError(f"{text!r} is not a time range; {fix}")
    h0, m0, h1, m1 = (int(g) for g in match.groups())
    start, end = h0 * 60 + m0, h1 * 60 + m1
    if m0 > 59 or m1 > 59 or start >= MINUTES_PER_DAY or end > MINUTES_PER_DAY:
        raise ValueError(f"{text!r} has a time outside the day; {fix}")
    if start == end:
        raise ValueError(f"{text!r} is empty (start equals end); for the whole day write '00:00-24:00'")
    return start, end


def _check_hours(text: str) -> str:
    parse_hours(text)
    return text


HoursRange = Annotated[str, AfterValidator(_check_hours)]


class TouPeriod(FrozenModel):
    """A time-of-use period: a price on some weekdays (and months) between local times."""

    name: str = Field(min_length=1, max_length=40, description="Label shown in reports, e.g. peak, off-peak, P1.")
    price_per_kwh: float = Field(ge=0, le=100_000, description="Energy price in this period [currency/kWh].")
    hours: tuple[HoursRange, ...] = Field(min_length=1, description="Local time ranges 'HH:MM-HH:MM' (may cross midnight).")
    days: tuple[Weekday, ...] = Field(WEEKDAYS, min_length=1, description="Weekdays the period applies on.")
    months: tuple[Annotated[int, Field(ge=1, le=12)], ...] = Field(
        (), description="Months (1-12) the period applies in; empty means every month.")

    def minutes(self) -> np.ndarray:
        """Boolean mask [1440] of the minutes of a day this period covers."""
        mask = np.zeros(MINUTES_PER_DAY, dtype=bool)
        for text in self.hours:
            start, end = parse_hours(text)
            if start < end:
                mask[start:end] = True
            else:  # across midnight
                mask[start:] = True
                mask[:end] = True
        return mask


class TariffSpec(FrozenModel):
    """Electricity tariff of a site (prices in the site's currency)."""

    # Bounds only catch typos (a price entered per MWh, say): in KRW or JPY a kWh costs hundreds of units.
    price_per_kwh: float = Field(ge=0, le=100_000, description="Energy price outside every period (flat tariff) [currency/kWh].")
    periods: tuple[TouPeriod, ...] = Field((), description="Time-of-use periods that replace the base price.")
    demand_charge_per_kw: float = Field(
        0.0, ge=0, le=10_000_000, description="Charge per kW of each month's peak 15-minute mean power [currency/kW].")

    @model_validator(mode="after")
    def _no_overlap(self) -> TariffSpec:
        masks = [p.minutes() for p in self.periods]
        for i, p in enumerate(self.periods):
            for j in range(i + 1, len(self.periods)):
                q = self.periods[j]
                days = [d for d in WEEKDAYS if d in p.days and d in q.days]
                months = set(p.months or range(1, 13)) & set(q.months or range(1, 13))
                both = masks[i] & masks[j]
                if days and months and both.any():
                    minute = int(np.argmax(both))
                    raise ValueError(
                        f"periods[{i}] ({p.name!r}) and periods[{j}] ({q.name!r}) overlap on {days[0]} at "
                        f"{minute // 60:02d}:{minute % 60:02d}; an instant may be in one period only: "
                        "change their hours, days or months")
        return self

    @property
    def is_flat(self) -> bool:
        """True without time-of-use periods."""
        return not self.periods


@functools.lru_cache(maxsize=256)
def price_table(tariff: TariffSpec) -> np.ndarray:
    """Price per month, weekday (Monday 0) and minute of the local day [currency/kWh], shape (12, 7, 1440)."""
    table = np.full((12, 7, MINUTES_PER_DAY), float(tariff.price_per_kwh))
    for period in tariff.periods:
        mask = period.minutes()
        for month in period.months or range(1, 13):
            for day in period.days:
                table[month - 1, WEEKDAYS.index(day), mask] = period.price_per_kwh
    table.setflags(write=False)
    return table


def _local_parts(tz: str, times_ns) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """Local calendar fields of UTC instants, computed once per minute of their range.

    Returns ``((year, month 1-12, weekday Monday 0, minute of the day), index, times)``: the fields are arrays over
    a grid of minutes and ``fields[k][index]`` is the value for each instant; ``times`` is the flat int64 input.
    UTC offsets change on whole minutes, so every instant of a minute shares its local fields.
    """
    import pandas as pd

    times = np.asarray(times_ns, dtype=np.int64).reshape(-1)
    minute_ns = 60 * 1_000_000_000
    if len(times) == 0:
        grid, index = times, np.zeros(0, dtype=np.int64)
    else:
        first, last = int(times.min()) // minute_ns, int(times.max()) // minute_ns
        if last - first < 4 * len(times) + 1440:
            grid = np.arange(first, last + 1, dtype=np.int64) * minute_ns
            index = times // minute_ns - first
        else:  # few instants spread over a long time
            grid, index = times, np.arange(len(times))
    # Local wall-clock time as ns since the local epoch; the fields follow with integer arithmetic.
    wall = pd.DatetimeIndex(pd.to_datetime(grid, utc=True)).tz_convert(tz).tz_localize(None).asi8
    days = np.floor_divide(wall, DAY_NS)
    minute = np.floor_divide(wall, minute_ns) - days * MINUTES_PER_DAY
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    months = wall.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    return (1970 + months // 12, months % 12 + 1, weekday, minute), index, times


def price_at(tariff: TariffSpec, tz: str, times_ns) -> np.ndarray:
    """Energy price at each instant.

    Parameters
    ----------
    tariff : TariffSpec
        The site's tariff.
    tz : str
        IANA time zone of the site (periods are in local time).
    times_ns : array-like of int
        Instants [ns since the epoch, UTC]; for an interval pass its start.

    Returns
    -------
    ndarray of float
        Price [currency/kWh], the same shape as ``times_ns``.
    """
    shape = np.shape(times_ns)
    (_year, month, weekday, minute), index, _times = _local_parts(tz, times_ns)
    return price_table(tariff)[month - 1, weekday, minute][index].reshape(shape)


def energy_cost(tariff: TariffSpec, tz: str, times_ns, kwh) -> np.ndarray:
    """Cost of energy drawn in intervals: the price at each interval's start times its energy.

    Parameters
    ----------
    tariff : TariffSpec
    tz : str
        IANA time zone of the site.
    times_ns : array-like of int
        Interval starts [ns since the epoch, UTC]; intervals should not straddle a period boundary (15-minute
        intervals aligned to the quarter hour never do for periods given in whole quarter hours).
    kwh : array-like of float
        Energy per interval [kWh] (NaN stays NaN).

    Returns
    -------
    ndarray of float
        Cost per interval [currency].
    """
    return price_at(tariff, tz, times_ns) * np.asarray(kwh, dtype=float)


def demand_charges(tariff: TariffSpec, tz: str, times_ns, kw) -> pd.DataFrame:
    """Monthly peak demand and its charge.

    Parameters
    ----------
    tariff : TariffSpec
    tz : str
        IANA time zone of the site (months are local calendar months).
    times_ns : array-like of int
        Starts of 15-minute intervals [ns since the epoch, UTC].
    kw : array-like of float
        Mean power of the site (or meter) over each interval [kW]; NaN is ignored.

    Returns
    -------
    DataFrame
        One row per local month with data: ``month`` ("YYYY-MM"), ``peak_kw`` [kW], ``peak_time`` (start of the peak
        interval, UTC tz-aware), ``charge`` (``peak_kw x demand_charge_per_kw``) [currency].
    """
    import pandas as pd

    power = np.asarray(kw, dtype=float).reshape(-1)
    (year, month, _weekday, _minute), index, times = _local_parts(tz, times_ns)
    if len(power) != len(times):
        raise ValueError(f"times_ns has {len(times)} values but kw has {len(power)}; give one power per interval")
    ok = ~np.isnan(power)
    rows = []
    keys = (year * 12 + (month - 1))[index][ok]
    for key in np.unique(keys):
        sel = np.flatnonzero(ok)[keys == key]
        best = sel[np.argmax(power[sel])]
        peak = float(power[best])
        rows.append({"month": f"{key // 12:04d}-{key % 12 + 1:02d}", "peak_kw": peak,
                     "peak_time": pd.Timestamp(int(times[best]), tz="UTC"),
                     "charge": peak * tariff.demand_charge_per_kw})
    return pd.DataFrame(rows, columns=["month", "peak_kw", "peak_time", "charge"])

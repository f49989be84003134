"""The shared period selector: ranges of whole local days ending with today."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

NS = 1_000_000_000


@dataclass(frozen=True)
class Period:
    """A choice of the period selector.

    Parameters
    ----------
    key : str
        Value in the selector and URLs.
    label : str
        What a person reads.
    days : int
        Whole local days, today included.
    """

    key: str
    label: str
    days: int


PERIODS = (
    Period("7d", "Last 7 days", 7),
    Period("30d", "Last 30 days", 30),
    Period("90d", "Last 90 days", 90),
    Period("365d", "Last 12 months", 365),
)
DEFAULT_PERIOD = "30d"


def get_period(key: str | None) -> Period:
    """The period called ``key``; the default for None or an unknown key (a hand-made request cannot break it)."""
    for period in PERIODS:
        if period.key == key:
            return period
    return next(p for p in PERIODS if p.key == DEFAULT_PERIOD)


def day_range(days: int, now_ns: int, tz: dt.tzinfo) -> tuple[int, int]:
    """``[start, stop)`` [ns] of the last ``days`` local calendar days, today included (stop = next local midnight)."""
    now = dt.datetime.fromtimestamp(now_ns / NS, tz)
    today = now.date()
    start_day = today - dt.timedelta(days=days - 1)
    stop_day = today + dt.timedelta(days=1)
    start = dt.datetime.combine(start_day, dt.time(), tzinfo=tz)
    stop = dt.datetime.combine(stop_day, dt.time(), tzinfo=tz)
    return int(start.timestamp()) * NS, int(stop.timestamp()) * NS

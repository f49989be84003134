"""Tariffs (core.tariff): time-of-use prices in local time, across midnight, and the monthly demand charge."""

import datetime as dt
import zoneinfo

import numpy as np
import pytest
from pydantic import ValidationError

from core.tariff import TariffSpec, demand_charges, energy_cost, parse_hours, price_at

NS = 1_000_000_000
BERLIN = "Europe/Berlin"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")

TOU = TariffSpec(
    price_per_kwh=0.15,
    periods=[
        {"name": "night", "price_per_kwh": 0.09, "days": WEEKDAYS, "hours": ["22:00-06:00"]},
        {"name": "peak", "price_per_kwh": 0.30, "days": WEEKDAYS, "hours": ["08:00-11:00", "17:00-20:00"]},
        {"name": "summer-noon", "price_per_kwh": 0.12, "days": WEEKDAYS, "months": [6, 7, 8], "hours": ["11:00-15:00"]},
    ],
    demand_charge_per_kw=12.5,
)


def local_ns(*args, tz=BERLIN) -> int:
    return int(dt.datetime(*args, tzinfo=zoneinfo.ZoneInfo(tz)).timestamp()) * NS


def test_prices_across_midnight_in_local_time():
    # 2026-06-01 is a Monday (CEST, UTC+2); 2026-06-06 a Saturday.
    cases = [
        ((2026, 6, 1, 0, 30), 0.09),   # Monday after midnight: night (Monday is one of its days)
        ((2026, 6, 1, 5, 59), 0.09),
        ((2026, 6, 1, 6, 0), 0.15),    # the end is exclusive
        ((2026, 6, 1, 8, 0), 0.30),
        ((2026, 6, 1, 12, 0), 0.12),   # summer months only
        ((2026, 6, 1, 21, 59), 0.15),
        ((2026, 6, 1, 22, 0), 0.09),
        ((2026, 6, 5, 23, 45), 0.09),  # Friday night before the weekend
        ((2026, 6, 6, 1, 0), 0.15),    # Saturday is not a night day: base price
        ((2026, 6, 6, 9, 0), 0.15),
        ((2026, 12, 7, 12, 0), 0.15),  # a December Monday noon: no summer price
    ]
    times = np.array([local_ns(*when) for when, _ in cases])
    assert price_at(TOU, BERLIN, times).tolist() == [price for _, price in cases]
    # The same UTC instant is a different local time elsewhere: 20:30 UTC is 22:30 in Berlin, 21:30 in London.
    instant = int(dt.datetime(2026, 6, 1, 20, 30, tzinfo=dt.UTC).timestamp()) * NS
    assert price_at(TOU, BERLIN, [instant])[0] == 0.09 and price_at(TOU, "Europe/London", [instant])[0] == 0.15


def test_flat_tariff_and_energy_cost():
    flat = TariffSpec(price_per_kwh=0.2)
    times = local_ns(2026, 1, 5) + np.arange(96 * 7, dtype=np.int64) * 900 * NS
    assert flat.is_flat and (price_at(flat, BERLIN, times) == 0.2).all()
    kwh = np.random.default_rng(3).uniform(0, 50, len(times))
    kwh[5] = np.nan
    cost = energy_cost(TOU, BERLIN, times, kwh)
    expected = np.array([TOU_price(t) for t in times]) * kwh
    assert np.allclose(cost, expected, equal_nan=True) and np.isnan(cost[5])
    # A week of 15-minute intervals of 1 kWh: hours per band x price.
    week = energy_cost(TOU, BERLIN, times, np.ones(len(times))).sum()
    night_h, peak_h = 5 * 8, 5 * 6
    other_h = 7 * 24 - night_h - peak_h
    assert week == pytest.approx((night_h * 0.09 + peak_h * 0.30 + other_h * 0.15) * 4)


def TOU_price(t_ns: int) -> float:
    """Reference lookup written out by hand for the TOU tariff above."""
    local = dt.datetime.fromtimestamp(t_ns / NS, zoneinfo.ZoneInfo(BERLIN))
    minute = local.hour * 60 + local.minute
    if local.weekday() >= 5:
        return 0.15
    if minute >= 22 * 60 or minute < 6 * 60:
        return 0.09
    if 8 * 60 <= minute < 11 * 60 or 17 * 60 <= minute < 20 * 60:
        return 0.30
    if local.month in (6, 7, 8) and 11 * 60 <= minute < 15 * 60:
        return 0.12
    return 0.15


def test_demand_charge_per_local_month():
    # January and February in Berlin, 15-minute mean power; the highest value of each local month sets its charge.
    start = local_ns(2026, 1, 1)
    times = start + np.arange(96 * (31 + 28), dtype=np.int64) * 900 * NS
    kw = 100 + 20 * np.sin(np.arange(len(times)) / 7.0)
    jan_peak_i = 96 * 10 + 40
    kw[jan_peak_i] = 480.0
    # 2026-02-01 00:15 local is still January 31 in UTC: it belongs to February.
    feb_first = int(np.searchsorted(times, local_ns(2026, 2, 1, 0, 15)))
    kw[feb_first] = 350.0
    kw[feb_first + 5] = np.nan
    table = demand_charges(TOU, BERLIN, times, kw)
    assert table["month"].tolist() == ["2026-01", "2026-02"]
    assert table["peak_kw"].tolist() == [480.0, 350.0]
    assert table["charge"].tolist() == pytest.approx([480.0 * 12.5, 350.0 * 12.5])
    assert table["peak_time"].iloc[1] == dt.datetime(2026, 1, 31, 23, 15, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="one power per interval"):
        demand_charges(TOU, BERLIN, times, kw[:-1])


def test_period_validation():
    assert parse_hours("22:00-06:00") == (1320, 360) and parse_hours("00:00-24:00") == (0, 1440)
    for bad in ("24:00-01:00", "6-22", "10:00-10:00", "10:00-24:30"):
        with pytest.raises(ValueError):
            parse_hours(bad)
    with pytest.raises(ValidationError, match="overlap on sat at 23:00"):
        TariffSpec(price_per_kwh=0.1, periods=[
            {"name": "a", "price_per_kwh": 0.2, "days": ["sat"], "hours": ["23:00-24:00"]},
            {"name": "b", "price_per_kwh": 0.3, "days": ["fri", "sat"], "hours": ["22:00-02:00"]},
        ])
    # Adjacent periods and the same hours on other days are fine.
    ok = TariffSpec(price_per_kwh=0.1, periods=[
        {"name": "a", "price_per_kwh": 0.2, "days": ["sat"], "hours": ["23:00-24:00"]},
        {"name": "b", "price_per_kwh": 0.3, "days": ["sat"], "hours": ["00:00-23:00"]},
        {"name": "c", "price_per_kwh": 0.4, "days": ["sun"], "hours": ["00:00-24:00"]},
    ])
    assert len(ok.periods) == 3

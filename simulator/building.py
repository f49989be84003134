"""Synthetic building-style meter: hourly energy and outdoor temperature of a commercial building with known savings.

What a utility or a building portal exports (energy per hour and the outdoor temperature, no production data), for
checking savings verification on buildings (``tests/benchmarks/bench_building_savings.py``, against OpenEEmeter) and
in the default test suite (``tests/e2e/test_savings_building.py``). The physics, drawn per seed so that no two
buildings are alike:

- outdoor temperature: a seasonal cycle, a daily cycle and weather systems (a daily AR(1) anomaly, 0.8 day to day,
  interpolated over the hours, plus a small hourly one);
- load: a base load, an occupancy load on workdays (start and end hours per building, US-style public holidays, some
  buildings partly open on Saturdays), heating below a balance point and cooling above another one, both on the
  outdoor temperature smoothed with the building's thermal lag (4-10 h) and reduced when unoccupied (setback);
- noise: multiplicative and autocorrelated, a daily AR(1) part (0.6-0.8 day to day) and an hourly one (0.6 hour to hour);
- savings: from ``intervention`` on every hour draws ``1 - saving`` of what it would have (a retrofit that scales the
  whole load), so the realised savings fraction over any reporting period is exactly ``saving``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

#: Fixed-date public holidays of the synthetic buildings (month, day): closed all day (and :func:`_holidays`).
FIXED_HOLIDAYS = ((1, 1), (7, 4), (12, 25))


def building_meter(seed: int, start: dt.date = dt.date(2023, 1, 1), intervention: dt.date = dt.date(2024, 1, 1),
                   stop: dt.date = dt.date(2025, 1, 1), saving: float = 0.10) -> tuple[pd.DataFrame, dict]:
    """Hourly energy [kWh] and outdoor temperature [°C] of one synthetic building, in UTC.

    Parameters
    ----------
    seed
        Draws the building (balance points, slopes, occupancy, climate) and its weather and noise.
    start, intervention, stop
        First day, first day with the savings, day after the last [UTC dates].
    saving
        Fraction of the load removed from ``intervention`` on [1].

    Returns
    -------
    frame, truth
        ``frame``: columns ``start`` (interval start, UTC), ``kwh`` (energy in the hour, after the savings),
        ``unfixed_kwh`` (what the hour would have drawn without them), ``clean_kwh`` (the same without the noise: what
        a model that knew the building's physics exactly would expect), ``temp_c``. ``truth``: the building's
        parameters and ``savings_fraction`` (realised, over all hours from ``intervention`` on).
    """
    rng = np.random.default_rng(seed)
    t = pd.date_range(pd.Timestamp(start, tz="UTC"), pd.Timestamp(stop, tz="UTC"), freq="1h", inclusive="left")
    n, n_days = len(t), (stop - start).days
    hour = t.hour.to_numpy()
    day = (t.normalize() - t[0]).days.to_numpy()
    doy = t.day_of_year.to_numpy()
    p = {
        "mean_c": rng.uniform(6, 16), "season_c": rng.uniform(7, 13), "diurnal_c": rng.uniform(3, 6),
        "base_kw": rng.uniform(20, 60), "occupied_x": rng.uniform(0.8, 1.6), "open_h": int(rng.integers(6, 9)),
        "close_h": int(rng.integers(17, 21)), "saturday": float(rng.choice([0.0, 0.0, 0.4])),
        "heating_c": rng.uniform(10, 16), "heating_kw_per_k": rng.uniform(2, 8), "cooling_c": rng.uniform(18, 24),
        "cooling_kw_per_k": rng.uniform(3, 10), "lag_h": rng.uniform(4, 10), "day_rho": rng.uniform(0.6, 0.8),
        "day_sd": rng.uniform(0.02, 0.05), "hour_sd": rng.uniform(0.03, 0.06),
    }
    # Weather: a daily anomaly persisting over days, interpolated over the hours, and a small hourly one.
    anomaly = np.zeros(n_days + 1)
    shocks = rng.normal(0, 3.0 * np.sqrt(1 - 0.8 ** 2), n_days + 1)
    for i in range(1, n_days + 1):
        anomaly[i] = 0.8 * anomaly[i - 1] + shocks[i]
    hourly_weather = np.interp(np.arange(n) / 24, np.arange(n_days + 1), anomaly)
    temp = (p["mean_c"] - p["season_c"] * np.cos(2 * np.pi * (doy - 20) / 365.25)
            + p["diurnal_c"] * np.sin(2 * np.pi * (hour - 9) / 24) + hourly_weather + _ar1(rng, n, 0.6, 0.5))
    # The building answers the outdoor temperature with its thermal lag.
    felt = np.empty(n)
    a = 1 / p["lag_h"]
    felt[0] = temp[0]
    for i in range(1, n):
        felt[i] = felt[i - 1] + a * (temp[i] - felt[i - 1])
    dow = t.day_of_week.to_numpy()
    holiday = pd.Index(t.date).isin(_holidays(start.year, stop.year))
    open_hours = (hour >= p["open_h"]) & (hour < p["close_h"])
    occupied = np.where(holiday, 0.0, np.where(dow < 5, 1.0, np.where(dow == 5, p["saturday"], 0.0))) * open_hours
    setback = 0.5 + 0.5 * occupied
    load = (p["base_kw"] * (1 + p["occupied_x"] * occupied)
            + p["heating_kw_per_k"] * np.maximum(p["heating_c"] - felt, 0) * (0.6 + 0.4 * occupied)
            + p["cooling_kw_per_k"] * np.maximum(felt - p["cooling_c"], 0) * (0.3 + 0.7 * occupied) * setback)
    day_noise = _ar1(rng, n_days + 1, p["day_rho"], p["day_sd"])[day]
    unfixed = load * np.exp(day_noise + _ar1(rng, n, 0.6, p["hour_sd"]))
    after = t >= pd.Timestamp(intervention, tz="UTC")
    energy = np.where(after, unfixed * (1 - saving), unfixed)
    truth = dict(p, seed=seed, saving=saving, intervention=intervention.isoformat(),
                 savings_fraction=float(1 - energy[after].sum() / unfixed[after].sum()) if after.any() else 0.0)
    return pd.DataFrame({"start": t, "kwh": energy, "unfixed_kwh": unfixed, "clean_kwh": load, "temp_c": temp}), truth


def write_meter_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as a utility export: interval end in UTC (``ts``), ``kwh`` in the hour, ``temp_c``."""
    ends = frame["start"] + pd.Timedelta(hours=1)
    pd.DataFrame({"ts": ends.dt.strftime("%Y-%m-%dT%H:%M:%SZ"), "kwh": frame["kwh"].round(3),
                  "temp_c": frame["temp_c"].round(2)}).to_csv(path, index=False)


def _holidays(first_year: int, last_year: int) -> list[dt.date]:
    """US-style public holidays: New Year, Independence Day and Christmas on their dates, Memorial Day (last Monday of
    May), Labor Day (first Monday of September), Thanksgiving (fourth Thursday of November) and the Friday after it."""
    out = []
    for y in range(first_year, last_year + 1):
        out += [dt.date(y, m, d) for m, d in FIXED_HOLIDAYS]
        may31 = dt.date(y, 5, 31)
        out.append(may31 - dt.timedelta(days=may31.weekday()))
        sep1 = dt.date(y, 9, 1)
        out.append(sep1 + dt.timedelta(days=-sep1.weekday() % 7))
        nov1 = dt.date(y, 11, 1)
        thanksgiving = nov1 + dt.timedelta(days=(3 - nov1.weekday()) % 7 + 21)
        out += [thanksgiving, thanksgiving + dt.timedelta(days=1)]
    return out


def _ar1(rng: np.random.Generator, n: int, rho: float, sd: float) -> np.ndarray:
    """An AR(1) series of ``n`` values with lag-1 correlation ``rho`` and marginal standard deviation ``sd``."""
    e = rng.normal(0, sd * np.sqrt(1 - rho ** 2), n)
    x = np.empty(n)
    x[0] = rng.normal(0, sd)
    for i in range(1, n):
        x[i] = rho * x[i - 1] + e[i]
    return x

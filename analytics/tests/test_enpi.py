"""EnPIs: specific energy per unit and per kg against the machine's own best practice at similar output rates."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analytics.data import IntervalData
from analytics.enpi import SpecificEnergy
from analytics.errors import AnalyticsError


def plant(days: int = 42, bad_from_day: int = 28, extra: float = 0.25, seed: int = 2):
    """Two machines of one line making parts at 0.5 kWh/unit (+ rate-dependent overhead); machine a uses ``extra``
    more per unit from ``bad_from_day`` on (a wrong setpoint). Idle windows draw power but make nothing."""
    rng = np.random.default_rng(seed)
    n = days * 96
    t = pd.date_range("2025-05-05", periods=n, freq="15min", tz="UTC")
    hour = t.hour.to_numpy()
    work = (t.day_of_week.to_numpy() < 5) & (hour >= 6) & (hour < 22)
    frames, materials = [], []
    for m in ("a", "b"):
        rate = np.repeat(rng.choice([20.0, 40.0, 60.0], n // 64 + 1), 64)[:n]  # parts per 15 min, by half-shift
        good = np.where(work, rng.poisson(rate), 0).astype(float)
        per_unit = np.where((m == "a") & (np.arange(n) >= bad_from_day * 96), 0.5 + extra, 0.5)
        energy = np.where(work, 1.0 + per_unit * good, 0.3) + rng.normal(0, 0.05, n)
        frames.append(pd.DataFrame({"machine": f"s/l1/{m}", "time": t, "energy_kwh": energy, "good": good,
                                    "s_running": np.where(work, 900.0, 0.0), "s_off": np.where(work, 0.0, 900.0),
                                    "s_idle": 0.0, "s_fault": 0.0}))
        materials.append(pd.DataFrame({"machine": f"s/l1/{m}", "time": t, "material": "MAT-7", "kg": good * 0.2}))
    truth_excess = extra * frames[0]["good"].to_numpy()[bad_from_day * 96:].sum()
    data = IntervalData.from_frame(pd.concat(frames, ignore_index=True), materials=pd.concat(materials, ignore_index=True))
    return data, truth_excess


def test_best_practice_and_excess_of_a_machine_that_got_worse():
    data, truth_excess = plant()
    enpi = SpecificEnergy().fit(data)
    summary = enpi.summary.set_index("scope")
    a, b = summary.loc["machine:s/l1/a"], summary.loc["machine:s/l1/b"]
    assert a["best_kwh_per_unit"] == pytest.approx(0.5 + 1.0 / 40, rel=0.12)  # per-unit plus the fixed 1 kWh per window
    assert a["kwh_per_unit"] > b["kwh_per_unit"] * 1.1
    assert a["excess_kwh"] == pytest.approx(truth_excess, rel=0.25)
    assert b["excess_share"] < 0.04  # a steady machine is close to its own best practice
    assert a["kwh_per_kg"] == pytest.approx(a["kwh_per_unit"] / 0.2, rel=1e-6)
    line = summary.loc["line:s/l1"]
    assert line["good"] == pytest.approx(a["good"] + b["good"])
    # best practice depends on the output rate: slow days carry more fixed energy per unit
    slow, fast = enpi.best_practice("machine:s/l1/b", 25.0 * 4), enpi.best_practice("machine:s/l1/b", 55.0 * 4)
    assert slow > fast
    days = enpi.daily[enpi.daily["scope"] == "machine:s/l1/a"]
    late = days[pd.to_datetime(days["date"]) >= pd.Timestamp("2025-06-02")]
    assert (late["excess_kwh"] > 0).mean() > 0.9
    json.dumps(enpi.to_dict())


def test_no_counts_is_a_clear_error():
    t = pd.date_range("2025-05-05", periods=96 * 3, freq="15min", tz="UTC")
    data = IntervalData.from_frame(pd.DataFrame({"machine": "s/l/x", "time": t, "energy_kwh": 1.0}))
    with pytest.raises(AnalyticsError, match="good counts"):
        SpecificEnergy().fit(data)

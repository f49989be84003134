"""Per-machine hourly outputs: actual and expected energy and good units add up the 15-min windows exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.baseline import Baseline, BaselineSettings
from analytics.data import IntervalData
from analytics.machine_outputs import COLUMNS, machine_hours
from analytics.tests.synthetic import production_frame


def data_with_a_gap_and_a_machine_without_counts() -> IntervalData:
    frame = production_frame(days=14, machines=("north/l1/a", "north/l1/b"), seed=5)
    b = frame["machine"] == "north/l1/b"
    frame.loc[b, "good"] = np.nan  # b counts nothing
    gap = (frame["machine"] == "north/l1/a") & (frame["time"] == pd.Timestamp("2025-01-08 10:30", tz="UTC"))
    frame.loc[gap, "energy_kwh"] = np.nan  # one unknown window on a
    frame = frame[frame["time"] >= pd.Timestamp("2025-01-06 00:15", tz="UTC")]  # the first hour is incomplete
    return IntervalData.from_frame(frame, resolution_s=900)


def test_hours_sum_the_windows_and_unknown_stays_unknown():
    data = data_with_a_gap_and_a_machine_without_counts()
    model = Baseline(BaselineSettings(scopes=("machine",))).fit(data)
    out = machine_hours(data, model)
    assert list(out.columns) == COLUMNS
    assert set(out["machine"]) == {"a", "b"} and set(out["site"]) == {"north"} and set(out["line"]) == {"l1"}
    a = out[out["machine"] == "a"].set_index("time")
    assert len(a) == 14 * 24  # the incomplete first hour is a row too, with NaN
    first = pd.Timestamp("2025-01-06 00:00", tz="UTC")
    assert np.isnan(a.loc[first, "actual_kwh"]) and np.isnan(a.loc[first, "expected_kwh"])
    assert np.isnan(a.loc[pd.Timestamp("2025-01-08 10:00", tz="UTC"), "actual_kwh"])  # the gap voids its hour only
    # Every other hour is the sum of its four windows, for the measured and the predicted energy alike.
    windows = data.machine_frame("north/l1/a").set_index("time")
    hour = pd.Timestamp("2025-01-09 14:00", tz="UTC")
    four = windows.loc[hour: hour + pd.Timedelta(minutes=45)]
    assert a.loc[hour, "actual_kwh"] == pytest.approx(four["energy_kwh"].sum())
    assert a.loc[hour, "good"] == pytest.approx(four["good"].sum())
    predicted = model.predict(data, "machine")
    pred_a = predicted[predicted["scope"] == "north/l1/a"].set_index("time")["expected_kwh"]
    assert a.loc[hour, "expected_kwh"] == pytest.approx(pred_a.loc[hour: hour + pd.Timedelta(minutes=45)].sum())
    # The baseline follows production: expected energy of a busy hour well above that of a night hour.
    assert a.loc[hour, "expected_kwh"] > 2 * a.loc[pd.Timestamp("2025-01-09 02:00", tz="UTC"), "expected_kwh"]
    assert (out["expected_kwh"].dropna() >= 0).all()
    # A machine that counts nothing has unknown good units, not zero.
    assert out[out["machine"] == "b"]["good"].isna().all()
    # Nothing else is lost: the total is the windows' total less the incomplete first hour and a's gap hour.
    energy = data.matrix("energy_kwh").astype(float).copy()
    energy[:, :3] = np.nan
    gap_hour = (data.times >= pd.Timestamp("2025-01-08 10:00", tz="UTC")) & \
        (data.times < pd.Timestamp("2025-01-08 11:00", tz="UTC"))
    energy[0, gap_hour] = np.nan
    assert np.nansum(out["actual_kwh"]) == pytest.approx(np.nansum(energy), rel=1e-9)


def test_without_a_baseline_expected_is_unknown_and_bad_resolution_is_refused():
    data = data_with_a_gap_and_a_machine_without_counts()
    out = machine_hours(data, None)
    assert out["expected_kwh"].isna().all() and out["actual_kwh"].notna().sum() > 600
    with pytest.raises(ValueError, match="not a multiple"):
        machine_hours(data, None, resolution_s=1000)

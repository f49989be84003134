"""IntervalData.from_frame: the complete grid, derived columns, sufficiency warnings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.data import FRAME_COLUMNS, IntervalData, MachineInfo
from analytics.errors import AnalyticsError
from analytics.tests.synthetic import production_frame


def names(data: IntervalData) -> set[str]:
    return {w.name for w in data.warnings}


def test_complete_grid_in_machine_order_and_matrix_views():
    frame = production_frame(days=21, machines=("s/l/b", "s/l/a"))
    frame = frame.sample(frac=1.0, random_state=1)  # row order must not matter
    data = IntervalData.from_frame(frame)
    assert data.resolution_s == 900
    assert list(data.frame.columns) == list(FRAME_COLUMNS)
    assert data.machine_ids == ["s/l/a", "s/l/b"]
    assert data.n_times == 21 * 96 and len(data.frame) == 2 * 21 * 96
    energy = data.matrix("energy_kwh")
    assert energy.shape == (2, 21 * 96)
    expected = frame[frame.machine == "s/l/a"].sort_values("time")["energy_kwh"].to_numpy()
    np.testing.assert_allclose(energy[0], expected)
    assert data.times[0] == pd.Timestamp("2025-01-06", tz="UTC")
    assert (data.matrix("shift") == -1).all()  # no plant calendar
    info = data.machines["s/l/a"]
    assert (info.site, info.line, info.machine, info.kind) == ("s", "l", "a", "other")


def test_gap_becomes_nan_rows_with_zero_coverage_and_a_warning():
    frame = production_frame(days=28)
    t = frame["time"]
    cut = (t >= "2025-01-10 03:00Z") & (t < "2025-01-10 08:30Z")
    data = IntervalData.from_frame(frame[~cut], start="2025-01-06T00:00:00+00:00", stop="2025-02-03T00:00:00+00:00")
    assert data.n_times == 28 * 96
    cov = data.matrix("coverage")[0]
    assert (cov == 0).sum() == 22 and np.isnan(data.matrix("energy_kwh")[0][cov == 0]).all()
    assert "analytics.data.gaps" in names(data)
    gaps = data.gaps("north/l1/cnc-01")
    assert gaps == [(pd.Timestamp("2025-01-10 03:00Z").to_pydatetime(), pd.Timestamp("2025-01-10 08:30Z").to_pydatetime())]
    suff = data.sufficiency().loc["north/l1/cnc-01"]
    assert suff["longest_gap_h"] == pytest.approx(5.5) and suff["gaps"] == 1
    assert "analytics.data.low_coverage" not in names(data)  # 5.5 h of 28 days is above 90 %
    assert "analytics.data.no_plant" in names(data)
    detail = next(w for w in data.warnings if w.name == "analytics.data.gaps").details["machines"]["north/l1/cnc-01"]
    assert detail["spans"][0][0].startswith("2025-01-10T03:00")


def test_low_coverage_bad_quality_short_range_and_no_data():
    frame = production_frame(days=10, machines=("s/l/a", "s/l/b"))
    frame = frame[~((frame.machine == "s/l/a") & (frame.time.dt.day_of_week == 2))]  # a: every Wednesday missing
    frame = frame.assign(bad_share=np.where(frame.machine == "s/l/b", 0.2, 0.0))
    infos = [MachineInfo.from_path(p) for p in ("s/l/a", "s/l/b", "s/l/c")]
    data = IntervalData.from_frame(frame, machines=infos)
    got = names(data)
    assert {"analytics.data.low_coverage", "analytics.data.bad_quality", "analytics.data.short_range",
            "analytics.data.no_data"} <= got
    low = next(w for w in data.warnings if w.name == "analytics.data.low_coverage")
    assert set(low.details["coverage"]) == {"s/l/a"}
    assert low.details["coverage"]["s/l/a"] == pytest.approx(0.8, abs=0.01)
    nodata = next(w for w in data.warnings if w.name == "analytics.data.no_data")
    assert nodata.details["machines"] == ["s/l/c"]


def test_power_only_data_gives_energy_and_unknown_machines_are_reported():
    t = pd.date_range("2025-03-01", periods=4 * 24 * 20, freq="15min", tz="UTC")
    frame = pd.DataFrame({"machine": "x/y/z", "time": t, "power_mean_kw": 8.0})
    extra = pd.DataFrame({"machine": "x/y/stranger", "time": t[:5], "power_mean_kw": 1.0})
    data = IntervalData.from_frame(pd.concat([frame, extra]), machines=[MachineInfo.from_path("x/y/z")])
    np.testing.assert_allclose(data.matrix("energy_kwh"), 2.0)
    assert "analytics.data.unknown_machine" in names(data)


def test_bad_input_names_the_problem():
    t = pd.date_range("2025-03-01", periods=10, freq="15min")
    with pytest.raises(AnalyticsError, match="time zone"):
        IntervalData.from_frame(pd.DataFrame({"machine": "a", "time": t, "energy_kwh": 1.0}))
    with pytest.raises(AnalyticsError, match="energy_kwh"):
        IntervalData.from_frame(pd.DataFrame({"machine": "a", "time": t.tz_localize("UTC")}))
    with pytest.raises(AnalyticsError, match="machine"):
        IntervalData.from_frame(pd.DataFrame({"time": t.tz_localize("UTC"), "energy_kwh": 1.0}))

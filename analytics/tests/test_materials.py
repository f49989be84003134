"""Energy by material: allocation pro rata to mass, intensities per kg and per part, closure, gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.data import IntervalData
from analytics.errors import AnalyticsError
from analytics.materials import MaterialAllocation, MaterialSettings


def _data(energy_nan_at: int | None = None) -> IntervalData:
    t = pd.date_range("2026-03-02", periods=8, freq="15min", tz="UTC")
    energy = np.array([11.0, 10.0, 12.0, 12.0, 4.0, 4.0, 20.0, 0.0])
    if energy_nan_at is not None:
        energy[energy_nan_at] = np.nan
    good = np.array([100, 100, 60, 60, 0, 0, 50, 0], float)
    frame = pd.DataFrame({"machine": "s/l/imm-01", "time": t, "energy_kwh": energy, "good": good})
    other = pd.DataFrame({"machine": "s/l/hvac-01", "time": t, "energy_kwh": 50.0})  # consumes no material
    # Intervals 0-1: material A only; 2-3: A and B 1:2 by mass; 4-5: nothing (idling); 6: B only; 7: nothing.
    mats = pd.DataFrame({
        "machine": "s/l/imm-01",
        "time": t[[0, 1, 2, 2, 3, 3, 6]],
        "material": ["A", "A", "A", "B", "A", "B", "B"],
        "kg": [5.0, 5.0, 2.0, 4.0, 2.0, 4.0, 10.0],
    })
    return IntervalData.from_frame(pd.concat([frame, other]), resolution_s=900, materials=mats)


def test_energy_and_parts_are_shared_by_mass_and_the_rest_is_not_attributable():
    alloc = MaterialAllocation().fit(_data())
    table = alloc.table().set_index("material")
    # A: 11 + 10 + 12/3 + 12/3 = 29 kWh on 14 kg; parts 100 + 100 + 20 + 20 = 240.
    assert table.loc["A", "kwh"] == pytest.approx(29.0)
    assert table.loc["A", "kg"] == pytest.approx(14.0)
    assert table.loc["A", "units"] == pytest.approx(240.0)
    # B: 8 + 8 + 20 = 36 kWh on 18 kg; parts 40 + 40 + 50 = 130.
    assert table.loc["B", "kwh"] == pytest.approx(36.0)
    assert table.loc["B", "kwh_per_kg"] == pytest.approx(2.0)
    assert table.loc["B", "kwh_per_unit"] == pytest.approx(36.0 / 130.0)
    summary = alloc.to_dict()
    # Only the machine that ran material counts; idling (4 + 4 kWh) is not spread over the materials.
    assert summary["metered_kwh"] == pytest.approx(73.0)
    assert summary["allocated_kwh"] == pytest.approx(65.0)
    assert summary["not_attributable_kwh"] == pytest.approx(8.0)
    assert summary["closure_error_kwh"] == pytest.approx(0.0)
    assert summary["machines"] == 1 and summary["materials"] == 2
    # Most intensive first: A at 29/14 = 2.07 kWh/kg, then B at 2.0.
    assert [m["material"] for m in alloc.top()] == ["A", "B"]


def test_an_interval_with_unknown_energy_is_counted_apart_and_closure_holds():
    summary = MaterialAllocation().fit(_data(energy_nan_at=6)).to_dict()
    assert summary["unknown_energy_intervals"] == 1
    assert summary["allocated_kwh"] == pytest.approx(45.0)
    assert summary["metered_kwh"] - summary["allocated_kwh"] - summary["not_attributable_kwh"] == pytest.approx(0.0)


def test_small_batches_count_in_totals_but_are_not_ranked():
    alloc = MaterialAllocation(MaterialSettings(min_kg=15.0)).fit(_data())
    assert [m["material"] for m in alloc.top()] == ["B"]
    assert alloc.to_dict()["ranked"] == 1 and alloc.to_dict()["materials"] == 2


def test_unfitted_and_empty():
    with pytest.raises(AnalyticsError, match="fit"):
        MaterialAllocation().top()
    t = pd.date_range("2026-03-02", periods=4, freq="15min", tz="UTC")
    data = IntervalData.from_frame(pd.DataFrame({"machine": "s/l/m", "time": t, "energy_kwh": 1.0}), resolution_s=900)
    alloc = MaterialAllocation().fit(data)
    assert alloc.top() == [] and alloc.to_dict()["allocated_kwh"] == 0


def test_by_day_splits_at_local_midnight_and_adds_up_to_the_table():
    # 22:00-02:00 UTC on the night of the DST change in Berlin (29 March 2026): two UTC days, split differently locally.
    t = pd.date_range("2026-03-28 22:00", periods=16, freq="15min", tz="UTC")
    frame = pd.DataFrame({"machine": "s/l/imm-01", "time": t, "energy_kwh": 4.0, "good": 10.0})
    mats = pd.DataFrame({"machine": "s/l/imm-01", "time": t, "material": np.where(np.arange(16) < 8, "A", "B"),
                         "kg": 2.0})
    alloc = MaterialAllocation().fit(IntervalData.from_frame(frame, resolution_s=900, materials=mats))
    utc = alloc.by_day("UTC")
    berlin = alloc.by_day("Europe/Berlin")
    # UTC: A on the 28th (22:00-00:00), B on the 29th. Berlin (UTC+1 before 02:00 local): A runs 23:00-01:00 local,
    # so 4 windows on the 28th and 4 on the 29th; B all on the 29th.
    assert utc[["material", "kwh"]].values.tolist() == [["A", 32.0], ["B", 32.0]]
    by = {(str(r.time), r.material): r.kwh for r in berlin.itertuples()}
    assert by == {("2026-03-27 23:00:00+00:00", "A"): 16.0, ("2026-03-28 23:00:00+00:00", "A"): 16.0,
                  ("2026-03-28 23:00:00+00:00", "B"): 32.0}
    table = alloc.table().set_index("material")
    sums = berlin.groupby("material")[["kg", "units", "kwh"]].sum()
    for col in ("kg", "units", "kwh"):
        assert sums[col].to_dict() == pytest.approx(table[col].to_dict())
    assert MaterialAllocation().fit(_data()).by_day("UTC")["kwh"].sum() == pytest.approx(65.0)
    with pytest.raises(AnalyticsError, match="not fitted"):
        MaterialAllocation().by_day()

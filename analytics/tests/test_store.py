"""IntervalData.from_store on a real embedded store: register rollover, integrated power, states, counts, weather,
materials, gaps stored as Bad, the plant's calendar, and the store without a plant file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.data import IntervalData
from analytics.errors import InsufficientDataError
from core.model import SeriesKey
from core.plant import parse_plant
from core.storage.sqlite import SQLiteStore

DAYS = 3
T0 = pd.Timestamp("2025-06-02", tz="UTC")  # a Monday
N = DAYS * 1440
TIMES = (T0 + pd.to_timedelta(np.arange(1, N + 1), unit="min")).as_unit("ns").asi8  # stamps end their minute
GAP = slice(2000, 2090)  # 90 min of Bad values on machine b
PLANT = {
    "name": "test plant",
    "sites": [{
        "id": "s1", "timezone": "UTC",
        "calendar": {"shifts": 2, "first_shift_start": "06:00", "shift_hours": 8, "breaks": []},
        "lines": [{"id": "l1", "machines": [
            {"id": "a", "kind": "cnc", "rated_kw": 40, "register_max_kwh": 1000},
            {"id": "b", "kind": "hvac", "rated_kw": 20},
            {"id": "c", "kind": "conveyor", "rated_kw": 15},
        ]}],
    }],
}


def build_store(path) -> dict:
    rng = np.random.default_rng(1)
    minute = np.arange(N)
    hour = (minute // 60) % 24
    on = (hour >= 6) & (hour < 22)
    state = np.where(on, 2, 0).astype(float)
    power_a = np.where(on, 30 + rng.normal(0, 2, N), 0.5)
    power_b = 8 + 4 * np.sin(minute / 1440 * 2 * np.pi)
    register = np.mod(990 + np.cumsum(power_a) / 60, 1000)  # rolls over within the first hour of production
    parts = np.where(on, rng.poisson(0.5, N), 0)
    temp = 18 + 5 * np.sin((minute / 60 - 9) / 24 * 2 * np.pi)
    # c reports changes only (an OPC UA subscription): power when it changes, the register while it counts
    c = {"site": "s1", "line": "l1", "machine": "c"}
    power_c = np.where(on, 12.0 + (minute // 30) % 3, 0.0)  # a load that changes every half hour while on
    steps = np.flatnonzero(np.diff(np.concatenate(([-1.0], power_c))) != 0)
    register_c = 500 + np.cumsum(power_c) / 60
    counting = np.flatnonzero(on | np.concatenate(([True], on[:-1])))  # the reading after the stop, then silence
    a = {"site": "s1", "line": "l1", "machine": "a"}
    b = {"site": "s1", "line": "l1", "machine": "b"}
    with SQLiteStore(path) as store:
        store.write_arrays(SeriesKey.of("electrical", a, "energy_kwh"), TIMES, register, bulk=True)
        store.write_arrays(SeriesKey.of("electrical", a, "active_power_kw"), TIMES, power_a, bulk=True)
        store.write_arrays(SeriesKey.of("machine_state", a, "state"), TIMES, state, bulk=True)
        store.write_arrays(SeriesKey.of("production", a, "good_count"), TIMES, 1000 + np.cumsum(parts), bulk=True)
        store.write_arrays(SeriesKey.of("material", {**a, "material": "MAT-1"}, "consumed_kg"), TIMES,
                           np.cumsum(parts * 0.5), bulk=True)
        pb = power_b.copy()
        status = np.zeros(N, dtype=np.int64)
        pb[GAP], status[GAP] = np.nan, 0x80310000
        store.write_arrays(SeriesKey.of("electrical", b, "active_power_kw"), TIMES, pb, status, bulk=True)
        store.write_arrays(SeriesKey.of("weather", {"site": "s1"}, "outdoor_temp_c"), TIMES, temp, bulk=True)
        store.write_arrays(SeriesKey.of("electrical", c, "active_power_kw"), TIMES[steps], power_c[steps], bulk=True)
        store.write_arrays(SeriesKey.of("electrical", c, "energy_kwh"), TIMES[counting], register_c[counting], bulk=True)
    return {"power_c": power_c, "power_a": power_a, "power_b": power_b, "parts": parts, "on": on, "temp": temp}


def windows(x: np.ndarray, how: str = "sum") -> np.ndarray:
    w = x.reshape(-1, 15)
    return w.sum(axis=1) if how == "sum" else w.mean(axis=1)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "w.db"
    truth = build_store(path)
    return path, truth


def test_from_store_with_a_plant(stored):
    path, truth = stored
    plant = parse_plant(PLANT, "test")
    with SQLiteStore(path) as store:
        data = IntervalData.from_store(store, plant, T0, T0 + pd.Timedelta(days=DAYS))
    assert data.machine_ids == ["s1/l1/a", "s1/l1/b", "s1/l1/c"] and data.n_times == DAYS * 96
    assert data.machines["s1/l1/a"].kind == "cnc" and data.machines["s1/l1/a"].has_register
    assert not data.machines["s1/l1/b"].has_register
    # Energy of a from its register (a rollover at 1000 kWh inside), of b from integrated power. The register's value
    # stamped at t covers the minute before t, so window k holds minutes k*15 .. k*15+14 shifted by one stamp.
    e = data.matrix("energy_kwh")
    true_a = windows(truth["power_a"]) / 60
    inner = slice(1, -1)
    np.testing.assert_allclose(e[0][inner], true_a[inner], atol=0.6)
    assert abs(np.nansum(e[0]) - truth["power_a"][:-1].sum() / 60) < 1.0  # the rollover lost nothing
    assert np.nanmin(e[0]) >= 0 and np.nanmax(e[0]) < 40 * 0.25 * 1.2
    ok = data.matrix("coverage")[1] == 1
    np.testing.assert_allclose(e[1][ok][inner], (windows(truth["power_b"]) / 60)[ok][inner], rtol=0.02)
    # The gap on b: values stored as Bad -> coverage 0 and bad share 1 in its windows, and a gap warning.
    gap_windows = np.arange(GAP.start // 15 + 1, GAP.stop // 15)
    assert (data.matrix("coverage")[1][gap_windows] == 0).all()
    assert (data.matrix("bad_share")[1][gap_windows] == 1).all()
    assert {"analytics.data.gaps", "analytics.data.short_range"} <= {w.name for w in data.warnings}
    # A change-only signal: quiet nights are not gaps, and its energy is the register's
    assert (data.matrix("coverage")[2] >= 0.9).all()  # 06:00 windows: the first value after the night is stamped 06:01
    assert data.gaps("s1/l1/c") == []
    assert np.nansum(e[2]) == pytest.approx(truth["power_c"].sum() / 60, rel=0.01)
    # States, counts, weather, materials, shifts
    run = data.matrix("s_running")[0]
    assert run.sum() == pytest.approx(truth["on"].sum() * 60, rel=0.01)
    assert np.nansum(data.matrix("good")[0]) == pytest.approx(truth["parts"][:-1].sum(), abs=2)
    np.testing.assert_allclose(data.matrix("outdoor_temp_c")[0][inner], windows(truth["temp"], "mean")[inner], atol=0.3)
    assert data.materials["kg"].sum() == pytest.approx(truth["parts"][:-1].sum() * 0.5, abs=1.0)
    assert set(data.materials["material"]) == {"MAT-1"}
    shift = data.matrix("shift")[0]
    t = data.times
    assert (shift[(t.hour >= 6) & (t.hour < 22)] == 1).all() and (shift[(t.hour < 6) | (t.hour >= 22)] == 0).all()


def test_from_store_without_a_plant_says_what_cannot_be_assessed(stored):
    path, _ = stored
    with SQLiteStore(path) as store:
        data = IntervalData.from_store(store, None, T0, T0 + pd.Timedelta(days=DAYS), timezone="Europe/Berlin")
    assert data.machine_ids == ["s1/l1/a", "s1/l1/b", "s1/l1/c"]
    assert all(m.kind == "other" and m.calendar is None and m.timezone == "Europe/Berlin" for m in data.machines.values())
    assert (data.matrix("shift") == -1).all()
    note = next(w for w in data.warnings if w.name == "analytics.data.no_plant")
    assert "off_shift_load" in note.details["causes"]
    # without register_max the drop is taken for a reset: energy is never negative
    assert np.nanmin(data.matrix("energy_kwh")) >= 0


def test_a_store_without_energy_data_is_a_clear_error(tmp_path):
    with SQLiteStore(tmp_path / "empty.db") as store:
        store.write_arrays(SeriesKey.of("weather", {"site": "s1"}, "outdoor_temp_c"), TIMES[:10], np.ones(10))
        with pytest.raises(InsufficientDataError, match="no electrical data"):
            IntervalData.from_store(store, None, T0, T0 + pd.Timedelta(days=1))


def test_one_minute_resolution_for_a_cause_that_needs_it(stored):
    path, _ = stored
    plant = parse_plant(PLANT, "test")
    with SQLiteStore(path) as store:
        data = IntervalData.from_store(store, plant, T0 + pd.Timedelta(hours=5), T0 + pd.Timedelta(hours=7),
                                       resolution_s=60)
    assert data.resolution_s == 60 and data.n_times == 120
    power = data.matrix("power_mean_kw")[0]
    # 06:00 is when production starts: the 1-min windows show the step that 15-min windows blur
    t = data.times
    assert power[t < T0 + pd.Timedelta(hours=5, minutes=59)].max() < 1.0
    assert power[t >= T0 + pd.Timedelta(hours=6, minutes=1)].min() > 20.0

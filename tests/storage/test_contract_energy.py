"""The energy questions every backend answers: Store.aggregate and Store.read_frame on SQLite, SQLite through the
writer process, and InfluxDB (the ``store`` fixture of conftest.py).

Expected values are worked out by hand from the signals written (see the comments) or computed here with pandas from
the raw arrays, never copied from a backend's answer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import StoreError
from core.model import SeriesKey, to_ns
from core.storage.base import ROLLUP_RESOLUTIONS_S, Column, choose_rollup
from core.storage.intervals import SEMANTICS_CHANGED
from core.storage.sqlite import SQLiteStore
from tests.storage.test_contract import BASE, NS

MIN = 60 * NS
H = 3600 * NS
BERLIN = "Europe/Berlin"


def key(machine: str, measurement: str, field: str, line: str = "L1") -> SeriesKey:
    return SeriesKey.of(measurement, {"site": "north", "line": line, "machine": machine}, field)


def write(store, series: list[tuple[SeriesKey, np.ndarray, np.ndarray, np.ndarray | None]]) -> None:
    for k, t, v, s in series:
        store.write_arrays(k, np.asarray(t, dtype=np.int64), np.asarray(v, dtype=float), s)
    store.flush()


def values_by_time(frame: pd.DataFrame) -> dict[int, float]:
    return dict(zip(frame["time"].astype("int64").tolist(), frame["value"].tolist()))


# -- counters ------------------------------------------------------------------------------------------------------------
def counter_with_rollover_and_reset():
    """A 1000-kWh register read every 15 min rising 2.5 kWh per reading (10 kWh/h): it rolls over between readings 7
    (997.5) and 8 (0.0) and is reset between 39 (77.5) and 40 (2.5, flagged by the collector)."""
    i = np.arange(60)
    v = np.where(i < 40, (980 + 2.5 * i) % 1000, 2.5 * (i - 39))
    status = np.where(i == 40, SEMANTICS_CHANGED, 0) | np.where(i == 8, SEMANTICS_CHANGED, 0)
    return BASE + i * 15 * MIN, v, status


def test_increase_with_rollover_and_reset(store):
    t, v, status = counter_with_rollover_and_reset()
    k = key("m1", "electrical", "energy_kwh")
    write(store, [(k, t, v, status)])
    got = store.aggregate("electrical", "energy_kwh", BASE, BASE + 15 * H, every=3600, agg="increase",
                          register_max=1000)
    assert list(got.columns) == ["time", "line", "machine", "site", "value"]
    assert got["time"].astype("int64").tolist() == [BASE + h * H for h in range(15)]
    # every reading adds 2.5: 10 per hour; the last hour has readings up to 14:45 only (three steps)
    np.testing.assert_allclose(got["value"], [10.0] * 14 + [7.5])
    # without the register's maximum the drop from 997.5 is a reset: it counts 0 instead of 2.5
    plain = values_by_time(store.aggregate("electrical", "energy_kwh", BASE, BASE + 3 * H, every=3600, agg="increase"))
    assert plain == pytest.approx({BASE: 10.0, BASE + H: 7.5, BASE + 2 * H: 10.0})
    # a range starting inside a reading interval: the step 6 -> 7 (90-105 min) counts its last 5 min (2.5 / 3), the
    # step across the rollover (105-120 min) all of it; the window keeps its label
    part = store.aggregate("electrical", "energy_kwh", BASE + 100 * MIN, BASE + 2 * H, every=3600, agg="increase",
                           register_max=1000)
    assert values_by_time(part) == pytest.approx({BASE + H: 2.5 / 3 + 2.5})
    # daily total over the whole series: 59 steps of 2.5
    day = store.aggregate("electrical", "energy_kwh", BASE, BASE + 86400 * NS, every="1d", agg="increase",
                          register_max=1000)
    assert day["value"].tolist() == pytest.approx([59 * 2.5])


# -- time-weighted -------------------------------------------------------------------------------------------------------
def deadband_power():
    """A deadband-filtered power signal: 10 kW at 0, 40 kW at 20 min, missing (Bad) at 50 min, 20 kW at 70 min."""
    t = BASE + np.array([0, 20, 50, 70]) * MIN
    return t, np.array([10.0, 40.0, np.nan, 20.0]), np.array([0, 0, 0x80000000, 0])


def test_time_weighted_mean_and_integral(store):
    t, v, s = deadband_power()
    write(store, [(key("m1", "electrical", "active_power_kw"), t, v, s)])
    args = ("electrical", "active_power_kw", BASE, BASE + 2 * H)
    mean = values_by_time(store.aggregate(*args, every=3600, agg="twmean"))
    # first hour: 10 kW for 20 min, 40 kW for 30 min, nothing known for 10 min: (200 + 1200) / 50 = 28 kW
    # second hour: unknown until 70 min, then 20 kW for 50 min
    assert mean == pytest.approx({BASE: 28.0, BASE + H: 20.0})
    energy = values_by_time(store.aggregate(*args, every=3600, agg="integral"))
    assert energy == pytest.approx({BASE: 1400 / 60, BASE + H: 20 * 50 / 60})  # [kWh]
    # a 10-min hold: 10 kW over [0, 10), 40 kW over [20, 30) only
    held = values_by_time(store.aggregate(*args, every=3600, agg="twmean", max_hold_s=600))
    assert held == pytest.approx({BASE: 25.0, BASE + H: 20.0})
    # a range starting at 30 min: the 40 kW set at 20 min holds into it
    late = values_by_time(store.aggregate("electrical", "active_power_kw", BASE + 30 * MIN, BASE + H, every=3600,
                                          agg="integral"))
    assert late == pytest.approx({BASE: 40 * 20 / 60})
    # the windowed mean of the stored values is biased for such a signal (the contrast the time weighting removes)
    plain = store.aggregate(*args, every=3600, agg="mean")
    assert values_by_time(plain)[BASE] == pytest.approx(25.0)


def test_state_seconds_add_up_to_the_window_when_the_state_is_known(store):
    # running from before the range (at -10 min), idle at 25 min, off at 70 min, running at 100 min
    t = BASE + np.array([-10, 25, 70, 100]) * MIN
    write(store, [(key("m1", "machine_state", "state"), t, np.array([2.0, 1.0, 0.0, 2.0]), None)])
    got = store.aggregate("machine_state", "state", BASE, BASE + 2 * H, every=3600, agg="state_seconds")
    assert list(got.columns) == ["time", "line", "machine", "site", "state", "value"]
    seconds = {(int(r.time.value), int(r.state)): r.value for r in got.itertuples()}
    assert seconds == pytest.approx({
        (BASE, 2): 25 * 60, (BASE, 1): 35 * 60,  # running until 25 min, idle after
        (BASE + H, 1): 10 * 60, (BASE + H, 0): 30 * 60, (BASE + H, 2): 20 * 60,
    })
    assert got.groupby("time")["value"].sum().tolist() == [3600.0, 3600.0]


# -- local time ----------------------------------------------------------------------------------------------------------
DST_START = to_ns("2026-03-28T00:00:00+01:00")  # three local days around 29 March 2026 (23 h long in Berlin)
DST_STOP = to_ns("2026-03-31T00:00:00+02:00")


def dst_plant():
    """Two machines every minute over the three days: m1 at a constant 6 kW with a register rising 0.1 kWh per
    minute; m2 at a random power."""
    t = np.arange(DST_START, DST_STOP, MIN, dtype=np.int64)
    p2 = np.round(np.random.default_rng(5).normal(30, 6, len(t)), 3)
    return t, [
        (key("m1", "electrical", "active_power_kw"), t, np.full(len(t), 6.0), None),
        (key("m1", "electrical", "energy_kwh"), t, 500 + 0.1 * np.arange(len(t)), None),
        (key("m2", "electrical", "active_power_kw", "L2"), t, p2, None),
    ]


def test_local_days_across_a_dst_change(store):
    t, series = dst_plant()
    write(store, series)
    days = [to_ns(d) for d in ("2026-03-28T00:00:00+01:00", "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00")]
    kwargs = {"every": "1d", "tz": BERLIN, "tags": {"machine": "m1"}}
    energy = store.aggregate("electrical", "energy_kwh", DST_START, DST_STOP, agg="increase", **kwargs)
    assert energy["time"].astype("int64").tolist() == days
    # 0.1 kWh a minute: 144 kWh in 24 h, 138 kWh on the 23-h day; the last day ends at its last reading (23:59)
    assert energy["value"].tolist() == pytest.approx([144.0, 138.0, 143.9])
    integral = store.aggregate("electrical", "active_power_kw", DST_START, DST_STOP, agg="integral", **kwargs)
    assert integral["value"].tolist() == pytest.approx([144.0, 138.0, 144.0])
    count = store.aggregate("electrical", "active_power_kw", DST_START, DST_STOP, agg="count", **kwargs)
    assert count["value"].tolist() == [1440, 1380, 1440] and count["value"].dtype.kind == "i"
    # every windowed aggregation of the random machine against pandas over local calendar days
    raw = pd.DataFrame({"time": pd.to_datetime(t, unit="ns", utc=True), "value": series[2][2]})
    local = raw["time"].dt.tz_convert(BERLIN).dt.floor("D", ambiguous=False, nonexistent="shift_forward")
    for agg in ("mean", "sum", "min", "max", "last", "count"):
        exp = raw.groupby(local)["value"].agg(agg)
        got = store.aggregate("electrical", "active_power_kw", DST_START, DST_STOP, agg=agg, every="1d", tz=BERLIN,
                              tags={"machine": "m2"})
        assert got["time"].astype("int64").tolist() == exp.index.tz_convert("UTC").as_unit("ns").asi8.tolist()
        np.testing.assert_allclose(got["value"].to_numpy(dtype=float), exp.to_numpy(dtype=float), rtol=1e-9,
                                   err_msg=agg)


def test_hours_in_a_half_hour_zone(store):
    t, series = dst_plant()
    write(store, series[2:])
    start, stop = DST_START + 2 * H, DST_START + 8 * H
    got = store.aggregate("electrical", "active_power_kw", start, stop, every=3600, agg="max", tz="Asia/Kolkata")
    times = got["time"].astype("int64").to_numpy()
    assert ((times - start) % H == H // 2).all()  # local hours start at :30 UTC
    values = series[2][2]
    for window, value in zip(times, got["value"]):
        sel = (t >= max(window, start)) & (t < min(window + H, stop))
        assert value == values[sel].max()
    assert len(got) == 7  # six hours cut into 0.5 + 5 + 0.5 local hours


class RecordingStore(SQLiteStore):
    """The embedded store, noting the windowed queries the generic aggregation makes."""

    def __init__(self, path):
        super().__init__(path)
        self.calls = []

    def query(self, measurement, field, start, stop, tags=None, window_s=None, agg="mean", pivot=None):
        self.calls.append((to_ns(start), to_ns(stop), window_s, agg))
        return super().query(measurement, field, start, stop, tags, window_s, agg, pivot)


def test_a_year_of_local_days_is_read_from_rollups(tmp_path):
    store = RecordingStore(tmp_path / "rec.db")
    try:
        t = np.arange(to_ns("2026-01-01T00:00:00+00:00"), to_ns("2027-01-01T00:00:00+00:00"), 900 * NS)
        write(store, [(key("m1", "electrical", "active_power_kw"), t, np.ones(len(t)), None)])
        start, stop = to_ns("2026-01-01T00:00:00+01:00"), to_ns("2027-01-01T00:00:00+01:00")
        for tz, every, res in ((BERLIN, "1d", 3600), ("Asia/Kolkata", 3600, 900), (BERLIN, "1mo", 3600)):
            store.calls.clear()
            got = store.aggregate("electrical", "active_power_kw", start, stop, every=every, agg="count", tz=tz)
            assert int(got["value"].sum()) == int(((t >= start) & (t < stop)).sum())
            for lo, hi, window_s, _ in store.calls:  # every read is answered from a rollup at least as coarse as res
                assert window_s is not None and choose_rollup(window_s, lo, hi) in ROLLUP_RESOLUTIONS_S
                assert choose_rollup(window_s, lo, hi) >= res or hi - lo < res * NS
    finally:
        store.close()


# -- read_frame ----------------------------------------------------------------------------------------------------------
COLUMNS = [
    Column("energy_kwh", "electrical", "energy_kwh", "increase", register_max=1000.0),
    Column("power_mean_kw", "electrical", "active_power_kw", "twmean"),
    Column("power_max_kw", "electrical", "active_power_kw", "max"),
    Column("s", "machine_state", "state", "state_seconds"),
    Column("good", "production", "good_count", "increase"),
]


def frame_plant():
    """Three machines over 30 h with jittered sampling: power, an energy register that rolls over at 1000, states
    changing every ~40 min; only m1 and m2 count good parts."""
    rng = np.random.default_rng(11)
    series = []
    for m, machine in enumerate(("m1", "m2", "m3")):
        line = "L1" if m < 2 else "L2"
        t = DST_START + np.cumsum(rng.integers(40, 80, 1800)) * NS
        t = t[t < DST_START + 30 * H]
        p = rng.uniform(5, 50, len(t))
        e = (900 + np.cumsum(p * np.diff(t, prepend=t[0]) / NS / 3600)) % 1000
        series += [(key(machine, "electrical", "active_power_kw", line), t, p, None),
                   (key(machine, "electrical", "energy_kwh", line), t, e, None)]
        st = t[::40]
        series.append((key(machine, "machine_state", "state", line), st, rng.integers(0, 4, len(st)).astype(float), None))
        if machine != "m3":
            series.append((key(machine, "production", "good_count", line), t[::10], np.arange(len(t[::10])) * 3.0, None))
    return series


def test_read_frame_aligns_columns_and_does_not_depend_on_chunking(store):
    write(store, frame_plant())
    start, stop = DST_START + 30 * MIN, DST_START + 30 * H
    kw = {"every": 3600, "tz": BERLIN}
    small = list(store.read_frame(COLUMNS, start, stop, chunk_s=3 * 3600, **kw))
    large = list(store.read_frame(COLUMNS, start, stop, chunk_s=7 * 86400, **kw))
    assert len(small) == 10 and len(large) == 1
    frame = pd.concat(small, ignore_index=True)
    expected_columns = ["time", "site", "line", "machine", "energy_kwh", "power_mean_kw", "power_max_kw", "s_off",
                        "s_idle", "s_running", "s_fault", "good"]
    assert list(frame.columns) == expected_columns
    pd.testing.assert_frame_equal(frame.sort_values(["machine", "time"]).reset_index(drop=True),
                                  large[0].sort_values(["machine", "time"]).reset_index(drop=True),
                                  check_exact=False, rtol=1e-9)
    assert not frame.duplicated(["machine", "time"]).any() and len(frame) == 3 * 30
    # each column equals the single-field aggregation, row by row
    for col in COLUMNS:
        alone = store.aggregate(col.measurement, col.field, start, stop, agg=col.agg, register_max=col.register_max,
                                **kw)
        if col.agg == "state_seconds":
            alone = alone[alone["state"] == 2].rename(columns={"value": "s_running"})
            name = "s_running"
        else:
            name = col.name
            alone = alone.rename(columns={"value": name})
        merged = frame.merge(alone[["machine", "time", name]], on=["machine", "time"], suffixes=("", "_alone"))
        assert len(merged) == len(alone) > 0
        np.testing.assert_allclose(merged[name], merged[f"{name}_alone"], rtol=1e-9, err_msg=col.name)
    # the state is known throughout (a state sample before the range and every ~40 min): seconds add up to the window
    states = frame[["s_off", "s_idle", "s_running", "s_fault"]].sum(axis=1).to_numpy()
    lengths = np.minimum(frame["time"].astype("int64") + H, stop) - np.maximum(frame["time"].astype("int64"), start)
    np.testing.assert_allclose(states, lengths / NS)
    assert frame.loc[frame.machine == "m3", "good"].isna().all() and frame.loc[frame.machine != "m3", "good"].notna().all()


def test_read_frame_sums_series_sharing_the_by_tags_and_refuses_means(store):
    write(store, frame_plant())
    start, stop = DST_START, DST_START + 6 * H
    cols = [Column("energy_kwh", "electrical", "energy_kwh", "increase", register_max=1000.0)]
    per_line = pd.concat(store.read_frame(cols, start, stop, every="1d", tz=BERLIN, by=("line",)))
    per_machine = pd.concat(store.read_frame(cols, start, stop, every="1d", tz=BERLIN))
    assert per_line.set_index("line")["energy_kwh"].to_dict() == pytest.approx(
        per_machine.groupby("line")["energy_kwh"].sum().to_dict())
    with pytest.raises(StoreError, match="power_mean_kw"):
        list(store.read_frame([Column("power_mean_kw", "electrical", "active_power_kw", "twmean")], start, stop,
                              every="1d", tz=BERLIN, by=("line",)))


def test_bad_arguments_name_the_value(store):
    with pytest.raises(StoreError, match="median"):
        store.aggregate("electrical", "active_power_kw", BASE, BASE + H, every=3600, agg="median")
    with pytest.raises(StoreError, match="Mars/Olympus"):
        store.aggregate("electrical", "active_power_kw", BASE, BASE + H, every="1d", agg="twmean", tz="Mars/Olympus")
    with pytest.raises(StoreError, match="fortnight"):
        list(store.read_frame(COLUMNS, BASE, BASE + H, every="fortnight"))


def test_sparse_series_give_the_same_answer_whatever_the_chunking(store):
    """Signals stored only on change (OPC UA data-change subscriptions): silent for longer than a chunk, with the last
    value before the range five hours back (beyond the raw look-back, found through the rollups)."""
    hours = np.array([-5, 7, 20, 26])
    write(store, [
        (key("m4", "machine_state", "state"), DST_START + hours * H, np.array([2.0, 1.0, 0.0, 2.0]), None),
        (key("m4", "electrical", "active_power_kw"), DST_START + hours * H, np.array([30.0, 5.0, 0.5, 30.0]), None),
        (key("m4", "electrical", "energy_kwh"), DST_START + np.array([-5, 5, 15, 29]) * H,
         np.array([100.0, 400.0, 450.0, 870.0]), None),
    ])
    cols = [Column("energy_kwh", "electrical", "energy_kwh", "increase"),
            Column("power_mean_kw", "electrical", "active_power_kw", "twmean"),
            Column("kwh", "electrical", "active_power_kw", "integral"),
            Column("s", "machine_state", "state", "state_seconds")]
    start, stop = DST_START, DST_START + 24 * H
    frames = {chunk: pd.concat(store.read_frame(cols, start, stop, every=3600, tz=BERLIN, chunk_s=chunk),
                               ignore_index=True) for chunk in (3600, 5 * 3600, 86400)}
    for chunk in (3600, 5 * 3600):
        pd.testing.assert_frame_equal(frames[chunk], frames[86400], check_exact=False, rtol=1e-12)
    frame = frames[86400]
    assert len(frame) == 24
    # running (from -5 h) until 7 h, idle until 20 h, off after: every hour fully known
    assert frame["s_running"].sum() == 7 * 3600 and frame["s_idle"].sum() == 13 * 3600
    assert frame["s_off"].sum() == 4 * 3600 and (frame[["s_off", "s_idle", "s_running", "s_fault"]].sum(axis=1) == 3600).all()
    # step-held power: 30 kW for 7 h, 5 kW for 13 h, 0.5 kW for 4 h
    assert frame["kwh"].sum() == pytest.approx(30 * 7 + 5 * 13 + 0.5 * 4)
    # the register: 300 over [-5 h, 5 h) (150 of it in range), 50 over [5, 15 h), 420 over [15, 29 h) (9/14 in range)
    assert frame["energy_kwh"].sum() == pytest.approx(150 + 50 + 420 * 9 / 14)
    assert frame["energy_kwh"].iloc[0] == pytest.approx(30.0)

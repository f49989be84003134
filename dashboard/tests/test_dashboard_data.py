"""Unit tests of dashboard.data on a temporary SQLite store (no browser, no web server)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from core.storage.base import choose_rollup
from dashboard.data import (
    TIME_RANGES,
    aligned_range,
    counter_increase,
    energy_today,
    format_age,
    get_time_range,
    line_totals,
    live_view,
    local_midnight_ns,
    machine_states,
    plant_power,
    power_by_machine,
    resolve_timezone,
    series_rows,
)
from dashboard.errors import DashboardError
from dashboard.tests.helpers import (
    NOW_NS,
    NS,
    fill_plant,
    machine_tags,
    write_field,
    write_power,
)

UTC = ZoneInfo("UTC")
NOW_S = NOW_NS // NS


@pytest.mark.parametrize(
    "key, expected_rollup", [("15m", None), ("1h", 60), ("24h", 60), ("7d", 3600)]
)
def test_ranges_are_aligned_so_the_rollups_answer(key, expected_rollup):
    time_range = get_time_range(key)
    start, stop = aligned_range(time_range, NOW_NS)
    w = time_range.window_s * NS
    assert start % w == 0 and stop % w == 0
    assert stop - start == time_range.span_s * NS
    assert 0 < stop - NOW_NS <= w  # the window holding "now" is the last one
    assert choose_rollup(time_range.window_s, start, stop) == expected_rollup


def test_unknown_range_names_the_valid_ones():
    with pytest.raises(DashboardError, match="15m, 1h, 24h, 7d"):
        get_time_range("3w")
    assert get_time_range(None).key == "15m"
    assert [r.key for r in TIME_RANGES] == ["15m", "1h", "24h", "7d"]


def test_power_by_machine_means_per_aligned_window(store):
    written = fill_plant(store, NOW_S, 1800, step_s=5)
    time_range = get_time_range("1h")
    start, stop = aligned_range(time_range, NOW_NS)
    frame = power_by_machine(store, start, stop, 60)
    assert set(frame["label"]) == set(written)  # machine names are unique: the label is the machine tag
    _tags, times, power = written["l2-m1"]
    got = frame[frame["label"] == "l2-m1"].set_index("time")["value"]
    expected = pd.Series(power, index=pd.to_datetime(times // 60 * 60 * NS, unit="ns", utc=True)).groupby(level=0).mean()
    pd.testing.assert_series_equal(got, expected, check_names=False, check_freq=False, atol=1e-9, rtol=0)
    assert frame["line"].eq(frame["label"].str[:2].str.upper()).all()


def test_power_by_machine_on_an_empty_store_has_the_columns(store):
    frame = power_by_machine(store, NOW_NS - 900 * NS, NOW_NS, 10)
    assert frame.empty
    assert list(frame.columns) == ["time", "site", "line", "machine", "label", "value"]
    assert line_totals(frame).empty


def test_labels_disambiguate_machines_with_the_same_name(store):
    for line in ("L1", "L2"):
        write_power(store, machine_tags(line, "press"), [NOW_S - 30], [5.0])
    frame = power_by_machine(store, NOW_NS - 900 * NS, NOW_NS + NS, 10)
    assert sorted(frame["label"]) == ["L1/press", "L2/press"]


def test_line_totals_sum_machines_and_fill_only_the_lagging_newest_window(store):
    t0 = NOW_S // 60 * 60 - 300
    a, b, c = (machine_tags("L1", m) for m in ("a", "b", "c"))
    write_power(store, a, [t0, t0 + 60, t0 + 120], [10.0, 11.0, 12.0])
    write_power(store, b, [t0, t0 + 60], [1.0, 2.0])  # b's newest minute has not arrived yet
    write_power(store, c, [t0], [100.0])  # c stopped reporting two windows ago
    write_power(store, machine_tags("L2", "x"), [t0 + 60], [7.0])
    machines = power_by_machine(store, t0 * NS, (t0 + 180) * NS, 60)
    lines = line_totals(machines)
    l1 = lines[lines["line"] == "L1"].set_index("time")
    times = pd.to_datetime([t0, t0 + 60, t0 + 120], unit="s", utc=True)
    # c is carried one window (t0+60) but not two; b is carried into t0+120.
    assert l1.loc[times, "value"].tolist() == [111.0, 113.0, 14.0]
    assert l1.loc[times, "reporting"].tolist() == [3, 3, 2]
    assert (l1["machines"] == 3).all()
    l2 = lines[lines["line"] == "L2"]
    assert l2["value"].tolist() == [7.0] and l2["label"].tolist() == ["L2"]


def test_plant_power_leaves_out_stale_machines(store):
    write_power(store, machine_tags("L1", "a"), [NOW_S - 2], [12.5])
    write_power(store, machine_tags("L1", "b"), [NOW_S - 5], [7.5])
    write_power(store, machine_tags("L1", "c"), [NOW_S - 3600], [1000.0])
    result = plant_power(store, NOW_NS, stale_after_s=300)
    assert result.total_kw == pytest.approx(20.0)
    assert (result.machines, result.stale) == (2, 1)
    assert result.as_of_ns == (NOW_S - 2) * NS
    assert plant_power(store, NOW_NS + 10_000 * NS, 300).total_kw is None


def test_plant_power_counts_recent_bad_values_apart_from_stale_ones(store):
    write_power(store, machine_tags("L1", "a"), [NOW_S - 2], [12.5])
    write_power(store, machine_tags("L1", "b"), [NOW_S - 2], [float("nan")])  # stored as missing (Bad status)
    result = plant_power(store, NOW_NS, stale_after_s=300)
    assert (result.total_kw, result.machines, result.stale, result.bad) == (12.5, 1, 0, 1)


def test_counter_increase_reads_a_drop_as_a_reset():
    assert counter_increase(np.array([5.0, 6.0, 8.0])) == 3.0
    assert counter_increase(np.array([998.0, 999.5, 0.5, 2.0])) == pytest.approx(1.5 + 0.5 + 1.5)
    assert counter_increase(np.array([4.0, np.nan, 6.0])) == 2.0
    assert counter_increase(np.array([4.0])) == 0.0


def test_local_midnight_is_in_the_plant_time_zone():
    tz = ZoneInfo("Europe/Berlin")
    midnight_s = local_midnight_ns(NOW_NS, tz) // NS
    assert midnight_s == NOW_S - (11 * 3600 + 7)  # 10:00:07 UTC is 11:00:07 in Berlin (CET)


def test_energy_today_uses_the_register_then_power(store):
    tz = ZoneInfo("Europe/Berlin")
    midnight = local_midnight_ns(NOW_NS, tz) // NS
    reg = machine_tags("L1", "with-register")
    # Reading before midnight is the day's starting point; the meter resets once during the day.
    write_field(store, "electrical", "energy_kwh", reg, [midnight - 600, midnight + 600, midnight + 3600, midnight + 7200],
                [500.0, 510.0, 2.0, 12.0])
    write_power(store, reg, [midnight + 600], [999.0])  # ignored: the register wins
    pw = machine_tags("L1", "power-only")
    # 30 kW for the two whole minutes before now's minute, 60 kW in now's (running) minute.
    minute = NOW_S // 60 * 60
    write_power(store, pw, [minute - 120, minute - 60, minute], [30.0, 30.0, 60.0])
    write_power(store, machine_tags("L1", "yesterday"), [midnight - 60], [50.0])
    result = energy_today(store, NOW_NS, tz)
    elapsed = NOW_S - minute
    expected = (10.0 + 2.0 + 10.0) + 30.0 * 120 / 3600 + 60.0 * elapsed / 3600
    assert result.kwh == pytest.approx(expected)
    assert (result.from_register, result.from_power) == (1, 1)


def test_energy_today_counts_from_the_first_reading_when_metering_started_today(store):
    # A collector started 20 s ago: three readings inside one minute, none before midnight.
    minute = NOW_S // 60 * 60
    reg = machine_tags("L1", "new-meter")
    write_field(store, "electrical", "energy_kwh", reg, [minute + 1, minute + 4, minute + 7], [100.0, 100.5, 101.25])
    result = energy_today(store, NOW_NS, UTC)
    assert result.kwh == pytest.approx(1.25)
    assert result.from_register == 1


def test_energy_today_is_none_without_data(store):
    assert energy_today(store, NOW_NS, UTC).kwh is None


def test_machine_states_counts_and_stale_is_unknown(store):
    for name, code, age in (("a", 2, 1), ("b", 2, 3), ("c", 1, 1), ("d", 0, 1), ("e", 3, 1), ("f", 2, 4000), ("g", 9, 1)):
        write_field(store, "machine_state", "state", machine_tags("L1", name), [NOW_S - age], [code])
    states = machine_states(store, NOW_NS, stale_after_s=300)
    assert states.counts == {"off": 1, "idle": 1, "running": 2, "fault": 1, "unknown": 2}
    assert states.total == 7


def test_series_rows_flag_stale_series(store):
    write_power(store, machine_tags("L1", "fresh"), [NOW_S - 20, NOW_S - 10], [1.0, 2.0])
    write_power(store, machine_tags("L1", "old"), [NOW_S - 7200], [1.0])
    write_field(store, "weather", "outdoor_temp_c", {"site": "north"}, [NOW_S - 5], [4.0])
    rows = series_rows(store, NOW_NS, UTC, stale_after_s=300)
    by_machine = {r["tags"]: r for r in rows}
    fresh = by_machine["line=L1 · machine=fresh · site=north"]
    assert (fresh["count"], fresh["status"], fresh["unit"], fresh["age"]) == (2, "ok", "kW", "10 s")
    assert fresh["first"] == "2026-11-26 09:59:47" and fresh["last"] == "2026-11-26 09:59:57"
    old = by_machine["line=L1 · machine=old · site=north"]
    assert old["status"] == "stale" and old["age"] == "2.0 h"
    assert by_machine["site=north"]["unit"] == "°C"
    assert [r["measurement"] for r in rows] == ["electrical", "electrical", "weather"]


def test_live_view_on_an_empty_and_a_filled_store(store):
    view = live_view(store, "15m", NOW_NS, UTC, 300)
    assert not view.has_power_series and view.machines.empty and view.power.total_kw is None
    fill_plant(store, NOW_S, 600)
    view = live_view(store, "15m", NOW_NS, UTC, 300)
    assert view.has_power_series and view.machines["label"].nunique() == 5
    assert sorted(view.lines["label"].unique()) == ["L1", "L2"]
    assert view.states.counts["running"] == 3 and view.states.counts["idle"] == 2
    assert view.last_power_ns == (NOW_S - 5) * NS  # fill_plant's last sample: end - step


def test_format_age_and_timezones():
    assert [format_age(s) for s in (None, 3, 600, 7200, 3 * 86400)] == ["—", "3 s", "10 min", "2.0 h", "3.0 d"]
    assert str(resolve_timezone("Asia/Tokyo")) == "Asia/Tokyo"
    with pytest.raises(DashboardError, match="Europe/Berlin"):
        resolve_timezone("Mars/Olympus")

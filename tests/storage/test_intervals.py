"""core.storage.intervals: windows in local time, counter increases, step-held means, integrals and state durations.

Every expected value is worked out by hand in the comments next to it.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import StoreError
from core.model import to_ns
from core.storage.intervals import (
    SEMANTICS_CHANGED,
    classify_drop,
    counter_deltas,
    counter_increase,
    state_seconds,
    time_weighted,
    window_edges,
)

NS = 1_000_000_000
H = 3600 * NS


def iso(edges):
    import pandas as pd

    return [t.isoformat() for t in pd.to_datetime(edges, unit="ns", utc=True)]


# -- windows -------------------------------------------------------------------------------------------------------------
def test_local_days_in_berlin_last_23_and_25_hours_across_dst():
    spring = window_edges(to_ns("2026-03-28T00:00:00+01:00"), to_ns("2026-03-31T00:00:00+02:00"), "1d", "Europe/Berlin")
    assert (np.diff(spring) / H).tolist() == [24, 23, 24]  # 29 March 2026: clocks go 02:00 -> 03:00
    assert iso(spring)[:2] == ["2026-03-27T23:00:00+00:00", "2026-03-28T23:00:00+00:00"]
    autumn = window_edges(to_ns("2026-10-24T00:00:00+02:00"), to_ns("2026-10-27T00:00:00+01:00"), 86400, "Europe/Berlin")
    assert (np.diff(autumn) / H).tolist() == [24, 25, 24]  # 25 October 2026: 03:00 -> 02:00
    hours = window_edges(to_ns("2026-10-25T00:00:00+02:00"), to_ns("2026-10-26T00:00:00+01:00"), 3600, "Europe/Berlin")
    assert len(hours) - 1 == 25 and (np.diff(hours) == H).all()


def test_range_inside_a_window_gets_the_whole_window():
    edges = window_edges(to_ns("2026-06-10T10:17:00+00:00"), to_ns("2026-06-10T10:18:00+00:00"), "1d", "Europe/Berlin")
    assert iso(edges) == ["2026-06-09T22:00:00+00:00", "2026-06-10T22:00:00+00:00"]


def test_hours_in_kolkata_start_at_half_past_utc():
    edges = window_edges(to_ns("2026-01-01T00:00:00+00:00"), to_ns("2026-01-01T03:00:00+00:00"), 3600, "Asia/Kolkata")
    assert iso(edges) == ["2025-12-31T23:30:00+00:00", "2026-01-01T00:30:00+00:00", "2026-01-01T01:30:00+00:00",
                          "2026-01-01T02:30:00+00:00", "2026-01-01T03:30:00+00:00"]
    days = window_edges(to_ns("2026-01-01T00:00:00+00:00"), to_ns("2026-01-02T00:00:00+00:00"), "1d", "Asia/Kolkata")
    assert iso(days)[0] == "2025-12-31T18:30:00+00:00"


def test_calendar_months_in_local_time():
    edges = window_edges(to_ns("2026-01-15T00:00:00+00:00"), to_ns("2026-04-02T00:00:00+00:00"), "1mo", "Europe/Berlin")
    assert iso(edges) == ["2025-12-31T23:00:00+00:00", "2026-01-31T23:00:00+00:00", "2026-02-28T23:00:00+00:00",
                          "2026-03-31T22:00:00+00:00", "2026-04-30T22:00:00+00:00"]
    # 31 days, 28 days, 31 days less the hour lost on 29 March, 30 days
    assert (np.diff(edges) / H).tolist() == [744, 672, 743, 720]
    weeks = window_edges(to_ns("2026-03-04T12:00:00+00:00"), to_ns("2026-03-05T00:00:00+00:00"), "1w", "UTC")
    assert iso(weeks) == ["2026-03-02T00:00:00+00:00", "2026-03-09T00:00:00+00:00"]  # Monday to Monday


def test_windows_that_do_not_divide_a_day_are_epoch_aligned_in_utc_and_refused_elsewhere():
    edges = window_edges(7 * H + 5, 15 * H, 7 * 3600, "UTC")
    assert (edges / H).tolist() == [7, 14, 21]
    with pytest.raises(StoreError, match="does not divide a day"):
        window_edges(0, 15 * H, 7 * 3600, "Europe/Berlin")
    with pytest.raises(StoreError, match="unknown time zone 'Mars/Olympus'"):
        window_edges(0, H, 3600, "Mars/Olympus")
    with pytest.raises(StoreError, match="'fortnight' not understood"):
        window_edges(0, H, "fortnight")


# -- counters ------------------------------------------------------------------------------------------------------------
def test_classify_drop_is_the_collectors_rule():
    assert classify_drop(900.0, 5.0, 1000.0) == "rollover"  # above half of the register
    assert classify_drop(300.0, 5.0, 1000.0) == "reset"
    assert classify_drop(900.0, 5.0, None) == "reset"  # maximum unknown: always a reset


def test_increase_per_window_with_rollover_and_reset():
    t = np.arange(4) * 60 * NS
    edges = np.array([0, 60, 120, 180]) * NS
    # 990 -> 998 (+8), 998 -> 4 rolls over a 1000 register (+2 + 4 = 6), 4 -> 10 (+6)
    np.testing.assert_allclose(counter_increase(t, [990, 998, 4, 10], edges, register_max=1000), [8, 6, 6])
    # 100 -> 105 (+5), 105 -> 3 is a reset (105 < 500): counts 3, 3 -> 7 (+4)
    np.testing.assert_allclose(counter_increase(t, [100, 105, 3, 7], edges, register_max=1000), [5, 3, 4])
    np.testing.assert_allclose(counter_increase(t, [100, 105, 3, 7], edges), [5, 3, 4])
    # without the register's maximum the drop from 998 is a reset too: counts 4
    np.testing.assert_allclose(counter_increase(t, [990, 998, 4, 10], edges), [8, 4, 6])


def test_flagged_reading_counts_from_zero_even_without_a_visible_drop():
    t = np.arange(4) * 60 * NS
    status = np.array([0, 0, SEMANTICS_CHANGED, 0])
    # the collector saw the register reset between 105 and 110 (a reading the store never got): 110 counts from 0
    np.testing.assert_allclose(counter_increase(t, [100, 105, 110, 112], np.array([0, 60, 120, 180]) * NS,
                                                status=status), [5, 110, 2])


def test_increase_is_spread_pro_rata_over_windows_and_gaps():
    # one step of 30 over 5 minutes: 6 per minute
    np.testing.assert_allclose(counter_increase(np.array([0, 300]) * NS, [0, 30], np.arange(0, 301, 60) * NS), [6] * 5)
    # readings at 0, 60 s, then a 1-h gap to 3660 s and 3720 s; hourly windows
    t = np.array([0, 60, 3660, 3720]) * NS
    got = counter_increase(t, [0, 1, 61, 62], np.array([0, 3600, 7200]) * NS)
    # first hour: 1 + 60 * 3540/3600 = 60; second: 60 * 60/3600 + 1 = 2; together the whole increase, 62
    np.testing.assert_allclose(got, [60, 2])


def test_increase_from_the_reading_before_the_range_and_nan_without_data():
    # prev at -60 s = 5, reading at +60 s = 7: the step of 2 lies half inside [0, 120)
    got = counter_increase(np.array([60 * NS]), [7.0], np.array([0, 120, 180]) * NS, prev=(-60 * NS, 5.0))
    np.testing.assert_allclose(got[:1], [1.0])
    assert np.isnan(got[1])  # after the last reading: unknown, not zero
    # missing readings are skipped: 4 -> (NaN) -> 6
    np.testing.assert_allclose(counter_increase(np.array([0, 60, 120]) * NS, [4, np.nan, 6], np.array([0, 180]) * NS), [2])
    assert np.isnan(counter_increase(np.array([0]), [1.0], np.array([0, 60 * NS]))).all()


def test_windows_add_up_to_the_total_increase():
    rng = np.random.default_rng(3)
    n = 5000
    t = np.cumsum(rng.integers(30, 90, n)) * NS
    steps = rng.uniform(0, 2, n)
    v = np.cumsum(steps)
    v[2000:] -= v[2000] - 1.0  # a reset to 1.0
    edges = window_edges(int(t[0]), int(t[-1]) + 1, 900)
    got = counter_increase(t, v, edges)
    total = counter_deltas(v).sum()
    assert np.nansum(got) == pytest.approx(total, rel=1e-12)
    # every step is an increase except the reset, which counts its reading (1.0)
    assert total == pytest.approx(steps[1:2000].sum() + 1.0 + steps[2001:].sum(), rel=1e-12)


def test_counter_deltas_match_the_dashboard_rule():
    assert counter_deltas(np.array([5.0, 6.0, 8.0])).tolist() == [1.0, 2.0]
    assert counter_deltas(np.array([998.0, 999.5, 0.5, 2.0])).tolist() == [1.5, 0.5, 1.5]


# -- gauges and states -------------------------------------------------------------------------------------------------
def test_time_weighted_mean_of_a_deadband_signal_is_exact():
    t = np.array([0, 600]) * NS
    edges = np.array([0, 900, 1800]) * NS
    # 10 kW for 600 s then 20 kW: (10*600 + 20*300)/900 = 13.33 (the mean of the samples, 15, is biased)
    np.testing.assert_allclose(time_weighted(t, [10.0, 20.0], edges), [40 / 3, 20.0])
    # integral in kWh: (10*600 + 20*300)/3600 = 3.333, then 20*900/3600 = 5
    np.testing.assert_allclose(time_weighted(t, [10.0, 20.0], edges, integral=True), [10 / 3, 5.0])


def test_missing_value_ends_the_hold_and_max_hold_limits_it():
    t = np.array([0, 300, 600]) * NS
    edges = np.array([0, 900]) * NS
    # 10 held [0, 300), nothing [300, 600), 20 held [600, 900): mean 15, integral (3000 + 6000)/3600
    np.testing.assert_allclose(time_weighted(t, [10.0, np.nan, 20.0], edges), [15.0])
    np.testing.assert_allclose(time_weighted(t, [10.0, np.nan, 20.0], edges, integral=True), [2.5])
    # one value, held at most 300 s
    np.testing.assert_allclose(time_weighted(np.array([0]), [10.0], edges, max_hold_s=300, integral=True), [10 * 300 / 3600])
    np.testing.assert_allclose(time_weighted(np.array([0]), [10.0], edges, max_hold_s=300), [10.0])


def test_value_before_the_range_holds_into_the_first_window():
    # 4 from -100 s until 300 s, then 8: (4*300 + 8*300)/600 = 6
    got = time_weighted(np.array([300 * NS]), [8.0], np.array([0, 600]) * NS, prev=(-100 * NS, 4.0))
    np.testing.assert_allclose(got, [6.0])
    # without it, only the known part: 8
    np.testing.assert_allclose(time_weighted(np.array([300 * NS]), [8.0], np.array([0, 600]) * NS), [8.0])
    assert np.isnan(time_weighted(np.array([700 * NS]), [8.0], np.array([0, 600, 900]) * NS)[0])


def test_state_seconds_sum_to_the_window_when_the_state_is_known():
    t = np.array([200, 1000, 2500]) * NS
    edges = np.array([0, 1800, 3600]) * NS
    got = state_seconds(t, [2, 1, 2], edges, prev=(-500 * NS, 0))
    # window 1: off [0, 200) 200 s, running [200, 1000) 800 s, idle [1000, 1800) 800 s
    # window 2: idle [1800, 2500) 700 s, running [2500, 3600) 1100 s
    assert sorted(got) == [0, 1, 2]
    np.testing.assert_allclose(got[0], [200, 0])
    np.testing.assert_allclose(got[1], [800, 700])
    np.testing.assert_allclose(got[2], [800, 1100])
    np.testing.assert_allclose(sum(got.values()), [1800, 1800])


def test_unsorted_input_and_duplicate_times_keep_the_last_value():
    t = np.array([600, 0, 600]) * NS
    got = time_weighted(t, [30.0, 10.0, 20.0], np.array([0, 1200]) * NS)
    np.testing.assert_allclose(got, [15.0])  # 10 for 600 s, then 20 (the later of the two at 600 s) for 600 s

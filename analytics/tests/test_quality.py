"""Meter faults found from interval data alone: stuck register, reset, gap, spike; clean meters give no finding."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analytics.data import IntervalData, MachineInfo
from analytics.quality import find_meter_faults

T0 = pd.Timestamp("2025-03-03", tz="UTC")  # a Monday


def minute_signals(days: int, seed: int, rated_kw: float = 50.0):
    """1-min true power and state of a two-shift machine (running 06-22 h on weekdays, idle at 15 %, off at night)."""
    rng = np.random.default_rng(seed)
    n = days * 1440
    t = T0 + pd.to_timedelta(np.arange(n), unit="min")
    hour = t.hour.to_numpy()
    work = (t.day_of_week.to_numpy() < 5) & (hour >= 6) & (hour < 22)
    idle = work & (rng.random(n // 30 + 1).repeat(30)[:n] < 0.2)
    state = np.where(work, np.where(idle, 1, 2), 0)
    power = np.where(state == 2, rated_kw * rng.uniform(0.5, 0.9, n), np.where(state == 1, 0.15 * rated_kw, 0.05))
    return t, power, state


def aggregate(path: str, t, power, state, register, res_min: int = 15) -> pd.DataFrame:
    """15-min windows the way the store builds them: register increase (a drop counted from 0), mean and max power,
    state seconds, coverage from the count of usable power values, register min and last."""
    n = len(power) // res_min
    reg = register.reshape(n, res_min)
    prev = np.concatenate(([register[0]], register))[:-1]  # reading before each minute
    delta = register - prev
    delta = np.where(delta < 0, register, delta)  # reset: counted from zero
    delta = np.where(np.isnan(register) | np.isnan(prev), np.nan, delta)
    d = delta.reshape(n, res_min)
    p = power.reshape(n, res_min)
    ok = np.isfinite(p)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows of the gap
        energy = np.where(ok.all(1), np.nansum(d, 1), np.where(ok.any(1), np.nansum(d, 1) / ok.mean(1), np.nan))
        frame = pd.DataFrame({
            "machine": path, "time": t[::res_min], "energy_kwh": energy,
            "power_mean_kw": np.where(ok.any(1), np.nanmean(np.where(ok, p, np.nan), 1), np.nan),
            "power_max_kw": np.where(ok.any(1), np.nanmax(np.where(ok, p, -np.inf), 1), np.nan),
            "s_off": (state.reshape(n, res_min) == 0).sum(1) * 60.0, "s_idle": (state.reshape(n, res_min) == 1).sum(1) * 60.0,
            "s_running": (state.reshape(n, res_min) == 2).sum(1) * 60.0, "s_fault": 0.0,
            "coverage": ok.mean(1), "bad_share": 1 - ok.mean(1),
            "register_min_kwh": np.nanmin(np.where(np.isfinite(reg), reg, np.inf), 1),
            "register_last_kwh": pd.DataFrame(reg.T).ffill().iloc[-1].to_numpy(),
        })
    frame.loc[~np.isfinite(frame["register_min_kwh"]), "register_min_kwh"] = np.nan
    return frame


def meter(power, register0=1000.0, register_max=1e6):
    """Register readings [kWh] (0.01 kWh resolution, rollover at register_max) of true 1-min power."""
    return np.floor(np.mod(register0 + np.cumsum(power) / 60.0, register_max) * 100) / 100


def at(minute_ts: str) -> int:
    return int((pd.Timestamp(minute_ts) - T0) / pd.Timedelta("1min"))


def overlaps(event, start: str, end: str) -> bool:
    return event.start <= pd.Timestamp(end) and pd.Timestamp(start) <= event.end


def faulty_data():
    days = 14
    rows = []
    infos = []
    truth = {}
    for k, name in enumerate(["clean", "faulty", "rolls"]):
        t, power, state = minute_signals(days, seed=k)
        s = at("2025-03-12 16:41Z")
        state[s - 20:s + 20], power[s - 20:s + 20] = 1, 7.5  # idling around the spike
        reg = meter(power, register0=999_900.0 if name == "rolls" else 5000.0)  # "rolls" wraps at 1e6 on day 1
        if name == "faulty":
            # stuck: register and power frozen at their last values for 2.5 h while the machine runs
            a, b = at("2025-03-04 09:07Z"), at("2025-03-04 11:37Z")
            reg[a:b], power[a:b] = reg[a - 1], power[a - 1]
            truth["meter_stuck"] = ("2025-03-04 09:07Z", "2025-03-04 11:37Z")
            # reset: the register restarts from zero
            r = at("2025-03-06 14:22Z")
            reg[r:] = reg[r:] - reg[r]
            truth["meter_reset"] = ("2025-03-06 14:22Z", "2025-03-06 14:22Z")
            # gap: 95 minutes without usable values (stored as Bad/NaN)
            g0, g1 = at("2025-03-10 07:50Z"), at("2025-03-10 09:25Z")
            reg[g0:g1], power[g0:g1] = np.nan, np.nan
            truth["meter_gap"] = ("2025-03-10 07:50Z", "2025-03-10 09:25Z")
            # spike: one power reading 8x too high while idling (the register is unaffected)
            power[s] *= 8
            truth["meter_spike"] = ("2025-03-12 16:41Z", "2025-03-12 16:41Z")
        path = f"site/l1/{name}"
        rows.append(aggregate(path, t, power, state, reg))
        infos.append(MachineInfo.from_path(path, rated_kw=50.0, register_max_kwh=1e6, sample_s=60.0))
    return IntervalData.from_frame(pd.concat(rows, ignore_index=True), resolution_s=900, machines=infos), truth


def test_each_injected_fault_is_found_with_its_span_and_nothing_else():
    data, truth = faulty_data()
    report = find_meter_faults(data)
    found = {}
    for ev in report.events:
        assert ev.excess_kwh == 0.0
        found.setdefault((ev.machine, ev.kind), []).append(ev)
    assert set(found) == {("site/l1/faulty", kind) for kind in truth}, report.counts()
    for kind, (start, end) in truth.items():
        events = found[("site/l1/faulty", kind)]
        assert len(events) == 1, (kind, events)
        assert overlaps(events[0], start, end), (kind, events[0])
        # spans are tight: within one window of the truth
        assert abs(events[0].start - pd.Timestamp(start)) <= pd.Timedelta("15min"), (kind, events[0].start)
        assert abs(events[0].end - pd.Timestamp(end)) <= pd.Timedelta("15min"), (kind, events[0].end)
    assert report.counts()["meter_stuck"] == 1


def test_mask_covers_the_faults_and_the_catch_up_but_not_clean_windows():
    data, _ = faulty_data()
    report = find_meter_faults(data)
    mask = report.mask
    assert mask.shape == (3, data.n_times)
    assert not mask[0].any() and not mask[2].any()  # clean and rollover machines
    t = data.times
    stuck = (t >= "2025-03-04 09:00Z") & (t < "2025-03-04 11:45Z")
    assert mask[1][stuck].all()
    catch_up = np.flatnonzero(t == "2025-03-04 11:30Z")[0]  # resumes at 11:37
    assert mask[1][catch_up]  # the register's jump when it resumes
    # the energy the meter shows in the catch-up window is far above what the machine can draw: masking it matters
    assert data.matrix("energy_kwh")[1][catch_up] > 50.0 * 0.25
    assert mask[1].mean() < 0.05
    assert report.frame_mask().reshape(mask.shape).sum() == mask.sum()
    assert report.to_dict()["counts"]["meter_gap"] == 1

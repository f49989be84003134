"""Calendars, weather and archetype physics."""

import datetime as dt

import numpy as np
import pytest

from simulator import machines as phys
from simulator.engine import Simulation
from simulator.plant import CalendarSpec, ClimateSpec, default_plant
from simulator.scenario import no_waste, site_occupied
from simulator.tests.conftest import MONDAY
from simulator.timeline import DAY_S, covered, day_calendar, day_number, fraction, outdoor_temperature

CAL = CalendarSpec(shifts=2, first_shift_start="06:00", shift_hours=8, holidays=(dt.date(2026, 3, 4),))


def test_workday_weekend_holiday_and_breaks():
    mon = day_calendar(CAL, "UTC", MONDAY)
    att = mon.attended
    assert att.tolist() == [[6 * 3600, 22 * 3600]]
    work = (mon.work[:, 1] - mon.work[:, 0]).sum()
    assert work == 16 * 3600 - 2 * (15 + 30) * 60  # two breaks per shift
    assert len(day_calendar(CAL, "UTC", MONDAY + 5).work) == 0  # Saturday
    assert len(day_calendar(CAL, "UTC", MONDAY + 2).work) == 0  # holiday


def test_three_shifts_and_timezone():
    cal = CalendarSpec(shifts=3, breaks=())
    day = day_calendar(cal, "Europe/Berlin", MONDAY + 1)  # Tuesday: night shift from Monday continues
    assert day.work.tolist() == [[0, DAY_S]]
    berlin = day_calendar(CAL, "Europe/Berlin", MONDAY)
    assert berlin.attended[0, 0] == 5 * 3600  # 06:00 CET is 05:00 UTC


def test_dst_shortens_the_night_shift():
    cal = CalendarSpec(shifts=3, breaks=(), workdays=("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
    sunday = day_number(dt.date(2026, 3, 29))  # clocks go forward in Berlin
    total = sum((day_calendar(cal, "Europe/Berlin", d).work[:, 1] - day_calendar(cal, "Europe/Berlin", d).work[:, 0]).sum()
                for d in (sunday,))
    assert total == DAY_S  # continuous operation still covers the whole UTC day


def test_covered_is_exact_on_any_grid():
    iv = np.array([[100.0, 250.0], [400.0, 401.0]])
    for step in (1, 7, 60):
        edges = np.arange(0, 600 + step, step, dtype=float)
        assert covered(iv, edges)[-1] == pytest.approx(151.0)
        f = fraction(iv, edges)
        assert ((f >= 0) & (f <= 1 + 1e-12)).all()


def test_weather_has_seasons_and_days():
    clim = ClimateSpec(mean_c=10, seasonal_amplitude_c=9, daily_amplitude_c=4, weather_sd_c=0)
    sec = np.arange(0, DAY_S, 3600.0)
    jan = outdoor_temperature(clim, "UTC", 0, 0, day_number(dt.date(2026, 1, 20)), sec)
    jul = outdoor_temperature(clim, "UTC", 0, 0, day_number(dt.date(2026, 7, 20)), sec)
    assert jul.mean() - jan.mean() == pytest.approx(18, abs=0.5)
    assert jan.argmax() == 15 and jan.max() - jan.min() == pytest.approx(8, abs=0.2)


def _render(plant, days=1, step=60.0, scenario=None, seed=0, start=MONDAY):
    sim = Simulation(plant, scenario if scenario is not None else no_waste(), seed, step, start, intensity=1.0)
    return sim, [sim.render(d) for d in range(start, start + days)]


def test_cnc_runs_in_shifts_and_is_off_at_night(small_plant):
    _sim, (block,) = _render(small_plant)
    ref = small_plant.machine("cnc-01")
    sig = block.machines[ref.index]
    hours = (block.times_ns - block.times_ns[0]) / 3.6e12
    night = hours < 3
    assert (sig.state[night] == phys.OFF).all()
    shift = (hours > 7) & (hours < 20)
    assert (sig.state[shift] == phys.RUNNING).mean() > 0.5
    assert sig.power[shift].mean() > 5 * sig.power[night].mean()
    assert sig.good[-1] > sig.good[0] and sig.scrap[-1] >= sig.scrap[0]
    assert (np.diff(sig.good) >= 0).all()
    assert np.nanmin(sig.pf) > 0.3 and np.nanmax(sig.pf) < 1


def test_weekend_load_is_a_fraction_of_weekdays(plant):
    _sim, blocks = _render(plant, days=7, step=900.0)
    per_day = [sum(float(m.true_power.sum()) for m in b.machines) / 4 for b in blocks]
    weekday, weekend = np.mean(per_day[:5]), np.mean(per_day[5:])
    # The steel plant data set (UCI #851) has weekend/weekday about 0.35; a two-shift discrete plant sits lower.
    assert 0.15 < weekend / weekday < 0.6


def test_furnace_heats_at_full_power_then_holds():
    plant = default_plant(5)  # includes furnace-01
    _sim, (block,) = _render(plant)
    ref = plant.machine("furnace-01")
    p = block.machines[ref.index].true_power
    rated = ref.spec.rated_kw
    assert p.max() > 0.9 * rated  # warm-up at full power
    hours = (block.times_ns - block.times_ns[0]) / 3.6e12
    assert np.median(p[(hours > 8) & (hours < 12)]) < 0.6 * rated  # holding
    assert p[hours < 1].max() < 0.05 * rated  # cold at night


def test_leak_raises_compressor_power_exactly_by_its_extra():
    plant = default_plant(8)
    ref = plant.machine("compressor-01")
    _sim, (block,) = _render(plant)
    base = block.machines[ref.index].true_power
    ev = phys.SimEvent(0, "leak", 0.0, DAY_S, {"l0": 2.0, "l1": 2.0})
    # Re-render the same day with a leak: the extra array is the difference.
    sim2 = Simulation(plant, no_waste(), 0, 60.0, MONDAY, intensity=1.0)
    orig = sim2.book.for_machine_day
    sim2.book.for_machine_day = lambda m, d: ([_planned(ev)] if m == ref.index else []) + orig(m, d)
    block2 = sim2.render(MONDAY)
    leak = sim2.book.for_machine_day(ref.index, MONDAY)[0]
    with_leak = block2.machines[ref.index].true_power
    assert (with_leak >= base - 1e-9).all() and with_leak.sum() > base.sum()
    assert leak.excess_kwh == pytest.approx((with_leak - base).sum() / 60, rel=1e-9)


def _planned(ev):
    from simulator.scenario import PlannedEvent

    if not hasattr(_planned, "cache"):
        _planned.cache = PlannedEvent(ev.eid, 0, "air_leak", "leak", MONDAY * DAY_S, (MONDAY + 1) * DAY_S, ev.params)
    return _planned.cache


def test_chiller_and_hvac_follow_outdoor_temperature(plant):
    cool = Simulation(plant, no_waste(), 0, 900.0, day_number(dt.date(2026, 1, 19)), intensity=1.0)
    hot = Simulation(plant, no_waste(), 0, 900.0, day_number(dt.date(2026, 7, 20)), intensity=1.0)
    b_cool, b_hot = cool.render(cool.start_day), hot.render(hot.start_day)
    chiller = plant.machine("chiller-01").index
    assert b_hot.machines[chiller].true_power.mean() > 1.3 * b_cool.machines[chiller].true_power.mean()
    assert b_hot.temperature["north"].mean() > b_cool.temperature["north"].mean() + 10


def test_energy_is_resolution_independent(small_plant):
    _, fine = _render(small_plant, step=60.0)
    _, coarse = _render(small_plant, step=900.0)
    e_fine = sum(m.true_power.sum() for m in fine[0].machines) / 60
    e_coarse = sum(m.true_power.sum() for m in coarse[0].machines) / 4
    assert e_fine == pytest.approx(e_coarse, rel=0.01)


def test_site_occupied_covers_shifts(plant):
    occ = site_occupied(plant.sites[0], MONDAY)
    assert occ[0, 0] < 5 * 3600 and occ[-1, 1] > 21 * 3600

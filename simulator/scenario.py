"""Scenarios: which waste and meter faults are injected, how often and how large; and the planned events.

A scenario file (YAML) sets the rate and size of each cause. ``avoidable_fraction`` (0-0.5, default 0.08) is the
target share of avoidable energy in plant energy: the simulator scales every cause's probability and size by one
factor ``intensity``, found by a quick calibration run, so that the ground truth lands near the target; set it to
``null`` to use the file's numbers as they are (intensity 1).

``planned`` lists waste that starts at a known instant (extra load on production machines; how soon is it found?).

``fixes`` lists permanent fixes (the measure whose savings are verified): from a date on (local midnight of the
machine's site) a waste cause no longer occurs on the named machines; an event running at that instant ends there.
Events are planned exactly as without the fix, so the run differs only by the removed waste, and the engine renders
the fixed machines a second time without the fix to record the true avoided energy per local day.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from core.config import FrozenModel, parse_config, read_yaml
from core.errors import ConfigError
from simulator.errors import PlantFileError
from simulator.machines import SimEvent, plan_orders
from simulator.plant import PRODUCTION_ARCHETYPES, Plant
from simulator.timeline import (
    DAY_S,
    day_calendar,
    day_date,
    is_workday,
    normalise,
    rng_for,
)

DEFAULT_SCENARIO_FILE = Path(__file__).with_name("scenarios") / "default.yaml"
BLOCK_DAYS = 28

Range = tuple[float, float]


def _check_range(value: Range, name: str) -> Range:
    if value[0] > value[1]:
        raise ValueError(f"{name}: the first number must not exceed the second, got {list(value)}")
    return value


class IdleRunning(FrozenModel):
    """Production machines left idling after the shift, over a break or over the weekend."""

    enabled: bool = True
    probability: float = Field(0.25, ge=0, le=1, description="Per production machine and working day.")
    hours: Range = (2.0, 10.0)
    weekend_probability: float = Field(0.3, ge=0, le=1, description="Chance that an idle event before a day off lasts until the next shift.")
    break_probability: float = Field(0.3, ge=0, le=1, description="Per production machine and working day: idles through a break.")
    between_orders_probability: float = Field(0.3, ge=0, le=1, description="Per production machine and working day: idles while waiting for an order.")


class OffShiftLoad(FrozenModel):
    """Lighting, HVAC, conveyors and chillers left in occupied mode from the end of work to the next start."""

    enabled: bool = True
    probability: float = Field(0.2, ge=0, le=1, description="Per utility and day with an evening.")
    archetypes: tuple[str, ...] = ("lighting", "hvac", "conveyor", "chiller")


class ExcessSpecificEnergy(FrozenModel):
    """Wrong setpoints (furnaces, moulding machines, chillers) and degrading motors."""

    enabled: bool = True
    setpoint_probability: float = Field(0.6, ge=0, le=1, description="Per eligible machine and 4 weeks.")
    setpoint_excess: Range = (0.10, 0.25)
    furnace_delta_c: Range = (40.0, 100.0)
    setpoint_days: Range = (5.0, 25.0)
    motor_probability: float = Field(0.3, ge=0, le=1, description="Per motor-driven machine and 4 weeks.")
    motor_excess: Range = (0.15, 0.40)
    motor_weeks: Range = (2.0, 8.0)


class AirLeak(FrozenModel):
    """A compressed-air leak that grows linearly over weeks until it is repaired."""

    enabled: bool = True
    probability: float = Field(1.0, ge=0, le=1, description="Per compressor and 4 weeks.")
    growth_m3_min: Range = (1.5, 5.0)
    weeks: Range = (2.0, 8.0)


class PeakDemand(FrozenModel):
    """All machines of a line started together at the shift start (instead of staggered)."""

    enabled: bool = True
    probability: float = Field(0.04, ge=0, le=1, description="Per production line and working day.")
    surge: float = Field(1.2, ge=0, le=5, description="Start surge as a multiple of rated power.")
    minutes: Range = (2.0, 6.0)


class MeterFaults(FrozenModel):
    """Meter faults (not waste): probabilities per machine and 4 weeks."""

    enabled: bool = True
    stuck_probability: float = Field(0.04, ge=0, le=1)
    stuck_hours: Range = (0.5, 4.0)
    reset_probability: float = Field(0.02, ge=0, le=1)
    gap_probability: float = Field(0.04, ge=0, le=1)
    gap_hours: Range = (0.25, 3.0)
    spike_probability: float = Field(0.05, ge=0, le=1)
    spike_factor: float = Field(8.0, ge=1, le=100)


class Fix(FrozenModel):
    """A permanent fix: waste of ``cause`` on ``machines`` stops from ``date`` (local midnight of the site) on."""

    cause: Literal["idle_running", "off_shift_load", "excess_specific_energy", "air_leak", "peak_demand"]
    machines: tuple[str, ...] = Field(min_length=1, description="Machine ids or site/line/machine paths.")
    date: dt.date


class PlannedWaste(FrozenModel):
    """Waste that starts at a known instant: ``extra_kw`` drawn on top of the machine's normal load from ``start`` for
    ``hours`` (a production machine: cnc or injection moulding), recorded in the ground truth as ``cause``. For tests
    and demonstrations that need to know when the waste starts (how soon is it found?)."""

    cause: Literal["idle_running", "off_shift_load", "excess_specific_energy", "air_leak", "peak_demand"] = (
        "excess_specific_energy")
    machines: tuple[str, ...] = Field(min_length=1, description="Machine ids or site/line/machine paths.")
    start: dt.datetime = Field(description="Start, ISO 8601 with a UTC offset.")
    hours: float = Field(gt=0, le=24 * 366)
    extra_kw: float = Field(gt=0, description="Extra load while it lasts [kW].")

    @model_validator(mode="after")
    def _aware(self) -> PlannedWaste:
        if self.start.tzinfo is None:
            raise ValueError(f"start {self.start.isoformat()} has no UTC offset; write e.g. 2026-03-02T08:00:00+00:00")
        return self


class ScenarioSpec(FrozenModel):
    """A scenario file."""

    name: str = "default"
    avoidable_fraction: float | None = Field(0.08, ge=0, le=0.5)
    intensity: float | None = Field(None, gt=0, le=100, description="Fixed intensity; skips the calibration.")
    idle_running: IdleRunning = IdleRunning()
    off_shift_load: OffShiftLoad = OffShiftLoad()
    excess_specific_energy: ExcessSpecificEnergy = ExcessSpecificEnergy()
    air_leak: AirLeak = AirLeak()
    peak_demand: PeakDemand = PeakDemand()
    meter_faults: MeterFaults = MeterFaults()
    fixes: tuple[Fix, ...] = ()
    planned: tuple[PlannedWaste, ...] = ()

    @model_validator(mode="after")
    def _ranges(self) -> ScenarioSpec:
        for cause in ("idle_running", "off_shift_load", "excess_specific_energy", "air_leak", "peak_demand", "meter_faults"):
            model = getattr(self, cause)
            for name in type(model).model_fields:
                value = getattr(model, name)
                if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, float) for v in value):
                    _check_range(value, f"{cause}.{name}")
        valid = ("lighting", "hvac", "conveyor", "chiller")
        for arch in self.off_shift_load.archetypes:
            if arch not in valid:
                raise ValueError(f"off_shift_load.archetypes: {arch!r} is not valid; valid options: {', '.join(valid)}")
        return self


def read_scenario(path: str | os.PathLike | None = None) -> ScenarioSpec:
    """Read a scenario file (YAML); the shipped default when ``path`` is None.

    Raises
    ------
    PlantFileError
        Naming the file, line, key and valid options.
    """
    path = DEFAULT_SCENARIO_FILE if path is None else path
    try:
        data, lines = read_yaml(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of causes, got {type(data).__name__}")
        return parse_config(ScenarioSpec, data, str(path), lines)
    except ConfigError as exc:
        raise PlantFileError(str(exc)) from None


def no_waste() -> ScenarioSpec:
    """A scenario without waste or meter faults (the baseline)."""
    return ScenarioSpec(
        name="none", avoidable_fraction=None, idle_running=IdleRunning(enabled=False), off_shift_load=OffShiftLoad(enabled=False),
        excess_specific_energy=ExcessSpecificEnergy(enabled=False), air_leak=AirLeak(enabled=False),
        peak_demand=PeakDemand(enabled=False), meter_faults=MeterFaults(enabled=False),
    )


# -- planned events -------------------------------------------------------------------------------------------------------
@dataclass
class PlannedEvent:
    """One injected event over its whole life, with its accumulated excess energy."""

    eid: int
    machine: int
    kind: str
    effect: str
    start_s: float  # [s since the epoch]
    end_s: float
    params: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    excess_kwh: float = 0.0
    rendered: bool = False
    #: Set on events that a fix cut short or removed: (end [s], params) as planned without the fix.
    unfixed: tuple[float, dict] | None = None

    def for_day(self, day: int, unfixed: bool = False) -> SimEvent:
        base = day * DAY_S
        end, params = self.unfixed if unfixed and self.unfixed is not None else (self.end_s, self.params)
        return SimEvent(self.eid, self.effect, self.start_s - base, end - base, params)


def _u(rng: np.random.Generator, rng_range: Range) -> float:
    return float(rng.uniform(rng_range[0], rng_range[1]))


class EventBook:
    """Plans events lazily in blocks of 28 days from the run's first day, deterministically per seed and block.

    Parameters
    ----------
    plant, scenario : Plant, ScenarioSpec
    seed : int
    origin_day : int
        First day of the run [days since the epoch].
    intensity : float
        Multiplies every waste probability and size (meter faults excepted).
    """

    def __init__(self, plant: Plant, scenario: ScenarioSpec, seed: int, origin_day: int, intensity: float = 1.0) -> None:
        self.plant, self.scenario, self.seed, self.origin = plant, scenario, int(seed), int(origin_day)
        self.intensity = float(intensity)
        self.events: list[PlannedEvent] = []
        self._by_machine: dict[int, list[PlannedEvent]] = {}
        self._removed: dict[int, list[PlannedEvent]] = {}  # events a fix removed entirely (counterfactual only)
        self._planned_blocks: set[int] = set()
        self.fixes = fix_instants(plant, scenario)
        for i, waste in enumerate(scenario.planned):
            for ref in _machine_refs(plant, waste.machines, f"planned[{i}].machines"):
                if ref.archetype not in PRODUCTION_ARCHETYPES:
                    raise PlantFileError(f"scenario planned[{i}].machines: {ref.path} is a {ref.archetype}; planned "
                                         f"waste is drawn on production machines ({', '.join(PRODUCTION_ARCHETYPES)})")
                t0 = waste.start.timestamp()
                self._add(ref.index, waste.cause, "surge", t0, t0 + waste.hours * 3600, {"kw": waste.extra_kw},
                          {"planned": True, "extra_kw": waste.extra_kw})

    def block_of(self, day: int) -> int:
        return (day - self.origin) // BLOCK_DAYS

    def for_machine_day(self, machine: int, day: int, unfixed: bool = False) -> list[PlannedEvent]:
        """Events of a machine that overlap UTC day ``day`` (with ``unfixed``: as planned without the fixes)."""
        for block in range(max(0, self.block_of(day) - 3), self.block_of(day) + 1):
            if block not in self._planned_blocks:
                self._plan_block(block)
        lo, hi = day * DAY_S, (day + 1) * DAY_S
        events = self._by_machine.get(machine, [])
        if unfixed:
            events = sorted(events + self._removed.get(machine, []), key=lambda e: e.eid)

        def end(ev: PlannedEvent) -> float:
            return ev.unfixed[0] if unfixed and ev.unfixed is not None else ev.end_s

        return [ev for ev in events if ev.start_s < hi and (end(ev) > lo or (end(ev) == ev.start_s and ev.start_s >= lo))]

    def fixed_from(self, machine: int) -> float | None:
        """Earliest fix instant of a machine [s since the epoch], None when no fix names it."""
        times = [t for (m, _), t in self.fixes.items() if m == machine]
        return min(times) if times else None

    def _add(self, machine: int, kind: str, effect: str, start_s: float, end_s: float, params=None, details=None) -> None:
        ev = PlannedEvent(len(self.events), machine, kind, effect, float(start_s), float(end_s), params or {}, details or {})
        self.events.append(ev)
        fix_s = self.fixes.get((machine, kind))
        if fix_s is not None and ev.end_s > fix_s:
            ev.unfixed = (ev.end_s, dict(ev.params))
            if ev.start_s >= fix_s:  # never happens: kept only for the counterfactual
                self._removed.setdefault(machine, []).append(ev)
                return
            # Cut short at the fix; a ramp keeps its course up to the fix (its end value is the value reached there).
            x = (fix_s - ev.start_s) / max(ev.end_s - ev.start_s, 1e-9)
            for a, b in (("d0", "d1"), ("l0", "l1")):
                if a in ev.params:
                    ev.params[b] = ev.params[a] + (ev.params[b] - ev.params[a]) * x
            ev.end_s = fix_s
            ev.details["fixed_at"] = dt.datetime.fromtimestamp(fix_s, dt.UTC).isoformat()
        self._by_machine.setdefault(machine, []).append(ev)

    def _plan_block(self, block: int) -> None:
        self._planned_blocks.add(block)
        if block < 0:
            return
        sc, k = self.scenario, self.intensity
        days = range(self.origin + block * BLOCK_DAYS, self.origin + (block + 1) * BLOCK_DAYS)
        seed = self.seed
        block_start = days[0] * DAY_S
        for ref in self.plant.machines:
            arch, m = ref.archetype, ref.index
            cal, tz = ref.calendar, ref.site.timezone
            assert cal is not None, ref  # the simulator Plant gives every site a calendar (DEFAULT_CALENDAR)
            rng = rng_for(seed, 200, block, m)  # one stream per machine and block: common random numbers across k
            u = rng.random((len(days), 8))
            x = rng.random((len(days), 8))
            if sc.idle_running.enabled and arch in PRODUCTION_ARCHETYPES:
                p = sc.idle_running
                for i, day in enumerate(days):
                    if not is_workday(cal, tz, day):
                        continue
                    att = day_calendar(cal, tz, day).attended
                    if u[i, 0] < min(1.0, p.probability * k) and len(att) and att[-1, 1] < DAY_S - 60:
                        t0 = day * DAY_S + att[-1, 1]
                        hours = p.hours[0] + x[i, 0] * (p.hours[1] - p.hours[0])
                        t1 = t0 + hours * 3600
                        reason = "left idling after the shift"
                        if not is_workday(cal, tz, day + 1) and u[i, 1] < p.weekend_probability:
                            nxt = _next_start(cal, tz, day + 1)
                            if nxt is not None:
                                t1, reason = nxt, "left idling over the days off"
                        self._add(m, "idle_running", "idle", t0, t1, details={"reason": reason, "state": "idle"})
                    if u[i, 6] < min(1.0, p.between_orders_probability * k):
                        waits = plan_orders(ref, day_calendar(cal, tz, day), seed, day, self.plant.material_kinds).waits
                        if len(waits):
                            j = int(x[i, 3] * len(waits))
                            self._add(m, "idle_running", "idle", day * DAY_S + waits[j, 0], day * DAY_S + waits[j, 1],
                                      details={"reason": "left idling while waiting for the next order", "state": "idle"})
                    brk = day_calendar(cal, tz, day).breaks
                    if u[i, 2] < min(1.0, p.break_probability * k) and len(brk):
                        j = int(x[i, 1] * len(brk))
                        self._add(m, "idle_running", "idle", day * DAY_S + brk[j, 0], day * DAY_S + brk[j, 1],
                                  details={"reason": "left idling over a break", "state": "idle"})
            if sc.off_shift_load.enabled and arch in sc.off_shift_load.archetypes:
                off = sc.off_shift_load
                for i, day in enumerate(days):
                    occ = _site_attended(self.plant, ref.site, day)
                    if u[i, 3] < min(1.0, off.probability * k) and len(occ) and occ[-1, 1] < DAY_S - 60:
                        nxt = _site_next_start(self.plant, ref.site, day + 1)
                        if nxt is not None:
                            self._add(m, "off_shift_load", "on", day * DAY_S + occ[-1, 1], nxt,
                                      details={"reason": f"{arch} left in occupied mode outside working hours"})
            ese = sc.excess_specific_energy
            if ese.enabled and arch in ("furnace", "injection_moulding", "chiller") and u[0, 4] < min(1.0, ese.setpoint_probability * k):
                t0 = block_start + x[0, 4] * BLOCK_DAYS * DAY_S
                t1 = t0 + _u(rng, ese.setpoint_days) * DAY_S
                if arch == "furnace":
                    assert ref.spec.setpoint_c is not None, ref  # the simulator Plant completes every furnace's setpoint
                    delta = _u(rng, ese.furnace_delta_c) * k
                    self._add(m, "excess_specific_energy", "setpoint", t0, t1, {"delta_c": delta},
                              {"cause": "wrong_setpoint", "setpoint_c": ref.spec.setpoint_c + delta, "correct_setpoint_c": ref.spec.setpoint_c})
                else:
                    d = _u(rng, ese.setpoint_excess) * k
                    self._add(m, "excess_specific_energy", "run_factor", t0, t1, {"d0": d, "d1": d},
                              {"cause": "wrong_setpoint", "excess_power_fraction": round(d, 4)})
            if ese.enabled and arch in ("cnc", "conveyor", "compressor", "injection_moulding") and u[0, 5] < min(1.0, ese.motor_probability * k):
                t0 = block_start + x[0, 5] * BLOCK_DAYS * DAY_S
                t1 = t0 + _u(rng, ese.motor_weeks) * 7 * DAY_S
                d = _u(rng, ese.motor_excess) * k
                self._add(m, "excess_specific_energy", "run_factor", t0, t1, {"d0": 0.0, "d1": d},
                          {"cause": "degrading_motor", "excess_power_fraction_at_end": round(d, 4)})
            if sc.air_leak.enabled and arch == "compressor" and u[0, 6] < min(1.0, sc.air_leak.probability * k):
                t0 = block_start + x[0, 6] * BLOCK_DAYS * DAY_S
                t1 = t0 + _u(rng, sc.air_leak.weeks) * 7 * DAY_S
                growth = _u(rng, sc.air_leak.growth_m3_min) * k
                self._add(m, "air_leak", "leak", t0, t1, {"l0": 0.05 * growth, "l1": growth},
                          {"leak_m3_min_at_start": round(0.05 * growth, 4), "leak_m3_min_at_end": round(growth, 4)})
            mf = sc.meter_faults
            if mf.enabled:
                t = block_start + x[0, 7] * BLOCK_DAYS * DAY_S
                v = rng.random(8)
                if u[1, 7] < mf.stuck_probability:
                    self._add(m, "meter_stuck", "meter", t, t + _u(rng, mf.stuck_hours) * 3600, details={"signal": "electrical"})
                if u[2, 7] < mf.reset_probability:
                    t_r = block_start + v[0] * BLOCK_DAYS * DAY_S
                    self._add(m, "meter_reset", "meter", t_r, t_r, details={"signal": "energy_kwh"})
                if u[3, 7] < mf.gap_probability:
                    t_g = block_start + v[1] * BLOCK_DAYS * DAY_S
                    self._add(m, "meter_gap", "meter", t_g, t_g + _u(rng, mf.gap_hours) * 3600, details={"signal": "electrical"})
                if u[4, 7] < mf.spike_probability:
                    t_s = block_start + v[2] * BLOCK_DAYS * DAY_S
                    self._add(m, "meter_spike", "meter", t_s, t_s, details={"signal": "active_power_kw", "factor": mf.spike_factor})
        if sc.peak_demand.enabled:
            self._plan_peaks(block, days)

    def _plan_peaks(self, block: int, days: range) -> None:
        p, k = self.scenario.peak_demand, self.intensity
        for site in self.plant.sites:
            for _li, line in enumerate(site.lines):
                members = [ref for ref in self.plant.machines if ref.site is site and ref.line is line
                           and ref.archetype in (*PRODUCTION_ARCHETYPES, "conveyor")]
                if not any(r.archetype in PRODUCTION_ARCHETYPES for r in members):
                    continue
                cal = line.calendar or site.calendar
                assert cal is not None, site.id  # the simulator Plant gives every site a calendar (DEFAULT_CALENDAR)
                rng = rng_for(self.seed, 300, block, members[0].index)
                u, x = rng.random(len(days)), rng.random(len(days))
                for i, day in enumerate(days):
                    att = day_calendar(cal, site.timezone, day).attended
                    if not (u[i] < min(1.0, p.probability * k) and len(att) and att[0, 0] > 0):
                        continue
                    t0 = day * DAY_S + att[0, 0]
                    t1 = t0 + (p.minutes[0] + x[i] * (p.minutes[1] - p.minutes[0])) * 60
                    group = f"{site.id}/{line.id}@{dt.datetime.fromtimestamp(t0, dt.UTC).isoformat()}"
                    peak = sum(r.spec.rated_kw * p.surge * k for r in members)
                    for ref in members:
                        self._add(ref.index, "peak_demand", "surge", t0, t1, {"kw": ref.spec.rated_kw * p.surge * k},
                                  {"group": group, "line_surge_kw": round(peak, 3), "machines": len(members)})


def fix_instants(plant: Plant, scenario: ScenarioSpec) -> dict[tuple[int, str], float]:
    """(machine index, cause) -> instant of the fix [s since the epoch]: local midnight of ``date`` at the machine's site.

    Raises
    ------
    PlantFileError
        When a fix names a machine the plant does not have (the message lists valid ids).
    """
    out: dict[tuple[int, str], float] = {}
    if not scenario.fixes:
        return out
    from zoneinfo import ZoneInfo

    by_name: dict[str, list] = {}
    for ref in plant.machines:
        by_name.setdefault(ref.path, []).append(ref)
        by_name.setdefault(ref.spec.id, []).append(ref)
    for i, fix in enumerate(scenario.fixes):
        for name in fix.machines:
            refs = by_name.get(name)
            if not refs:
                valid = ", ".join(r.spec.id for r in plant.machines[:12])
                raise PlantFileError(f"scenario fixes[{i}].machines: no machine {name!r} in plant {plant.name!r}; "
                                     f"give a machine id or site/line/machine path (e.g. {valid} ...)")
            for ref in refs:
                local = dt.datetime.combine(fix.date, dt.time(), tzinfo=ZoneInfo(str(ref.site.timezone)))
                t = local.timestamp()
                key = (ref.index, fix.cause)
                out[key] = min(out.get(key, t), t)
    return out


def _machine_refs(plant: Plant, names: tuple[str, ...], where: str) -> list:
    """The plant's machines named by id or site/line/machine path (PlantFileError naming ``where`` otherwise)."""
    by_name: dict[str, list] = {}
    for ref in plant.machines:
        by_name.setdefault(ref.path, []).append(ref)
        by_name.setdefault(ref.spec.id, []).append(ref)
    out = []
    for name in names:
        if name not in by_name:
            valid = ", ".join(r.spec.id for r in plant.machines[:12])
            raise PlantFileError(f"scenario {where}: no machine {name!r} in plant {plant.name!r}; give a machine id "
                                 f"or site/line/machine path (e.g. {valid} ...)")
        out.extend(by_name[name])
    return out


def _next_start(cal, tz, day: int) -> float | None:
    for d in range(day, day + 10):
        att = day_calendar(cal, tz, d).attended
        if len(att) and att[0, 0] > 0:
            return d * DAY_S + att[0, 0]
    return None


def _site_attended(plant: Plant, site, day: int) -> np.ndarray:
    parts = [day_calendar(line.calendar or site.calendar, site.timezone, day).attended for line in site.lines]
    return normalise(np.concatenate(parts)) if parts else np.zeros((0, 2))


def _site_next_start(plant: Plant, site, day: int) -> float | None:
    for d in range(day, day + 10):
        att = _site_attended(plant, site, d)
        if len(att) and att[0, 0] > 0:
            return d * DAY_S + att[0, 0]
    return None


def site_occupied(site, day: int, margin_s: float = 1800) -> np.ndarray:
    """When people are on site: every line's shifts widened by ``margin_s`` [s], as intervals of UTC day ``day``."""
    parts = []
    for d in (day - 1, day, day + 1):
        for line in site.lines:
            att = day_calendar(line.calendar or site.calendar, site.timezone, d).attended
            parts.append(att + (d - day) * DAY_S + np.array([-margin_s, margin_s]))
    return normalise(np.concatenate(parts))


def day_label(day: int) -> str:
    return day_date(day).isoformat()

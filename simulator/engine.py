"""The simulation engine: renders the whole plant onto a time grid, block by block, and keeps the ground truth.

Timestamps mark the *end* of each grid step: a value stamped ``t`` is the mean power over ``[t - step, t)`` and a
counter (energy register, good count, material) read at ``t`` -- the way interval meters log. Call :meth:`render` for
consecutive windows (whole days for backfill, short blocks for live serving); state (registers, counters, furnace
temperature, compressor phase) carries over between calls. The same seed, start day and step give the same output.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.model import METER_FAULT_KINDS, WASTE_KINDS, Event
from simulator import machines as phys
from simulator.plant import PRODUCTION_ARCHETYPES, Plant
from simulator.scenario import EventBook, ScenarioSpec, read_scenario, site_occupied
from simulator.timeline import (
    DAY_S,
    day_calendar,
    daylight,
    outdoor_temperature,
    rng_for,
)

NS = 1_000_000_000
#: OPC UA Bad_NoCommunication, stored with the values of a meter gap.
STATUS_GAP = 0x80310000


@dataclass
class MachineSignals:
    """Measured signals of one machine over one block (one value per grid step)."""

    power: np.ndarray  # [kW], NaN in meter gaps
    energy: np.ndarray  # register [kWh], NaN in meter gaps
    pf: np.ndarray
    state: np.ndarray  # int8 codes
    status: np.ndarray  # OPC UA StatusCode of the electrical signals
    good: np.ndarray | None = None  # cumulative counters
    scrap: np.ndarray | None = None
    material: np.ndarray | None = None  # material number per step (-1 none)
    material_kg: np.ndarray | None = None  # cumulative kg of the step's material (NaN when none)
    flow: np.ndarray | None = None  # [m3/min]
    pressure: np.ndarray | None = None  # [bar]
    true_power: np.ndarray | None = None  # [kW] before meter faults


@dataclass
class Block:
    """The plant over one window of one day."""

    day: int
    step_s: float
    times_ns: np.ndarray  # int64, step ends
    machines: list[MachineSignals]
    temperature: dict[str, np.ndarray]  # site id -> [°C]
    true_kwh: float = 0.0

    @property
    def n(self) -> int:
        return len(self.times_ns)


@dataclass
class _Truth:
    plant_kwh: float = 0.0
    by_machine: dict = field(default_factory=dict)
    start_s: float | None = None
    end_s: float | None = None
    fixed: dict = field(default_factory=dict)  # machine path -> local date -> (kWh with the fix, kWh without it)


class Simulation:
    """The plant's physics, waste injection and ground truth.

    Parameters
    ----------
    plant : Plant
    scenario : ScenarioSpec, optional
        The injected waste; the shipped default scenario when None.
    seed : int
        Everything random derives from it.
    step_s : float
        Grid step [s]; must divide a day.
    start_day : int, optional
        First day [days since the epoch]; events are planned from it. Today (UTC) when None.
    intensity : float, optional
        Waste intensity; when None it is the scenario's ``intensity`` or, failing that, calibrated to the scenario's
        ``avoidable_fraction``.
    """

    def __init__(self, plant: Plant, scenario: ScenarioSpec | None = None, seed: int = 0, step_s: float = 60.0,
                 start_day: int | None = None, intensity: float | None = None, run_days: int = 28) -> None:
        if DAY_S % step_s:
            raise ValueError(f"step {step_s} s does not divide a day; use 1, 5, 10, 15, 30, 60, 300, 900 ...")
        self.plant = plant
        self.scenario = scenario if scenario is not None else read_scenario()
        self.seed = int(seed)
        self.step_s = float(step_s)
        self.start_day = int(start_day if start_day is not None else dt.datetime.now(dt.UTC).date().toordinal() - 719163)
        if intensity is None:
            intensity = self.scenario.intensity
        if intensity is None:
            # Calibrate on (up to 28) days spread over the run, so long and short runs both land near the target.
            sample = np.unique(np.linspace(0, max(run_days, 1) - 1, min(max(run_days, 1), 28)).round().astype(int))
            # Calibrated without the fixes: the run with fixes keeps every other event of the run without them.
            intensity = 1.0 if self.scenario.avoidable_fraction is None else calibrate(
                plant, self.scenario.model_copy(update={"fixes": ()}), self.seed, self.start_day, [self.start_day + int(d) for d in sample])
        self.intensity = float(intensity)
        self.book = EventBook(plant, self.scenario, self.seed, self.start_day, self.intensity)
        self._state = [self._initial_state(ref) for ref in plant.machines]
        self._plans: dict = {}
        self._cf_state: dict[int, dict] = {}  # state of the fixed machines' counterfactual (no fix) run
        self.truth = _Truth()

    def continue_registers(self, registers: dict[str, float]) -> None:
        """Let each machine's energy register go on from ``registers`` (path -> reading [kWh]) instead of a random start.

        ``wattline demo`` streams live values on top of backfilled history: without this the register would jump
        back at the seam, which a store reads as a meter reset (a huge bogus energy).
        """
        for ref, st in zip(self.plant.machines, self._state):
            value = registers.get(ref.path)
            if value is not None and np.isfinite(value):
                st["register0"] = float(value) - st["energy"] - st["offset"]

    def _initial_state(self, ref) -> dict:
        rng = rng_for(self.seed, 7, ref.index)
        return {"energy": 0.0, "register0": float(rng.uniform(0.05, 0.95)) * ref.spec.register_max_kwh, "offset": 0.0,
                "good": int(rng.integers(0, 500_000)), "scrap": int(rng.integers(0, 10_000)), "mat": {},
                "last_power": 0.0, "last_reg": None}

    # -- rendering ------------------------------------------------------------------------------------------------------
    def render(self, day: int, t0_s: float = 0.0, t1_s: float = DAY_S) -> Block:
        """Render all machines over ``[t0_s, t1_s)`` seconds of UTC day ``day`` (consecutive calls, in order)."""
        n = round((t1_s - t0_s) / self.step_s)
        edges = t0_s + np.arange(n + 1) * self.step_s
        block_no = int(t0_s // self.step_s)
        out: list[MachineSignals | None] = [None] * len(self.plant.machines)
        temps = {}
        true_kwh = 0.0
        for si, site in enumerate(self.plant.sites):
            mid = (edges[:-1] + edges[1:]) / 2
            temp = outdoor_temperature(self.plant.climate(site.id), site.timezone, self.seed, si, day, mid)
            temps[site.id] = temp
            win = phys.SiteWindow(day, edges, temp, daylight(site.timezone, day, mid), site_occupied(site, day),
                                  seed=self.seed, block=block_no)
            refs = [r for r in self.plant.machines if r.site is site]
            order = sorted(refs, key=lambda r: (r.archetype not in PRODUCTION_ARCHETYPES, r.archetype == "compressor" or r.archetype == "chiller"))
            line_runs: dict[str, list] = {}
            air = np.zeros(n)
            # (every compressor has a capacity: the simulator Plant completes it)
            caps = sum(r.spec.capacity_m3_min for r in refs if r.archetype == "compressor" and r.spec.capacity_m3_min is not None)
            for ref in order:
                if ref.archetype not in PRODUCTION_ARCHETYPES and line_runs and not win.line_run:
                    win.line_run = {k: np.mean(v, axis=0) for k, v in line_runs.items()}
                    win.air_demand = air
                assert ref.calendar is not None, ref  # the simulator Plant gives every site a calendar
                cal = day_calendar(ref.calendar, site.timezone, day)
                planned = self.book.for_machine_day(ref.index, day)
                sim_events = [ev.for_day(day) for ev in planned if ev.effect != "meter"]
                st = self._state[ref.index]
                arch = ref.archetype
                fixed_s = self.book.fixed_from(ref.index)
                if fixed_s is not None and day * DAY_S + edges[-1] > fixed_s:
                    # The counterfactual (no fix) first, from the same random stream and a copy of the state, so the
                    # true avoided energy of the fix is exact; it carries its own state (e.g. furnace temperature).
                    cf_state = self._cf_state.setdefault(ref.index, copy.deepcopy(st))
                    cf_events = [ev.for_day(day, unfixed=True) for ev in self.book.for_machine_day(ref.index, day, unfixed=True)
                                 if ev.effect != "meter"]
                    cf = self._render_machine(ref, cal, win, cf_events, day, block_no, cf_state, caps)
                else:
                    cf = None
                r = self._render_machine(ref, cal, win, sim_events, day, block_no, st, caps)
                if arch in PRODUCTION_ARCHETYPES:
                    assert r.air is not None, ref  # render_production always gives the machine's air demand
                    line_runs.setdefault(ref.line.id, []).append(r.run_frac)
                    air += r.air
                if cf is not None:
                    self._record_fix(ref, day * DAY_S + mid, r.power, cf.power)
                h = self.step_s / 3600
                for ev in planned:
                    if ev.eid in r.extras:
                        ev.excess_kwh += float(r.extras[ev.eid].sum() * h)
                    ev.rendered = True
                kwh = float(r.power.sum() * h)
                true_kwh += kwh
                self.truth.by_machine[ref.path] = self.truth.by_machine.get(ref.path, 0.0) + kwh
                out[ref.index] = self._measure(ref, r, edges, day, [ev for ev in planned if ev.effect == "meter"], st)
        self.truth.plant_kwh += true_kwh
        start, end = day * DAY_S + edges[0], day * DAY_S + edges[-1]
        self.truth.start_s = start if self.truth.start_s is None else min(self.truth.start_s, start)
        self.truth.end_s = end if self.truth.end_s is None else max(self.truth.end_s, end)
        times = (np.int64(day) * DAY_S * NS + (edges[1:] * NS).astype(np.int64)).astype(np.int64)
        signals = [sig for sig in out if sig is not None]
        assert len(signals) == len(out)  # every machine belongs to one site, and every site was rendered above
        return Block(day, self.step_s, times, signals, temps, true_kwh)

    def _render_machine(self, ref, cal, win, sim_events, day: int, block_no: int, st: dict, caps: float) -> phys.Rendered:
        """One machine's physics over the window (random stream keyed by machine, day and block)."""
        rng = rng_for(self.seed, 11, ref.index, day, block_no)
        arch = ref.archetype
        if arch in PRODUCTION_ARCHETYPES:
            key = (ref.index, day)
            plan = self._plans.get(key)
            if plan is None:
                self._plans = {k: v for k, v in self._plans.items() if k[1] >= day}
                plan = self._plans[key] = phys.plan_orders(ref, cal, self.seed, day, self.plant.material_kinds)
            return phys.render_production(ref, plan, win, sim_events, rng)
        if arch == "conveyor":
            return phys.render_conveyor(ref, cal, win, sim_events, rng)
        if arch == "lighting":
            return phys.render_lighting(ref, cal, win, sim_events, rng)
        if arch == "hvac":
            return phys.render_hvac(ref, cal, win, sim_events, rng)
        if arch == "chiller":
            return phys.render_chiller(ref, cal, win, sim_events, rng)
        if arch == "furnace":
            return phys.render_furnace(ref, cal, win, sim_events, rng, st)
        return phys.render_compressor(ref, cal, win, sim_events, rng, ref.spec.capacity_m3_min / caps, st)

    def _record_fix(self, ref, mid_s: np.ndarray, power: np.ndarray, unfixed: np.ndarray) -> None:
        """Add a fixed machine's true energy with and without the fix per local day of its site [kWh]."""
        h = self.step_s / 3600
        local = pd.DatetimeIndex((mid_s * NS).astype(np.int64), tz="UTC").tz_convert(str(ref.site.timezone))
        days = pd.Series(local.date.astype(str))
        actual = pd.Series(power * h).groupby(days.to_numpy()).sum()
        counter = pd.Series(unfixed * h).groupby(days.to_numpy()).sum()
        book = self.truth.fixed.setdefault(ref.path, {})
        for d in actual.index:
            a, c = book.get(d, (0.0, 0.0))
            book[d] = (a + float(actual[d]), c + float(counter[d]))

    def _measure(self, ref, r: phys.Rendered, edges, day, faults, st) -> MachineSignals:
        """Turn true power into meter readings: register with rollover and meter faults; counters."""
        h = self.step_s / 3600
        n = len(r.power)
        energy_true = st["energy"] + np.cumsum(r.power) * h  # true energy at each step end
        power = r.power.copy()
        status = np.zeros(n, dtype=np.int64)
        offset = np.full(n, st["offset"])
        stuck = np.zeros(n, dtype=bool)
        ends = day * DAY_S + edges[1:]
        for ev in faults:
            if ev.kind == "meter_reset":
                hit = (ends > ev.start_s) & (ends - self.step_s <= ev.start_s)
                if hit.any():
                    i = int(np.argmax(hit))
                    reading = st["register0"] + energy_true[i] + offset[i]
                    offset[i:] -= reading
                    st["offset"] = float(offset[-1])
            elif ev.kind == "meter_spike":
                hit = (ends > ev.start_s) & (ends - self.step_s <= ev.start_s)
                power[hit] *= ev.details.get("factor", 8.0)
            elif ev.kind == "meter_stuck":
                stuck |= (ends > ev.start_s) & (ends <= ev.end_s + self.step_s)
            elif ev.kind == "meter_gap":
                status[(ends > ev.start_s) & (ends <= ev.end_s + self.step_s)] = STATUS_GAP
        register = np.mod(st["register0"] + energy_true + offset, ref.spec.register_max_kwh)
        register = np.floor(register * 100) / 100
        if stuck.any():
            idx = np.arange(n)
            last_good = np.maximum.accumulate(np.where(~stuck, idx, -1))
            first = st["last_reg"] if st["last_reg"] is not None else register[0]
            register = np.where(stuck, np.where(last_good >= 0, register[np.maximum(last_good, 0)], first), register)
            power = np.where(stuck, np.where(last_good >= 0, power[np.maximum(last_good, 0)], st["last_power"]), power)
        pf = r.pf.copy()
        gap = status != 0
        if gap.any():
            power[gap] = np.nan
            register = register.astype(float)
            register[gap] = np.nan
            pf[gap] = np.nan
        st["energy"] = float(energy_true[-1])
        if not gap[-1]:
            st["last_power"], st["last_reg"] = float(power[-1]), float(register[-1])
        flow = r.flow if r.flow is not None else (r.air if r.air is not None and ref.sim.air_m3_min > 0 else None)
        sig = MachineSignals(power, register, pf, r.state, status, flow=flow, pressure=r.pressure, true_power=r.power)
        if r.parts is not None:
            # production renders give scrap and materials with their parts
            assert r.scrap is not None and r.material is not None and r.material_kg is not None, ref
            sig.good = st["good"] + np.cumsum(r.parts)
            sig.scrap = st["scrap"] + np.cumsum(r.scrap)
            st["good"], st["scrap"] = int(sig.good[-1]), int(sig.scrap[-1])
            kg = np.full(n, np.nan)
            for mat in np.unique(r.material[r.material >= 0]):
                mask = r.material == mat
                cum = st["mat"].get(int(mat), 0.0) + np.cumsum(r.material_kg[mask])
                kg[mask] = cum
                st["mat"][int(mat)] = float(cum[-1])
            if len(st["mat"]) > 5000:  # keep memory bounded over long runs: forget the least recent
                st["mat"] = dict(list(st["mat"].items())[-2000:])
            sig.material = r.material
            sig.material_kg = kg
        return sig

    # -- ground truth ----------------------------------------------------------------------------------------------------
    def events(self) -> list[Event]:
        """Every injected event that overlapped the rendered time, with its excess energy so far."""
        lo, hi = self.truth.start_s, self.truth.end_s
        result: list[Event] = []
        if lo is None or hi is None:  # nothing rendered yet (both are set together)
            return result
        for ev in self.book.events:
            if not ev.rendered or ev.end_s < lo or ev.start_s >= hi:
                continue
            if ev.kind in WASTE_KINDS and ev.excess_kwh <= 1e-9:
                continue  # planned but without effect (e.g. idle window on a line that works around the clock)
            start, end = max(ev.start_s, lo), min(ev.end_s, hi)
            details = dict(ev.details)
            if start != ev.start_s or end != ev.end_s:
                details["clipped_to_run"] = True
            result.append(Event(self.plant.machines[ev.machine].path, ev.kind,
                                dt.datetime.fromtimestamp(start, dt.UTC), dt.datetime.fromtimestamp(end, dt.UTC),
                                ev.excess_kwh if ev.kind in WASTE_KINDS else 0.0, details))
        result.sort(key=lambda e: (e.start, e.machine, e.kind))
        return result

    def manifest(self) -> dict:
        """The ground-truth manifest (see docs/simulator.md)."""
        events = self.events()
        by_cause = {kind: 0.0 for kind in WASTE_KINDS}
        for ev in events:
            if ev.kind in by_cause:
                by_cause[ev.kind] += ev.excess_kwh
        avoidable = sum(by_cause.values())
        plant = self.truth.plant_kwh
        return {
            "schema": "wattline.truth/1",
            "plant": self.plant.name,
            "scenario": self.scenario.name,
            "seed": self.seed,
            "intensity": round(self.intensity, 6),
            "resolution_s": self.step_s,
            "start": dt.datetime.fromtimestamp(self.truth.start_s or 0, dt.UTC).isoformat(),
            "end": dt.datetime.fromtimestamp(self.truth.end_s or 0, dt.UTC).isoformat(),
            "plant_energy_kwh": round(plant, 6),
            "avoidable_kwh": round(avoidable, 6),
            "avoidable_fraction": round(avoidable / plant, 6) if plant > 0 else 0.0,
            "by_cause": {k: round(v, 6) for k, v in by_cause.items()},
            "machine_energy_kwh": {k: round(v, 6) for k, v in self.truth.by_machine.items()},
            "meter_faults": {kind: sum(1 for e in events if e.kind == kind) for kind in METER_FAULT_KINDS},
            "events": [e.to_dict() for e in events],
            **({"fixes": self._fixes_truth()} if self.scenario.fixes else {}),
        }

    def _fixes_truth(self) -> dict:
        """The fixes and their true avoided energy: per fixed machine and local day, energy with and without the fix."""
        machines = {}
        for path, days in sorted(self.truth.fixed.items()):
            actual = sum(a for a, _ in days.values())
            unfixed = sum(c for _, c in days.values())
            machines[path] = {"actual_kwh": round(actual, 6), "unfixed_kwh": round(unfixed, 6),
                              "avoided_kwh": round(unfixed - actual, 6),
                              "daily": {d: [round(a, 6), round(c, 6)] for d, (a, c) in sorted(days.items())}}
        return {"fixes": [f.model_dump(mode="json") for f in self.scenario.fixes],
                "avoided_kwh": round(sum(m["avoided_kwh"] for m in machines.values()), 6),
                "machines": machines}


def calibrate(plant: Plant, scenario: ScenarioSpec, seed: int, start_day: int, days: list[int] | None = None,
              step_s: float = 1800.0, iterations: int = 8) -> float:
    """Find the waste intensity that makes avoidable energy the scenario's ``avoidable_fraction`` of plant energy.

    Renders ``days`` days from ``start_day`` on a coarse grid for a few trial intensities (common random numbers, so the
    fraction grows smoothly with the intensity).
    """
    target = scenario.avoidable_fraction
    if not target:
        return 1.0 if target is None else 1e-9
    days = list(range(start_day, start_day + 28)) if days is None else days
    tried: list[tuple[float, float]] = []  # (log k, fraction)
    k = 1.0
    for _ in range(iterations):
        sim = Simulation(plant, scenario, seed, step_s, start_day, intensity=k)
        for day in days:
            sim.render(day)
        frac = sim.manifest()["avoidable_fraction"]
        tried.append((float(np.log(k)), frac))
        if abs(frac - target) < 0.002:
            return k
        below = [t for t in tried if t[1] < target]
        above = [t for t in tried if t[1] > target]
        if below and above:
            # Bracketed: bisect in log k between the tightest bracket (the fraction is lumpy in k for small plants).
            lo = max(below, key=lambda t: t[0])
            hi = min((t for t in above if t[0] > lo[0]), key=lambda t: t[0], default=min(above, key=lambda t: t[0]))
            logk = (lo[0] + hi[0]) / 2
        elif frac <= 0:
            logk = np.log(k) + np.log(4.0)
        else:
            # Probability and size both scale with k, so the fraction grows roughly with k squared.
            logk = np.log(k) + 0.5 * np.log(target / frac)
        k = float(np.exp(np.clip(logk, np.log(1e-3), np.log(100))))
    best = min(tried, key=lambda t: abs(t[1] - target))
    return float(np.exp(best[0]))

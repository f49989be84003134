"""Load physics of the machine archetypes, rendered onto a time grid with numpy.

Every renderer returns the machine's *true* mean power per grid step [kW] as a baseline plus one additive array per
injected waste event (``extras``), so the ground truth of each event is exactly the energy of its array. Levels are
fractions of the machine's rated power, chosen so that the plant's profile resembles a real one: base load at night
about 6-10 % of the daytime load, a dip at the lunch break, weekends at about a third of weekdays, power factor 0.7-0.9
(calibrated against the DAEWOO steel plant data set, UCI #851, see docs/simulator.md).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from simulator.plant import MachineRef
from simulator.timeline import DAY_S, fraction, intersect, normalise, piecewise_energy, rng_for, subtract

OFF, IDLE, RUNNING, FAULT = 0, 1, 2, 3

# Power levels as fractions of rated power: off (standby), eco (breaks), warm-up, idle, fault, running (mean).
LEVELS = {
    "cnc": dict(off=0.03, eco=0.10, warm=0.28, idle=0.28, fault=0.15, run=0.62, amp=0.15),
    "injection_moulding": dict(off=0.02, eco=0.22, warm=0.60, idle=0.32, fault=0.25, run=0.58, amp=0.8),
}
PF = {"off": 0.45, "idle": 0.72, "run": 0.87}


@dataclass
class SimEvent:
    """An injected waste event as the physics sees it (times in seconds after the rendered day's UTC midnight).

    ``effect`` is one of ``idle`` (machine idles instead of being off), ``on`` (utility in occupied mode off-shift),
    ``run_factor`` (running power x (1 + delta), delta ramping from ``d0`` to ``d1``), ``setpoint`` (furnace setpoint
    raised by ``delta_c``), ``leak`` (extra air demand ramping ``l0`` -> ``l1`` m3/min) and ``surge`` (``kw`` on top
    during the window).
    """

    eid: int
    effect: str
    t0: float
    t1: float
    params: dict = field(default_factory=dict)

    def window(self) -> np.ndarray:
        return np.array([[self.t0, self.t1]])

    def ramp(self, mid: np.ndarray, a: float, b: float) -> np.ndarray:
        span = max(self.t1 - self.t0, 1e-9)
        x = np.clip((mid - self.t0) / span, 0, 1)
        inside = (mid >= self.t0) & (mid < self.t1)
        return np.where(inside, a + (b - a) * x, 0.0)


@dataclass
class Rendered:
    """One machine on one grid window."""

    power: np.ndarray  # true mean power per step [kW], extras included
    extras: dict[int, np.ndarray]  # event id -> additive power [kW]
    state: np.ndarray
    pf: np.ndarray
    parts: np.ndarray | None = None
    scrap: np.ndarray | None = None
    material: np.ndarray | None = None  # material id index per step (-1 when none)
    material_kg: np.ndarray | None = None
    flow: np.ndarray | None = None
    pressure: np.ndarray | None = None
    run_frac: np.ndarray | None = None
    air: np.ndarray | None = None


@dataclass
class SiteWindow:
    """What the machines of one site share on one grid window."""

    day: int
    edges: np.ndarray  # [s after UTC midnight of day]
    temp: np.ndarray  # outdoor temperature per step [°C]
    daylight: np.ndarray
    occupied: np.ndarray  # normalised intervals when people are on site
    line_run: dict = field(default_factory=dict)  # line id -> mean running fraction per step
    air_demand: np.ndarray | None = None  # [m3/min] per step
    seed: int = 0
    block: int = 0

    @property
    def mid(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2

    @property
    def step(self) -> float:
        return float(self.edges[1] - self.edges[0])


def _noise(rng: np.random.Generator, n: int, sd: float) -> np.ndarray:
    return 1.0 + rng.normal(0.0, sd, n).clip(-3 * sd, 3 * sd)


def _state_from(fracs: list[tuple[int, np.ndarray]]) -> np.ndarray:
    codes = np.array([c for c, _ in fracs], dtype=np.int8)
    stack = np.vstack([f for _, f in fracs])
    return codes[np.argmax(stack, axis=0)]


def _pf(fr_off, fr_idle, fr_run, p_off, p_idle, p_run, rng, n) -> np.ndarray:
    e = fr_off * p_off + fr_idle * p_idle + fr_run * p_run + 1e-9
    pf = (fr_off * p_off * PF["off"] + fr_idle * p_idle * PF["idle"] + fr_run * p_run * PF["run"]) / e
    return np.clip(pf + rng.normal(0, 0.01, n), 0.3, 0.99)


# -- production machines ------------------------------------------------------------------------------------------------
@dataclass
class OrderPlan:
    """A production machine's day in work time tau (seconds of production time since the day's first shift)."""

    work: np.ndarray  # clock intervals of work
    breaks: np.ndarray
    warm: np.ndarray  # clock intervals of pre-shift warm-up
    tau_bounds: np.ndarray  # segment bounds in tau
    tau_kind: np.ndarray  # per segment: 0 setup, 1 run, 2 fault, 3 waiting for an order
    tau_order: np.ndarray  # per segment: order index (-1 none)
    cycles: np.ndarray  # per order [s]
    materials: np.ndarray  # per order material number
    quantities: np.ndarray
    waits: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # clock intervals waiting for an order


def plan_orders(ref: MachineRef, cal, seed: int, day: int, material_kinds: int) -> OrderPlan:
    """Plan production orders of one machine-day: setup, run qty x cycle, setup, ... filling the work time."""
    spec = ref.spec
    assert spec.cycle_s is not None, ref  # simulator Plant completes cycle_s for every production kind
    rng = rng_for(seed, 1, ref.index, day)
    work_total = float((cal.work[:, 1] - cal.work[:, 0]).sum()) if len(cal.work) else 0.0
    bounds, kinds, orders, cycles, materials, qtys = [0.0], [], [], [], [], []
    tau = 0.0
    fault_at = rng.uniform(0, max(work_total, 1)) if rng.random() < 0.12 else -1.0
    family = (ref.index * 7919) % material_kinds
    while tau < work_total:
        setup = rng.uniform(10, 40) * 60 if ref.archetype == "cnc" else rng.uniform(20, 60) * 60
        cycle = spec.cycle_s * rng.uniform(0.8, 1.25)
        hours = rng.uniform(0.75, 5.0)
        qty = max(1, int(hours * 3600 / cycle))
        rank = int(min(rng.zipf(1.4), ref.sim.materials)) - 1
        materials.append((family + rank * 104729) % material_kinds)
        cycles.append(cycle)
        qtys.append(qty)
        k = len(cycles) - 1
        for kind, length in ((0, setup), (1, qty * cycle)):
            if kind == 1 and 0 <= fault_at - tau < length:
                first = fault_at - tau
                dur = rng.uniform(10, 90) * 60
                for knd, ln in ((1, first), (2, dur), (1, length - first)):
                    tau += ln
                    bounds.append(tau)
                    kinds.append(knd)
                    orders.append(k if knd == 1 else -1)
                continue
            tau += length
            bounds.append(tau)
            kinds.append(kind)
            orders.append(k)
        if rng.random() < 0.3:
            # Waiting for the next order (material, paperwork): the machine should go to eco mode meanwhile.
            tau += rng.uniform(10, 60) * 60
            bounds.append(tau)
            kinds.append(3)
            orders.append(-1)
    warm = np.zeros((0, 2))
    if ref.archetype == "injection_moulding":
        # Heater bands are switched on 30 min before a shift that follows off time.
        attended = cal.attended
        warm = subtract(normalise([(a - 1800, a) for a, _b in attended]), attended)
    bounds_arr, kinds_arr = np.asarray(bounds), np.asarray(kinds, dtype=np.int8)
    waits = [(tau_to_clock(cal.work, bounds_arr[i]), tau_to_clock(cal.work, bounds_arr[i + 1]))
             for i in np.flatnonzero(kinds_arr == 3)]
    return OrderPlan(cal.work, cal.breaks, normalise(warm).reshape(-1, 2), bounds_arr, kinds_arr,
                     np.asarray(orders, dtype=np.int64), np.asarray(cycles), np.asarray(materials, dtype=np.int64),
                     np.asarray(qtys, dtype=np.int64), normalise(waits).reshape(-1, 2))


def tau_to_clock(work: np.ndarray, tau: float) -> float:
    """Clock time [s after UTC midnight] at which ``tau`` seconds of work time have elapsed."""
    if len(work) == 0:
        return 0.0
    cum = np.concatenate([[0.0], np.cumsum(work[:, 1] - work[:, 0])])
    i = int(np.clip(np.searchsorted(cum, tau, side="right") - 1, 0, len(work) - 1))
    return float(min(work[i, 0] + (tau - cum[i]), work[i, 1]))


def _tau_cum(plan: OrderPlan, kind: int, tau_edges: np.ndarray) -> np.ndarray:
    lengths = np.diff(plan.tau_bounds) * (plan.tau_kind == kind)
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    return np.interp(tau_edges, plan.tau_bounds, cum)


def render_production(ref: MachineRef, plan: OrderPlan, win: SiteWindow, events: list[SimEvent], rng) -> Rendered:
    """CNC machining centre or injection moulding machine."""
    lv = LEVELS[ref.archetype]
    rated, cycle_s = ref.spec.rated_kw, ref.spec.cycle_s
    assert cycle_s is not None, ref  # simulator Plant completes cycle_s for every production kind
    edges, mid, n, step = win.edges, win.mid, len(win.edges) - 1, win.step
    from simulator.timeline import covered

    tau_edges = covered(plan.work, edges)
    work_f = np.diff(tau_edges) / step
    run_cum = _tau_cum(plan, 1, tau_edges)
    run_f = np.diff(run_cum) / step
    fault_f = np.diff(_tau_cum(plan, 2, tau_edges)) / step
    wait_f = np.diff(_tau_cum(plan, 3, tau_edges)) / step
    setup_f = np.clip(work_f - run_f - fault_f - wait_f, 0, 1)
    brk_f = fraction(plan.breaks, edges)
    warm_f = fraction(plan.warm, edges)
    off_f = np.clip(1 - work_f - brk_f - warm_f, 0, 1)
    p = {k: v * rated for k, v in lv.items()}
    run_power = np.full(n, p["run"])
    if step * 3 < cycle_s:
        # Within-cycle load shape (spindle cut or injection stroke), zero mean over a cycle.
        phase = np.mod(np.interp(mid, edges, tau_edges), cycle_s) / cycle_s
        if ref.archetype == "cnc":
            shape = np.where(phase < 0.6, lv["amp"], -1.5 * lv["amp"])
        else:
            shape = np.where(phase < 0.15, lv["amp"], -lv["amp"] * 0.15 / 0.85)
        run_power = run_power + shape * rated
    base = (off_f * p["off"] + (brk_f + wait_f) * p["eco"] + warm_f * p["warm"] + setup_f * p["idle"]
            + fault_f * p["fault"] + run_f * run_power)
    extras: dict[int, np.ndarray] = {}
    idle_from_off = np.zeros(n)
    off_iv = subtract(np.array([[edges[0] - DAY_S, edges[-1] + DAY_S]]), normalise(np.concatenate([plan.work, plan.breaks, plan.warm])))
    for ev in events:
        if ev.effect == "idle":
            f_off = fraction(intersect(ev.window(), off_iv), edges)
            f_brk = fraction(intersect(ev.window(), plan.breaks), edges)
            f_wait = fraction(intersect(ev.window(), plan.waits), edges) if len(plan.waits) else 0.0
            extras[ev.eid] = f_off * (p["idle"] - p["off"]) + (f_brk + f_wait) * (p["idle"] - p["eco"])
            idle_from_off += f_off
        elif ev.effect == "run_factor":
            extras[ev.eid] = run_f * run_power * ev.ramp(mid, ev.params["d0"], ev.params["d1"])
        elif ev.effect == "surge":
            extras[ev.eid] = fraction(ev.window(), edges) * ev.params["kw"]
    noise = _noise(rng, n, 0.03)
    extras = {k: v * noise for k, v in extras.items()}
    power = base * noise + (sum(extras.values()) if extras else 0.0)
    idle_from_off = np.minimum(idle_from_off, off_f)
    off_eff = off_f - idle_from_off
    idle_eff = setup_f + brk_f + wait_f + warm_f + idle_from_off
    state = _state_from([(OFF, off_eff), (IDLE, idle_eff), (RUNNING, run_f), (FAULT, fault_f)])
    pf = _pf(off_eff, idle_eff + fault_f, run_f, p["off"], p["idle"], p["run"], rng, n)
    # Parts: cumulative run time per order / cycle, floor to whole parts, scrap drawn per step.
    order_run = np.diff(plan.tau_bounds) * (plan.tau_kind == 1)
    seg_parts = np.where(plan.tau_order >= 0, order_run / plan.cycles[np.maximum(plan.tau_order, 0)], 0.0)
    cum_parts_b = np.concatenate([[0.0], np.cumsum(seg_parts)])
    cum_parts = np.interp(tau_edges, plan.tau_bounds, cum_parts_b)
    parts = np.diff(np.floor(cum_parts + 1e-9)).astype(np.int64)
    scrap = rng.binomial(np.maximum(parts, 0), ref.sim.scrap_rate)
    seg_idx = np.clip(np.searchsorted(plan.tau_bounds, np.interp(mid, edges, tau_edges), side="right") - 1, 0, max(len(plan.tau_kind) - 1, 0))
    if len(plan.tau_order):
        order_idx = plan.tau_order[seg_idx]
        material = np.where((order_idx >= 0) & (run_f > 0), plan.materials[np.maximum(order_idx, 0)], -1)
    else:
        material = np.full(n, -1, dtype=np.int64)
    material_kg = parts * ref.sim.part_kg * _noise(rng, n, 0.01)
    return Rendered(power, extras, state, pf, parts - scrap, scrap, material, material_kg, run_frac=run_f,
                    air=run_f * ref.sim.air_m3_min + (setup_f + fault_f) * ref.sim.air_m3_min * 0.2)


# -- utilities ------------------------------------------------------------------------------------------------------------
def render_conveyor(ref: MachineRef, cal, win: SiteWindow, events: list[SimEvent], rng) -> Rendered:
    """Belt conveyor: runs with the line, idles when the line idles, off outside shifts."""
    rated, edges, n = ref.spec.rated_kw, win.edges, len(win.edges) - 1
    attended_f = fraction(cal.attended, edges)
    line_run = win.line_run.get(ref.line.id, np.zeros(n))
    run_f = np.minimum(attended_f, np.clip(line_run * 1.5, 0, 1))
    idle_f = attended_f - run_f
    off_f = 1 - attended_f
    base = off_f * 0.0 + idle_f * 0.3 * rated + run_f * rated * 0.75
    extras = {}
    for ev in events:
        if ev.effect == "on":
            extras[ev.eid] = fraction(subtract(ev.window(), cal.attended), edges) * 0.3 * rated
    return _finish(base, extras, [(OFF, off_f), (IDLE, idle_f), (RUNNING, run_f)], off_f, idle_f, run_f, rated * 0.02,
                   0.3 * rated, 0.75 * rated, rng, n, events)


def render_lighting(ref: MachineRef, cal, win: SiteWindow, events, rng) -> Rendered:
    """Hall lighting: full when people are on site (daylight dimming), security lighting otherwise."""
    rated, edges, n = ref.spec.rated_kw, win.edges, len(win.edges) - 1
    on_f = fraction(win.occupied, edges)
    level = 1.0 - 0.4 * win.daylight
    base = on_f * rated * level + (1 - on_f) * rated * 0.08
    extras = {}
    for ev in events:
        if ev.effect == "on":
            extras[ev.eid] = fraction(subtract(ev.window(), win.occupied), edges) * rated * (0.92 - 0.4 * win.daylight)
    return _finish(base, extras, [(OFF, 1 - on_f), (RUNNING, on_f)], 1 - on_f, np.zeros(n), on_f, rated * 0.08, 0,
                   rated, rng, n, events, pf_run=0.95)


def render_hvac(ref: MachineRef, cal, win: SiteWindow, events, rng) -> Rendered:
    """Air handling with heat pump: ventilation plus heating/cooling that grows with |T_out - 19 °C| when occupied;
    frost protection only when unoccupied."""
    rated, edges, n = ref.spec.rated_kw, win.edges, len(win.edges) - 1
    on_f = fraction(win.occupied, edges)
    occ = rated * (0.30 + 0.70 * np.clip(np.abs(win.temp - 19.0) / 18.0, 0, 1))
    unocc = rated * (0.04 + 0.30 * np.clip((4.0 - win.temp) / 15.0, 0, 1))
    base = on_f * occ + (1 - on_f) * unocc
    extras = {}
    for ev in events:
        if ev.effect == "on":
            extras[ev.eid] = fraction(subtract(ev.window(), win.occupied), edges) * (occ - unocc)
    return _finish(base, extras, [(IDLE, 1 - on_f), (RUNNING, on_f)], np.zeros(n), 1 - on_f, on_f, 0, unocc.mean(),
                   occ.mean(), rng, n, events)


def render_chiller(ref: MachineRef, cal, win: SiteWindow, events, rng) -> Rendered:
    """Process and space cooling: load from production plus a weather part; COP falls as it gets warmer."""
    rated, edges, n = ref.spec.rated_kw, win.edges, len(win.edges) - 1
    activity = np.mean(list(win.line_run.values()), axis=0) if win.line_run else np.zeros(n)
    on_f = fraction(win.occupied, edges)
    weather = np.clip((win.temp - 10.0) / 22.0, 0, 1)
    load = 0.08 + 0.45 * activity + 0.40 * weather * (0.4 + 0.6 * on_f)
    cop_penalty = 1.0 + 0.015 * np.clip(win.temp - 20.0, -10, 20)
    run_power = rated * np.clip(load * cop_penalty, 0, 1)
    base = run_power
    extras = {}
    for ev in events:
        if ev.effect == "run_factor":
            extras[ev.eid] = run_power * ev.ramp(win.mid, ev.params["d0"], ev.params["d1"])
        elif ev.effect == "on":
            extras[ev.eid] = fraction(subtract(ev.window(), win.occupied), edges) * rated * 0.25
    run_f = (load > 0.15).astype(float)
    return _finish(base, extras, [(IDLE, 1 - run_f), (RUNNING, run_f)], np.zeros(n), 1 - run_f, run_f, 0, rated * 0.1,
                   rated * 0.5, rng, n, events)


def render_compressor(ref: MachineRef, cal, win: SiteWindow, events, rng, share: float, state: dict) -> Rendered:
    """Load/unload screw compressor with a receiver: duty = demand / capacity, unloaded running at 28 % of rated
    power; at grids finer than the load cycle the compressor toggles load/unload and the receiver pressure saws
    between 6.5 and 7.5 bar. Runs while the site is occupied (plus one hour either side)."""
    spec, edges, n, step = ref.spec, win.edges, len(win.edges) - 1, win.step
    rated, cap = spec.rated_kw, spec.capacity_m3_min
    assert cap is not None, ref  # simulator Plant completes capacity_m3_min for compressors
    on_iv = normalise([(a - 3600, b + 3600) for a, b in win.occupied])
    on_f = fraction(on_iv, edges)
    demand = (win.air_demand if win.air_demand is not None else np.zeros(n)) * share + 0.06 * cap  # normal leakage
    leaks = {ev.eid: ev.ramp(win.mid, ev.params["l0"], ev.params["l1"]) for ev in events if ev.effect == "leak"}
    total_leak = sum(leaks.values()) if leaks else np.zeros(n)

    def power_of(dem):
        duty = np.clip(dem / cap, 0, 1)
        return on_f * rated * (0.28 + 0.72 * duty) + (1 - on_f) * 0.005 * rated, duty

    p_base, duty = power_of(demand)
    extras = {}
    acc = demand.copy()
    prev = p_base
    for eid, leak in leaks.items():
        acc = acc + leak
        p_new, duty = power_of(acc)
        extras[eid] = p_new - prev
        prev = p_new
    for ev in events:
        if ev.effect == "run_factor":
            extras[ev.eid] = (prev - (1 - on_f) * 0.005 * rated) * ev.ramp(win.mid, ev.params["d0"], ev.params["d1"])
    flow = on_f * np.minimum(demand + total_leak, cap)
    short = np.clip((demand + total_leak) / cap - 1, 0, None)
    period = 90.0
    if step * 3 <= period:
        # Load/unload cycling: loaded while the phase of the cycle is below the duty.
        phase0 = state.get("phase", 0.0)
        phase = phase0 + np.cumsum(np.full(n, step / period))
        state["phase"] = float(phase[-1] % 1.0)
        frac = np.mod(phase, 1.0)
        loaded = frac < duty
        pressure = np.where(duty >= 1, 7.0 - 1.5 * short, np.where(loaded, 6.5 + frac / np.maximum(duty, 1e-6),
                                                                   7.5 - (frac - duty) / np.maximum(1 - duty, 1e-6)))
        pressure = np.clip(pressure, 5.0, 7.5)
    else:
        pressure = 7.0 - 0.3 * (duty - 0.5) - 1.5 * short
    pressure = np.where(on_f > 0.5, pressure, 1.0 + 0.0 * pressure) + rng.normal(0, 0.02, n)
    run_f = on_f * (duty > 0.02)
    return _finish(p_base, extras, [(OFF, 1 - on_f), (IDLE, on_f - run_f), (RUNNING, run_f)], 1 - on_f, on_f - run_f,
                   run_f, 0.005 * rated, 0.28 * rated, rated, rng, n, events, flow=flow, pressure=pressure)


def render_furnace(ref: MachineRef, cal, win: SiteWindow, events, rng, state: dict) -> Rendered:
    """Electric furnace/oven with thermal inertia: first-order thermal model (time constant ``time_constant_h``),
    full power until the setpoint is reached, then the holding power that balances the losses. Preheats so that it is
    at setpoint at the first shift start; switched off after the last shift (unless ``always_on``)."""
    spec, edges, n = ref.spec, win.edges, len(win.edges) - 1
    rated = spec.rated_kw
    assert spec.setpoint_c is not None, ref  # simulator Plant completes setpoint_c for furnaces
    tau = ref.sim.time_constant_h * 3600
    amb = 20.0
    r_th = (spec.setpoint_c - amb) / (0.35 * rated)  # holding power is 35 % of rated at setpoint
    pieces = state.get(("pieces", win.day))
    if pieces is None:
        pieces = {}
        t_start = state.get("temp", amb)
        hot = _furnace_schedule(spec, cal, tau, r_th, rated, amb)
        for key, delta in [(None, 0.0)] + [(ev.eid, ev.params["delta_c"]) for ev in events if ev.effect == "setpoint"]:
            windows = [(ev.t0, ev.t1) for ev in events if ev.effect == "setpoint"] if key is not None else []
            pieces[key] = _furnace_day(hot, t_start, spec.setpoint_c, delta, normalise(windows) if windows else None,
                                       tau, r_th, rated, amb)
        for key in [k for k in state if isinstance(k, tuple) and k[0] == "pieces" and k[1] < win.day]:
            del state[key]  # keep one day of cached heating plans
        state[("pieces", win.day)] = pieces
        state["temp"] = pieces[max(pieces, key=lambda k: -1 if k is None else k)][2]
    bounds, power, _t_end = pieces[None]
    base = piecewise_energy(bounds, power, edges)
    extras = {}
    for ev in events:
        if ev.effect == "setpoint":
            b2, p2, _ = pieces[ev.eid]
            extras[ev.eid] = piecewise_energy(b2, p2, edges) - base
    hot_f = np.clip(base / (0.3 * rated), 0, 1)
    work_f = fraction(cal.work, edges)
    run_f = np.minimum(hot_f, work_f)
    process = run_f * 0.12 * rated * np.clip(win.line_run.get(ref.line.id, np.ones(n)) * 1.5, 0, 1)
    base = base + process
    idle_f = np.clip(hot_f - run_f, 0, 1)
    off_f = np.clip(1 - hot_f, 0, 1)
    return _finish(base, extras, [(OFF, off_f), (IDLE, idle_f), (RUNNING, run_f)], off_f, idle_f, run_f,
                   0.01 * rated, 0.35 * rated, 0.45 * rated, rng, n, events, noise_sd=0.015)


def _furnace_schedule(spec, cal, tau, r_th, rated, amb) -> np.ndarray:
    if spec.always_on:
        return np.array([[-DAY_S, 2 * DAY_S]])
    att = cal.attended
    if len(att) == 0:
        return np.zeros((0, 2))
    t_inf = amb + rated * r_th
    preheat = tau * np.log((t_inf - amb) / (t_inf - spec.setpoint_c))
    return normalise([(att[0, 0] - preheat, att[-1, 1])])


def _furnace_day(hot, t0, setpoint, delta, delta_windows, tau, r_th, rated, amb):
    """Piecewise-constant power over [0, DAY_S) for a hot schedule; analytic first-order heating and cooling."""
    t_inf = amb + rated * r_th
    standby = 0.01 * rated
    cuts = {0.0, float(DAY_S)}
    for a, b in hot:
        cuts.update(x for x in (a, b) if 0 < x < DAY_S)
    if delta_windows is not None:
        for a, b in delta_windows:
            cuts.update(x for x in (a, b) if 0 < x < DAY_S)
    cuts = sorted(cuts)
    bounds, power = [cuts[0]], []
    temp = t0
    for a, b in itertools.pairwise(cuts):
        m = (a + b) / 2
        is_hot = any(h0 <= m < h1 for h0, h1 in hot)
        sp = setpoint + (delta if delta_windows is not None and any(w0 <= m < w1 for w0, w1 in delta_windows) else 0.0)
        if not is_hot:
            bounds.append(b)
            power.append(standby)
            temp = amb + (temp - amb) * np.exp(-(b - a) / tau)
            continue
        hold = (sp - amb) / r_th
        if temp < sp - 0.01:
            t_reach = tau * np.log((t_inf - temp) / max(t_inf - sp, 1e-6))
            if a + t_reach < b:
                bounds.extend([a + t_reach, b])
                power.extend([rated, hold])
                temp = sp
            else:
                bounds.append(b)
                power.append(rated)
                temp = t_inf + (temp - t_inf) * np.exp(-(b - a) / tau)
        else:
            # Above setpoint (setpoint lowered): heaters off until it has cooled down.
            t_cool = tau * np.log(max(temp - amb, 1e-6) / max(sp - amb, 1e-6)) if temp > sp + 0.01 else 0.0
            if a + t_cool < b:
                if t_cool > 0:
                    bounds.append(a + t_cool)
                    power.append(0.0)
                bounds.append(b)
                power.append(hold)
                temp = sp
            else:
                bounds.append(b)
                power.append(0.0)
                temp = amb + (temp - amb) * np.exp(-(b - a) / tau)
    return np.asarray(bounds), np.asarray(power), float(temp)


def _finish(base, extras, fracs, off_f, idle_f, run_f, p_off, p_idle, p_run, rng, n, events, noise_sd=0.03,
            pf_run=None, flow=None, pressure=None) -> Rendered:
    noise = _noise(rng, n, noise_sd)
    extras = {k: v * noise for k, v in extras.items()}
    power = base * noise + (sum(extras.values()) if extras else 0.0)
    state = _state_from(fracs)
    pf = _pf(off_f, idle_f, run_f, p_off, p_idle, p_run, rng, n)
    if pf_run is not None:
        pf = np.clip(pf_run + rng.normal(0, 0.005, n), 0.3, 0.99)
    return Rendered(power, extras, state, pf, flow=flow, pressure=pressure, run_frac=run_f)

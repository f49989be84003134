"""``idle_running``: production machines drawing idle power when they should be off or in eco mode.

Physics. A production machine has a few power levels that its own data reveal: off/standby, eco (breaks, waiting for
material), idle (ready to run: needed during setup and changeover) and running. Waste is idle power where a lower level
would do:

- outside the shift calendar the machine should be at standby (``off``), except what it routinely draws just before a
  shift (heater bands warming up) or after it: that routine is learned per machine from the median day;
- in a break it should be in eco mode;
- in a shift, idle seconds beyond what setup needs should be at eco level. Setup is recognised by its compressed-air use
  (tools, blow-off): a machine's air flow per window, divided by its flow while running, tells how many seconds were
  running-or-setup; without an air signal every idle second in a shift is taken as setup (conservative).

Per window the detector explains the metered energy by the learned levels and the state seconds; the excess is the
part above that explanation, bounded by what idling instead of the lower level can cost.
"""

from __future__ import annotations

import numpy as np

from analytics.causes._common import (
    PRODUCTION_KINDS,
    CauseResult,
    Context,
    group_runs,
    notice,
    routine_allowance,
    slot_distance,
)

KIND = "idle_running"
PURE = 0.95  # a window is "pure" in a state when that state covers this share of it
MIN_IDLE_MINUTES = 8.0  # [min] of idling instead of the lower level, for a finding


def _levels(ctx: Context, i: int, brk: np.ndarray, inshift: np.ndarray) -> dict | None:
    res, E, v = ctx.res, ctx.E[i], ctx.valid[i]
    p = E / ctx.h
    def pure(s):
        return v & (s >= PURE * res)
    off = pure(ctx.s_off[i])
    run = pure(ctx.s_run[i])
    idle = pure(ctx.s_idle[i])
    if run.sum() < 8 or idle.sum() < 8:
        return None
    lv = {"off": float(np.median(p[off])) if off.sum() >= 4 else float(np.percentile(p[v], 2))}
    lv["run"] = float(np.median(p[run]))
    fault = pure(ctx.s_fault[i])
    idle_in = idle & inshift & ~brk
    cand = p[idle_in] if idle_in.sum() >= 6 else p[idle]
    # Two idle levels (eco and ready): a 1-d two-means split of the pure idle windows in shifts.
    lo, hi = float(np.percentile(cand, 10)), float(np.percentile(cand, 90))
    for _ in range(20):
        cut = (lo + hi) / 2
        a, b = cand[cand <= cut], cand[cand > cut]
        if not len(a) or not len(b):
            break
        lo, hi = float(np.median(a)), float(np.median(b))
    brk_idle = idle & brk
    eco = float(np.median(p[brk_idle])) if brk_idle.sum() >= 4 else lo
    ready = hi if hi > eco * 1.1 else float(np.median(cand))
    lv.update(eco=min(eco, ready), idle=ready, fault=float(np.median(p[fault])) if fault.sum() >= 3 else ready)
    return lv


def _run_power_by_day(ctx: Context, i: int, day: np.ndarray, fallback: float) -> np.ndarray:
    """Running power per window from the median of that day's pure running windows (motors degrade, setpoints
    change: a run-power level from another week would leak into the idle estimate)."""
    p = ctx.E[i] / ctx.h
    run = ctx.valid[i] & (ctx.s_run[i] >= PURE * ctx.res)
    out = np.full(ctx.n_t, fallback)
    days = np.unique(day)
    level = {}
    for d in days:
        sel = run & (day == d)
        if sel.sum() >= 3:
            level[d] = float(np.median(p[sel]))
    if level:
        known = np.array(sorted(level))
        vals = np.array([level[d] for d in known])
        per_day = np.interp(days, known, vals)
        out = per_day[np.searchsorted(days, day)]
    return out


def _setup_seconds(ctx: Context, i: int, idle_level: np.ndarray) -> np.ndarray | None:
    """Seconds of setup per window from the machine's air use (None when air does not reveal setup)."""
    air = ctx.air[i]
    v = ctx.valid[i] & np.isfinite(air)
    run = v & (ctx.s_run[i] >= PURE * ctx.res)
    if run.sum() < 8:
        return None
    a_run = float(np.median(air[run]))
    if not a_run > 0:
        return None
    idle = v & (ctx.s_idle[i] >= PURE * ctx.res) & idle_level
    if idle.sum() < 6:
        return None
    ratio = air[idle] / a_run
    ratio = ratio[ratio > 0.02]
    if len(ratio) < 4:
        return None
    r_setup = float(np.median(ratio))
    if not 0.03 < r_setup < 0.9:
        return None
    run_equiv = np.nan_to_num(air) / a_run * ctx.res
    setup = (run_equiv - ctx.s_run[i] - ctx.s_fault[i] * r_setup) / r_setup
    return np.clip(setup, 0.0, ctx.s_idle[i])


def detect(ctx: Context) -> CauseResult:
    """Find idle running of production machines (see the module docstring)."""
    out = CauseResult(KIND, np.zeros((ctx.n_m, ctx.n_t)))
    no_cal, no_levels = [], []
    for i, info in enumerate(ctx.infos):
        production = info.kind in PRODUCTION_KINDS or (info.kind == "other" and np.nansum(ctx.good[i]) > 0)
        if not production or not ctx.has_state[i].any():
            continue
        if not ctx.has_calendar(i):
            no_cal.append(info.path)
            continue
        shift = ctx.shift[i]
        inshift, brk, offs = shift == 1, shift == 2, shift == 0
        lv = _levels(ctx, i, brk, inshift)
        if lv is None:
            no_levels.append(info.path)
            continue
        out.assessed.append(info.path)
        day = ctx.local_day(i)
        p_run = _run_power_by_day(ctx, i, day, lv["run"])
        res, h = ctx.res, ctx.h
        E, v = ctx.E[i], ctx.valid[i]
        s_off, s_idle, s_run, s_fault = ctx.s_off[i], ctx.s_idle[i], ctx.s_run[i], ctx.s_fault[i]
        p = E / h
        idle_level = p > (lv["eco"] + lv["idle"]) / 2
        setup = _setup_seconds(ctx, i, idle_level)
        known = (s_run * p_run + s_fault * lv["fault"] + s_off * lv["off"]) / 3600
        # In shifts: setup at the ready level, the rest of the idle time at eco level.
        needed = np.where(inshift, setup if setup is not None else s_idle, 0.0)
        low = np.where(offs, lv["off"], lv["eco"])
        expected = known + (needed * lv["idle"] + (s_idle - needed) * low) / 3600
        # Outside shifts: what the machine routinely draws right before work (warm-up) is not waste.
        work = shift >= 1
        _, until = slot_distance(work)
        base_off = (s_off + s_idle) * lv["off"] / 3600 + s_run * p_run / 3600
        # Only before work: heating up is needed to start; after the shift a production machine has nothing to do.
        allow = routine_allowance(E, v & offs, None, until, base_off, max_slots=round(2 * 3600 / res), day=day)
        expected = np.where(offs & (allow > 0), np.maximum(expected, allow), expected)
        wasteable = np.clip(s_idle - needed, 0, None)
        cap = wasteable * (lv["idle"] - low) / 3600 * 1.15
        excess = np.clip(np.minimum(E - expected, cap), 0, None)
        # Noise floor: a window counts when its excess is at least ~2 minutes of idling instead of eco mode, and above
        # 2 % of a running window (the run-power level of the day is an estimate).
        floor = max(0.125 * (lv["idle"] - lv["eco"]) * h, 0.02 * lv["run"] * h)
        flag = v & (excess > floor) & (wasteable >= 0.2 * res)
        excess = np.where(flag, excess, 0.0)
        for a, b in group_runs(flag, gap=1):
            kwh = float(excess[a:b].sum())
            low_mean = float(np.mean(low[a:b]))
            # Worth a finding when it amounts to several minutes of idling instead of the lower level.
            if kwh <= 0 or kwh / max(lv["idle"] - low_mean, 1e-9) * 60 < MIN_IDLE_MINUTES:
                excess[a:b] = 0.0
                continue
            part = "off" if offs[a:b].mean() > 0.5 else "break" if brk[a:b].any() and brk[a:b].mean() >= 0.5 else "shift"
            hours = float(s_idle[a:b].sum()) / 3600
            out.events.append((i, a, b, {"context": part, "idle_kw": round(lv["idle"], 2), "eco_kw": round(lv["eco"], 2),
                                         "off_kw": round(lv["off"], 2), "idle_hours": round(hours, 2)}))
        out.excess[i] = excess
    if no_cal:
        out.warnings.append(notice("idle_running.no_calendar", f"idle running not assessed for {len(no_cal)} production "
                                   "machine(s) without a shift calendar (which idle hours are planned is unknown)",
                                   machines=no_cal))
    if no_levels:
        out.warnings.append(notice("idle_running.too_little_data", f"idle running not assessed for {len(no_levels)} "
                                   "machine(s): too few windows purely running or idle to learn their power levels",
                                   machines=no_levels))
    return out

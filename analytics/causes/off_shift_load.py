"""``off_shift_load``: utilities and line equipment drawing more outside working hours than must run.

Physics. Outside working hours (no shift of the machine's line, or for site utilities no shift anywhere on the site) a
lighting circuit should be at security lighting, an air handler at frost protection, a conveyor off, a chiller at its
process base. That must-run base is learned per machine from its own off-shift windows at similar outdoor temperature
(frost protection and cooling depend on it), as a low quantile so that nights left in occupied mode do not raise it.
What the machine routinely draws in the first and last windows around work (lights on while people arrive and leave)
is learned from the median day and allowed. Excess is the energy above base and routine in sustained off-shift runs.

Production machines (their idling is ``idle_running``), furnaces (heat kept by setpoint: ``excess_specific_energy``)
and compressors (air demand: ``air_leak``) are left to those causes.
"""

from __future__ import annotations

import numpy as np

from analytics.causes._common import (
    PRODUCTION_KINDS,
    CauseResult,
    Context,
    diff_sd,
    group_runs,
    notice,
    routine_allowance,
    slot_distance,
)

KIND = "off_shift_load"
EXCLUDED_KINDS = PRODUCTION_KINDS + ("furnace", "compressor")
BASE_QUANTILE = 25  # [%] of off-shift windows at similar temperature


def _base(E: np.ndarray, temp: np.ndarray, deep: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Must-run energy per window: a low quantile of deep off-shift windows in 3 °C outdoor temperature bins."""
    glob = float(np.percentile(E[deep], BASE_QUANTILE))
    out = np.full(len(E), glob)
    if not np.isfinite(temp).any():
        return out
    t = np.where(np.isfinite(temp), temp, np.nanmedian(temp))
    bins = np.floor(t / 3.0).astype(int)
    levels = {}
    for b in np.unique(bins[deep]):
        sel = deep & (bins == b)
        # A bin seen on few days only (warm afternoons off-shift are Sundays) cannot tell must-run from left-on.
        if sel.sum() >= 12 and len(np.unique(day[sel])) >= 4:
            levels[b] = float(np.percentile(E[sel], BASE_QUANTILE))
    if len(levels) >= 2:
        ks = np.array(sorted(levels))
        out = np.interp(bins, ks, [levels[k] for k in ks])
    elif levels:
        out[:] = next(iter(levels.values()))
    return out


def detect(ctx: Context) -> CauseResult:
    """Find off-shift load (see the module docstring)."""
    out = CauseResult(KIND, np.zeros((ctx.n_m, ctx.n_t)))
    no_cal = []
    for i, info in enumerate(ctx.infos):
        if info.kind in EXCLUDED_KINDS or np.nansum(ctx.good[i]) > 0:
            continue
        work = ctx.in_shift(i)
        if work is None:
            no_cal.append(info.path)
            continue
        E, v = ctx.E[i], ctx.valid[i]
        offs = ~work
        slots = round(2 * 3600 / ctx.res)
        since, until = slot_distance(work)
        deep = v & offs & (since > slots) & (until > slots)
        if deep.sum() < 24 or (v & work).sum() < 24:
            continue
        out.assessed.append(info.path)
        day = ctx.local_day(i)
        base = _base(E, ctx.temp[i], deep, day)
        allow = routine_allowance(E, v & offs, since, until, base, max_slots=slots, day=day)
        expected = np.maximum(base, allow)
        on_level = float(np.median(E[v & work]))
        resid = E - expected
        # Noise from successive differences: nights left on (maybe most of them) must not inflate it.
        noise = diff_sd(resid[deep])
        step = max(on_level - float(np.median(base)), 0.0)
        floor = max(0.25 * step, 5 * noise, 1e-3)
        flag = v & offs & (resid > floor)
        excess = np.zeros(ctx.n_t)
        for a, b in group_runs(flag, gap=2, min_len=3):
            seg = np.clip(resid[a:b], 0, None) * (v[a:b] & offs[a:b])
            excess[a:b] = seg
            kwh = float(seg.sum())
            if kwh <= 0:
                continue
            hours = (b - a) * ctx.h
            out.events.append((i, a, b, {"base_kw": round(float(np.median(base[a:b])) / ctx.h, 2),
                                         "mean_kw": round(float(np.mean(E[a:b])) / ctx.h, 2), "hours": round(hours, 2)}))
        out.excess[i] = excess
    if no_cal:
        out.warnings.append(notice("off_shift_load.no_calendar", f"off-shift load not assessed for {len(no_cal)} "
                                   "machine(s): no shift calendar says which hours are off-shift (give a plant file)",
                                   machines=no_cal))
    return out

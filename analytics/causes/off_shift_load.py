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
    lstsq,
    notice,
    routine_allowance,
    slot_distance,
)

KIND = "off_shift_load"
EXCLUDED_KINDS = (*PRODUCTION_KINDS, "furnace", "compressor")
BASE_QUANTILE = 10  # [%] of off-shift windows at similar temperature (nights left on may be most)


def _nonneg_fit(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with non-negative coefficients for a few columns (active set: drop negative ones, refit)."""
    active = list(range(X.shape[1]))
    coef = np.zeros(X.shape[1])
    while active:
        sub = lstsq(X[:, active], y)
        if (sub >= 0).all():
            coef[:] = 0.0
            coef[active] = sub
            return coef
        active.pop(int(np.argmin(sub)))
    return coef


def _base(E: np.ndarray, temp: np.ndarray, deep: np.ndarray) -> np.ndarray:
    """Must-run energy per window: the lower envelope of deep off-shift windows as a function of outdoor temperature
    (frost protection below ~4 °C, cooling above ~10 °C), fitted by least squares that drops the windows far above the
    fit step by step (nights left on may be most of them)."""
    t = np.where(np.isfinite(temp), temp, np.nanmedian(temp) if np.isfinite(temp).any() else 10.0)
    X = np.column_stack([np.ones(len(E)), np.clip(t - 10, 0, None), np.clip(4 - t, 0, None)])
    keep = deep.copy()
    coef = np.array([float(np.percentile(E[deep], BASE_QUANTILE)), 0.0, 0.0])
    for _ in range(8):
        if keep.sum() < 12:
            break
        # Non-negative: must-run load never falls as it gets colder (frost) or warmer (cooling).
        coef = _nonneg_fit(X[keep], E[keep])
        resid = E - X @ coef
        cut = float(np.percentile(resid[keep], 60))
        nxt = deep & (resid <= cut)
        if nxt.sum() < max(12, 0.1 * deep.sum()):
            break
        keep = nxt
    resid = E - X @ coef
    # The envelope's level: a low quantile of what remains (noise sits on both sides of the must-run level).
    return X @ coef + float(np.percentile(resid[keep], 50))


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
        base = _base(E, ctx.temp[i], deep)
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

"""``air_leak``: compressed air lost to leaks, and the compressor energy behind it.

Physics. A compressor delivers what the site's consumers draw plus what leaks. The consumers' draw is measured
(machines with an air-flow signal); the compressor's share of it is fitted with one intercept per day
(``flow = a_day + c x demand``), so that ``a_day`` is the flow nobody uses that day: the normal leakage of the network
plus any leak. The lowest days give the normal leakage (the must-run part); days above it by more than the day-to-day
noise hold a leak. A leak grows until it is repaired (the daily level drops), so runs of leaky days are split where
the level falls back. The energy behind it is the compressor's marginal power per m3/min (the slope of power on flow
while running) times the leak flow while the compressor runs.
"""

from __future__ import annotations

import numpy as np

from analytics.causes._common import (
    CauseResult,
    Context,
    diff_sd,
    group_runs,
    notice,
)

KIND = "air_leak"


def _site_demand(ctx: Context, i: int) -> np.ndarray:
    info = ctx.infos[i]
    rows = [j for j, o in enumerate(ctx.infos) if o.site == info.site and o.kind != "compressor" and j != i
            and np.isfinite(ctx.air[j]).any() and np.nanmax(ctx.air[j]) > 0]
    if not rows:
        return np.zeros(ctx.n_t)
    return np.nansum(ctx.air[rows], axis=0)


def detect(ctx: Context) -> CauseResult:
    """Find growing compressed-air leaks (see the module docstring)."""
    out = CauseResult(KIND, np.zeros((ctx.n_m, ctx.n_t)))
    no_flow = []
    for i, info in enumerate(ctx.infos):
        if info.kind != "compressor":
            continue
        flow = ctx.air[i]
        if not np.isfinite(flow).any() or not np.nanmax(flow) > 0:
            no_flow.append(info.path)
            continue
        E, v = ctx.E[i], ctx.valid[i] & np.isfinite(flow)
        p = E / ctx.h
        on_share = 1 - np.clip(ctx.s_off[i] / ctx.res, 0, 1) if ctx.has_state[i].any() else (flow > 0).astype(float)
        on = v & (on_share > 0.98) & (flow > 0)
        cap = float(np.nanmax(flow[on])) if on.any() else 0.0
        use = on & (flow < 0.98 * cap)  # saturated windows hide how much leaks
        if use.sum() < 48:
            continue
        out.assessed.append(info.path)
        demand = _site_demand(ctx, i)
        day = ctx.local_day(i)
        days = np.unique(day[use])
        # Slope of flow on demand within days (day intercepts absorb slowly growing leaks).
        fx, dx = flow[use].copy(), demand[use].copy()
        dd = day[use]
        for d in days:
            sel = dd == d
            fx[sel] -= fx[sel].mean()
            dx[sel] -= dx[sel].mean()
        c = float((fx * dx).sum() / (dx * dx).sum()) if (dx * dx).sum() > 0 else 0.0
        resid = flow - c * demand
        a_day = np.full(len(days), np.nan)
        n_day = np.zeros(len(days))
        for k, d in enumerate(days):
            sel = use & (day == d)
            n_day[k] = sel.sum()
            if sel.sum() >= 4:
                a_day[k] = float(np.median(resid[sel]))
        ok = np.isfinite(a_day)
        if ok.sum() < 5:
            continue
        base = float(np.percentile(a_day[ok], 5))
        leak_day = np.where(ok, a_day - base, 0.0)
        noise = diff_sd(a_day[ok])
        floor = max(4 * noise, 0.015 * cap)
        # Marginal power per m3/min while running.
        # Within days, like the flow model: a motor that degrades over weeks must not tilt the slope.
        px = p[use].copy()
        for d in days:
            sel = dd == d
            px[sel] -= px[sel].mean()
        fx2 = flow[use] - np.array([0.0])
        for d in days:
            sel = dd == d
            fx2[sel] -= fx2[sel].mean()
        slope = float((px * fx2).sum() / (fx2 * fx2).sum()) if (fx2 * fx2).sum() > 0 else 0.0
        if not slope > 0:
            continue
        flag_day = ok & (leak_day > floor)
        # Split where the level falls back (a repair) by more than half of the leak.
        excess = np.zeros(ctx.n_t)
        for a, b in group_runs(flag_day, gap=1, min_len=2):
            pieces, start = [], a
            for k in range(a + 1, b):
                if leak_day[k - 1] > floor and leak_day[k] < 0.5 * leak_day[k - 1]:
                    pieces.append((start, k))
                    start = k
            pieces.append((start, b))
            for pa, pb in pieces:
                if pb - pa < 2:
                    continue
                sel_days = days[pa:pb]
                in_ev = np.isin(day, sel_days)
                # Leak per window: daily levels interpolated to each window (leaks grow steadily).
                centre = np.array([np.median(np.flatnonzero(use & (day == d))) if (use & (day == d)).any() else np.nan
                                   for d in sel_days])
                lv = np.clip(leak_day[pa:pb], 0, None)
                good = np.isfinite(centre)
                idx = np.arange(ctx.n_t)
                leak_w = np.interp(idx, centre[good], lv[good]) if good.sum() >= 1 else np.zeros(ctx.n_t)
                # A leak raises delivered flow only as far as the compressor can deliver.
                leak_w = np.minimum(leak_w, np.clip(cap - (flow - leak_w), 0, None))
                w = in_ev & ctx.valid[i] & np.isfinite(flow)
                ex = np.where(w, slope * np.nan_to_num(leak_w) * on_share * ctx.h, 0.0)
                excess += ex
                w_idx = np.flatnonzero(in_ev)
                a_i, b_i = int(w_idx[0]), int(w_idx[-1]) + 1
                out.events.append((i, a_i, b_i, {"leak_m3_min_at_start": round(float(lv[0]), 3),
                                                 "leak_m3_min_at_end": round(float(lv[-1]), 3),
                                                 "kw_per_m3_min": round(slope, 3),
                                                 "normal_leakage_m3_min": round(base, 3)}))
        out.excess[i] = excess
    if no_flow:
        out.warnings.append(notice("air_leak.no_flow", f"air leaks not assessed for {len(no_flow)} compressor(s) "
                                   "without an air-flow signal", machines=no_flow))
    if not any(info.kind == "compressor" for info in ctx.infos):
        out.warnings.append(notice("air_leak.no_compressor", "air leaks not assessed: no machine is known to be a "
                                   "compressor (give machine kinds in the plant file)"))
    return out

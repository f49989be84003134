"""``peak_demand``: start-up surges that set demand peaks (machines started together), valued by the demand charge.

Physics. Starting a machine draws an inrush well above anything it draws while working; started one after another the
inrushes spread out, started together they add up into the site's 15-minute peak, which the demand charge prices for
the whole month. A window whose 1-min peak power stands far above the machine's usual daily peak (the median of its
daily maxima around that day) is a candidate; its 1-min power then gives the surge minutes and their energy above the
level around them. A surge must last at least two minutes and show in the energy register too (a one-sample spike of a
meter is not a surge). Machines of one line surging in the same window form one group.
"""

from __future__ import annotations

import numpy as np

from analytics.causes._common import CauseResult, Context, notice

KIND = "peak_demand"
#: A window is a candidate when its peak exceeds the machine's typical daily peak by this factor.
SURGE_FACTOR = 1.35


def detect(ctx: Context) -> CauseResult:
    """Find start-up surges (see the module docstring); needs 1-min power (``ctx.fine_power``)."""
    out = CauseResult(KIND, np.zeros((ctx.n_m, ctx.n_t)))
    if ctx.fine_power is None:
        out.warnings.append(notice("peak_demand.no_fine_data", "peak demand not assessed: it needs 1-min power data"))
        return out
    window_ns = int(ctx.res * 1e9)
    for i, info in enumerate(ctx.infos):
        pmax = ctx.Pmax[i]
        if not np.isfinite(pmax).any():
            continue
        out.assessed.append(info.path)
        day = ctx.local_day(i)
        days = np.unique(day)
        didx = np.searchsorted(days, day)
        dmax = np.full(len(days), np.nan)
        v = ctx.valid[i] & np.isfinite(pmax)
        for k in range(len(days)):
            sel = v & (didx == k)
            if sel.any():
                dmax[k] = float(np.max(pmax[sel]))
        ref = np.array([np.nanmedian(dmax[max(0, k - 3):k + 4]) if np.isfinite(dmax[max(0, k - 3):k + 4]).any() else np.nan
                        for k in range(len(days))])
        thr = SURGE_FACTOR * ref[didx]
        cand = np.flatnonzero(v & (pmax > thr))
        if not len(cand):
            continue
        excess = np.zeros(ctx.n_t)
        for w in cand:
            t0 = int(ctx.times_ns[w])
            times, kw = ctx.fine_power(info.path, t0 - window_ns, t0 + 2 * window_ns)
            if len(kw) < 5:
                continue
            inside = (times >= t0) & (times < t0 + window_ns)
            high = inside & (kw > thr[w])
            if high.sum() < 2:
                continue  # a one-sample spike is a meter fault, not a start-up surge
            around = np.isfinite(kw) & ~(kw > thr[w])
            level = float(np.median(kw[around])) if around.any() else 0.0
            step_h = float(np.median(np.diff(times))) / 3.6e12 if len(times) > 1 else 1 / 60
            kwh = float(np.clip(kw[high] - level, 0, None).sum() * step_h)
            # The register must see it as well (a stuck or spiking meter does not).
            if ctx.E[i, w] - level * ctx.h < 0.5 * kwh:
                continue
            excess[w] += kwh
            out.events.append((i, w, w + 1, {"surge_kw": round(float(np.max(kw[high]) - level), 2),
                                             "minutes": int(high.sum()), "start_ns": int(times[high][0]),
                                             "end_ns": int(times[high][-1] + step_h * 3.6e12),
                                             "group": f"{info.site}/{info.line}@{t0}"}))
        out.excess[i] = excess
    return out

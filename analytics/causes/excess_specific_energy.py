"""``excess_specific_energy``: more energy for the same work than the machine's own best practice, for days on end.

Physics. A machine's energy per window is explained by what it did and under which conditions: seconds in each state
(running, idle, off, fault), outdoor temperature (heating, cooling, chiller efficiency), the site's production activity
(process cooling), the delivered air (compressors). A linear model of those drivers is fitted per machine on the days
that look normal; the daily ratio of metered to modelled energy is then compared with the machine's best-practice
level (the ratio of its good days). A wrong setpoint raises the ratio in steps for days to weeks, a degrading motor
ramps it up until repair; a sustained run of days above the noise of the daily ratio is a finding and its excess is the
energy above best practice on those days (energy another cause already explains is left out).
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
    robust_sd,
)

KIND = "excess_specific_energy"
SKIP_KINDS = ("lighting",)
MIN_DAYS = 7
DEBUG = False
MIN_RUN_DAYS = 3  # sustained: at least this many active days
#: Kinds whose energy depends on the weather (heating, cooling, condenser temperature) and on production activity
#: (process cooling). Other machines are modelled on their states only: fewer drivers, no spurious day-level fits.
WEATHER_KINDS = ("chiller", "hvac", "other")
PROCESS_KINDS = ("chiller",)


def _day_noise(ratio: np.ndarray) -> float:
    """Day-to-day noise of the daily ratio from consecutive working days that both follow a working day (a restart
    after days off, e.g. a furnace heating up from cold, is a systematic day type, not noise)."""
    r = np.asarray(ratio, float)
    if len(r) < 4:
        return 0.0
    pair = np.isfinite(r[1:-1]) & np.isfinite(r[2:]) & np.isfinite(r[:-2])
    d = (r[2:] - r[1:-1])[pair]
    if len(d) < 4:
        return diff_sd(r)
    return robust_sd(d) / np.sqrt(2.0)


def _activity(ctx: Context, site: str) -> np.ndarray:
    rows = [j for j, o in enumerate(ctx.infos) if o.site == site and o.kind in PRODUCTION_KINDS]
    if not rows:
        return np.zeros(ctx.n_t)
    return np.nanmean(ctx.s_run[rows], axis=0) / ctx.res


def _features(ctx: Context, i: int) -> np.ndarray:
    h = 1 / 3600
    states = [ctx.s_off[i] * h, ctx.s_idle[i] * h, ctx.s_run[i] * h, ctx.s_fault[i] * h]
    if not ctx.has_state[i].any():
        states = [np.full(ctx.n_t, ctx.h)]
    kind = ctx.infos[i].kind
    hinges, act = [], None
    if kind in WEATHER_KINDS:
        t = ctx.temp[i]
        t = np.where(np.isfinite(t), t, np.nanmedian(t) if np.isfinite(t).any() else 15.0)
        hinges = [np.clip(t - 10, 0, None) / 10, np.clip(t - 20, 0, None) / 10, np.clip(19 - t, 0, None) / 10,
                  np.clip(4 - t, 0, None) / 10]
    if kind in PROCESS_KINDS:
        act = _activity(ctx, ctx.infos[i].site)
    cols = []
    if kind in WEATHER_KINDS:
        # Weather-driven loads: occupied or not (people, lights, process heat), outdoor temperature, activity.
        work = ctx.in_shift(i)
        occ = work.astype(float) if work is not None else np.zeros(ctx.n_t)
        one = np.full(ctx.n_t, ctx.h)
        drivers = [one, occ * ctx.h] if occ.any() else [one]
        if act is not None:
            drivers.append(act * ctx.h)
        for d in list(drivers):
            cols.append(d)
            cols.extend(d * hg for hg in hinges)
        return np.column_stack(cols)
    for s in states:
        if s.any():
            cols.append(s)
    air = ctx.air[i]
    if ctx.infos[i].kind == "compressor" and np.isfinite(air).any():
        cols.append(np.nan_to_num(air) * ctx.h / 10)
    cols.append(np.full(ctx.n_t, ctx.h))
    return np.column_stack(cols)


def _has_work_driver(ctx: Context, i: int) -> bool:
    """Whether anything in the data says how much work the machine did: states, production counts, delivered air or
    (for weather-driven loads) outdoor temperature. Without one, "energy for the same work" is undefined: a meter
    alone says only that some days used more than others, which is operation, not waste."""
    if ctx.has_state[i].mean() > 0.5:
        return True
    if np.isfinite(ctx.good[i]).any() and np.nansum(ctx.good[i]) > 0:
        return True
    if ctx.infos[i].kind == "compressor" and np.isfinite(ctx.air[i]).any():
        return True
    return ctx.infos[i].kind in WEATHER_KINDS and ctx.infos[i].kind != "other" and bool(np.isfinite(ctx.temp[i]).any())


def detect(ctx: Context) -> CauseResult:
    """Find sustained excess specific energy (see the module docstring)."""
    out = CauseResult(KIND, np.zeros((ctx.n_m, ctx.n_t)))
    short, no_driver = [], []
    for i, info in enumerate(ctx.infos):
        if info.kind in SKIP_KINDS:
            continue
        if not _has_work_driver(ctx, i):
            no_driver.append(info.path)
            continue
        # Windows where a machine idled or stayed on when it should not are not "the same work": left out. A leak's
        # energy stays in (the compressor model has the delivered air as a driver, so a leak is not excess here).
        state_claims = ctx.claim("idle_running", i) + ctx.claim("off_shift_load", i)
        E = ctx.E[i] - state_claims - ctx.claim("peak_demand", i)
        v = ctx.valid[i] & (state_claims <= 0)
        day = ctx.local_day(i)
        days = np.unique(day)
        if len(days) < MIN_DAYS or v.sum() < 96 * 5 * 900 / ctx.res:
            short.append(info.path)
            continue
        X = _features(ctx, i)
        keep_day = np.ones(len(days), bool)
        didx = np.searchsorted(days, day)
        ratio = np.full(len(days), np.nan)
        ref, floor, noise = 1.0, 0.0, 0.0
        flag = np.zeros(len(days), bool)
        for it in range(4):
            fit = v & keep_day[didx]
            if fit.sum() < X.shape[1] * 4:
                break
            coef = lstsq(X[fit], E[fit])
            pred = X @ coef
            e_day = np.bincount(didx, weights=np.where(v, E, 0), minlength=len(days))
            p_day = np.bincount(didx, weights=np.where(v, pred, 0), minlength=len(days))
            typical = np.median(p_day[p_day > 0]) if (p_day > 0).any() else 0
            active = p_day > 0.3 * typical
            ratio = np.where(active, e_day / np.where(p_day > 0, p_day, 1), np.nan)
            ok = np.isfinite(ratio)
            if ok.sum() < MIN_DAYS:
                break
            normal = ok & ~flag
            if it == 0 or normal.sum() < 3:
                # Best practice: the machine's better days (a setpoint error may last most of the range).
                r = np.sort(ratio[ok])
                ref = float(np.median(r[: max(3, int(np.ceil(0.3 * len(r))))]))
            else:
                # Best practice: the better half of the normal days (a slow degradation creeps into "normal").
                r = np.sort(ratio[normal])
                ref = float(np.median(r[: max(3, len(r) // 2)]))
            noise = _day_noise(ratio)
            floor = max(0.03, 4 * noise) * ref
            flag = ok & (ratio - ref > floor)
            keep_day = ~flag
            if DEBUG:
                print(ctx.paths[i], round(ref,3), round(floor,3), np.round(ratio,3), flag.astype(int))
        if not np.isfinite(ratio).any():
            short.append(info.path)
            continue
        out.assessed.append(info.path)
        excess = np.zeros(ctx.n_t)
        # Runs of flagged days over the active days only (a weekend without work does not end a setpoint error).
        act_idx = np.flatnonzero(np.isfinite(ratio))
        spans = []
        n_act = len(act_idx)
        # Hysteresis: a sustained run extends over the neighbouring days still clearly above best practice (the
        # start of a ramp, the last days before a repair).
        loose = np.isfinite(ratio) & (ratio - ref > max(0.01 * ref, 2 * noise * ref, 0.4 * floor))
        flag_act = flag[act_idx].copy()
        loose_act = loose[act_idx]
        for a, b in group_runs(flag_act, gap=1, min_len=MIN_RUN_DAYS):
            while a > 0 and loose_act[a - 1]:
                a -= 1
                flag_act[a] = True
            while b < len(flag_act) and loose_act[b]:
                flag_act[b] = True
                b += 1
        for a, b in group_runs(flag_act, gap=1, min_len=1):
            # Sustained: enough active days, or fewer at an end of the range (it goes on beyond) when clearly above.
            at_edge = a == 0 or b == n_act
            clear = np.nanmean(ratio[act_idx[a:b]]) - ref > 2 * floor
            if b - a < MIN_RUN_DAYS and not (at_edge and b - a >= 2 and clear):
                continue
            a_day, b_day = act_idx[a], act_idx[b - 1] + 1
            spans.append((a_day, b_day))
        for a, b in spans:
            sel_days = days[a:b]
            w = np.isin(day, sel_days) & v
            ex = np.clip(E - pred * ref, 0, None)
            ex_day = np.bincount(didx, weights=np.where(w, E - pred * ref, 0), minlength=len(days))[a:b]
            if ex_day.sum() <= 0:
                continue
            # Window excess scaled so that each day's total equals that day's net excess (noise cancels).
            ex_pos_day = np.bincount(didx, weights=np.where(w, ex, 0), minlength=len(days))[a:b]
            scale = np.zeros(len(days))
            scale[a:b] = np.where(ex_pos_day > 0, np.clip(ex_day, 0, None) / np.where(ex_pos_day > 0, ex_pos_day, 1), 0)
            win = np.where(w, ex * scale[didx], 0.0)
            excess += win
            idx = np.flatnonzero(np.isin(day, sel_days))
            r = ratio[a:b]
            out.events.append((i, int(idx[0]), int(idx[-1]) + 1, {
                "ratio_to_best_practice_start": round(float(np.nanmin(r[:2]) / ref), 3) if np.isfinite(r[:2]).any() else None,
                "ratio_to_best_practice_max": round(float(np.nanmax(r) / ref), 3) if np.isfinite(r).any() else None,
                "days": int(b - a)}))
        out.excess[i] = excess
    if no_driver:
        out.warnings.append(notice("excess_specific_energy.no_driver", f"excess specific energy not assessed for "
                                   f"{len(no_driver)} machine(s): the store has no machine states, production counts, "
                                   "air flow or (for heating, ventilation and cooling) outdoor temperature to say how "
                                   "much work they did; give the machine's kind in a plant file and collect its "
                                   "state or counts", machines=no_driver))
    if short:
        out.warnings.append(notice("excess_specific_energy.too_little_data", f"excess specific energy not assessed for "
                                   f"{len(short)} machine(s): fewer than {MIN_DAYS} days with data",
                                   machines=short))
    return out

"""Verified savings (IPMVP Option B/C, ASHRAE Guideline 14): avoided energy of an intervention with its uncertainty.

``Savings(settings).fit(data)`` takes interval data of a scope (a machine, line or site) around an intervention date:

1. the baseline period (before the intervention; an installation window up to ``reporting_from`` is left out) trains
   a model: the house baseline (:class:`analytics.baseline.Baseline`, hourly, drivers selected among time of week,
   shifts, production, material, run hours and degree-hours) or, for a meter without production data, the daily
   change-point model of :mod:`analytics.mv_models`; ``model="auto"`` picks the one with the lower daily CV(RMSE) on the
   last quarter of the baseline period (time-ordered hold-out), then refits it on the whole baseline period;
2. the model predicts the reporting period (the *adjusted baseline*); avoided energy = adjusted baseline - actual
   [kWh], over complete local days; money from the site's tariff (``core.tariff``, time of use) and CO2 from its grid
   factor;
3. the uncertainty is ASHRAE Guideline 14-2014's fractional savings uncertainty (Annex B, after Reddy and Claridge
   2000), computed on **daily** residuals of the baseline period, with the effective sample size for autocorrelation:

       FSU = dE_save / E_save = t(1 - a/2, n' - p) * 1.26 * CV * sqrt((n / n') * (1 + 2 / n') * (1 / m)) / F
       n' = n * (1 - rho) / (1 + rho)

   where ``n`` baseline days, ``m`` reporting days, ``p`` model parameters, ``rho`` the lag-1 autocorrelation of the
   daily residuals, ``CV`` their CV(RMSE) and ``F`` the savings fraction. Written absolutely, the half-width of the
   interval is ``dE_save = t * 1.26 * RMSE * sqrt(m * (n / n') * (1 + 2 / n'))`` [kWh]. Daily, because the formula
   applied to hourly residuals understates the uncertainty badly (errors persist for days: shifts, weather, drifting
   equipment). Waste episodes that last weeks also make the two periods' levels differ by more than the lag-1
   correlation says: the reported half-width is the larger of this one and the long-range term
   (:func:`long_range_half_width`: the variance of the reporting sum against the baseline level from the variance of
   L-day sums, a power law in L fitted to the baseline residuals' Allan variance); see docs/savings.md for the
   formulas, their sources and the measured coverage.

Warnings (``core.notices.Notice``): the reporting period's drivers outside the baseline's range (a non-routine
adjustment may be needed), reporting days whose temperature the change-point model held at the baseline's range
(``analytics.savings.temperature_beyond_baseline``), a model that fails the Guideline 14 criteria, savings within
their own uncertainty.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from pydantic import Field
from scipy import stats as sps

from analytics.baseline import G14_HOURLY, Baseline, BaselineSettings, Level
from analytics.data import FRAME_COLUMNS, NS, REGISTER_COLUMNS, IntervalData
from analytics.errors import AnalyticsError, InsufficientDataError
from analytics.mv_models import ChangePointModel, DailyInputs, fit_change_point
from analytics.quality import find_meter_faults
from core.config import FrozenModel
from core.notices import Notice

#: Guideline 14's empirical factor for the savings uncertainty of a sum over the reporting period.
G14_FACTOR = 1.26
#: Factor on the reported half-width (1: none). It was 1.35, measured on simulator seeds (the formula alone covered
#: 58 % / 83 % at 68 % / 90 % there, and 73 % at 90 % on seeds nobody developed against); the long-range term
#: (:func:`long_range_half_width`) replaces it with a width estimated from each baseline period itself.
INFLATION = 1.0
#: Block lengths of the long-range term, as shares of the baseline period's span: from 1/16 to 1/4, in
#: :data:`LONG_RANGE_STEPS` geometric steps (the longest blocks a baseline period still holds several of).
LONG_RANGE_SCALES = (1 / 16, 1 / 4)
LONG_RANGE_STEPS = 5
#: Range of the fitted Hurst exponent: 0.5 is independent blocks (no anti-persistence assumed), 0.99 a level that
#: hardly changes.
HURST_RANGE = (0.5, 0.99)
#: Least complete baseline / reporting days.
MIN_BASELINE_DAYS = 14
MIN_REPORTING_DAYS = 1
#: Drivers of a savings baseline: independent variables only (IPMVP). Machine-state hours (running, idle) are left
#: out because the measures change them (a machine no longer left idling has fewer idle hours): with them as drivers the
#: adjusted baseline would follow the measure and hide its savings. No robust re-weighting either: the baseline must
#: keep the waste that the measure removes.
SAVINGS_DRIVERS = ("time_of_week", "shift", "production", "material", "temperature")
#: Guideline 14: the savings uncertainty at 68 % confidence must be under 50 % of the savings.
MAX_FSU_68 = 0.5


class SavingsSettings(FrozenModel):
    """What to verify and how.

    Parameters
    ----------
    scope : str
        ``site``, ``site/line`` or ``site/line/machine``.
    intervention : date
        Day of the intervention (local midnight of the scope's site ends the baseline period).
    reporting_from : date, optional
        First day of the reporting period (an installation window ``[intervention, reporting_from)`` is left out);
        the intervention day when omitted.
    reporting_days : int, optional
        Length of the reporting period [days]; all data after ``reporting_from`` when omitted.
    baseline_days : int, optional
        Length of the baseline period [days] before the intervention; all data before it when omitted.
    model : str
        ``auto``, ``baseline`` (hourly house baseline) or ``change_point`` (daily temperature change-point model).
    uncertainty : str
        ``long_range`` (the default): the larger of Guideline 14 on daily residuals and the long-range term
        (:func:`long_range_half_width`: the level difference between the periods that persistent residuals cause,
        estimated from the baseline period's own residuals); ``daily`` (Guideline 14 on daily residuals alone) or
        ``hourly`` (on the model's hourly residuals, as the formula is often applied; it understates the uncertainty
        and is kept for comparison).
    inflation : float
        Factor on the half-width (:data:`INFLATION` = 1: none).
    exclude_meter_faults : bool
        Leave out the days with a meter fault (:func:`analytics.quality.find_meter_faults`).
    baseline : BaselineSettings, optional
        Settings of the house baseline (its ``scopes`` are set to the scope's level).
    causes : tuple of str
        The waste causes the intervention addressed (``core.model.WASTE_KINDS``, e.g. ``("idle_running",)``). When
        given, the energy of the *other* known causes that the analytics find (:class:`analytics.potential.
        ReductionPotential` on the scope's own data) is taken out of both periods before the fit (an IPMVP
        non-routine adjustment): other waste that comes and goes at random no longer shifts the two periods' levels.
        Empty: no adjustment.
    weather_check : bool
        Give the house baseline its degree-hour drivers only when the daily change-point model, fitted on the same
        days with BIC over effective days, takes a heating or cooling term: a meter whose energy does not follow the
        weather gets no weather slope from waste episodes or order runs that happen to coincide with a season (the
        slope would extrapolate into the next season; docs/benchmarks.md, "What drives the savings error").
    """

    scope: str
    intervention: dt.date
    reporting_from: dt.date | None = None
    reporting_days: int | None = Field(None, ge=1)
    baseline_days: int | None = Field(None, ge=MIN_BASELINE_DAYS)
    model: Literal["auto", "baseline", "change_point"] = "auto"
    uncertainty: Literal["long_range", "daily", "hourly"] = "long_range"
    inflation: float = Field(INFLATION, gt=0, le=10)
    exclude_meter_faults: bool = True
    baseline: BaselineSettings = BaselineSettings(drivers=SAVINGS_DRIVERS)
    weather_check: bool = True
    causes: tuple[str, ...] = ()


def fsu_half_width(residuals: np.ndarray, parameters: int, m: int, confidence: float,
                   rho: float | None = None) -> dict[str, float]:
    """Guideline 14 half-width of the savings interval over ``m`` reporting periods [kWh].

    Parameters
    ----------
    residuals : ndarray
        Baseline-period residuals (observed - predicted) per period, in time order [kWh]; NaN periods break the
        lag-1 pairs.
    parameters : int
        ``p``, model parameters.
    m : int
        Reporting periods.
    confidence : float
        Two-sided confidence (0.68, 0.90).
    rho : float, optional
        Lag-1 autocorrelation; estimated from ``residuals`` when omitted (negative values count as 0).

    Returns
    -------
    dict
        ``half_width_kwh``, ``rmse_kwh``, ``rho``, ``n``, ``n_eff``, ``t``.
    """
    e = np.asarray(residuals, dtype=float)
    ok = np.isfinite(e)
    n = int(ok.sum())
    p = int(parameters)
    if rho is None:
        pair = ok[1:] & ok[:-1]
        a, b = e[1:][pair], e[:-1][pair]
        rho = float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 and a.std() > 0 and b.std() > 0 else 0.0
    rho = float(np.clip(rho, 0.0, 0.95))
    n_eff = n * (1 - rho) / (1 + rho)
    rmse = float(np.sqrt(np.sum(e[ok] ** 2) / max(n - p, 1)))
    dof = max(n_eff - p, 1.0)
    t = float(sps.t.ppf(0.5 + confidence / 2, dof))
    half = t * G14_FACTOR * rmse * np.sqrt(m * (n / n_eff) * (1 + 2 / n_eff))
    return {"half_width_kwh": float(half), "rmse_kwh": rmse, "rho": rho, "n": n, "n_eff": float(n_eff), "t": t}


def _allan(e: np.ndarray, length: int) -> tuple[float, float]:
    """Mean of ``(S[t+L, t+2L) - S[t, t+L))**2`` over every start ``t`` whose two blocks of ``L = length`` periods have
    no missing value (``S``: sums of ``e``) [kWh²], and the number of independent block pairs it rests on."""
    ok = np.isfinite(e)
    c = np.concatenate(([0.0], np.cumsum(np.where(ok, e, 0.0))))
    gaps = np.concatenate(([0], np.cumsum(~ok)))
    t = np.arange(len(e) - 2 * length + 1)
    if not len(t):
        return float("nan"), 0.0
    diff = (c[t + 2 * length] - c[t + length]) - (c[t + length] - c[t])
    good = gaps[t + 2 * length] == gaps[t]
    if not good.any():
        return float("nan"), 0.0
    return float(np.mean(diff[good] ** 2)), float(good.sum() / (2 * length))


def long_range_half_width(residuals: np.ndarray, parameters: int, m: int, confidence: float) -> dict[str, float] | None:
    """Half-width of the savings interval from the level difference between the periods that persistent residuals
    cause [kWh], estimated from the baseline period's own residuals.

    The savings error over ``m`` reporting periods is that of the reporting period's residual sum against the level
    the baseline period's ``n`` periods set: ``E = S_rep - (m / n) S_base``. With ``D(L)`` the variance of a sum of
    ``L`` consecutive residuals (stationary),

        Var(E) = D(m) + (m / n)² D(n) - (m / n) (D(n + m) - D(n) - D(m))

    (the last term: the covariance of the two adjacent periods' sums). Independent residuals give ``D(L) = s² L`` and
    ``Var(E) = s² m (1 + m / n)``; residuals that persist for weeks (waste episodes, drifting equipment) make ``D``
    grow faster and the two periods' levels differ more. ``D(L) = s² L^(2H)`` (self-similar, Hurst exponent ``H``) is
    fitted to the Allan variance of the residuals (Allan 1966; for long-range dependence e.g. Beran 1994, *Statistics
    for Long-Memory Processes*, ch. 4), ``A(L) = E[(S[t+L, t+2L) - S[t, t+L))²] = (4 - 2^(2H)) s² L^(2H)``, which
    needs no mean: a weighted least-squares line of ``log A`` on ``log L`` at block lengths from 1/16 to 1/4 of the
    baseline period's span (:data:`LONG_RANGE_SCALES`; overlapping blocks, blocks with a missing period left out;
    weights the square root of the independent block pairs), ``H`` kept in :data:`HURST_RANGE`. The variance is
    scaled by ``n / (n - p)`` (the fit's own parameters shrink the residuals, as in the RMSE) and the half-width is
    ``t(dof) * sqrt(Var(E))`` with ``dof = n / sqrt(L_min L_max)``, the independent blocks at the middle of the
    fitted lengths (the variance estimate is itself uncertain).

    Parameters
    ----------
    residuals : ndarray
        Baseline-period residuals (observed - predicted) per period, in time order [kWh]; NaN for missing periods
        (leading and trailing NaN are ignored).
    parameters : int
        ``p``, model parameters.
    m : int
        Reporting periods.
    confidence : float
        Two-sided confidence (0.68, 0.90).

    Returns
    -------
    dict or None
        ``half_width_kwh``, ``hurst``, ``variance_factor`` (``Var(E)`` over the independent residuals' ``s² m (1 +
        m / n)``), ``dof``, ``t``; None when the baseline period holds fewer than two usable block lengths.
    """
    e = np.asarray(residuals, dtype=float)
    idx = np.flatnonzero(np.isfinite(e))
    if len(idx) < 8:
        return None
    e = e[idx[0]: idx[-1] + 1]
    n = len(idx)
    span = len(e)
    lo, hi = (max(1, round(span * f)) for f in LONG_RANGE_SCALES)
    lengths = sorted({round(float(x)) for x in np.geomspace(lo, hi, LONG_RANGE_STEPS)})
    pts = [(L, *_allan(e, L)) for L in lengths]
    pts = [(L, a, k) for L, a, k in pts if np.isfinite(a) and a > 0 and k >= 1]
    if len(pts) < 2:
        return None
    x = np.log([q[0] for q in pts])
    y = np.log([q[1] for q in pts])
    w = np.sqrt([q[2] for q in pts])
    slope = float(np.polyfit(x, y, 1, w=w)[0]) if np.ptp(x) > 0 else 1.0
    h = float(np.clip(slope / 2, *HURST_RANGE))
    s2 = float(np.exp(np.average(y - 2 * h * x, weights=w))) / (4 - 2 ** (2 * h))

    def d(length: float) -> float:
        return s2 * length ** (2 * h)

    r = m / n
    shrink = n / max(n - int(parameters), 1)
    var = (d(m) + r ** 2 * d(n) - r * (d(n + m) - d(n) - d(m))) * shrink
    dof = n / np.sqrt(pts[0][0] * pts[-1][0])
    t = float(sps.t.ppf(0.5 + confidence / 2, max(dof, 1.0)))
    white = float(np.nanmean(e ** 2)) * shrink * m * (1 + r)
    return {"half_width_kwh": float(t * np.sqrt(max(var, 0.0))), "hurst": h,
            "variance_factor": float(var / white) if white > 0 else float("nan"), "dof": float(dof), "t": t}


@dataclass
class _Scope:
    level: Level
    key: str
    members: list[int]
    timezone: str


def _resolve_scope(data: IntervalData, scope: str) -> _Scope:
    parts = [p for p in str(scope).strip("/").split("/") if p]
    levels: dict[int, Level] = {1: "site", 2: "line", 3: "machine"}
    level = levels.get(len(parts))
    groups = data.groups(level) if level else {}
    key = "/".join(parts)
    if level is None or key not in groups:
        valid = sorted(data.groups("site")) + sorted(data.groups("line")) + sorted(data.groups("machine"))
        shown = ", ".join(valid[:20]) + (f" ... ({len(valid)} in all)" if len(valid) > 20 else "")
        raise AnalyticsError(f"unknown scope {scope!r}; valid scopes (site, site/line or site/line/machine): {shown}")
    members = groups[key]
    tz = list(data.machines.values())[members[0]].timezone
    return _Scope(level, key, members, tz)


def _subset(data: IntervalData, members: list[int]) -> IntervalData:
    """The interval data of some machines only (the baseline fits every scope of a level in the data it gets)."""
    if len(members) == len(data.machines):
        return data
    n = data.n_times
    idx = np.concatenate([np.arange(i * n, (i + 1) * n) for i in members])
    infos = [list(data.machines.values())[i] for i in members]
    paths = {m.path for m in infos}
    frame = data.frame.iloc[idx].reset_index(drop=True)
    mats = data.materials[data.materials["machine"].isin(paths)] if len(data.materials) else None
    extra = [c for c in data.frame.columns if c not in FRAME_COLUMNS + REGISTER_COLUMNS]
    sub = IntervalData.from_frame(frame, resolution_s=data.resolution_s, start=data.start, stop=data.stop,
                                  machines=infos, materials=mats, extra=extra)
    # from_frame(plant=...) would list every machine of the plant; the subset keeps the plant only for its sites'
    # tariffs and CO2 factors.
    object.__setattr__(sub, "plant", data.plant)
    return sub


def _local_midnight(day: dt.date, tz: str) -> int:
    return int(dt.datetime.combine(day, dt.time(), tzinfo=ZoneInfo(tz)).timestamp()) * NS


class Savings:
    """Avoided energy of an intervention with its Guideline 14 uncertainty (see the module docstring).

    Parameters
    ----------
    settings : SavingsSettings

    Attributes
    ----------
    result : dict
        After :meth:`fit`: what :meth:`to_dict` returns.
    daily : DataFrame
        After :meth:`fit`: per local day ``date``, ``period`` (baseline / reporting), ``observed_kwh``,
        ``expected_kwh``, ``valid``.
    """

    def __init__(self, settings: SavingsSettings) -> None:
        self.settings = settings
        self.result: dict[str, Any] = {}
        self.daily: pd.DataFrame | None = None
        self.warnings: list[Notice] = []
        self._faults: np.ndarray | None = None

    # -- fit -----------------------------------------------------------------------------------------------------------
    def fit(self, data: IntervalData) -> Savings:
        """Fit the baseline before the intervention, predict after it and compute the savings and their uncertainty.

        Raises
        ------
        AnalyticsError
            Unknown scope (the message lists valid ones), an intervention outside the data.
        InsufficientDataError
            Fewer than :data:`MIN_BASELINE_DAYS` complete baseline days or no complete reporting day.
        """
        s = self.settings
        sc = _resolve_scope(data, s.scope)
        sub = _subset(data, sc.members)
        t = sub.times_ns
        res_ns = sub.resolution_s * NS
        t_int = _local_midnight(s.intervention, sc.timezone)
        t_rep = _local_midnight(s.reporting_from or s.intervention, sc.timezone)
        if s.reporting_from is not None and s.reporting_from < s.intervention:
            raise AnalyticsError(f"reporting_from {s.reporting_from} is before the intervention {s.intervention}")
        first, last = int(t[0]), int(t[-1]) + res_ns
        if not first < t_int < last or t_rep >= last:
            raise AnalyticsError(
                f"intervention {s.intervention} is outside the data ({_iso(first, sc.timezone)} to "
                f"{_iso(last, sc.timezone)}); choose a date with data before and after it")
        t_base0 = max(first, t_int - s.baseline_days * 86400 * NS) if s.baseline_days else first
        t_rep1 = min(last, t_rep + s.reporting_days * 86400 * NS) if s.reporting_days else last
        base_w = (t >= t_base0) & (t < t_int)
        rep_w = (t >= t_rep) & (t < t_rep1)
        # Local days: windows of the same local date; a day counts when all of its windows have energy.
        local = pd.DatetimeIndex(t, tz="UTC").tz_convert(sc.timezone)
        day_of = pd.factorize(local.date)[0]
        days = pd.Index(pd.unique(local.date))
        # Windows with a meter fault (stuck register, reset, spike, gap) count as missing: their days leave both the
        # baseline fit and the savings sum (the same days on both sides, so the savings fraction stays unbiased).
        faults = np.asarray(find_meter_faults(sub).mask.any(axis=0)) if s.exclude_meter_faults else np.zeros(len(t), dtype=bool)
        other: dict[str, np.ndarray] = {}
        if s.causes:  # non-routine adjustment: the other known causes' waste out of both periods
            sub, other = _without_other_causes(sub, s.causes, faults)
        observed = np.where(faults, np.nan, _scope_sum(sub.matrix("energy_kwh").astype(float)))
        self._faults = faults

        def daily_sum(x: np.ndarray) -> np.ndarray:
            return np.bincount(day_of, np.nan_to_num(x), len(days))

        count = np.bincount(day_of, np.isfinite(observed).astype(float), len(days))
        full = np.bincount(day_of, minlength=len(days)) * sub.hours >= 23 - 1e-9  # a whole local day (23-25 h)
        complete = full & (count == np.bincount(day_of, minlength=len(days)))
        day_base = np.bincount(day_of, base_w.astype(float), len(days)) == np.bincount(day_of, minlength=len(days))
        day_rep = np.bincount(day_of, rep_w.astype(float), len(days)) == np.bincount(day_of, minlength=len(days))
        base_days, rep_days = complete & day_base, complete & day_rep
        if base_days.sum() < MIN_BASELINE_DAYS:
            raise InsufficientDataError(
                f"{sc.key}: {int(base_days.sum())} complete days before the intervention {s.intervention}; a baseline "
                f"needs at least {MIN_BASELINE_DAYS} (Guideline 14 recommends a full year to cover every season)")
        if rep_days.sum() < MIN_REPORTING_DAYS:
            raise InsufficientDataError(f"{sc.key}: no complete day of data in the reporting period from "
                                        f"{s.reporting_from or s.intervention}")
        obs_day = daily_sum(observed)

        # Model choice on the last quarter of the baseline period, then the chosen model on the whole period.
        candidates = [s.model] if s.model != "auto" else ["baseline", "change_point"]
        base_idx = np.flatnonzero(base_days)
        split = base_idx[int(len(base_idx) * 0.75)]
        choice: dict[str, float] = {}
        if len(candidates) > 1:
            train_days = base_days & (np.arange(len(days)) < split)
            test_days = base_days & (np.arange(len(days)) >= split)
            for name in candidates:
                try:
                    pred, _, _ = self._fit_predict(name, sub, sc, train_days[day_of], train_days, day_of, len(days))
                except (InsufficientDataError, ValueError):
                    continue
                e = obs_day[test_days] - pred[test_days]
                choice[name] = float(np.sqrt(np.mean(e ** 2)) / max(np.mean(obs_day[test_days]), 1e-12))
            if not choice:
                raise InsufficientDataError(f"{sc.key}: no model could be fitted on the baseline period")
            name = min(choice, key=choice.__getitem__)
        else:
            name = candidates[0]
        pred_day, params, info = self._fit_predict(name, sub, sc, base_w & _window_mask(base_days, day_of), base_days,
                                                   day_of, len(days))
        self.warnings = list(info.pop("warnings", []))
        beyond = info.pop("beyond_range", np.zeros(len(days), dtype=bool)) & rep_days
        if beyond.any():
            rng = info["model"].get("temp_range_c")
            self.warnings.append(Notice(
                "analytics.savings.temperature_beyond_baseline",
                f"{sc.key}: on {int(beyond.sum())} reporting day(s) the outdoor temperature left the baseline's range "
                f"[{rng[0]:.1f}, {rng[1]:.1f}] °C; the change-point model holds it at the range's bound there instead "
                "of extrapolating its slope: a non-routine adjustment may be needed for those days",
                {"days": [days[i].isoformat() for i in np.flatnonzero(beyond)], "baseline_range_c": rng}))

        # Savings over complete reporting days.
        expected_w = info.pop("expected_w", None)
        rep_mask_w = rep_days[day_of]
        baseline_kwh = float(pred_day[rep_days].sum())
        actual_kwh = float(obs_day[rep_days].sum())
        savings_kwh = baseline_kwh - actual_kwh
        fraction = savings_kwh / baseline_kwh if baseline_kwh > 0 else None
        e_base = np.where(base_days, obs_day - pred_day, np.nan)
        m = int(rep_days.sum())
        daily_unc = {c: fsu_half_width(e_base, params, m, c) for c in (0.68, 0.90)}
        long_unc = {c: long_range_half_width(e_base, params, m, c) for c in (0.68, 0.90)}
        hourly_unc = None
        if info.get("hourly_residuals") is not None:
            res_h = info["hourly_residuals"]
            per_day = np.isfinite(res_h).sum() / max(base_days.sum(), 1)
            hourly_unc = {c: fsu_half_width(res_h, params, round(m * per_day), c) for c in (0.68, 0.90)}
        unc = hourly_unc if s.uncertainty == "hourly" and hourly_unc is not None else daily_unc
        half_formula = {c: u["half_width_kwh"] for c, u in unc.items()}
        if s.uncertainty == "long_range":  # the larger of Guideline 14 and the long-range term
            half_formula = {c: max(h, (long_unc[c] or {}).get("half_width_kwh", 0.0)) for c, h in half_formula.items()}
        ybar = float(obs_day[base_days].mean())
        n = int(base_days.sum())
        # CV(RMSE) and NMBE of the daily residuals of the baseline period (whatever the uncertainty method).
        cv = daily_unc[0.68]["rmse_kwh"] / ybar if ybar > 0 else None
        nmbe = float(np.nansum(e_base) / (max(n - params, 1) * ybar)) if ybar > 0 else None
        half = {c: h * s.inflation for c, h in half_formula.items()}
        fsu = {c: (h / abs(savings_kwh) if savings_kwh else None) for c, h in half.items()}
        model_ok = cv is not None and nmbe is not None and cv <= G14_HOURLY[0] and abs(nmbe) <= G14_HOURLY[1]
        passes = bool(model_ok and fsu[0.68] is not None and fsu[0.68] < MAX_FSU_68)
        money, co2 = self._value(sub, sc, expected_w, observed, rep_mask_w, savings_kwh)
        self.warnings += self._checks(sub, sc, base_days, rep_days, day_of, len(days), model_ok, cv, nmbe, fsu,
                                      savings_kwh, half)
        adjustment = None
        if s.causes:
            by_kind = {k: {"baseline": float(np.bincount(day_of, x, len(days))[base_days].sum()),
                           "reporting": float(np.bincount(day_of, x, len(days))[rep_days].sum())}
                       for k, x in other.items()}
            adjustment = {"causes": list(s.causes), "other_causes_removed_kwh": by_kind,
                          "baseline_kwh": sum(v["baseline"] for v in by_kind.values()),
                          "reporting_kwh": sum(v["reporting"] for v in by_kind.values())}
            self.warnings.append(Notice(
                "analytics.savings.non_routine_adjustment",
                f"{sc.key}: non-routine adjustment for {', '.join(s.causes)}: the other waste causes the analytics "
                f"found ({', '.join(k for k, v in by_kind.items() if v['baseline'] or v['reporting']) or 'none'}) "
                f"are taken out of both periods: {adjustment['baseline_kwh']:,.0f} kWh of the baseline period, "
                f"{adjustment['reporting_kwh']:,.0f} kWh of the reporting period", adjustment))
        d0, d1 = days[base_idx[0]], days[base_idx[-1]]
        rep_idx = np.flatnonzero(rep_days)
        self.daily = pd.DataFrame({"date": days, "period": np.where(day_base, "baseline", np.where(day_rep, "reporting", "")),
                                   "observed_kwh": obs_day, "expected_kwh": pred_day, "valid": complete})
        self.result = {
            "scope": sc.key, "level": sc.level, "intervention": s.intervention.isoformat(),
            "baseline_period": [d0.isoformat(), (d1 + dt.timedelta(days=1)).isoformat()],
            "reporting_period": [days[rep_idx[0]].isoformat(), (days[rep_idx[-1]] + dt.timedelta(days=1)).isoformat()],
            "baseline_days": n, "reporting_days": m, "timezone": sc.timezone,
            "reporting_days_left_out": [days[i].isoformat() for i in np.flatnonzero(day_rep & ~complete)],
            "model": info.get("model", {"type": name}), "model_choice_cv_rmse": choice or None,
            "baseline_kwh": baseline_kwh, "actual_kwh": actual_kwh, "savings_kwh": savings_kwh,
            "savings_fraction": fraction,
            "fsu_68": fsu[0.68], "fsu_90": fsu[0.90],
            "savings_interval_68_kwh": [savings_kwh - half[0.68], savings_kwh + half[0.68]],
            "savings_interval_90_kwh": [savings_kwh - half[0.90], savings_kwh + half[0.90]],
            "cv_rmse": cv, "nmbe": nmbe, "rho": unc[0.68]["rho"], "n_eff": unc[0.68]["n_eff"], "parameters": params,
            "hurst": long_unc[0.68]["hurst"] if long_unc[0.68] else None,
            "long_range_variance_factor": long_unc[0.68]["variance_factor"] if long_unc[0.68] else None,
            "uncertainty_method": s.uncertainty, "inflation": s.inflation,
            # The half-widths before any inflation: Guideline 14 on daily residuals, the long-range term, and (for
            # comparison) Guideline 14 on hourly residuals.
            "half_width_kwh": {"daily": {f"{c:.2f}": u["half_width_kwh"] for c, u in daily_unc.items()},
                               "long_range": ({f"{c:.2f}": u["half_width_kwh"] for c, u in long_unc.items() if u}
                                              or None),
                               "hourly": ({f"{c:.2f}": u["half_width_kwh"] for c, u in hourly_unc.items()}
                                          if hourly_unc else None)},
            "passes_g14": passes, "passes_model_criteria": bool(model_ok),
            "non_routine_adjustment": adjustment,
            "cost_savings": money, "co2_kg": co2,
            "warnings": [w.to_dict() for w in self.warnings],
        }
        return self

    def _fit_predict(self, name: str, sub: IntervalData, sc: _Scope, train_w: np.ndarray, train_days: np.ndarray,
                     day_of: np.ndarray, n_days: int) -> tuple[np.ndarray, int, dict[str, Any]]:
        """Fit model ``name`` on the training windows / days; expected energy per local day [kWh], parameters, info."""
        faults = self._faults
        assert faults is not None, "fit() sets the fault windows before it fits any model"
        if name == "baseline":
            bs = self.settings.baseline.model_copy(update={"scopes": (sc.level,)})
            weather = None
            if self.settings.weather_check and "temperature" in bs.drivers:
                weather = self._weather_dependent(sub, sc, train_days, day_of, n_days)
                if weather is False:
                    bs = bs.model_copy(update={"drivers": tuple(d for d in bs.drivers if d != "temperature")})
            exclude = np.broadcast_to(~train_w | faults, (len(sub.machines), sub.n_times)).copy()
            bl = Baseline(bs).fit(sub, exclude=exclude)
            model = bl.models.get(f"{sc.level}:{sc.key}")
            if model is None:
                raise InsufficientDataError(f"{sc.key}: the baseline could not be fitted: "
                                            + "; ".join(w.message for w in bl.warnings))
            _, expected = bl.predict_matrix(sub, sc.level)
            exp_w = expected[0]
            pred = np.bincount(day_of, np.nan_to_num(exp_w), n_days)
            # Parameters as the daily residuals see them: time-of-week slots collapse into day types.
            dense = [c for c in model.columns if not c.startswith("tow:")]
            params = len(dense) + (3 if any(c.startswith("tow:") for c in model.columns) else 0)
            obs = np.where(faults, np.nan, _scope_sum(sub.matrix("energy_kwh").astype(float)))
            hourly = _hourly(np.where(train_w, obs - exp_w, np.nan), sub)
            info = {"model": {"type": "baseline", "drivers": model.groups, "columns": len(model.columns),
                              "fit_statistics": model.stats.get("fit"), "holdout": model.stats.get("holdout"),
                              "weather_dependent": weather},
                    "expected_w": exp_w, "hourly_residuals": hourly, "warnings": bl.warnings}
            return pred, params, info
        x, cp = _fit_change_point(sub, sc, train_days, day_of, n_days)
        pred = cp.predict(x)
        # Per window: the day's prediction spread by hours (for money by time of use; a daily model has no profile).
        per_w = pred[day_of] / np.bincount(day_of, minlength=n_days)[day_of]
        return pred, cp.parameters, {"model": cp.to_dict(), "expected_w": per_w, "hourly_residuals": None,
                                     "beyond_range": cp.beyond_range(x)}

    @staticmethod
    def _weather_dependent(sub: IntervalData, sc: _Scope, train_days: np.ndarray, day_of: np.ndarray,
                           n_days: int) -> bool | None:
        """Whether the daily change-point model on the training days takes a heating or cooling term (None: no
        temperature or too few days to tell)."""
        try:
            x, cp = _fit_change_point(sub, sc, train_days, day_of, n_days)
        except ValueError:
            return None
        if not x.has_temperature:
            return None
        return cp.heating_c is not None or cp.cooling_c is not None

    # -- value and checks ---------------------------------------------------------------------------------------------
    def _value(self, sub: IntervalData, sc: _Scope, expected_w, observed, rep_mask_w, savings_kwh):
        plant = sub.plant
        if plant is None:
            return None, None
        try:
            ref = plant.machine(sub.machine_ids[0])
        except Exception:  # noqa: BLE001 - a plant without this machine: no tariff known
            return None, None
        site = ref.site
        co2 = float(savings_kwh * site.co2_kg_per_kwh)
        money = None
        if site.tariff is not None and expected_w is not None:
            from core.tariff import energy_cost

            sav_w = np.where(rep_mask_w, np.nan_to_num(expected_w - observed), 0.0)
            cost = energy_cost(site.tariff, site.timezone, sub.times_ns, sav_w)
            money = {"amount": float(np.nansum(cost)), "currency": site.currency}
        return money, co2

    def _checks(self, sub, sc, base_days, rep_days, day_of, n_days, model_ok, cv, nmbe, fsu, savings_kwh, half):
        notes: list[Notice] = []
        drivers = {"outdoor_temp_c": ("mean", "outdoor temperature [°C]"), "good": ("sum", "good parts per day"),
                   "s_running": ("sum", "running time per day [s]")}
        for col, (how, label) in drivers.items():
            x = sub.matrix(col).astype(float)
            x = x[0] if col == "outdoor_temp_c" else np.nansum(x, axis=0)
            if not np.isfinite(x).any() or (how == "sum" and not np.nansum(np.abs(x)) > 0):
                continue
            cnt = np.bincount(day_of, np.isfinite(x).astype(float), n_days)
            tot = np.bincount(day_of, np.nan_to_num(x), n_days)
            v = tot / np.maximum(cnt, 1) if how == "mean" else tot
            b, r = v[base_days & (cnt > 0)], v[rep_days & (cnt > 0)]
            if len(b) < 2 or not len(r):
                continue
            lo, hi = float(np.min(b)), float(np.max(b))
            span = max(hi - lo, 1e-9)
            out = (r < lo - 0.02 * span) | (r > hi + 0.02 * span)
            if out.mean() > 0.05:
                notes.append(Notice("analytics.savings.driver_out_of_range",
                                    f"{sc.key}: {label} on {out.mean():.0%} of the reporting days lies outside the "
                                    f"baseline's range [{lo:.4g}, {hi:.4g}] (reporting {np.min(r):.4g} to {np.max(r):.4g}); "
                                    "the baseline extrapolates there: a non-routine adjustment may be needed",
                                    {"driver": col, "share_out": round(float(out.mean()), 4),
                                     "baseline_range": [lo, hi], "reporting_range": [float(np.min(r)), float(np.max(r))]}))
        if not model_ok:
            notes.append(Notice("analytics.savings.model_fails_g14",
                                f"{sc.key}: the baseline model fails the Guideline 14 criteria (daily CV(RMSE) "
                                f"{_pct(cv)} <= 30 %, NMBE {_pct(nmbe)} within 10 %); savings are indicative",
                                {"cv_rmse": cv, "nmbe": nmbe}))
        if abs(savings_kwh) <= half[0.90]:
            notes.append(Notice("analytics.savings.not_significant",
                                f"{sc.key}: savings of {savings_kwh:,.0f} kWh are within their 90 % uncertainty "
                                f"(+/- {half[0.90]:,.0f} kWh)", {"savings_kwh": savings_kwh, "half_width_90_kwh": half[0.90]}))
        elif fsu[0.68] is not None and fsu[0.68] >= MAX_FSU_68:
            notes.append(Notice("analytics.savings.uncertain",
                                f"{sc.key}: the savings uncertainty at 68 % is {fsu[0.68]:.0%} of the savings; Guideline 14 "
                                "asks for less than 50 %", {"fsu_68": fsu[0.68]}))
        return notes

    def to_dict(self) -> dict[str, Any]:
        """The result: scope, periods, baseline / actual / savings [kWh], savings fraction, FSU at 68 and 90 %,
        intervals [kWh], CV(RMSE), NMBE, Guideline 14 verdict, money, CO2 [kg], warnings."""
        if not self.result:
            raise AnalyticsError("savings are not computed: call fit(data) first")
        return dict(self.result)


# -- helpers -----------------------------------------------------------------------------------------------------------
def _scope_sum(x: np.ndarray) -> np.ndarray:
    """Scope energy per window: NaN where any member's is unknown."""
    return np.where(np.isfinite(x).all(axis=0), np.nansum(x, axis=0), np.nan)


def _without_other_causes(data: IntervalData, causes: tuple[str, ...],
                          faults: np.ndarray) -> tuple[IntervalData, dict[str, np.ndarray]]:
    """The data with the excess energy of every known waste cause *not* in ``causes`` taken out of each machine's
    energy [kWh] (IPMVP non-routine adjustment), and that excess per cause summed over the machines per window [kWh].

    All detectors run (:class:`analytics.potential.ReductionPotential`, meter-fault windows never counted), so that
    energy one cause explains is not counted by another; only the other causes' excess is removed.
    """
    from analytics.potential import ReductionPotential
    from core.model import WASTE_KINDS

    bad = [c for c in causes if c not in WASTE_KINDS]
    if bad:
        raise AnalyticsError(f"unknown cause(s) {bad} of the intervention; valid: {', '.join(WASTE_KINDS)}")
    shape = (len(data.machines), data.n_times)
    pot = ReductionPotential().fit(data, fault=np.broadcast_to(faults, shape).copy())
    removed = {k: np.nan_to_num(x) for k, x in pot.excess.items() if k not in causes}
    total = np.zeros(shape)
    for x in removed.values():
        total += x
    frame = data.frame.copy()
    frame["energy_kwh"] = (data.matrix("energy_kwh").astype(float) - total).reshape(-1)
    return replace(data, frame=frame), {k: x.sum(axis=0) for k, x in removed.items()}


def _window_mask(day_mask: np.ndarray, day_of: np.ndarray) -> np.ndarray:
    return day_mask[day_of]


def _hourly(residual_w: np.ndarray, sub: IntervalData) -> np.ndarray:
    """Residuals summed per hour (NaN where any window is NaN)."""
    factor = max(1, 3600 // sub.resolution_s)
    n = len(residual_w) // factor * factor
    return residual_w[:n].reshape(-1, factor).sum(axis=1)


def _fit_change_point(sub: IntervalData, sc: _Scope, train_days: np.ndarray, day_of: np.ndarray,
                      n_days: int) -> tuple[DailyInputs, ChangePointModel]:
    """The scope's daily inputs of every day and the change-point model fitted on ``train_days`` (complete days)."""
    x = _daily_inputs(sub, sc, day_of, n_days)
    obs_day = np.bincount(day_of, np.nan_to_num(_scope_sum(sub.matrix("energy_kwh").astype(float))), n_days)
    idx = np.flatnonzero(train_days)
    return x, fit_change_point(DailyInputs(x.hours[idx], x.temp[idx], x.window_h), obs_day[idx])


def _daily_inputs(sub: IntervalData, sc: _Scope, day_of: np.ndarray, n_days: int) -> DailyInputs:
    """Hours per day type and the window temperatures of each local day."""
    info = next(iter(sub.machines.values()))
    codes = _daytypes(sub.times_ns, sc.timezone, info.calendar)
    hours = np.zeros((n_days, 3))
    np.add.at(hours, (day_of, codes), sub.hours)
    temp = sub.matrix("outdoor_temp_c")[0].astype(float)
    temp = pd.Series(temp).interpolate(limit=8, limit_direction="both").to_numpy()
    counts = np.bincount(day_of, minlength=n_days)
    width = int(counts.max())
    pos = np.arange(len(day_of)) - np.concatenate(([0], np.cumsum(counts)))[day_of]
    grid = np.full((n_days, width), np.nan)
    grid[day_of, pos] = temp
    return DailyInputs(hours, grid, sub.hours)


def _daytypes(times_ns: np.ndarray, timezone: str, calendar: Any) -> np.ndarray:
    """Day type per instant in local time: 0 workday, 1 Saturday, 2 Sunday or a holiday of the calendar."""
    t = pd.DatetimeIndex(times_ns, tz="UTC").tz_convert(timezone)
    dow = t.day_of_week.to_numpy()
    holidays = getattr(calendar, "holidays", ()) or ()
    if holidays:
        dates = pd.DatetimeIndex(t.date).to_numpy()
        dow = np.where(np.isin(dates, pd.DatetimeIndex([pd.Timestamp(d) for d in holidays]).to_numpy()), 6, dow)
    return np.where(dow < 5, 0, np.where(dow == 5, 1, 2))


def _iso(t_ns: int, tz: str) -> str:
    return pd.Timestamp(int(t_ns), tz="UTC").tz_convert(tz).isoformat()


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"

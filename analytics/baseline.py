"""ISO 50006 energy baselines: energy per interval regressed on the variables that drive it, per machine, line and site.

``Baseline(settings).fit(data)`` fits one linear model per scope (machine, line, site) on hourly rows:

    energy [kWh] = sum_j coef_j * x_j

where every driver ``x_j`` is *extensive* (it adds up over time like energy does): hours of valid data (the base load
[kW]), hours in each hour-of-day x day-type slot (the time-of-week profile [kW]), hours in shift and in breaks, good and
scrap counts [kWh/unit], material throughput [kWh/kg], hours running, idle and in fault [kW], heating and cooling
degree-hours [kWh/K/h], and hours in each level of a categorical driver. Because the drivers are extensive, one set of
coefficients predicts any window length: the model is fitted on hours and predicts 15-min or 1-min windows alike.

Driver groups are chosen by forward selection on time-ordered cross-validation (scikit-learn ``TimeSeriesSplit``) over
the first part of the data; the last part (``holdout_fraction``) is kept back and scored with the ASHRAE Guideline 14
statistics (CV(RMSE), NMBE, R2, hourly and monthly, pass/fail); the chosen model is then refitted on all the data.
Fitting works on Gram matrices of time blocks (ridge on a compact design), so selection costs a few small solves
per scope and a year of 200 machines fits in seconds.

ASHRAE Guideline 14-2014 (Annex B) statistics, with ``e = observed - predicted``, ``n`` observations, ``p``
parameters and ``ybar`` the observed mean: ``CV(RMSE) = sqrt(sum e^2 / (n - p)) / ybar`` and
``NMBE = sum e / ((n - p) * ybar)``. In-sample statistics use ``p`` = the model's parameter count; hold-out
statistics use ``p = 1`` (the parameters were estimated on other data).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import pandas as pd
from pydantic import Field

from analytics.data import NS, IntervalData, machine_index
from analytics.errors import AnalyticsError, InsufficientDataError
from analytics.parallel import Fanout, ParallelSettings
from core.config import FrozenModel
from core.notices import Notice

#: Version of the saved model format (``to_dict``); ``from_dict`` refuses newer ones.
VERSION = 1
#: ASHRAE Guideline 14 calibration criteria: (CV(RMSE) max, |NMBE| max) per resolution.
G14_HOURLY = (0.30, 0.10)
G14_MONTHLY = (0.15, 0.05)
#: Driver groups a baseline may select from (``temperature`` covers the heating and cooling degree-hours).
DriverGroup = Literal["time_of_week", "shift", "production", "material", "run_hours", "temperature"]
DRIVER_GROUPS: tuple[DriverGroup, ...] = get_args(DriverGroup)
DAYTYPES = ("workday", "saturday", "sunday_holiday")
Level = Literal["machine", "line", "site"]


class BaselineSettings(FrozenModel):
    """How baselines are fitted.

    Parameters
    ----------
    scopes : tuple of str
        Levels to fit: machine, line, site.
    drivers : tuple of str
        Driver groups allowed (:data:`DRIVER_GROUPS`); the selection keeps those that help.
    categories : tuple of str
        Extra frame columns holding categorical drivers as numeric codes (e.g. a load type); used as hours per level.
    fit_resolution_s : int
        Row length of the fit [s] (hourly by default).
    holdout_fraction : float
        Last share of the valid rows kept back for the Guideline 14 statistics.
    cv_splits : int
        Folds of the time-ordered cross-validation used to select drivers.
    ridge_alpha : float
        Ridge penalty relative to each driver's own scale (keeps collinear slot indicators stable).
    min_improvement : float
        Least relative reduction of the cross-validated RMSE for a driver group to be kept.
    min_coverage : float
        Windows with less data, or masked as meter faults, are left out of the fit.
    min_hours : int
        Least valid rows [h] for a scope to be fitted.
    robust : bool
        Huber re-weighting of the final fits (``robust_iterations`` rounds, threshold ``huber_k`` robust standard
        deviations of the residuals), so that sporadic abnormal periods in the training data weigh less.
    robust_iterations : int
        Re-weighting rounds.
    huber_k : float
        Huber threshold [robust standard deviations].
    heating_bases_c, cooling_bases_c : tuple of float
        Balance temperatures tried for heating and cooling degree-hours [°C].
    """

    scopes: tuple[Level, ...] = ("machine", "line", "site")
    drivers: tuple[DriverGroup, ...] = DRIVER_GROUPS
    categories: tuple[str, ...] = ()
    fit_resolution_s: int = Field(3600, gt=0)
    holdout_fraction: float = Field(0.25, gt=0, lt=0.9)
    cv_splits: int = Field(4, ge=2, le=20)
    ridge_alpha: float = Field(1e-3, ge=0)
    min_improvement: float = Field(0.01, ge=0, lt=1)
    min_coverage: float = Field(0.9, ge=0, le=1)
    min_hours: int = Field(168, ge=2)
    robust: bool = False
    robust_iterations: int = Field(3, ge=1, le=20)
    huber_k: float = Field(1.345, gt=0)
    heating_bases_c: tuple[float, ...] = (10.0, 14.0, 18.0)
    cooling_bases_c: tuple[float, ...] = (16.0, 20.0, 24.0)


# -- statistics ------------------------------------------------------------------------------------------------------------
def g14_statistics(observed: np.ndarray, predicted: np.ndarray, parameters: int = 1) -> dict[str, float | None]:
    """ASHRAE Guideline 14 goodness of fit.

    Parameters
    ----------
    observed, predicted : ndarray
        Energy per period [kWh]; non-finite pairs are dropped.
    parameters : int
        ``p``, the parameters estimated from these observations (1 for a hold-out).

    Returns
    -------
    dict
        ``n``, ``cv_rmse`` and ``nmbe`` (fractions, None when ``n <= p`` or the mean is 0), ``r2`` (None when the
        observations do not vary), ``mean_kwh``.
    """
    y = np.asarray(observed, dtype=float)
    f = np.asarray(predicted, dtype=float)
    ok = np.isfinite(y) & np.isfinite(f)
    y, f = y[ok], f[ok]
    n = len(y)
    out: dict[str, float | None] = {"n": n, "cv_rmse": None, "nmbe": None, "r2": None, "mean_kwh": None}
    if n == 0:
        return out
    e = y - f
    ybar = float(y.mean())
    out["mean_kwh"] = ybar
    dof = n - int(parameters)
    if dof > 0 and ybar != 0:
        out["cv_rmse"] = float(np.sqrt(np.sum(e * e) / dof) / ybar)
        out["nmbe"] = float(np.sum(e) / (dof * ybar))
    sst = float(np.sum((y - ybar) ** 2))
    if sst > 0:
        out["r2"] = float(1.0 - np.sum(e * e) / sst)
    return out


def passes(stats: dict[str, Any], criteria: tuple[float, float]) -> bool | None:
    """True when CV(RMSE) and |NMBE| are within ``criteria``; None when they could not be computed."""
    if stats.get("cv_rmse") is None or stats.get("nmbe") is None:
        return None
    return bool(stats["cv_rmse"] <= criteria[0] and abs(stats["nmbe"]) <= criteria[1])


def monthly_totals(times_ns: np.ndarray, values: np.ndarray, timezone: str) -> pd.Series:
    """Sum ``values`` per local calendar month (``NaN`` rows dropped) [same unit as values]."""
    t = pd.DatetimeIndex(np.asarray(times_ns, dtype=np.int64), tz="UTC").tz_convert(timezone)
    s = pd.Series(np.asarray(values, dtype=float), index=t)
    return s.groupby([t.year, t.month]).sum(min_count=1)


# -- drivers -----------------------------------------------------------------------------------------------------------------
@dataclass
class _Rows:
    """Per-row quantities of one scope (rows are fit rows or windows)."""

    times_ns: np.ndarray
    energy: np.ndarray
    valid: np.ndarray
    q: dict[str, np.ndarray]  # extensive quantities per row
    codes: dict[str, np.ndarray]  # categorical code per row (time of week, categories)
    timezone: str


def _local_codes(times_ns: np.ndarray, timezone: str, calendar: Any) -> np.ndarray:
    """Hour-of-day x day-type code (0..71) per instant in local time; holidays of the calendar count as Sundays."""
    t = pd.DatetimeIndex(times_ns, tz="UTC").tz_convert(timezone)
    dow = t.day_of_week.to_numpy()
    daytype = np.where(dow < 5, 0, np.where(dow == 5, 1, 2))
    holidays = getattr(calendar, "holidays", ()) or ()
    if holidays:
        dates = pd.DatetimeIndex(t.date).to_numpy()  # naive local dates
        hol = np.isin(dates, pd.DatetimeIndex([pd.Timestamp(d) for d in holidays]).to_numpy())
        daytype = np.where(hol, 2, daytype)
    return (t.hour.to_numpy() * 3 + daytype).astype(np.int16)


class _Inputs:
    """Views of a data set's matrices, shared by every scope; a scope's rows are summed from its members on demand
    (nothing of machines x windows size is copied, so memory stays near the container's own)."""

    #: driver name -> (frame column, scale to the driver's unit)
    QUANTITIES: ClassVar[dict[str, tuple[str, float]]] = {"good": ("good", 1.0), "scrap": ("scrap", 1.0), "run_h": ("s_running", 1 / 3600),
                  "idle_h": ("s_idle", 1 / 3600), "fault_h": ("s_fault", 1 / 3600)}

    def __init__(self, data: IntervalData, exclude: np.ndarray | None, settings: BaselineSettings,
                 bases: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> None:
        self.data = data
        self.h = data.hours
        self.energy = data.matrix("energy_kwh")
        valid = np.isfinite(self.energy) & (data.matrix("coverage") >= settings.min_coverage)
        if exclude is not None:
            exclude = np.asarray(exclude, dtype=bool)
            if exclude.shape != valid.shape:
                raise AnalyticsError(f"exclude mask has shape {exclude.shape}, the data {valid.shape} (machines x windows)")
            valid &= ~exclude
        self.valid = valid
        self.mats = {name: data.matrix(col) for name, (col, _) in self.QUANTITIES.items()}
        self.available: dict[str, np.ndarray] = {}  # per machine: the quantity is recorded (not all missing or 0)
        for name, x in self.mats.items():
            self.available[name] = np.nansum(np.abs(x), axis=1) > 0
        self.kg = None
        mats = data.materials
        if len(mats):
            kg = np.zeros(self.energy.shape, dtype=np.float32)
            mi = machine_index(mats["machine"], data.machine_ids)
            ti = ((pd.DatetimeIndex(mats["time"]).as_unit("ns").asi8 - data.times_ns[0]) // (data.resolution_s * NS))
            ok = (mi >= 0) & (ti >= 0) & (ti < data.n_times)
            np.add.at(kg, (mi[ok].astype(int), ti[ok].astype(int)), mats["kg"].to_numpy(dtype=np.float32)[ok])
            self.kg = kg
            self.mats["kg"] = kg
        self.available["kg"] = np.asarray((kg > 0).any(axis=1)) if self.kg is not None else np.zeros(len(valid), dtype=bool)
        self.shift = data.matrix("shift")
        self.available["shift"] = np.asarray((self.shift >= 0).any(axis=1))
        self.temp_raw = data.matrix("outdoor_temp_c")
        self.available["temperature"] = np.isfinite(self.temp_raw).mean(axis=1) > 0.5
        self.bases = bases if bases is not None else (settings.heating_bases_c, settings.cooling_bases_c)
        self.categories: dict[str, np.ndarray] = {}
        for name in settings.categories:
            if name not in data.frame.columns:
                raise AnalyticsError(f"categorical driver {name!r} is not a column of the interval data; pass it with "
                                     "IntervalData.from_frame(..., extra=[...])")
            self.categories[name] = data.matrix(name)
        self._infos = list(data.machines.values())
        self._codes: dict[tuple, np.ndarray] = {}
        self._temps: dict[int, np.ndarray] = {}
        self._site_temps: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # site -> (raw row, filled row)
        # Window starts, computed once (IntervalData.times_ns builds them from the frame on every call, which a
        # streaming step predicting one window for every machine would pay per machine).
        self.times_ns = data.times_ns

    def tow(self, i: int) -> np.ndarray:
        info = self._infos[i]
        key = (info.timezone, id(info.calendar))
        if key not in self._codes:
            self._codes[key] = _local_codes(self.times_ns, info.timezone, info.calendar)
        return self._codes[key]

    def temp(self, i: int) -> np.ndarray:
        """Outdoor temperature of machine ``i``'s site [°C], short gaps filled along time (one missing reading must
        not void a row), longer ones with the mean."""
        if i not in self._temps:
            raw = self.temp_raw[i].astype(float)
            # Machines of a site share its weather: filled once per site (a row that differs is filled on its own).
            site = self._site_temps.get(self._infos[i].site)
            if site is not None and np.array_equal(site[0], raw, equal_nan=True):
                self._temps[i] = site[1]
                return site[1]
            t = pd.Series(raw).interpolate(limit=8, limit_direction="both").to_numpy()
            self._temps[i] = np.nan_to_num(t, nan=float(np.nanmean(t)) if np.isfinite(t).any() else 0.0)
            self._site_temps.setdefault(self._infos[i].site, (raw, self._temps[i]))
        return self._temps[i]

    def rows(self, members: list[int], factor: int) -> _Rows:
        """Sum the members' window quantities into rows of ``factor`` windows (incomplete tail dropped)."""
        n = self.data.n_times // factor * factor
        k = n // factor

        def fold(s: np.ndarray) -> np.ndarray:
            return s.reshape(k, factor).sum(axis=1) if factor > 1 else s

        def total(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
            v = x[members[0], :n] if len(members) == 1 else x[members, :n]
            s = np.nan_to_num(v.astype(np.float64)) if v.ndim == 1 else np.asarray(np.nansum(v, axis=0, dtype=np.float64))
            return fold(s * scale if scale != 1.0 else s)

        valid_m = self.valid[members, :n]
        valid_w = valid_m.all(axis=0)
        valid = valid_w.reshape(k, factor).all(axis=1) if factor > 1 else valid_w
        energy = fold(np.where(valid_m, self.energy[members, :n], 0.0).sum(axis=0))
        q = {name: total(x, self.QUANTITIES.get(name, (None, 1.0))[1]) for name, x in self.mats.items()}
        if "kg" not in q:
            q["kg"] = np.zeros(k)
        hours = np.full(n, self.h)
        q["hours"] = fold(hours)
        shift = self.shift[members, :n]
        share = 1.0 / len(members)  # share of the members in shift / in a break
        q["in_shift_h"] = fold((shift == 1).sum(axis=0) * (self.h * share))
        q["break_h"] = fold((shift == 2).sum(axis=0) * (self.h * share))
        # Weather and calendar slots are shared by the members (one site): taken once, not per machine.
        first = members[0]
        heat, cool = self.bases
        temp = self.temp(first)[:n]
        for b in heat:
            q[f"hdd{b:g}"] = fold(np.maximum(b - temp, 0.0) * self.h)
        for b in cool:
            q[f"cdd{b:g}"] = fold(np.maximum(temp - b, 0.0) * self.h)
        codes = {"tow": self.tow(first)[:n:factor]}
        for name, x in self.categories.items():
            codes[f"cat:{name}"] = np.nan_to_num(x[first, :n:factor], nan=-1).astype(np.int32)
        times = self.times_ns[:n:factor]
        return _Rows(times, energy, valid, q, codes, self._infos[first].timezone)

    def groups_available(self, members: list[int], allowed: tuple[str, ...], settings: BaselineSettings) -> dict[str, list[list[str]]]:
        """Driver groups with data for these members: group -> alternatives (each a list of column names)."""
        out: dict[str, list[list[str]]] = {}
        av = self.available
        if "time_of_week" in allowed:
            out["time_of_week"] = [[f"tow:{c}" for c in range(72)]]
        if "shift" in allowed and av["shift"][members].any():
            out["shift"] = [["in_shift_h", "break_h"]]
        if "production" in allowed and av["good"][members].any():
            out["production"] = [["good", "scrap"] if av["scrap"][members].any() else ["good"]]
        if "material" in allowed and av["kg"][members].any():
            out["material"] = [["kg"]]
        if "run_hours" in allowed and (av["run_h"][members].any() or av["idle_h"][members].any()):
            out["run_hours"] = [[c for c in ("run_h", "idle_h", "fault_h") if av[c][members].any()]]
        if "temperature" in allowed and av["temperature"][members].any():
            out["heating"] = [[f"hdd{b:g}"] for b in settings.heating_bases_c]
            out["cooling"] = [[f"cdd{b:g}"] for b in settings.cooling_bases_c]
        for name in self.categories:
            out[f"cat:{name}"] = [[f"cat:{name}:{int(c)}" for c in np.unique(self.categories[name][members]) if np.isfinite(c)]]
        return out


class _Design:
    """A design matrix of named extensive drivers, kept as a dense part and one-hot slot groups.

    Slot indicators (time of week, categorical levels) are stored as a level index per row and the row's hours, so
    Gram matrices come from ``bincount`` instead of multiplying mostly-zero columns.
    """

    def __init__(self, rows: _Rows, columns: list[str], index: np.ndarray | None = None) -> None:
        sel = slice(None) if index is None else index
        self.columns = list(columns)
        self.w = rows.q["hours"][sel]
        dense: list[int] = []
        groups: dict[str, list[tuple[int, int]]] = {}  # one-hot group -> (column, level) of its members
        for j, name in enumerate(columns):
            if name.startswith("tow:"):
                groups.setdefault("tow", []).append((j, int(name[4:])))
            elif name.startswith("cat:"):
                _, cat, level = name.split(":")
                groups.setdefault(f"cat:{cat}", []).append((j, int(level)))
            else:
                dense.append(j)
        self.dense_pos = np.asarray(dense, dtype=int)
        self.D = np.column_stack([self.w if columns[j] == "hours" else rows.q[columns[j]][sel] for j in dense]) \
            if dense else np.zeros((len(self.w), 0))
        self.groups: list[tuple[np.ndarray, np.ndarray]] = []
        for key, members in groups.items():
            pos = np.asarray([m[0] for m in members], dtype=int)
            levels = np.asarray([m[1] for m in members])
            codes = np.asarray(rows.codes[key][sel], dtype=np.int64)
            lookup = np.full(int(max(levels.max(), codes.max(initial=0))) + 2, -1, dtype=np.int64)
            lookup[levels] = np.arange(len(levels))
            self.groups.append((pos, np.where(codes >= 0, lookup[np.clip(codes, 0, len(lookup) - 1)], -1)))

    def __len__(self) -> int:
        return len(self.w)

    def gram(self, y: np.ndarray, a: int = 0, b: int | None = None,
             weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """``X'WX``, ``X'Wy`` and ``y'Wy`` over rows ``[a, b)`` (``W`` = diag(weights), identity when None)."""
        b = len(self.w) if b is None else b
        p = len(self.columns)
        G, c = np.zeros((p, p)), np.zeros(p)
        D, w, yb = self.D[a:b], self.w[a:b], y[a:b]
        r = np.ones(b - a) if weights is None else weights[a:b]
        Dr = D * r[:, None] if weights is not None else D
        dp = self.dense_pos
        if len(dp):
            G[np.ix_(dp, dp)] = D.T @ Dr
            c[dp] = Dr.T @ yb
        for gi, (pos, lev) in enumerate(self.groups):
            L = len(pos)
            li = lev[a:b]
            m = li >= 0
            lm, wm, rm = li[m], w[m], r[m]
            G[pos, pos] += np.bincount(lm, wm * wm * rm, L)
            c[pos] = np.bincount(lm, wm * rm * yb[m], L)
            for k, col in enumerate(dp):
                cross = np.bincount(lm, wm * rm * D[m, k], L)
                G[col, pos] = cross
                G[pos, col] = cross
            for pos2, lev2 in self.groups[:gi]:
                L2 = len(pos2)
                lj = lev2[a:b]
                mm = m & (lj >= 0)
                cross = np.bincount(li[mm] * L2 + lj[mm], w[mm] ** 2 * r[mm], L * L2).reshape(L, L2)
                G[np.ix_(pos, pos2)] = cross
                G[np.ix_(pos2, pos)] = cross.T
        return G, c, float(yb @ (r * yb))

    def predict(self, beta: np.ndarray, a: int = 0, b: int | None = None) -> np.ndarray:
        """``X beta`` over rows ``[a, b)``."""
        b = len(self.w) if b is None else b
        beta = np.asarray(beta, dtype=float)
        out = self.D[a:b] @ beta[self.dense_pos] if len(self.dense_pos) else np.zeros(b - a)
        w = self.w[a:b]
        for pos, lev in self.groups:
            li = lev[a:b]
            out = out + np.where(li >= 0, beta[pos][np.maximum(li, 0)], 0.0) * w
        return out


# -- fitting -------------------------------------------------------------------------------------------------------------------
def _ridge(G: np.ndarray, c: np.ndarray, alpha: float) -> np.ndarray:
    """Solve (G + alpha * diag(G) without the first column) b = c; least squares when singular."""
    pen = alpha * np.diag(G).copy()
    pen[0] = 0.0
    A = G + np.diag(pen + 1e-12 * (np.trace(G) / max(len(G), 1) + 1.0))
    try:
        return np.linalg.solve(A, c)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(A, c, rcond=None)[0]


def _select(design: _Design, y: np.ndarray, n: int, candidates: dict[str, list[list[int]]],
            settings: BaselineSettings) -> tuple[list[str], list[int], float]:
    """Forward selection of driver groups by time-ordered cross-validation over the first ``n`` rows, on Gram
    matrices of the time blocks that scikit-learn's ``TimeSeriesSplit`` defines.

    Returns the chosen group names, the column indices (base first) and the cross-validated RMSE [kWh per row].
    """
    from sklearn.model_selection import TimeSeriesSplit

    splits = min(settings.cv_splits, max(2, n // 48))
    folds = list(TimeSeriesSplit(n_splits=splits).split(np.empty((n, 1))))
    bounds = [0] + [int(test[0]) for _, test in folds] + [n]
    blocks = [(*design.gram(y, a, b), b - a) for a, b in pairwise(bounds)]
    cumG = np.cumsum([g for g, *_ in blocks], axis=0)
    cumc = np.cumsum([c for _, c, *_ in blocks], axis=0)

    def cv_rmse(cols: list[int]) -> float:
        sse = cnt = 0.0
        idx = np.asarray(cols)
        for f in range(len(blocks) - 1):
            G, c = cumG[f][np.ix_(idx, idx)], cumc[f][idx]
            beta = _ridge(G, c, settings.ridge_alpha)
            Gt, ct, yy, m = blocks[f + 1]
            sse += yy - 2 * beta @ ct[idx] + beta @ Gt[np.ix_(idx, idx)] @ beta
            cnt += m
        return float(np.sqrt(max(sse, 0.0) / max(cnt, 1)))

    chosen: list[str] = []
    cols = [0]
    best = cv_rmse(cols)
    remaining = dict(candidates)
    while remaining:
        trials = []
        for group, alternatives in remaining.items():
            for alt in alternatives:
                trials.append((cv_rmse(cols + alt), group, alt))
        score, group, alt = min(trials, key=lambda t: t[0])
        if not score < best * (1 - settings.min_improvement):
            break
        best, cols = score, cols + alt
        chosen.append(group)
        del remaining[group]
    return chosen, cols, best


@dataclass
class ScopeModel:
    """The baseline of one scope.

    Parameters
    ----------
    scope : str
        ``"machine:site/line/machine"``, ``"line:site/line"`` or ``"site:site"``.
    members : list of str
        Machine paths summed in this scope.
    columns : list of str
        Driver columns (extensive; see the module docstring).
    coef : list of float
        Coefficient per column [kWh per unit of the driver].
    groups : list of str
        Driver groups chosen.
    timezone : str
        Local time of the time-of-week slots.
    stats : dict
        ``holdout`` (hourly), ``holdout_monthly``, ``fit`` (in-sample) Guideline 14 statistics, ``passes_g14``,
        ``cv_rmse_selection``.
    train_start, train_end : str
        Training window (ISO 8601).
    """

    scope: str
    members: list[str]
    columns: list[str]
    coef: list[float]
    groups: list[str]
    timezone: str
    stats: dict[str, Any]
    train_start: str
    train_end: str
    n_train: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def level(self) -> str:
        return self.scope.split(":", 1)[0]

    @property
    def key(self) -> str:
        return self.scope.split(":", 1)[1]

    def drivers(self) -> dict[str, float]:
        """Coefficient per driver column."""
        return dict(zip(self.columns, self.coef))


def _fit_scope_item(item: tuple, s: BaselineSettings) -> tuple[ScopeModel | None, list[Notice]]:
    """Fit one scope: ``item`` is ``(scope, members, rows, groups, row_s)``; the model (None when the scope has too
    little data) and its warnings. A unit of :meth:`analytics.parallel.Fanout.map` (runs in a worker)."""
    scope, members, rows, groups, row_s = item
    ok = np.flatnonzero(rows.valid)
    row_h = row_s / 3600
    if len(ok) * row_h < s.min_hours:
        return None, [Notice("analytics.baseline.insufficient_data",
                             f"{scope}: {len(ok) * row_h:.0f} h of complete data, {s.min_hours} h needed; "
                             "no baseline for it", {"scope": scope, "hours": len(ok) * row_h})]
    names = ["hours"]
    cand: dict[str, list[list[int]]] = {}
    for group, alternatives in groups.items():
        cand[group] = []
        for alt in alternatives:
            cand[group].append(list(range(len(names), len(names) + len(alt))))
            names += alt
    design = _Design(rows, names, ok)
    y = rows.energy[ok]
    n_hold = max(1, round(len(ok) * s.holdout_fraction))
    n_train = len(ok) - n_hold
    chosen, cols, cv = _select(design, y, n_train, cand, s)
    idx = np.asarray(cols)

    def solve(a: int, b: int) -> np.ndarray:
        """Ridge fit on rows [a, b); with ``robust``, Huber re-weighting so that sporadic abnormal periods (waste
        left in the training data) pull the baseline less than normal operation does."""
        weights = None
        full = np.zeros(len(names))
        for _ in range(1 + (s.robust_iterations if s.robust else 0)):
            G, c, _ = design.gram(y, a, b, weights)
            full[:] = 0.0
            full[idx] = _ridge(G[np.ix_(idx, idx)], c[idx], s.ridge_alpha)
            resid = y - design.predict(full)
            scale = 1.4826 * float(np.median(np.abs(resid[a:b] - np.median(resid[a:b]))))
            if scale <= 0:
                break
            weights = np.minimum(1.0, s.huber_k * scale / np.maximum(np.abs(resid), 1e-12))
        return full

    beta = solve(0, n_train)
    pred_h = design.predict(beta, n_train)
    hold = g14_statistics(y[n_train:], pred_h, 1)
    t_hold = rows.times_ns[ok][n_train:]
    month_obs = monthly_totals(t_hold, y[n_train:], rows.timezone)
    month_pred = monthly_totals(t_hold, pred_h, rows.timezone)
    monthly = g14_statistics(month_obs.to_numpy(), month_pred.to_numpy(), 1)
    # The model kept is refitted on all valid rows with the chosen drivers.
    beta = solve(0, len(y))
    fit = g14_statistics(y, design.predict(beta), len(cols))
    beta = beta[idx]
    hourly_ok = passes(hold, G14_HOURLY) if row_s <= 3600 else None
    monthly_ok = passes(monthly, G14_MONTHLY)
    verdicts = [v for v in (hourly_ok, monthly_ok) if v is not None]
    stats = {"holdout": hold, "holdout_monthly": monthly, "fit": fit, "cv_rmse_selection_kwh": cv,
             "passes_hourly": hourly_ok, "passes_monthly": monthly_ok,
             "passes_g14": bool(verdicts and all(verdicts)), "row_s": row_s,
             "holdout_start": pd.Timestamp(int(t_hold[0]), tz="UTC").isoformat() if len(t_hold) else None}
    t_ok = rows.times_ns[ok]
    return ScopeModel(scope, members, [names[c] for c in cols], [float(b) for b in beta], chosen, rows.timezone,
                      stats, pd.Timestamp(int(t_ok[0]), tz="UTC").isoformat(),
                      pd.Timestamp(int(t_ok[-1]) + row_s * NS, tz="UTC").isoformat(), len(ok)), []


class Baseline:
    """Energy baselines per machine, line and site (see the module docstring).

    Parameters
    ----------
    settings : BaselineSettings, optional
        How to fit; defaults when omitted.

    Attributes
    ----------
    models : dict
        Scope -> :class:`ScopeModel`, after :meth:`fit`.
    warnings : list of Notice
        Scopes that could not be fitted and why.
    """

    def __init__(self, settings: BaselineSettings | None = None) -> None:
        self.settings = settings or BaselineSettings()
        self.models: dict[str, ScopeModel] = {}
        self.warnings: list[Notice] = []
        self.train_start: str | None = None
        self.train_end: str | None = None

    # -- fit -----------------------------------------------------------------------------------------------------------------
    def fit(self, data: IntervalData, exclude: np.ndarray | None = None, fanout: Fanout | None = None) -> Baseline:
        """Fit every scope.

        Parameters
        ----------
        data : IntervalData
            Training data.
        exclude : ndarray of bool, optional
            (machines x windows) windows to leave out, e.g. ``QualityReport.mask`` (meter faults).

        Raises
        ------
        InsufficientDataError
            When no scope has enough valid data; the message says how much there is and how much is needed.
        """
        s = self.settings
        if data.resolution_s > s.fit_resolution_s or s.fit_resolution_s % data.resolution_s:
            factor = 1
        else:
            factor = s.fit_resolution_s // data.resolution_s
        inputs = _Inputs(data, exclude, s)
        self.models, self.warnings = {}, []
        self.train_start, self.train_end = data.start.isoformat(), data.stop.isoformat()
        ids, infos = data.machine_ids, list(data.machines.values())
        order: list[tuple[str, tuple[int, ...]]] = [(f"{level}:{key}", tuple(members)) for level in s.scopes
                                                    for key, members in data.groups(level).items()]
        todo: dict[tuple[int, ...], str] = {}  # a line of one machine, a site of one line: the same model, fitted once
        for scope, members in order:
            todo.setdefault(members, scope)
        best_rows = 0

        def items() -> Iterator[tuple]:
            nonlocal best_rows
            for members, scope in todo.items():
                rows = inputs.rows(list(members), factor)
                best_rows = max(best_rows, int(rows.valid.sum()))
                yield (scope, [ids[i] for i in members], rows, inputs.groups_available(list(members), s.drivers, s),
                       factor * data.resolution_s)

        fitted = (fanout or Fanout(ParallelSettings(jobs=1))).map(
            _fit_scope_item, items(), list(todo.values()), [infos[m[0]].site for m in todo], "baseline", shared=s)
        done: dict[tuple[int, ...], ScopeModel | None] = {}
        for members, (model, notes) in zip(todo, fitted):
            done[members] = model
            self.warnings.extend(notes)
        for scope, members in order:
            same = done[members]
            if same is not None:
                self.models[scope] = same if same.scope == scope else replace(same, scope=scope)
        if not self.models:
            hours = best_rows * factor * data.hours
            raise InsufficientDataError(
                f"no scope has enough valid data for a baseline: at most {hours:.0f} h of complete data, "
                f"{s.min_hours} h needed (coverage >= {s.min_coverage:.0%}, meter faults excluded)")
        return self

    # -- use -----------------------------------------------------------------------------------------------------------------
    def _require(self) -> None:
        if not self.models:
            raise AnalyticsError("the baseline is not fitted: call fit(data) or from_dict() first")

    def predict_matrix(self, data: IntervalData, level: Level = "machine") -> tuple[list[str], np.ndarray]:
        """Expected energy per window of each scope of ``level`` [kWh] (NaN for scopes without a model).

        Returns
        -------
        keys : list of str
            Scope keys (machine paths for ``"machine"``, ``site/line`` for ``"line"``, site ids for ``"site"``).
        expected : ndarray
            (scopes x windows) expected energy at the data's resolution [kWh].
        """
        self._require()
        bases = self._bases()
        inputs = _Inputs(data, None, self.settings.model_copy(update={"min_coverage": 0.0}), bases)
        groups = data.groups(level)
        out = np.full((len(groups), data.n_times), np.nan)
        for g, (key, members) in enumerate(groups.items()):
            model = self.models.get(f"{level}:{key}")
            if model is None:
                continue
            rows = inputs.rows(members, 1)
            if "tow" in rows.codes and model.timezone != rows.timezone:
                rows.codes["tow"] = _local_codes(data.times_ns, model.timezone, None)
            out[g] = _Design(rows, model.columns).predict(np.asarray(model.coef))
        return list(groups), out

    def predict(self, data: IntervalData, level: Level = "machine") -> pd.DataFrame:
        """Observed and expected energy per window and scope (long form).

        Returns
        -------
        DataFrame
            Columns ``scope`` (key), ``time`` (window start, UTC), ``energy_kwh`` (observed, NaN where missing),
            ``expected_kwh`` (the baseline) [kWh].
        """
        keys, expected = self.predict_matrix(data, level)
        groups = data.groups(level)
        observed = data.matrix("energy_kwh").astype(float)
        obs = np.vstack([_sum_nan(observed[idx]) for idx in groups.values()])
        n = data.n_times
        return pd.DataFrame({"scope": np.repeat(keys, n), "time": np.tile(data.times, len(keys)),
                             "energy_kwh": obs.ravel(), "expected_kwh": expected.ravel()})

    def statistics(self) -> list[dict[str, Any]]:
        """Per scope: ``scope``, ``cv_rmse``, ``nmbe``, ``r2`` (hourly hold-out), monthly figures, ``passes_g14``, drivers."""
        self._require()
        out = []
        for model in self.models.values():
            st = model.stats
            out.append({"scope": model.scope, "cv_rmse": st["holdout"]["cv_rmse"], "nmbe": st["holdout"]["nmbe"],
                        "r2": st["holdout"]["r2"], "cv_rmse_monthly": st["holdout_monthly"]["cv_rmse"],
                        "nmbe_monthly": st["holdout_monthly"]["nmbe"], "passes_g14": st["passes_g14"],
                        "drivers": model.groups, "n": model.n_train})
        return out

    def _bases(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        heat, cool = set(self.settings.heating_bases_c), set(self.settings.cooling_bases_c)
        for model in self.models.values():
            for c in model.columns:
                if c.startswith("hdd"):
                    heat.add(float(c[3:]))
                elif c.startswith("cdd"):
                    cool.add(float(c[3:]))
        return tuple(sorted(heat)), tuple(sorted(cool))

    # -- persistence -----------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON form: version, settings, training window, and per scope its drivers, coefficients and statistics."""
        self._require()
        return {"type": "wattline.baseline", "version": VERSION, "settings": self.settings.model_dump(mode="json"),
                "train_start": self.train_start, "train_end": self.train_end,
                "models": [m.to_dict() for m in self.models.values()],
                "warnings": [w.to_dict() for w in self.warnings]}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Baseline:
        """Load a saved baseline; raise AnalyticsError naming the problem for another type or a newer version."""
        if not isinstance(payload, dict) or payload.get("type") != "wattline.baseline":
            raise AnalyticsError("not a saved Wattline baseline (expected type 'wattline.baseline')")
        version = payload.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise AnalyticsError(f"saved baseline has version {version!r}; this Wattline reads up to version {VERSION}")
        model = cls(BaselineSettings(**payload.get("settings", {})))
        model.train_start, model.train_end = payload.get("train_start"), payload.get("train_end")
        for m in payload.get("models", []):
            sm = ScopeModel(**m)
            model.models[sm.scope] = sm
        model.warnings = [Notice(**w) for w in payload.get("warnings", [])]
        return model


def _sum_nan(x: np.ndarray) -> np.ndarray:
    """Column sums that are NaN where any member is NaN (a scope's energy is unknown when a member's is)."""
    return np.where(np.isfinite(x).all(axis=0), np.nansum(x, axis=0), np.nan)

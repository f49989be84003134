"""Daily change-point model for measurement and verification (building-style meters: energy and outdoor temperature).

The model is the variable-base degree-day model of ASHRAE RP-1050 (Kissock, Haberl and Claridge 2003) and CalTRACK's
daily method, written with extensive drivers so that a day of 23 or 25 hours (DST) is handled like any other:

    E_day [kWh] = sum_k a_k * hours_k + b_h * HDD(T_h) + b_c * CDD(T_c)

``hours_k`` are the day's hours of data in day type ``k`` (workday, Saturday, Sunday or holiday) [h], so ``a_k`` is a
base load [kW]; ``HDD(T_h) = sum over the day's windows of max(T_h - T, 0) * window length / 24`` [K day] from the
window temperatures (not the daily mean, so a day that is cold at night and warm at noon heats and cools);
``CDD`` likewise above ``T_c``. The balance points are searched on a 1 K grid (heating 8-22 °C, cooling 14-28 °C,
``T_c >= T_h``), each with or without its term; a term is kept only with a positive slope, and the combination with
the lowest BIC wins (so a meter without weather dependence gets the day-type means).

A heating or cooling term needs support in the training days (CalTRACK's daily sufficiency rule, as in eemeter's
defaults): at least :data:`MIN_DEGREE_DAY_DAYS` days with non-zero degree-days and :data:`MIN_DEGREE_DAYS_TOTAL`
degree-days in all. Without it, a balance point that one day barely crosses (one 15-min window at 27.04 °C against a
27 °C cooling balance point: 0.00125 K day) lets least squares fit that day's residual exactly with a slope of
131,562 kWh per K day, which a reporting day of 1.25 K day turned into 165,069 kWh (a CNC machine of 260 kWh a day).
Predictions do not extrapolate a slope either: window temperatures are held within the training days' range
(:attr:`ChangePointModel.temp_range_c`; IPMVP: a model is valid within the range of its independent variables) and
:meth:`ChangePointModel.beyond_range` names the days where that changed the prediction (a non-routine adjustment may
be needed there).

The BIC counts *effective* days: ``n' = n (1 - rho) / (1 + rho)`` with ``rho`` the lag-1 autocorrelation of the
day-type-only fit's residuals (as Guideline 14's savings uncertainty does). Days of an industrial meter are far from
independent (waste episodes and order runs last days to weeks); counted as ``n`` independent days, a slow run of such
episodes that happens to coincide with a warm or cold spell passes for a weather slope, and that slope then
extrapolates into the next season (on simulator runs: a moulding machine with no weather dependence at all got a
cooling slope in spring and a 33-point savings error in summer). A building's weather dependence is strong enough to
pass either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Day types (as analytics.baseline.DAYTYPES).
DAYTYPES = ("workday", "saturday", "sunday_holiday")
HEATING_GRID_C = tuple(float(t) for t in range(8, 23))
COOLING_GRID_C = tuple(float(t) for t in range(14, 29))
#: Support a heating or cooling term needs in the training days: days with non-zero degree-days and their total
#: [K day] (CalTRACK daily method's data sufficiency for a balance point).
MIN_DEGREE_DAY_DAYS = 10
MIN_DEGREE_DAYS_TOTAL = 20.0


@dataclass
class DailyInputs:
    """Per-day drivers of a scope.

    Parameters
    ----------
    hours : ndarray
        (days x 3) hours of data per day type [h] (one non-zero column per day).
    temp : ndarray
        (days x windows per day) window temperatures [°C] (NaN where missing, padded for short days).
    window_h : float
        Window length [h].
    """

    hours: np.ndarray
    temp: np.ndarray
    window_h: float

    def degree_days(self, base: float, heating: bool) -> np.ndarray:
        """Heating (below ``base``) or cooling (above) degree-days per day [K day]."""
        d = (base - self.temp) if heating else (self.temp - base)
        return np.nansum(np.maximum(d, 0.0), axis=1) * self.window_h / 24.0

    @property
    def has_temperature(self) -> bool:
        return bool(np.isfinite(self.temp).mean() > 0.5)


@dataclass
class ChangePointModel:
    """A fitted daily change-point model (see the module docstring).

    Attributes
    ----------
    base_kw : list of float
        Base load per day type [kW].
    heating_c, cooling_c : float or None
        Balance points [°C] (None: no such term).
    heating_kwh_per_kday, cooling_kwh_per_kday : float
        Slopes [kWh per K day].
    parameters : int
        Parameters estimated, balance points included.
    temp_range_c : tuple of float or None
        Range of the training days' window temperatures [°C]; predictions hold temperatures within it.
    """

    base_kw: list[float] = field(default_factory=list)
    heating_c: float | None = None
    cooling_c: float | None = None
    heating_kwh_per_kday: float = 0.0
    cooling_kwh_per_kday: float = 0.0
    parameters: int = 0
    temp_range_c: tuple[float, float] | None = None

    def bounded(self, x: DailyInputs) -> DailyInputs:
        """``x`` with its window temperatures held within :attr:`temp_range_c` (no extrapolation of a slope)."""
        if self.temp_range_c is None:
            return x
        return DailyInputs(x.hours, np.clip(x.temp, *self.temp_range_c), x.window_h)

    def beyond_range(self, x: DailyInputs) -> np.ndarray:
        """Per day: whether holding the temperatures within the training range changed the prediction."""
        cols = slice(x.hours.shape[1], None)
        return np.any(np.abs(self.design(x, bound=False)[:, cols] - self.design(x)[:, cols]) > 1e-9, axis=1)

    def design(self, x: DailyInputs, bound: bool = True) -> np.ndarray:
        if bound:
            x = self.bounded(x)
        cols = [x.hours]
        if self.heating_c is not None:
            cols.append(x.degree_days(self.heating_c, True)[:, None])
        if self.cooling_c is not None:
            cols.append(x.degree_days(self.cooling_c, False)[:, None])
        return np.hstack(cols)

    def coef(self) -> np.ndarray:
        out = list(self.base_kw)
        if self.heating_c is not None:
            out.append(self.heating_kwh_per_kday)
        if self.cooling_c is not None:
            out.append(self.cooling_kwh_per_kday)
        return np.asarray(out)

    def predict(self, x: DailyInputs) -> np.ndarray:
        """Expected energy per day [kWh]."""
        return self.design(x) @ self.coef()

    def to_dict(self) -> dict[str, Any]:
        return {"type": "change_point", "base_kw": dict(zip(DAYTYPES, self.base_kw)), "heating_c": self.heating_c,
                "cooling_c": self.cooling_c, "heating_kwh_per_kday": self.heating_kwh_per_kday,
                "cooling_kwh_per_kday": self.cooling_kwh_per_kday, "parameters": self.parameters,
                "temp_range_c": list(self.temp_range_c) if self.temp_range_c is not None else None}


def fit_change_point(x: DailyInputs, energy: np.ndarray) -> ChangePointModel:
    """Fit the daily change-point model by least squares over the balance-point grid, choosing by BIC.

    Parameters
    ----------
    x : DailyInputs
        Drivers of the training days.
    energy : ndarray
        Energy per training day [kWh].
    """
    y = np.asarray(energy, dtype=float)
    n = len(y)
    used = x.hours.sum(axis=0) > 0
    H = x.hours[:, used]
    options: list[tuple[float | None, float | None]] = [(None, None)]
    if x.has_temperature:
        options += [(h, None) for h in HEATING_GRID_C] + [(None, c) for c in COOLING_GRID_C]
        options += [(h, c) for h in HEATING_GRID_C for c in COOLING_GRID_C if c >= h]
    hdd = {h: x.degree_days(h, True) for h in HEATING_GRID_C} if x.has_temperature else {}
    cdd = {c: x.degree_days(c, False) for c in COOLING_GRID_C} if x.has_temperature else {}
    supported = {("h", b) for b, d in hdd.items() if _supported(d)} | {("c", b) for b, d in cdd.items() if _supported(d)}
    options = [(h, c) for h, c in options if (h is None or ("h", h) in supported) and (c is None or ("c", c) in supported)]
    # Two passes: the residuals of the model that plain BIC picks give ``rho`` (the day-type-only fit's would count a
    # real weather signal, itself persistent, as dependence), then the choice again with the effective days.
    first = _search(x, y, H, used, options, hdd, cdd, float(n))
    if first is None:
        raise ValueError(f"too few days ({n}) for a change-point model")
    n_eff = effective_days(y - first.predict(x))
    model = _search(x, y, H, used, options, hdd, cdd, n_eff) or first
    if x.has_temperature:
        model.temp_range_c = (float(np.nanmin(x.temp)), float(np.nanmax(x.temp)))
    return model


def _supported(dd: np.ndarray) -> bool:
    """Whether degree-days of the training days [K day] can carry a slope (see :data:`MIN_DEGREE_DAY_DAYS`)."""
    return int(np.sum(dd > 0)) >= MIN_DEGREE_DAY_DAYS and float(np.sum(dd)) >= MIN_DEGREE_DAYS_TOTAL


def _search(x: DailyInputs, y: np.ndarray, H: np.ndarray, used: np.ndarray, options: list, hdd: dict, cdd: dict,
            n_eff: float) -> ChangePointModel | None:
    """The lowest-BIC model among ``options`` with ``n_eff`` effective days (None: no option could be fitted)."""
    n = len(y)
    best: tuple[float, ChangePointModel] | None = None
    for h, c in options:
        cols = [H]
        if h is not None:
            cols.append(hdd[h][:, None])
        if c is not None:
            cols.append(cdd[c][:, None])
        X = np.hstack(cols)
        if n <= X.shape[1] + 2:
            continue
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        k = X.shape[1]
        slopes = beta[H.shape[1]:]
        if np.any(slopes <= 0):
            continue  # a heating or cooling term must raise energy
        sse = float(np.sum((y - X @ beta) ** 2))
        params = k + (h is not None) + (c is not None)  # balance points count as parameters
        bic = n_eff * np.log(max(sse, 1e-12) / n) + params * np.log(n_eff)
        if best is None or bic < best[0]:
            base = np.zeros(len(DAYTYPES))
            base[used] = beta[: H.shape[1]]
            i = H.shape[1]
            model = ChangePointModel([float(b) for b in base], h, c, 0.0, 0.0, params)
            if h is not None:
                model.heating_kwh_per_kday = float(beta[i])
                i += 1
            if c is not None:
                model.cooling_kwh_per_kday = float(beta[i])
            best = (bic, model)
    return None if best is None else best[1]


def effective_days(residuals: np.ndarray) -> float:
    """Effective number of independent days ``n (1 - rho) / (1 + rho)`` of a residual series (``rho``: lag-1
    autocorrelation, negative values taken as 0, at most 0.95), at least 2."""
    e = np.asarray(residuals, dtype=float)
    n = len(e)
    if n < 4 or not e[1:].std() > 0 or not e[:-1].std() > 0:
        return float(n)
    rho = float(np.clip(np.corrcoef(e[1:], e[:-1])[0, 1], 0.0, 0.95))
    return max(n * (1 - rho) / (1 + rho), 2.0)

"""What every cause detector shares: the interval data as (machines x windows) matrices, the windows that may not be
counted as waste (meter faults, poor coverage, windows another cause already explains), per-machine day indices, the
learned "routine" around shift boundaries, and turning runs of windows into findings.

A detector returns a :class:`CauseResult`: the excess energy per machine and window [kWh] (so that costs can be
time-of-use priced per window) and its events as (machine index, first window, end window, details).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analytics.data import IntervalData, runs
from core.notices import Notice

NS = 1_000_000_000
DAY_NS = 86400 * NS
#: A window counts as observed when its data cover at least this share of it.
MIN_COVERAGE = 0.9
#: Machine kinds that make parts (good/scrap counts).
PRODUCTION_KINDS = ("cnc", "injection_moulding")
#: Site utilities: they serve the whole site, so the site is off-shift only when no line is in shift.
SITE_UTILITY_KINDS = ("compressor", "chiller", "hvac", "lighting")
#: Routine energy around work is what at least this share of days shows [%].
ROUTINE_QUANTILE = 20


@dataclass
class CauseResult:
    """What one detector found.

    Parameters
    ----------
    kind : str
        Event kind (``core.model.WASTE_KINDS``).
    excess : ndarray (machines x windows)
        Avoidable energy per window [kWh], 0 outside events.
    events : list of tuple
        ``(machine index, first window, end window (exclusive), details dict)``.
    warnings : list of Notice
        Machines or data the detector could not assess, and why.
    assessed : list of str
        Machine paths the detector assessed.
    """

    kind: str
    excess: np.ndarray
    events: list[tuple[int, int, int, dict]] = field(default_factory=list)
    warnings: list[Notice] = field(default_factory=list)
    assessed: list[str] = field(default_factory=list)


class Context:
    """Matrices of the interval data and the masks shared by the detectors.

    Parameters
    ----------
    data : IntervalData
    fault : ndarray of bool (machines x windows), optional
        Windows touched by a meter fault; never counted as waste.
    fine_power : callable, optional
        ``fine_power(path, start_ns, stop_ns) -> (times_ns, kw)``: 1-min mean power of one machine (window starts), for
        causes that need it (peak demand).
    """

    def __init__(self, data: IntervalData, fault: np.ndarray | None = None,
                 fine_power: Callable[[str, int, int], tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        self.data = data
        self.infos = list(data.machines.values())
        self.paths = list(data.machines)
        self.n_m, self.n_t = len(self.paths), data.n_times
        self.res = float(data.resolution_s)
        self.h = data.hours
        self.times_ns = data.times_ns
        mat = data.matrix
        self.E = mat("energy_kwh").astype(float)
        self.P = mat("power_mean_kw").astype(float)
        self.Pmax = mat("power_max_kw").astype(float)
        self.s_off = np.nan_to_num(mat("s_off").astype(float))
        self.s_idle = np.nan_to_num(mat("s_idle").astype(float))
        self.s_run = np.nan_to_num(mat("s_running").astype(float))
        self.s_fault = np.nan_to_num(mat("s_fault").astype(float))
        self.good = mat("good").astype(float)
        self.air = mat("air_flow_m3_min").astype(float)
        self.temp = mat("outdoor_temp_c").astype(float)
        self.shift = mat("shift").astype(np.int16)
        self.cov = mat("coverage").astype(float)
        self.fault = np.zeros((self.n_m, self.n_t), bool) if fault is None else np.asarray(fault, bool)
        self.fine_power = fine_power
        # Energy per window: where the register is missing fall back to mean power.
        self.E = np.where(np.isfinite(self.E), self.E, self.P * self.h)
        # Safety net: a register increase that the power readings cannot explain (more than the window's peak power
        # all the time: a reset taken for a rollover, a catch-up jump) is a meter fault whatever else found it.
        impossible = np.isfinite(self.Pmax) & (1.5 * self.Pmax * self.h + 0.5 < self.E)
        self.fault = self.fault | impossible
        self.valid = (self.cov >= MIN_COVERAGE) & np.isfinite(self.E) & ~self.fault
        # Energy for accounting (plant totals, fractions): where a meter fault corrupts the register (a reset taken for
        # a rollover, the catch-up jump after a stuck register) the mean power is the better measure of the window.
        self.E_acct = np.where(self.fault & np.isfinite(self.P), self.P * self.h, self.E)
        self.E_acct = np.where(np.isfinite(self.E_acct), self.E_acct, 0.0)
        self.has_state = (self.s_off + self.s_idle + self.s_run + self.s_fault) > 0.5 * self.res
        # Windows explained by a cause already (so a later cause does not count them twice).
        self.claimed = np.zeros((self.n_m, self.n_t), float)
        self.claimed_by: dict[str, np.ndarray] = {}
        # Local day index of each window per site time zone (days since the epoch in local time).
        self._days: dict[str, np.ndarray] = {}
        self._site_shift: dict[str, np.ndarray] = {}

    def claim(self, kind: str, i: int) -> np.ndarray:
        """Excess energy of machine ``i`` that cause ``kind`` already explained, per window [kWh]."""
        got = self.claimed_by.get(kind)
        return got[i] if got is not None else np.zeros(self.n_t)

    # -- calendar -------------------------------------------------------------------------------------------------
    def has_calendar(self, i: int) -> bool:
        return bool((self.shift[i] >= 0).any())

    def local_day(self, i: int) -> np.ndarray:
        """Local calendar day of each window of machine ``i`` [days since the epoch, local time]."""
        tz = self.infos[i].timezone or "UTC"
        if tz not in self._days:
            import pandas as pd

            local = pd.DatetimeIndex(self.times_ns, tz="UTC").tz_convert(tz)
            naive = local.tz_localize(None).as_unit("ns").asi8
            self._days[tz] = (naive // DAY_NS).astype(np.int64)
        return self._days[tz]

    def site_in_shift(self, site: str) -> np.ndarray:
        """True where any line of ``site`` is in a shift (breaks included): people are on site."""
        if site not in self._site_shift:
            rows = [i for i, info in enumerate(self.infos) if info.site == site and self.has_calendar(i)]
            self._site_shift[site] = np.any(self.shift[rows] >= 1, axis=0) if rows else np.zeros(self.n_t, bool)
        return self._site_shift[site]

    def in_shift(self, i: int) -> np.ndarray | None:
        """Where machine ``i`` is expected to work: its own calendar, or the whole site's for site utilities (and for
        machines on lines without production machines). None without a calendar."""
        info = self.infos[i]
        if not self.has_calendar(i):
            sites = [j for j, o in enumerate(self.infos) if o.site == info.site and self.has_calendar(j)]
            return self.site_in_shift(info.site) if sites else None
        line_has_production = any(o.site == info.site and o.line == info.line and o.kind in PRODUCTION_KINDS
                                  for o in self.infos)
        if info.kind in SITE_UTILITY_KINDS or not line_has_production:
            return self.site_in_shift(info.site)
        return self.shift[i] >= 1


# -- small numeric helpers -----------------------------------------------------------------------------------------------
def robust_sd(x: np.ndarray) -> float:
    """1.4826 x median absolute deviation (NaN ignored); 0 for fewer than 3 values."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if len(x) < 3:
        return 0.0
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def diff_sd(x: np.ndarray) -> float:
    """Noise of a slowly varying series from its successive differences (robust to steps and ramps)."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if len(x) < 4:
        return 0.0
    return robust_sd(np.diff(x)) / np.sqrt(2.0)


def slot_distance(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each window outside ``mask``: windows since ``mask`` last held (1 = right after) and windows until it
    holds again (1 = right before); large numbers where there is none (0 inside ``mask``)."""
    mask = np.asarray(mask, bool)
    n = len(mask)
    big = 10 ** 6
    idx = np.arange(n)
    last = np.maximum.accumulate(np.where(mask, idx, -big))
    nxt = np.minimum.accumulate(np.where(mask, idx, 2 * big + n)[::-1])[::-1]
    since = np.where(mask, 0, np.minimum(idx - last, big))
    until = np.where(mask, 0, np.minimum(nxt - idx, big))
    return since.astype(np.int64), until.astype(np.int64)


def routine_allowance(E: np.ndarray, usable: np.ndarray, since: np.ndarray | None, until: np.ndarray, base: np.ndarray,
                      max_slots: int, day: np.ndarray) -> np.ndarray:
    """The energy a machine routinely draws in the windows just after and just before work (lights on while people
    arrive and leave, heaters warming up, compressors filling the net): per slot the median over days, where that
    quantile stands clearly above the base. ``since`` None: nothing is routine after work. Returns an allowance per
    window [kWh] (0 elsewhere)."""
    allow = np.zeros(len(E))
    for dist in (d for d in (since, until) if d is not None):
        for k in range(1, max_slots + 1):
            sel = (dist == k) & usable
            if sel.sum() < 3:
                continue
            # One value per day: a machine left on for a whole night must not make that night's slot "routine".
            _, first = np.unique(day[sel], return_index=True)
            # What (nearly) every day does: a low quantile over days, so that days left on do not count as routine.
            typical = float(np.percentile(E[sel][first], ROUTINE_QUANTILE))
            typical_base = float(np.median(base[sel]))
            if typical > typical_base * 1.15 + 1e-3:
                allow[dist == k] = np.maximum(allow[dist == k], typical)
    return allow


def group_runs(flag: np.ndarray, gap: int = 1, min_len: int = 1) -> list[tuple[int, int]]:
    """Runs of True in ``flag`` as half-open ``[a, b)``, joining runs separated by at most ``gap`` False values and
    dropping runs shorter than ``min_len``."""
    out: list[list[int]] = []
    for a, b in runs(flag):
        if out and a - out[-1][1] <= gap:
            out[-1][1] = b
        else:
            out.append([a, b])
    return [(a, b) for a, b in out if b - a >= min_len]




def lstsq(X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Least squares with a tiny ridge (features may be all zero for a machine)."""
    if w is not None:
        X = X * w[:, None]
        y = y * w
    XtX = X.T @ X
    ridge = 1e-6 * (np.trace(XtX) / max(X.shape[1], 1) + 1e-9)
    return np.linalg.solve(XtX + ridge * np.eye(X.shape[1]), X.T @ y)






def notice(name: str, message: str, **details: Any) -> Notice:
    return Notice(f"analytics.causes.{name}", message, details)

"""Meter faults found in interval data and reported as data-quality findings, never as waste.

A real meter fails in a few recognisable ways, each visible in the interval data alone (no ground truth):

``meter_stuck``
    The energy register stops counting (and the power reading freezes) while the machine is evidently on: its state
    says running or idle, or its power reading says it draws load. Windows with no register increase under load are
    stuck; the window after the run holds the catch-up jump when the meter resumes.
``meter_reset``
    The register drops (to near zero) where it could not have rolled over: ``core.storage.intervals.classify_drop``
    says "reset" (needs the register readings ``register_min_kwh`` / ``register_last_kwh``, which
    ``IntervalData.from_store`` reads).
``meter_gap``
    Samples missing or stored as Bad (coverage below :attr:`QualitySettings.gap_coverage` in a window).
``meter_spike``
    A power reading the register contradicts: the window's mean power implies far more energy than the register
    counted (more than one sample's timing shift at the neighbouring load can explain), or the peak is physically
    impossible (several times the rated power).

:func:`find_meter_faults` returns the findings as :class:`core.model.Event` (``excess_kwh`` 0) and a boolean mask of
affected windows (machines x windows) that waste estimators exclude.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analytics.data import NS, IntervalData, plausible_max_kwh, register_drops, runs
from core.model import METER_FAULT_KINDS, Event
from core.notices import Notice


@dataclass(frozen=True)
class QualitySettings:
    """Thresholds of the meter-fault checks.

    Parameters
    ----------
    register_resolution_kwh : float
        Register increase counted as "no increase" [kWh] (one or two digits of a 0.01 kWh register).
    stuck_min_digits : float
        Register digits [multiples of register_resolution_kwh] the power reading must imply, beyond the timing shift,
        for a window without register increase to be stuck.
    on_share : float
        Share of a window in running state that says the machine draws energy.
    gap_coverage : float
        A window with less data than this share is part of a gap.
    gap_edge_coverage : float
        Windows next to a gap with less than this coverage belong to it (the gap starts or ends inside them).
    spike_rated_factor : float
        A peak above this multiple of rated power is impossible (start-up surges reach a few times rated power, and
        they are real: the register counts them).
    spike_jump_factor : float
        Least ratio of the peak reading to the load the register shows around the window.
    spike_min_excess : float
        Least share of the power-implied energy that the register must miss for a spike.
    spike_shift_factor : float
        Safety factor on the timing-shift allowance (one sample at the neighbouring load).
    """

    register_resolution_kwh: float = 0.011
    stuck_min_digits: float = 3.0
    on_share: float = 0.5
    gap_coverage: float = 0.75
    gap_edge_coverage: float = 0.99
    spike_rated_factor: float = 10.0
    spike_jump_factor: float = 3.0
    spike_min_excess: float = 0.1
    spike_shift_factor: float = 1.5


@dataclass(frozen=True, eq=False)
class QualityReport:
    """Meter faults of one data set.

    Parameters
    ----------
    events : list of Event
        Findings, kinds ``meter_*``, ``excess_kwh`` 0, sorted by start.
    masks : dict
        Kind -> boolean (machines x windows) array of affected windows.
    notices : list of Notice
        What could not be checked (e.g. resets without register readings).
    """

    events: list[Event]
    masks: dict[str, np.ndarray]
    notices: list[Notice] = field(default_factory=list)

    @property
    def mask(self) -> np.ndarray:
        """Windows affected by any meter fault (machines x windows): exclude them from waste."""
        out: np.ndarray | None = None
        for m in self.masks.values():
            out = m.copy() if out is None else out | m
        assert out is not None, "find_meter_faults fills a mask for every fault kind"
        return out

    def frame_mask(self) -> np.ndarray:
        """:attr:`mask` flattened in the order of ``IntervalData.frame`` rows."""
        return self.mask.ravel()

    def counts(self) -> dict[str, int]:
        """Findings per kind."""
        return {kind: sum(1 for e in self.events if e.kind == kind) for kind in METER_FAULT_KINDS}

    def to_dict(self) -> dict:
        """JSON form: events, counts and the share of affected windows."""
        mask = self.mask
        return {"events": [e.to_dict() for e in self.events], "counts": self.counts(),
                "affected_share": float(mask.mean()) if mask.size else 0.0,
                "notices": [n.to_dict() for n in self.notices]}


def _span(times_ns: np.ndarray, res_ns: int, a: int, b: int) -> tuple[dt.datetime, dt.datetime]:
    return (pd.Timestamp(int(times_ns[a]), tz="UTC").to_pydatetime(),
            pd.Timestamp(int(times_ns[b - 1]) + res_ns, tz="UTC").to_pydatetime())


def _neighbour_max(x: np.ndarray) -> np.ndarray:
    """Per window, the largest finite value among the window and its two neighbours (0 where none)."""
    z = np.nan_to_num(x, nan=0.0)
    out = z.copy()
    out[:, 1:] = np.maximum(out[:, 1:], z[:, :-1])
    out[:, :-1] = np.maximum(out[:, :-1], z[:, 1:])
    return out


def find_meter_faults(data: IntervalData, settings: QualitySettings | None = None) -> QualityReport:
    """Find stuck registers, resets, gaps and spikes in interval data (vectorised over machines and windows).

    Parameters
    ----------
    data : IntervalData
        The interval data (any resolution).
    settings : QualitySettings, optional
        Thresholds.

    Returns
    -------
    QualityReport
        Findings and masks.
    """
    s = settings or QualitySettings()
    n_m, n_t = len(data.machines), data.n_times
    h = data.hours
    res_ns = data.resolution_s * NS
    t = data.times_ns
    infos = list(data.machines.values())
    rated = np.array([np.nan if m.rated_kw is None else m.rated_kw for m in infos], dtype=float)[:, None]
    energy = data.matrix("energy_kwh").astype(float)
    power = data.matrix("power_mean_kw").astype(float)
    pmax = data.matrix("power_max_kw").astype(float)
    cov = data.matrix("coverage").astype(float)
    bad = data.matrix("bad_share").astype(float)
    # Running draws energy; idle may not (some controls report idle with the drives switched off), so only the running
    # state says the register must count.
    on_s = np.nan_to_num(data.matrix("s_running").astype(float))
    has_power = np.isfinite(power) & (cov > 0)
    events: list[Event] = []
    notices: list[Notice] = []

    # Gaps: windows short of data, widened to the partly covered windows where the gap starts and ends.
    core_gap = cov < s.gap_coverage
    gap = core_gap.copy()
    gap[:, 1:] |= core_gap[:, :-1] & (cov[:, 1:] < s.gap_edge_coverage)
    gap[:, :-1] |= core_gap[:, 1:] & (cov[:, :-1] < s.gap_edge_coverage)

    # A one-sample timing shift between the power readings (stamped at the end of their minute) and the register is
    # normal where the load changes: allow for one sample at the neighbouring load.
    sample_s = np.array([m.sample_s or data.resolution_s / 10 for m in infos], dtype=float)[:, None]
    sample_s = np.minimum(sample_s, data.resolution_s)
    load_near = _neighbour_max(energy / h)  # [kW] register-based load around the window
    allowance = s.spike_shift_factor * load_near * sample_s / 3600.0  # [kWh]
    implied = power * h

    # Stuck: no register increase while the state or the power reading says the machine draws energy the register
    # would show (a few register digits beyond the timing shift).
    loaded = (has_power & (implied - allowance >= s.stuck_min_digits * s.register_resolution_kwh)) | \
        (on_s >= s.on_share * data.resolution_s)
    flat = np.isfinite(energy) & (energy <= s.register_resolution_kwh)
    stuck_core = flat & loaded & ~core_gap
    # The window after a stuck run holds the catch-up; the one before may have stopped counting part-way.
    after = np.zeros_like(stuck_core)
    after[:, 1:] = stuck_core[:, :-1] & ~stuck_core[:, 1:]
    before = np.zeros_like(stuck_core)
    before[:, :-1] = stuck_core[:, 1:] & ~stuck_core[:, :-1] & (np.nan_to_num(energy[:, :-1]) < 0.8 * np.nan_to_num(power[:, :-1]) * h)
    stuck_mask = stuck_core | after | before

    # Spikes: the power reading implies energy the register did not count, beyond the timing shift.
    excess = implied - energy
    spike = has_power & np.isfinite(energy) & (excess > allowance + s.spike_min_excess * implied + s.register_resolution_kwh)
    spike &= np.nan_to_num(pmax, nan=0.0) > s.spike_jump_factor * load_near  # a jump, not a load change
    spike |= np.isfinite(pmax) & np.isfinite(rated) & (pmax > s.spike_rated_factor * rated)  # impossible peak
    spike &= ~stuck_mask & ~gap

    # Resets: a register drop that classify_drop does not call a rollover, or a "rollover" that would mean more energy
    # than the machine can draw.
    reset = np.zeros((n_m, n_t), dtype=bool)
    reset_info: dict[tuple[int, int], tuple[float, float]] = {}
    drops = register_drops(data, s.register_resolution_kwh)
    if drops is not None:
        from core.storage.intervals import classify_drop

        drop, prev_last, low = drops
        # (a quantile per machine: computed only when there is a drop to judge)
        limit = plausible_max_kwh(data) if drop.any() else np.full((n_m, 1), np.inf)
        for i, k in zip(*np.nonzero(drop)):
            before, after, top = float(prev_last[i, k]), float(low[i, k]), infos[i].register_max_kwh
            rollover = classify_drop(before, after, top) == "rollover" and top - before + after <= limit[i, 0]
            if not rollover:
                reset[i, k] = True
                reset_info[(int(i), int(k))] = (before, after)
    else:
        notices.append(Notice("analytics.quality.no_register_readings",
                              "register resets cannot be checked: the data hold interval energy, not register readings",
                              {}, level="info"))

    for i, info in enumerate(infos):
        for a, b in runs(stuck_core[i]):
            start, end = _span(t, res_ns, a, b)
            events.append(Event(info.path, "meter_stuck", start, end, 0.0, {
                "signal": "electrical", "windows": b - a,
                "power_reading_kw": round(float(np.nanmean(power[i, a:b])), 3) if has_power[i, a:b].any() else None,
                "running_share": round(float(on_s[i, a:b].sum() / ((b - a) * data.resolution_s)), 3)}))
        for a, b in runs(core_gap[i]):
            if (a == 0 or b == n_t) and bad[i, a:b].mean() < 0.5:
                continue  # nothing stored at the range's edges: the series' extent (sufficiency reports it)
            lo, hi = a, b
            while lo > 0 and gap[i, lo - 1]:
                lo -= 1
            while hi < n_t and gap[i, hi]:
                hi += 1
            # The gap starts after the covered part of its first window and ends where the last window's data resume.
            start_ns = int(t[lo]) + round(min(cov[i, lo], 1.0) * res_ns) if lo < a else int(t[lo])
            end_ns = int(t[hi - 1]) + round((1 - min(cov[i, hi - 1], 1.0)) * res_ns) if hi > b else int(t[hi - 1]) + res_ns
            start_ns, end_ns = start_ns // NS * NS, -(-end_ns // NS) * NS  # whole seconds
            events.append(Event(info.path, "meter_gap", pd.Timestamp(start_ns, tz="UTC").to_pydatetime(),
                                pd.Timestamp(max(end_ns, start_ns), tz="UTC").to_pydatetime(), 0.0,
                                {"signal": "electrical", "windows": hi - lo,
                                 "missing_h": round(float((1 - cov[i, lo:hi]).sum() * h), 3)}))
        for k in np.flatnonzero(spike[i]):
            start, end = _span(t, res_ns, int(k), int(k) + 1)
            # A reading stamped at the window start may describe the sample period before it (interval meters stamp
            # the end of their period): the span reaches one sample back.
            start -= dt.timedelta(seconds=float(sample_s[i, 0]))
            register_kw = energy[i, k] / h
            events.append(Event(info.path, "meter_spike", start, end, 0.0, {
                "signal": "active_power_kw", "power_max_kw": round(float(pmax[i, k]), 3) if np.isfinite(pmax[i, k]) else None,
                "power_mean_kw": round(float(power[i, k]), 3), "register_kw": round(float(register_kw), 3)}))
        for k in np.flatnonzero(reset[i]):
            start, end = _span(t, res_ns, int(k), int(k) + 1)
            before_kwh, after_kwh = reset_info[(i, int(k))]
            events.append(Event(info.path, "meter_reset", start, end, 0.0, {
                "signal": "energy_kwh", "register_before_kwh": round(before_kwh, 3), "register_after_kwh": round(after_kwh, 3)}))
    events.sort(key=lambda e: (e.start, e.machine, e.kind))
    masks = {"meter_stuck": stuck_mask, "meter_gap": gap | ~np.isfinite(energy), "meter_spike": spike, "meter_reset": reset}
    return QualityReport(events, masks, notices)

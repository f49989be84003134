"""Per-machine model outputs for the dashboard and Grafana: actual and baseline energy, and good units, per hour.

``wattline analyze`` stores :func:`machine_hours` as the model output ``baseline`` of its run
(:mod:`core.storage.results`), so the machine page draws actual against expected energy without refitting anything
and without reading raw points: one row per machine and hour, read only for the page's range.

The baseline's prediction is the model :class:`analytics.baseline.Baseline` fitted on the analysed range (meter-fault
windows left out of the fit), predicted for every window of the range: what the machine would have used, given its
production, states, shifts and weather, had it run like it usually does. Hours are UTC hours (whole hours in every
zone with a whole-hour offset); an hour whose windows are not all known is NaN, never a partial sum. Expected energy
is never below zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytics.data import NS, IntervalData

#: Columns of :func:`machine_hours`.
COLUMNS = ["time", "site", "line", "machine", "actual_kwh", "expected_kwh", "good"]


def _fold(matrix: np.ndarray, starts: np.ndarray, complete: np.ndarray) -> np.ndarray:
    """Sum (machines x windows) into (machines x hours); NaN where a window is unknown or the hour incomplete."""
    out = np.add.reduceat(np.asarray(matrix, dtype=float), starts, axis=1)
    out[:, ~complete] = np.nan
    return out


def machine_hours(data: IntervalData, baseline=None, resolution_s: int = 3600) -> pd.DataFrame:
    """Actual and expected energy and good units per machine and hour (long form, :data:`COLUMNS`).

    Parameters
    ----------
    data : IntervalData
        The analysed interval data (its windows must divide ``resolution_s``).
    baseline : analytics.baseline.Baseline, optional
        Fitted baseline; without one (or for a machine without a model) ``expected_kwh`` is NaN.
    resolution_s : int
        Output row length [s]; hourly by default.

    Returns
    -------
    DataFrame
        ``time`` (row start, UTC), ``site``, ``line``, ``machine`` (tags), ``actual_kwh`` and ``expected_kwh``
        [kWh per row], ``good`` [good units per row; NaN for a machine that records no counts].
    """
    if resolution_s % data.resolution_s:
        raise ValueError(f"resolution_s={resolution_s} is not a multiple of the data's {data.resolution_s}-s windows")
    n_machines, n = len(data.machines), data.n_times
    if n_machines == 0 or n == 0:
        return pd.DataFrame({c: pd.Series([], dtype="datetime64[ns, UTC]" if c == "time" else
                                          (object if c in ("site", "line", "machine") else float)) for c in COLUMNS})
    times = data.times_ns
    bucket = times // (resolution_s * NS)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    counts = np.diff(np.r_[starts, n])
    complete = counts * data.resolution_s == resolution_s
    actual = _fold(data.matrix("energy_kwh"), starts, complete)
    if baseline is not None and baseline.models:
        _keys, predicted = baseline.predict_matrix(data, "machine")
        # A linear model can dip below zero where a machine is off (weekend hours after a busy week): no machine
        # gives energy back, so the expected energy is floored at zero (NaN stays unknown).
        expected = np.maximum(_fold(predicted, starts, complete), 0.0)
    else:
        expected = np.full_like(actual, np.nan)
    good_w = data.matrix("good").astype(float)
    good = _fold(np.nan_to_num(good_w, nan=0.0), starts, complete)
    good[~np.isfinite(good_w).any(axis=1)] = np.nan  # a machine without counts: unknown, not zero
    infos = list(data.machines.values())
    hours = len(starts)
    return pd.DataFrame({
        "time": pd.DatetimeIndex(np.tile(bucket[starts] * resolution_s * NS, n_machines), tz="UTC"),
        "site": np.repeat([i.site for i in infos], hours),
        "line": np.repeat([i.line for i in infos], hours),
        "machine": np.repeat([i.machine for i in infos], hours),
        "actual_kwh": actual.ravel(),
        "expected_kwh": expected.ravel(),
        "good": good.ravel(),
    })

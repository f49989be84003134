"""Model outputs that ``wattline analyze`` stores beside the series (:mod:`core.storage.results`), replaced per run.

- ``baseline``: per machine and hour, actual and expected energy [kWh] and good units
  (:func:`analytics.machine_outputs.machine_hours`): the machine page's "actual vs baseline" and energy per good unit.
- ``materials``: per site, material and local day (:mod:`wattline.analyze_materials`).

A store that refuses an output adds a warning to the report (the findings are stored already) instead of failing the
run.
"""

from __future__ import annotations

import pandas as pd

BASELINE = "baseline"


def store_output(store, run_id: str, name: str, frame: pd.DataFrame, report: dict | None, what: str) -> int:
    """Write ``frame`` as output ``name`` of ``run_id`` (replacing what the run wrote before); values written.

    Parameters
    ----------
    store : core.storage.Store
        The store analysed.
    run_id, name : str
        Run id and output name.
    frame : DataFrame
        Long form (``time``, tag columns, numeric fields), see :meth:`core.storage.results.ResultStore.write_outputs`.
    report : dict, optional
        The analysis report; a warning ``analytics.results.<name>_not_stored`` is added to it on failure.
    what : str
        What the output is, for the warning ("material intensities").
    """
    from core.errors import WattlineError
    from core.storage.results import results_for

    if frame.empty:
        return 0
    try:
        with results_for(store) as results:
            return results.write_outputs(run_id, name, frame, replace=True)
    except WattlineError as exc:
        if report is not None:
            report.setdefault("warnings", []).append({
                "name": f"analytics.results.{name}_not_stored", "level": "warning", "details": {"run": run_id},
                "message": f"{what} could not be stored: {exc}"})
        return 0


def store_baseline(store, run_id: str, data, baseline, report: dict | None = None) -> int:
    """Store actual and baseline energy and good units per machine and hour as output ``baseline``; values written."""
    from analytics.machine_outputs import machine_hours

    frame = machine_hours(data, baseline)
    n = store_output(store, run_id, BASELINE, frame, report, "baseline energy per machine and hour")
    if report is not None and n:
        report["stored_outputs"] = {**report.get("stored_outputs", {}), BASELINE: n}
    return n

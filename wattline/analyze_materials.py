"""Energy intensity per material id, stored by ``wattline analyze`` as the model output ``materials``.

Per site (so that the dashboard shows a user bound to a site only that site's production) and material: kg consumed,
production energy attributed to it [kWh] and the intensity [kWh/kg], computed by
:func:`analytics.report.top_materials` (a window's production energy shared among the materials consumed in it, pro
rata to their kg), over the whole analysed range. One point per (site, material) stamped at the range's start.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

OUTPUT = "materials"


def material_intensity(data) -> pd.DataFrame:
    """Columns ``time`` (the range's start), ``site``, ``material``, ``kg`` [kg], ``kwh`` [kWh], ``kwh_per_kg``
    [kWh/kg]; empty when no material was recorded."""
    from analytics.report import top_materials

    frames = []
    mats = data.materials
    if mats is None or mats.empty:
        return pd.DataFrame(columns=["time", "site", "material", "kg", "kwh", "kwh_per_kg"])
    sites = data.frame["machine"].astype(str).str.split("/").str[0]
    for site in sorted(sites.unique()):
        keep = data.frame["machine"].astype(str).str.startswith(site + "/")
        part = dataclasses.replace(data, frame=data.frame[keep],
                                   materials=mats[mats["machine"].astype(str).str.startswith(site + "/")])
        rows = top_materials(part, limit=10**9)
        if rows:
            frame = pd.DataFrame(rows)
            frame.insert(0, "site", site)
            frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["time", "site", "material", "kg", "kwh", "kwh_per_kg"])
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "time", pd.Timestamp(data.start).tz_convert("UTC") if pd.Timestamp(data.start).tzinfo else
               pd.Timestamp(data.start, tz="UTC"))
    out["material"] = out["material"].astype(str)
    return out


def store_materials(store, run_id: str, data, report: dict | None = None) -> int:
    """Write :func:`material_intensity` as output ``materials`` of ``run_id`` (replacing it); values written.

    A store that refuses it adds a warning to ``report`` (the findings are stored already) instead of failing the run.
    """
    from core.errors import WattlineError
    from core.storage.results import results_for

    frame = material_intensity(data)
    if frame.empty:
        return 0
    try:
        with results_for(store) as results:
            n = results.write_outputs(run_id, OUTPUT, frame, replace=True)
    except WattlineError as exc:
        if report is not None:
            report.setdefault("warnings", []).append({
                "name": "analytics.results.materials_not_stored", "level": "warning", "details": {"run": run_id},
                "message": f"material intensities could not be stored: {exc}"})
        return 0
    if report is not None:
        report["stored_materials"] = len(frame)
    return n

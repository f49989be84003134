"""Energy by material id, stored by ``wattline analyze`` as the model output ``materials``.

Per site (so that the dashboard shows a user bound to a site only that site's production), material and local calendar
day of the site: kg consumed, good parts made from it and the production energy allocated to it [kWh], computed by
:class:`analytics.materials.MaterialAllocation` (a window's production energy shared among the materials consumed in
it, pro rata to their kg). Days let the dashboard add up any period of whole local days; intensities (kWh/kg,
kWh/unit) are recomputed from the sums there, never averaged.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

OUTPUT = "materials"
COLUMNS = ["time", "site", "material", "kg", "units", "kwh"]


def material_intensity(data) -> pd.DataFrame:
    """Columns ``time`` (the site's local day, midnight as UTC), ``site``, ``material``, ``kg`` [kg], ``units`` [good
    parts], ``kwh`` [kWh]; empty when no material was recorded."""
    from analytics.materials import MaterialAllocation

    frames = []
    mats = data.materials
    if mats is None or mats.empty:
        return pd.DataFrame(columns=COLUMNS)
    from analytics.data import machine_index

    # Sites by the machines' integer codes (a string per row of a year's material rows would be gigabytes).
    paths = data.machine_ids
    site_of = np.array([info.site for info in data.machines.values()] + [None], dtype=object)
    row_site = site_of[machine_index(data.frame["machine"], paths)]
    mat_site = site_of[machine_index(mats["machine"], paths)]
    zones = {info.site: info.timezone for info in data.machines.values()}
    for site in sorted(zones):
        part = dataclasses.replace(data, frame=data.frame[row_site == site], materials=mats[mat_site == site])
        days = MaterialAllocation().fit(part).by_day(zones[site])
        if len(days):
            days.insert(1, "site", site)
            frames.append(days)
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def store_materials(store, run_id: str, data, report: dict | None = None) -> int:
    """Write :func:`material_intensity` as output ``materials`` of ``run_id`` (replacing it); values written.

    A store that refuses it adds a warning to ``report`` (the findings are stored already) instead of failing the run.
    """
    from wattline.analyze_outputs import store_output

    frame = material_intensity(data)
    n = store_output(store, run_id, OUTPUT, frame, report, "material intensities")
    if report is not None and n:
        report["stored_materials"] = int(frame["material"].nunique())
    return n

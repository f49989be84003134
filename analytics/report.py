"""The analysis report: everything ``wattline analyze`` found, as one JSON-able dict.

Keys: ``plant_energy_kwh``, ``potential`` {``total_kwh``, ``fraction``, ``cost``, ``co2_kg``, ``by_cause``, ...},
``events`` (waste findings), ``data_quality`` (meter faults, same event shape), ``baselines``, ``materials``,
``warnings`` [{``name``, ``message``, ``details``}], plus ``start``/``stop`` and the data's sufficiency. Times are ISO
8601 with offset.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import numpy as np

from analytics.data import IntervalData
from core.model import Event
from core.notices import Notice

SCHEMA = "wattline.analysis/1"


def event_row(ev: Event) -> dict[str, Any]:
    """One finding in the report's shape: the event's fields, cost, CO2, severity and explanation at the top level."""
    d = dict(ev.details)
    return {"machine": ev.machine, "kind": ev.kind, "start": ev.start.isoformat(), "end": ev.end.isoformat(),
            "excess_kwh": round(float(ev.excess_kwh), 4), "cost": d.pop("cost", None), "co2_kg": d.pop("co2_kg", None),
            "severity": d.pop("severity", None), "explanation": d.pop("explanation", None),
            "currency": d.pop("currency", None), "details": d}


def quality_row(ev: Event) -> dict[str, Any]:
    """A meter fault in the report's event shape (no cost: it is not waste)."""
    d = dict(ev.details)
    hours = (ev.end - ev.start).total_seconds() / 3600
    name = ev.machine.split("/")[-1]
    text = d.pop("explanation", None) or f"{name}: {ev.kind.replace('_', ' ')} for {hours:.1f} h; not counted as waste"
    return {"machine": ev.machine, "kind": ev.kind, "start": ev.start.isoformat(), "end": ev.end.isoformat(),
            "excess_kwh": 0.0, "cost": None, "co2_kg": None, "severity": d.pop("severity", None), "explanation": text,
            "details": d}


def notice_row(n: Notice) -> dict[str, Any]:
    return {"name": n.name, "message": n.message, "details": n.details, "level": n.level}


def top_materials(data: IntervalData, limit: int = 20) -> list[dict[str, Any]]:
    """Most energy-intensive materials [kWh/kg] (see :mod:`analytics.materials` for the allocation)."""
    from analytics.materials import MaterialAllocation

    return MaterialAllocation().fit(data).top(limit)


def build_report(data: IntervalData, potential: Any, quality: Any = None, baselines: Iterable[dict] = (),
                 materials: list[dict] | None = None, warnings: Iterable[Notice] = (),
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Assemble the report.

    Parameters
    ----------
    data : IntervalData
    potential : analytics.potential.ReductionPotential
        Fitted.
    quality : analytics.quality.QualityReport, optional
    baselines : iterable of dict
        ``{scope, cv_rmse, nmbe, r2, passes_g14, ...}`` per scope.
    materials : list of dict, optional
        Top materials; computed from ``data`` when None.
    warnings : iterable of Notice
        More warnings (reading, baselines); the data's and the detectors' are added.
    """
    from analytics.materials import MaterialAllocation

    allocation = MaterialAllocation().fit(data)
    notes = list(data.warnings) + list(potential.warnings) + list(warnings)
    if quality is not None:
        notes.extend(getattr(quality, "notices", []))
    seen, unique = set(), []
    for n in notes:
        key = (n.name, n.message)
        if key not in seen:
            seen.add(key)
            unique.append(n)
    report = {
        "schema": SCHEMA,
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "start": data.start.isoformat(),
        "stop": data.stop.isoformat(),
        "resolution_s": data.resolution_s,
        "machines": len(data.machines),
        "plant": getattr(data.plant, "name", None),
        "plant_energy_kwh": round(potential.plant_energy_kwh, 3),
        "potential": potential.to_dict(),
        "events": [event_row(e) for e in potential.events],
        "data_quality": [quality_row(e) for e in (quality.events if quality is not None else [])],
        "baselines": list(baselines),
        "materials": allocation.top() if materials is None else materials,
        "materials_allocation": allocation.to_dict(),
        "warnings": [notice_row(n) for n in unique],
    }
    if extra:
        report.update(extra)
    return jsonable(report)


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types: numpy scalars to Python, NaN and infinities to None, datetimes to ISO 8601."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    return obj


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A short printed summary: headline potential, per cause, the top findings, warnings count."""
    pot = report["potential"]
    cur = pot.get("currency") or ""
    money = f", {pot['cost']:,.0f} {cur}" if pot.get("cost") is not None else ""
    co2 = f", {pot['co2_kg'] / 1000:,.1f} t CO2" if pot.get("co2_kg") is not None else ""
    frac = f"{100 * pot['fraction']:.1f} %" if pot.get("fraction") is not None else "n/a"
    lines = [(f"{report['machines']} machines, {report['start'][:10]} to {report['stop'][:10]}: "
              f"{report['plant_energy_kwh']:,.0f} kWh metered"),
             f"reduction potential {pot['total_kwh']:,.0f} kWh ({frac}){money}{co2}"]
    for kind, item in pot["by_cause_detail"].items():
        c = f", {item['cost']:,.0f} {cur}" if item.get("cost") is not None else ""
        n = sum(1 for e in report["events"] if e["kind"] == kind)
        lines.append(f"  {kind:<24} {item['kwh']:>12,.0f} kWh{c}  ({n} findings)")
    top = sorted(report["events"], key=lambda e: -(e["cost"] if e["cost"] is not None else e["excess_kwh"]))[:5]
    if top:
        lines.append("largest findings:")
        lines.extend(f"  {e['explanation']}" for e in top)
    if report["data_quality"]:
        lines.append(f"{len(report['data_quality'])} meter fault(s) found and left out of the waste")
    if report["warnings"]:
        lines.append(f"{len(report['warnings'])} warning(s): " + "; ".join(w["name"] for w in report["warnings"][:4])
                     + (" ..." if len(report["warnings"]) > 4 else ""))
    return lines

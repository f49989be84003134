"""Numbers of the Materials page: energy intensity per material id from the newest analysis run.

``wattline analyze`` stores the output ``materials`` (``wattline/analyze_materials.py``): per site, material and local
day the kg consumed, the good parts made from it and the production energy allocated to it [kWh]. Here the days of the
chosen period (the shared period selector) and the chosen sites are added up, kWh/kg and kWh per good unit are
recomputed from the sums (never averaged) and the long tail is measured; no energy arithmetic on raw data happens in
the dashboard. Every material is measured in kg (``material.consumed_kg``), so kWh/kg is always given; kWh per unit
where the machines that ran it count good parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

OUTPUT = "materials"
CSV_COLUMNS = ("material", "kg", "units", "kwh", "kwh_per_kg", "kwh_per_unit", "share_of_energy")


@dataclass
class Materials:
    """Material intensities for the chosen sites; ``rows`` sorted by kWh/kg, most intensive first."""

    rows: list[dict] = field(default_factory=list)
    run: str | None = None
    start: pd.Timestamp | None = None  # first day with material data in the period
    stop: pd.Timestamp | None = None  # last such day
    unranked: int = 0  # materials below the least mass ranked (in the totals and the long tail, not in the rows)
    head_count: int = 0  # materials that make up 80 % of the materials' energy
    tail_count: int = 0
    tail_share: float | None = None  # share of energy of the other materials

    total_kwh: float = 0.0  # energy allocated to every material of the period [kWh]
    energies: list[float] = field(default_factory=list)  # every material's kWh, largest first (the long tail)


def materials_for(raw_store, user, site: str | None, period_key: str | None, now_ns: int, cache=None):
    """The Materials page's and export's view: the sites ``user`` chose (AccessDenied for one they may not see) over
    the chosen period's whole local days (the first chosen site's calendar).

    Returns
    -------
    tuple
        (:class:`Materials`, :class:`dashboard.periods.Period`).
    """
    import zoneinfo

    from dashboard.access import scoped_store, sites_for
    from dashboard.overview import known_sites, site_info
    from dashboard.periods import day_range, get_period
    from dashboard.settings import current_settings

    settings = current_settings()
    sites = sites_for(user, site, known_sites(scoped_store(raw_store, user), settings.plant))
    period = get_period(period_key)
    tz = zoneinfo.ZoneInfo(site_info(sites[0], settings.plant, settings.tz).tz) if sites else settings.tz
    start_ns, stop_ns = day_range(period.days, now_ns, tz)
    m = read_materials(raw_store, sites, start_ns, stop_ns, cache=cache)
    if m.start is not None and m.stop is not None:  # days are stamped at local midnight: show them as local dates
        m = replace(m, start=m.start.tz_convert(tz), stop=m.stop.tz_convert(tz))  # never alter a cached value
    return m, period


def read_materials(raw_store, sites: list[str], start_ns: int | None = None, stop_ns: int | None = None,
                   head_share: float = 0.8, cache=None) -> Materials:
    """Material rows of ``sites`` over the days in ``[start_ns, stop_ns)`` from the newest run that stored them (empty
    :class:`Materials` without any).

    ``raw_store`` is the unscoped store: outputs are read for ``sites`` only, before anything leaves. ``cache``
    (:class:`dashboard.cache.ResultCache`) keeps the sums per run, sites and days, so that every user of a site and
    every search share one read; a new analysis run is a new key.
    """
    from core.errors import StoreError
    from core.storage.results import results_for

    try:
        results = results_for(raw_store)
    except StoreError:
        return Materials()
    if not sites:
        return Materials()
    with results:
        run = next((r for r in results.runs() if OUTPUT in r.outputs), None)
        if run is None:
            return Materials()

        def compute() -> Materials:
            frame = results.read_outputs(OUTPUT, start_ns, stop_ns, run=run.run, tags={"site": list(sites)})
            if frame.empty or "site" not in frame.columns:
                return Materials()
            out = summarise(frame, head_share)
            out.run = run.run
            out.start, out.stop = pd.Timestamp(frame["time"].min()), pd.Timestamp(frame["time"].max())
            return out

        if cache is None:
            return compute()
        key = f"materials|{run.run}|{run.created.isoformat()}|{','.join(sorted(sites))}|{start_ns}|{stop_ns}|{head_share}"
        return cache.get_or_compute(key, compute)


def summarise(frame: pd.DataFrame, head_share: float = 0.8, least_kg: float | None = None) -> Materials:
    """Add sites and days up per material and measure the long tail (pure; ``frame`` columns material, kg, kwh and
    optionally units; a run stored before units were has none, so its kWh per unit is unknown).

    Materials with less than ``least_kg`` in the period (default: the analytics' ``MaterialSettings.min_kg``) count in
    the total and the long tail but are not listed: one small batch gives a noisy intensity.
    """
    from analytics.materials import MaterialSettings

    least_kg = MaterialSettings().min_kg if least_kg is None else least_kg
    if "units" not in frame.columns:
        frame = frame.assign(units=np.nan)
    per = frame.groupby("material", sort=False)[["kg", "units", "kwh"]].sum(min_count=1)
    per = per[per["kg"] > 0]
    total = float(per["kwh"].sum())
    per["kwh_per_kg"] = per["kwh"] / per["kg"]
    per["kwh_per_unit"] = per["kwh"] / per["units"].where(per["units"] > 0)
    per["share_of_energy"] = per["kwh"] / total if total > 0 else np.nan
    by_energy = per.sort_values("kwh", ascending=False)
    cumulative = by_energy["kwh"].cumsum() / total if total > 0 else pd.Series(dtype=float)
    head = int((cumulative < head_share).sum() + 1) if total > 0 else 0
    head = min(head, len(per))
    tail_share = float(1 - cumulative.iloc[head - 1]) if head else None
    ranked = per[per["kg"] >= least_kg].sort_values("kwh_per_kg", ascending=False)
    table = ranked.reset_index()[["material", "kg", "units", "kwh", "kwh_per_kg", "kwh_per_unit", "share_of_energy"]]
    table["material"] = table["material"].astype(str)
    rows = table.astype(object).where(table.notna(), None).to_dict("records")  # NaN -> None ("—" in the grid)
    return Materials(rows, unranked=len(per) - len(ranked), head_count=head, tail_count=len(per) - head,
                     tail_share=tail_share, total_kwh=total, energies=by_energy["kwh"].astype(float).tolist())


def materials_frame(rows: list[dict]) -> pd.DataFrame:
    """The table as downloaded (raw numbers)."""
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def materials_csv(rows: list[dict]) -> str:
    """The table as CSV (raw numbers)."""
    return materials_frame(rows).to_csv(index=False)


def top_figure(materials: Materials, n: int = 15):
    """Horizontal bars of the ``n`` most energy-intensive materials [kWh/kg]."""
    import plotly.graph_objects as go

    top = materials.rows[:n][::-1]
    fig = go.Figure(go.Bar(x=[r["kwh_per_kg"] for r in top], y=[r["material"] for r in top], orientation="h",
                           marker_color="#E69F00",
                           text=[f"{r['kwh_per_kg']:,.2f}" for r in top], textposition="outside",
                           hovertemplate="%{y}: %{x:,.2f} kWh/kg<extra></extra>"))
    fig.update_layout(margin=dict(l=10, r=30, t=10, b=40), height=420, xaxis_title="Energy intensity [kWh/kg]",
                      plot_bgcolor="white", paper_bgcolor="white")
    return fig


def tail_figure(materials: Materials):
    """Cumulative share of the materials' energy over materials ranked by energy (the long tail)."""
    import plotly.graph_objects as go

    kwh = np.asarray(materials.energies, dtype=float)
    total = kwh.sum()
    cum = np.cumsum(kwh) / total * 100 if total > 0 else kwh
    fig = go.Figure(go.Scatter(x=np.arange(1, len(kwh) + 1), y=cum, mode="lines", line_color="#0b6bcb",
                               hovertemplate="top %{x} materials: %{y:.1f} % of the energy<extra></extra>"))
    if materials.head_count:
        fig.add_vline(x=materials.head_count, line_dash="dot", line_color="#d97706",
                      annotation_text=f"{materials.head_count} materials: 80 %", annotation_position="bottom right")
    fig.update_layout(margin=dict(l=10, r=10, t=10, b=40), height=420, plot_bgcolor="white", paper_bgcolor="white",
                      xaxis_title="Materials ranked by energy", yaxis_title="Cumulative share of energy [%]",
                      yaxis_range=[0, 101])
    return fig

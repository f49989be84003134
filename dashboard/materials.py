"""Numbers of the Materials page: energy intensity per material id from the newest analysis run.

``wattline analyze`` stores the output ``materials`` (``wattline/analyze_materials.py``): per site and material the kg
consumed, the production energy attributed to it [kWh] and kWh/kg over the analysed range. Here the chosen sites are
added up (kWh / kg recomputed from the sums, never averaged) and the long tail is measured; no energy arithmetic on
raw data happens in the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

OUTPUT = "materials"
CSV_COLUMNS = ("material", "kg", "kwh", "kwh_per_kg", "share_of_energy")


@dataclass
class Materials:
    """Material intensities for the chosen sites; ``rows`` sorted by kWh/kg, most intensive first."""

    rows: list[dict] = field(default_factory=list)
    run: str | None = None
    start: pd.Timestamp | None = None
    head_count: int = 0  # materials that make up 80 % of the materials' energy
    tail_count: int = 0
    tail_share: float | None = None  # share of energy of the other materials

    @property
    def total_kwh(self) -> float:
        return float(sum(r["kwh"] for r in self.rows))


def read_materials(raw_store, sites: list[str], head_share: float = 0.8) -> Materials:
    """Material rows of ``sites`` from the newest run that stored them (empty :class:`Materials` without any).

    ``raw_store`` is the unscoped store: outputs are filtered to ``sites`` here, before anything leaves.
    """
    from core.errors import StoreError
    from core.storage.results import results_for

    try:
        results = results_for(raw_store)
    except StoreError:
        return Materials()
    with results:
        frame = results.read_outputs(OUTPUT)
    if frame.empty or "site" not in frame.columns:
        return Materials()
    frame = frame[frame["site"].isin(sites)]
    if frame.empty:
        return Materials(run=None)
    out = summarise(frame, head_share)
    out.run = str(frame["run"].iloc[0])
    out.start = pd.Timestamp(frame["time"].min())
    return out


def summarise(frame: pd.DataFrame, head_share: float = 0.8) -> Materials:
    """Add the sites up per material and measure the long tail (pure; ``frame`` columns material, kg, kwh)."""
    per = frame.groupby("material", sort=False)[["kg", "kwh"]].sum()
    per = per[per["kg"] > 0]
    total = float(per["kwh"].sum())
    per["kwh_per_kg"] = per["kwh"] / per["kg"]
    per["share_of_energy"] = per["kwh"] / total if total > 0 else np.nan
    by_energy = per.sort_values("kwh", ascending=False)
    cumulative = by_energy["kwh"].cumsum() / total if total > 0 else pd.Series(dtype=float)
    head = int((cumulative < head_share).sum() + 1) if total > 0 else 0
    head = min(head, len(per))
    tail_share = float(1 - cumulative.iloc[head - 1]) if head else None
    per = per.sort_values("kwh_per_kg", ascending=False)
    rows = [{"material": str(m), "kg": float(r.kg), "kwh": float(r.kwh), "kwh_per_kg": float(r.kwh_per_kg),
             "share_of_energy": float(r.share_of_energy)} for m, r in per.iterrows()]
    return Materials(rows, head_count=head, tail_count=len(per) - head, tail_share=tail_share)


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

    kwh = np.sort(np.array([r["kwh"] for r in materials.rows]))[::-1]
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

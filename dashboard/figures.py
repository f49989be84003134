"""Plotly figures of the pages, as pure functions of the frames in :mod:`dashboard.data`."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import plotly.graph_objects as go

from dashboard.data import to_local_naive

#: Colour-blind-safe qualitative palette (Okabe-Ito without black), then Plotly's default for larger plants.
PALETTE = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442",
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)
FONT = "Inter, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
# With few points per trace a bare line is invisible (one point) or misleading; show markers then.
MARKERS_BELOW = 40


TEMPLATE = "plotly_white"


def use_template() -> None:
    """Make :data:`TEMPLATE` this process's default Plotly template (the dashboard app does, once).

    Plotly validates a template passed to ``update_layout`` again for every figure (100-200 ms each on a loaded
    machine, several figures per refresh) but trusts its registered default; :func:`with_template` then skips it.
    """
    import plotly.io as pio

    pio.templates.default = TEMPLATE


def with_template(fig: go.Figure) -> go.Figure:
    """``fig`` in :data:`TEMPLATE`: already when it is the default (:func:`use_template`), else set here."""
    import plotly.io as pio

    if pio.templates.default != TEMPLATE:
        fig.update_layout(template=TEMPLATE)
    return fig


def _base_layout(fig: go.Figure, *, height: int, uirevision: str) -> go.Figure:
    with_template(fig)
    fig.update_layout(
        height=height,
        margin=dict(l=64, r=16, t=36, b=48),  # the top margin holds the mode bar
        font=dict(family=FONT, size=13, color="#1f2933"),
        hovermode="x unified",
        legend=dict(orientation="v", x=1.01, y=1, xanchor="left", font=dict(size=12), groupclick="toggleitem"),
        # Keep zoom and hidden traces across refreshes until the person picks another range.
        uirevision=uirevision,
    )
    return fig


def power_figure(
    frame: pd.DataFrame,
    *,
    start_ns: int,
    stop_ns: int,
    tz: dt.tzinfo,
    uirevision: str = "",
    group_legend_by_line: bool = False,
    show_reporting: bool = False,
    height: int = 340,
) -> go.Figure:
    """Power over time, one trace per ``label``.

    Parameters
    ----------
    frame : DataFrame
        :func:`dashboard.data.power_by_machine` or :func:`dashboard.data.line_totals` output (``value`` in [kW]).
    start_ns, stop_ns : int
        The queried range [ns]; the x axis shows all of it so that "now" sits at the right edge.
    tz : tzinfo
        Plant time zone the x axis is shown in.
    uirevision : str
        Plotly keeps zoom and legend choices while this stays the same.
    group_legend_by_line : bool
        Group machine traces under their line in the legend.
    show_reporting : bool
        Add "n/m machines" to the hover text (line totals).
    """
    fig = go.Figure()
    for i, (label, group) in enumerate(frame.groupby("label", sort=False)):
        x = to_local_naive(group["time"], tz)
        mode = "lines+markers" if len(group) < MARKERS_BELOW else "lines"
        trace = dict(
            x=x,
            y=group["value"].astype(float),
            name=str(label),
            mode=mode,
            line=dict(width=2, color=PALETTE[i % len(PALETTE)]),
            marker=dict(size=5),
            hovertemplate="%{y:,.1f} kW<extra>%{fullData.name}</extra>",
        )
        if group_legend_by_line:
            line = group["line"].iloc[0] or "(no line)"
            trace.update(legendgroup=line, legendgrouptitle_text=f"Line {line}")
        if show_reporting:
            trace.update(
                customdata=group[["reporting", "machines"]].to_numpy(),
                hovertemplate="%{y:,.1f} kW (%{customdata[0]}/%{customdata[1]} machines)<extra>%{fullData.name}</extra>",
            )
        fig.add_trace(go.Scatter(**trace))
    x_range = to_local_naive(pd.Series(pd.to_datetime([start_ns, stop_ns], unit="ns", utc=True)), tz)
    fig.update_xaxes(title_text=f"Time ({tz})", range=list(x_range), showgrid=True, gridcolor="#eef1f4")
    fig.update_yaxes(title_text="Power [kW]", rangemode="tozero", gridcolor="#eef1f4", zeroline=True,
                     zerolinecolor="#d5dbe1")
    return _base_layout(fig, height=height, uirevision=uirevision)


def message_figure(text: str, *, height: int = 340) -> go.Figure:
    """An empty figure with a centred message, for a range without values (never a blank graph)."""
    fig = go.Figure()
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=15, color="#52606d"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _base_layout(fig, height=height, uirevision="message")

"""Components and figures of the plant overview and the machine page, as pure functions of :mod:`dashboard.overview`."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html

from dashboard import ids
from dashboard.components import empty_state, kpi_tile
from dashboard.figures import FONT, PALETTE, with_template
from dashboard.overview import (
    KIND_LABELS,
    Overview,
    fmt_co2,
    fmt_energy,
    fmt_money,
    fmt_pct,
    machine_href,
)

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _layout(fig: go.Figure, height: int, **extra) -> go.Figure:
    with_template(fig)
    fig.update_layout(height=height, margin=dict(l=56, r=16, t=16, b=40),
                      font=dict(family=FONT, size=13, color="#1f2933"), **extra)
    return fig


def message(text: str, height: int = 300) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14, color="#616e7c"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, height)


def pareto_figure(by_cause: pd.DataFrame) -> go.Figure:
    """Avoidable energy per cause [kWh], largest first, with the cumulative share [%] on a second axis."""
    if by_cause.empty:
        return message("No waste found in this period")
    fig = go.Figure()
    fig.add_bar(x=by_cause["label"], y=by_cause["kwh"], name="Avoidable energy", marker_color=PALETTE[0],
                text=[fmt_energy(v) for v in by_cause["kwh"]], textposition="outside", cliponaxis=False,
                customdata=by_cause["findings"], hovertemplate="%{x}: %{y:,.0f} kWh (%{customdata} findings)<extra></extra>")
    fig.add_scatter(x=by_cause["label"], y=by_cause["cum_pct"], name="Cumulative share", yaxis="y2",
                    mode="lines+markers", line=dict(color=PALETTE[1]),
                    hovertemplate="%{y:.0f} % of the potential<extra></extra>")
    return _layout(fig, 300, showlegend=False, yaxis=dict(title="Avoidable energy [kWh]", rangemode="tozero"),
                   yaxis2=dict(title="Cumulative [%]", overlaying="y", side="right", range=[0, 105], showgrid=False,
                               tickvals=[0, 25, 50, 75, 100]))


def heatmap_figure(heatmap: pd.DataFrame) -> go.Figure:
    """Mean plant power [kW] per local weekday (rows) and hour (columns)."""
    if heatmap.empty:
        return message("No energy data in this period")
    grid = heatmap.pivot_table(index="weekday", columns="hour", values="kw").reindex(index=range(7), columns=range(24))
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=[f"{h:02d}:00" for h in range(24)], y=list(WEEKDAYS),
                               colorscale="YlOrRd", colorbar=dict(title="kW"), hoverongaps=False,
                               hovertemplate="%{y} %{x}: %{z:,.0f} kW<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, 300, xaxis=dict(title="Hour of day (plant time)", dtick=3))


def sankey_figure(flows: pd.DataFrame, site_names: dict[str, str], line_names: dict | None = None) -> go.Figure:
    """Energy flow [kWh] site -> line -> machine over the period (``line_names``: (site, line) -> name)."""
    line_names = line_names or {}
    if flows.empty:
        return message("No energy data in this period")
    labels: list[str] = []
    index: dict[tuple, int] = {}  # node key -> position in labels

    def node(key, label):
        if key not in index:
            index[key] = len(labels)
            labels.append(label)
        return index[key]

    src, dst, val = [], [], []
    by_line = flows.groupby(["site", "line"], as_index=False)["kwh"].sum()
    for r in by_line.itertuples():
        src.append(node(("s", r.site), site_names.get(r.site, r.site)))
        dst.append(node(("l", r.site, r.line), line_names.get((r.site, r.line), r.line)))
        val.append(r.kwh)
    for r in flows.itertuples():
        src.append(node(("l", r.site, r.line), line_names.get((r.site, r.line), r.line)))
        dst.append(node(("m", r.site, r.line, r.machine), r.machine))
        val.append(r.kwh)
    fig = go.Figure(go.Sankey(
        node=dict(label=labels, pad=8, thickness=14, color="#9fb3c8"),
        link=dict(source=src, target=dst, value=val, color="rgba(11, 92, 171, 0.25)",
                  hovertemplate="%{source.label} → %{target.label}: %{value:,.0f} kWh<extra></extra>"),
        valueformat=",.0f", valuesuffix=" kWh"))
    _layout(fig, max(320, 16 * len(flows)))
    # Room above the top node for Plotly's mode bar, which otherwise covers the first labels; no axes to leave room for.
    return fig.update_layout(margin=dict(l=8, r=8, t=40, b=8))


def finding_list(findings: list, limit: int = 8) -> html.P | html.Ul:
    """The latest findings as short lines linking to the machine page."""
    if not findings:
        return html.P("No findings yet: run 'wattline analyze' to find waste and meter faults.", className="muted")
    items = []
    for ev in findings[:limit]:
        d = ev.details or {}
        text = d.get("explanation") or f"{KIND_LABELS.get(ev.kind, ev.kind)} on {ev.machine}"
        href = machine_href(ev.machine)
        name = ev.machine.split("/")[-1]
        items.append(html.Li([
            html.Span(KIND_LABELS.get(ev.kind, ev.kind), className="tag tag-" + ev.kind.split("_")[0]),
            dcc.Link(name, href=href, className="machine-link") if href else html.B(name),
            html.Span(" " + text[len(name):].lstrip(": ") if text.startswith(name) else " — " + text),
            html.Span(f" ({ev.start.strftime('%d %b')})", className="muted"),
        ]))
    return html.Ul(items, className="finding-list")


def top_machine_table(top: pd.DataFrame, currency: str | None) -> html.P | html.Table:
    """Machines with the most avoidable energy, linked to their page."""
    if top.empty:
        return html.P("No avoidable energy found in this period.", className="muted")
    rows = []
    biggest = float(top["kwh"].max()) or 1.0
    for r in top.itertuples():
        href = machine_href(r.machine)
        name = r.machine.split("/")[-1]
        where = "/".join(r.machine.split("/")[:-1])
        rows.append(html.Tr([
            html.Td([dcc.Link(name, href=href, className="machine-link") if href else name,
                     html.Div(where, className="muted small")]),
            html.Td(html.Div(html.Div(style={"width": f"{100 * r.kwh / biggest:.0f}%"}, className="bar"),
                             className="bar-track")),
            html.Td(fmt_energy(r.kwh), className="num"),
            html.Td(fmt_money(r.cost, currency) if currency else "—", className="num"),
            html.Td(str(r.findings), className="num"),
        ]))
    head = html.Tr([html.Th("Machine"), html.Th(""), html.Th("Avoidable", className="num"),
                    html.Th("Cost", className="num"), html.Th("Findings", className="num")])
    return html.Table([html.Thead(head), html.Tbody(rows)], className="series-table top-table")


def kpi_tiles(ov: Overview) -> list:
    """Energy, cost and CO2 for today, the last 7 and the last 30 days."""
    tiles = []
    for key, title in (("today", "Energy today"), ("7d", "Energy, last 7 days"), ("30d", "Energy, last 30 days")):
        t = ov.tiles.get(key, {})
        detail = " · ".join(x for x in (fmt_money(t.get("cost"), ov.currency) if ov.currency else "",
                                        fmt_co2(t.get("co2"))) if x and x != "—")
        tiles.append(kpi_tile(f"kpi-energy-{key}", title, fmt_energy(t.get("kwh")), detail or "no tariff in the plant file"))
    return tiles


def potential_tiles(ov: Overview, period_label: str) -> list:
    """The reduction potential of the period: share, energy, money."""
    sub = f"{period_label.lower()}, {ov.findings} findings"
    return [
        kpi_tile(ids.KPI_POTENTIAL_PCT, "Reduction potential", fmt_pct(ov.potential_fraction),
                 f"of {fmt_energy(ov.energy_kwh)} used, {period_label.lower()}", tone="accent"),
        kpi_tile(ids.KPI_POTENTIAL_KWH, "Avoidable energy", fmt_energy(ov.potential_kwh), sub, tone="accent"),
        kpi_tile(ids.KPI_POTENTIAL_MONEY, "Avoidable cost",
                 fmt_money(ov.potential_cost, ov.currency) if ov.currency else "—",
                 fmt_co2(ov.potential_co2) + " avoidable" if ov.potential_co2 is not None else "no tariff known",
                 tone="accent"),
    ]


def no_data() -> html.Div:
    return empty_state("No energy data for this site and period",
                       "Collect with 'wattline collect', import with 'wattline import csv' or try 'wattline demo'.")


def machine_figure(hours: pd.DataFrame, findings: list, tz: str, baseline: pd.DataFrame | None = None) -> go.Figure:
    """Hourly energy [kWh] of one machine against its baseline, with its findings shaded (waste orange, meter faults
    grey). ``baseline``: the stored hours (``time``, ``expected_kwh``) of :mod:`dashboard.machine_data`."""
    if hours.empty:
        return message("No energy data for this machine in this period", 360)
    t = hours["time"].dt.tz_convert(tz).dt.tz_localize(None)
    fig = go.Figure(go.Scatter(x=t, y=hours["kwh"], mode="lines", line=dict(color=PALETTE[0], width=1.5),
                               name="Actual", hovertemplate="%{x}: %{y:,.1f} kWh actual<extra></extra>"))
    if baseline is not None and len(baseline) and baseline["expected_kwh"].notna().any():
        fig.add_scatter(x=baseline["time"].dt.tz_convert(tz).dt.tz_localize(None), y=baseline["expected_kwh"],
                        mode="lines", name="Baseline (expected)", connectgaps=False,
                        line=dict(color="#1f2933", width=1.2, dash="dot"),
                        hovertemplate="%{x}: %{y:,.1f} kWh expected<extra></extra>")
    labelled = len(findings) <= MAX_LABELLED  # beyond a few, labels overlap: the legend names the shading instead
    zone = _zone(tz)
    shapes, labels = [], []
    for ev in findings:  # all shapes set at once: add_vrect per finding re-validates the layout (seconds for 50)
        waste = not ev.kind.startswith("meter_")
        x0, x1 = ev.start.astimezone(zone).replace(tzinfo=None), ev.end.astimezone(zone).replace(tzinfo=None)
        shapes.append(dict(type="rect", xref="x", yref="y domain", x0=x0, x1=x1, y0=0, y1=1, fillcolor=SHADES[waste],
                           opacity=0.18, line_width=0, layer="below"))
        if labelled:
            labels.append(dict(x=x0, xref="x", y=1, yref="y domain", text=KIND_LABELS.get(ev.kind, ev.kind),
                               showarrow=False, xanchor="left", yanchor="top", font=dict(size=10)))
    fig.update_layout(shapes=shapes, annotations=labels)
    for waste in sorted({not ev.kind.startswith("meter_") for ev in findings}, reverse=True):
        fig.add_scatter(x=[None], y=[None], mode="markers", name="Waste finding" if waste else "Meter fault",
                        marker=dict(symbol="square", size=12, color=SHADES[waste], opacity=0.4), hoverinfo="skip")
    return _layout(fig, 360, yaxis=dict(title="Energy per hour [kWh]", rangemode="tozero"),
                   xaxis=dict(title="Plant time"), showlegend=len(fig.data) > 1,
                   legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))


#: Shading of findings on the machine chart: waste (True) orange, meter faults (False) grey.
SHADES = {True: "#E69F00", False: "#7b8794"}
#: Most findings labelled on the chart.
MAX_LABELLED = 8


def unit_figure(daily: pd.DataFrame, period_value: float | None = None) -> go.Figure:
    """Energy per good unit per local day [kWh/unit] (``daily`` of :func:`dashboard.machine_data.daily_kwh_per_unit`),
    with the period's value as a line."""
    if daily.empty:
        return message("No good units counted for this machine in this period (or no analysis run yet)", 220)
    fig = go.Figure(go.Bar(x=daily["day"], y=daily["kwh_per_unit"], marker_color=PALETTE[0], marker_line_width=0,
                           customdata=daily[["kwh", "good"]].to_numpy(), name="Per day",
                           hovertemplate="%{x|%a %d %b}: %{y:,.3f} kWh/unit (%{customdata[0]:,.0f} kWh, "
                                         "%{customdata[1]:,.0f} units)<extra></extra>"))
    if period_value is not None:
        fig.add_hline(y=period_value, line_dash="dot", line_color="#E69F00",
                      annotation_text=f"period: {period_value:,.3f} kWh/unit",
                      annotation_position="top left", annotation_font_size=11)
    return _layout(fig, 220, yaxis=dict(title="kWh per good unit", rangemode="tozero"), showlegend=False)


def _zone(tz: str):
    import zoneinfo

    return zoneinfo.ZoneInfo(tz)


STATE_COLOURS = {"running": "#1a7f37", "idle": "#E69F00", "off": "#9aa5b1", "fault": "#c53030"}


def state_figure(states: pd.DataFrame, tz: str) -> go.Figure:
    """Hours of each state per hour as stacked bars (running, idle, off, fault)."""
    if states.empty:
        return message("No machine states stored for this machine", 220)
    fig = go.Figure()
    for state in ("running", "idle", "off", "fault"):
        part = states[states["state"] == state]
        if part.empty:
            continue
        fig.add_bar(x=part["time"].dt.tz_convert(tz).dt.tz_localize(None) + pd.Timedelta(minutes=30),
                    y=60 * part["share"], name=state, marker_color=STATE_COLOURS[state], marker_line_width=0,
                    hovertemplate=f"{state}: %{{y:.0f}} min<extra></extra>")
    return _layout(fig, 220, barmode="stack", bargap=0, yaxis=dict(title="Minutes per hour", range=[0, 60]),
                   legend=dict(orientation="h", y=1.15, x=0))

"""What the pages' callbacks return, as pure functions of the data in :mod:`dashboard.data`.

Kept out of the page modules because those can only be imported by Dash while it builds an app
(``dash.register_page``); these functions are unit-tested on their own.
"""

from __future__ import annotations

from typing import Any

import dash
import pandas as pd
from dash import html

from dashboard import ids
from dashboard.components import code, empty_state, kpi_tile, state_chips
from dashboard.data import LiveView, SeriesSelection, format_age
from dashboard.figures import message_figure, power_figure
from dashboard.settings import DashboardSettings

HIDDEN = {"display": "none"}
SHOWN: dict = {}


def render_live(view: LiveView, settings: DashboardSettings, now_ns: int) -> tuple:
    """Turn a :class:`LiveView` into the callback's outputs.

    Returns
    -------
    tuple
        (KPI tiles, empty-state children, empty-state style, graphs style, line figure, machine figure, status text).
    """
    tz = settings.tz
    power, energy, states = view.power, view.energy, view.states
    if power.total_kw is None:
        detail = (f"{_machines(power.bad)} report no usable value (bad status)" if power.bad
                  else f"no value in the last {format_age(settings.stale_after_s)}")
        power_tile = kpi_tile(ids.KPI_PLANT_POWER, "Plant power now", "—", detail, "muted")
    else:
        left_out = [f"{n} {why} left out" for n, why in ((power.stale, "stale"), (power.bad, "bad")) if n]
        power_tile = kpi_tile(ids.KPI_PLANT_POWER, "Plant power now", f"{power.total_kw:,.1f} kW",
                              ", ".join([_machines(power.machines), *left_out]))
    if energy.kwh is None:
        energy_tile = kpi_tile(ids.KPI_ENERGY_TODAY, "Energy today", "—", "no values since midnight", "muted")
    else:
        sources = []
        if energy.from_register:
            sources.append(f"{_machines(energy.from_register)} from energy registers")
        if energy.from_power:
            sources.append(f"{energy.from_power} integrated from power")
        energy_tile = kpi_tile(ids.KPI_ENERGY_TODAY, "Energy today", f"{energy.kwh:,.1f} kWh", ", ".join(sources))
    states_tile = html.Div(
        [
            html.Div("Machines", className="kpi-title"),
            html.Div(state_chips(states.counts) if states.total else "—", id=ids.KPI_MACHINE_STATES,
                     className="kpi-value kpi-chips" if states.total else "kpi-value"),
            html.Div(f"{states.total} with a state signal" if states.total else "no machine state collected",
                     className="kpi-detail"),
        ],
        className="kpi" if states.total else "kpi muted",
    )
    kpis = [power_tile, energy_tile, states_tile]

    if not view.has_power_series:
        empty = empty_state(
            ["No data yet — start a collector or ", code("wattline demo")],
            html.Span(["Run ", code("wattline demo"), " for a simulated plant, or start a collector that writes to ",
                       code(settings.store_url or "this store"), "."]),
            "This page updates by itself as soon as the first power values arrive.",
        )
        no_fig = dash.no_update
        return kpis, empty, SHOWN, HIDDEN, no_fig, no_fig, _status(view, now_ns, settings)

    revision = f"{view.time_range.key}"
    if view.machines.empty:
        if view.power.bad:
            text = (f"No usable power values in the last {view.time_range.label}: the newest value of "
                    f"{_machines(view.power.bad)} is marked bad by the source.")
        else:
            age = format_age((now_ns - view.last_power_ns) / 1e9) if view.last_power_ns else "?"
            text = f"No power values in the last {view.time_range.label}; the newest is {age} old."
        line_fig = machine_fig = message_figure(text)
    else:
        common: dict[str, Any] = dict(start_ns=view.start_ns, stop_ns=view.stop_ns, tz=tz, uirevision=revision)
        line_fig = power_figure(view.lines, show_reporting=True, **common)
        machine_fig = power_figure(view.machines, group_legend_by_line=True, height=420, **common)
    return kpis, [], HIDDEN, SHOWN, line_fig, machine_fig, _status(view, now_ns, settings)


def _machines(n: int) -> str:
    return f"{n} machine{'s' * (n != 1)}"


def _status(view: LiveView, now_ns: int, settings: DashboardSettings) -> str:
    window = format_age(view.time_range.window_s).replace(" ", "\u00a0")
    parts = [f"{window} mean per point"]
    if view.last_power_ns is not None:
        parts.append(f"newest value {format_age((now_ns - view.last_power_ns) / 1e9)} old")
    parts.append(f"refreshed {pd.Timestamp(now_ns, unit='ns', tz='UTC').tz_convert(settings.tz):%H:%M:%S}")
    return " · ".join(parts)


#: The series grid's columns: one row per stored series, the count with thousands separators.
SERIES_GRID_COLUMNS = [
    {"field": "measurement", "headerName": "Measurement", "width": 150},
    {"field": "tags", "headerName": "Tags", "flex": 2, "minWidth": 260},
    {"field": "field", "headerName": "Field", "width": 160},
    {"field": "unit", "headerName": "Unit", "width": 80},
    {"field": "count", "headerName": "Points", "width": 110, "type": "numericColumn",
     "valueFormatter": {"function": "d3.format(',')(params.value)"}},
    {"field": "first", "headerName": "First value", "width": 170},
    {"field": "last", "headerName": "Last value", "width": 170},
    {"field": "age", "headerName": "Age of last", "width": 110},
    {"field": "status", "headerName": "Status", "width": 95, "cellClass": "col-status"},
]
#: Identity of a series row in the grid (a refresh then updates only the rows that changed).
SERIES_ROW_ID = "params.data.measurement + '|' + params.data.tags + '|' + params.data.field"

#: Most rows the series grid receives per refresh: a plant of 200 machines stores tens of thousands of series
#: (materials, analytics outputs), and sending all of them every refresh is megabytes. Stale rows come first, then
#: the rest in order; the filter and the CSV export reach every series.
MAX_SERIES_ROWS = 300


def render_series(selection: SeriesSelection, settings: DashboardSettings) -> tuple:
    """Callback outputs for the series page: (grid rows, summary, empty-state children, empty-state style).

    ``selection`` (:func:`dashboard.data.select_series`) holds at most :data:`MAX_SERIES_ROWS` rows, the stale ones
    first; the summary says when rows are left out.
    """
    if not selection.total:
        empty = empty_state(
            "No series stored yet",
            html.Span(["Start a collector or ", code("wattline demo"), "; series appear here with their first value."]),
        )
        return [], "", empty, SHOWN
    summary = f"{selection.total} series"
    summary += (f", {selection.stale} stale (no value for more than {format_age(settings.stale_after_s)})"
                if selection.stale else ", all updated recently")
    if selection.matched != selection.total:
        summary += f"; {selection.matched} match the filter"
    if selection.matched > len(selection.rows):
        summary += f"; showing {len(selection.rows)} (stale first): filter to narrow, or download the CSV for all"
    return selection.rows, summary, [], HIDDEN

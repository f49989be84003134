"""Live plant (/): current power per line and machine, KPI tiles, refreshed every few seconds.

Audience: the plant manager and the shift lead. The callback is a thin wrapper over
:func:`dashboard.data.live_view` (numbers) and :func:`render_live` (components and figures).
"""

from __future__ import annotations

import time

import dash
from dash import Input, Output, dcc, html

from core.errors import StoreError
from dashboard import ids
from dashboard.components import card, code, empty_state, graph, kpi_tile, page_header, state_chips
from dashboard.data import TIME_RANGES, LiveView, format_age, get_time_range, live_view
from dashboard.errors import DashboardError
from dashboard.figures import message_figure, power_figure
from dashboard.settings import DashboardSettings, current_settings

dash.register_page(__name__, path="/", name="Live plant", title="Wattline · Live plant", order=0)

HIDDEN = {"display": "none"}
SHOWN: dict = {}


def layout(range: str | None = None, **_kwargs) -> html.Div:  # noqa: A002 - the URL query parameter is ?range=
    """Page skeleton; data arrive through the interval callback (nothing is read here)."""
    settings = current_settings()
    try:
        chosen = get_time_range(range).key
    except DashboardError:
        chosen = get_time_range(None).key
    selector = dcc.RadioItems(
        id=ids.LIVE_RANGE,
        options=[{"label": r.label, "value": r.key} for r in TIME_RANGES],
        value=chosen,
        inline=True,
        className="segmented",
        inputClassName="segmented-input",
        labelClassName="segmented-label",
    )
    return html.Div(
        [
            page_header("Live plant", "Electrical power per line and machine, updated as values arrive.", selector),
            html.Div(id=ids.LIVE_STATUS, className="status-line"),
            html.Div(
                [
                    kpi_tile(ids.KPI_PLANT_POWER, "Plant power now"),
                    kpi_tile(ids.KPI_ENERGY_TODAY, "Energy today"),
                    kpi_tile(ids.KPI_MACHINE_STATES, "Machines"),
                ],
                id=ids.LIVE_KPIS,
                className="kpi-row",
            ),
            html.Div(id=ids.LIVE_EMPTY, style=HIDDEN),
            html.Div(
                [
                    card("Power per line [kW]", graph(ids.LIVE_LINE_GRAPH)),
                    card("Power per machine [kW]", graph(ids.LIVE_MACHINE_GRAPH)),
                ],
                id=ids.LIVE_GRAPHS,
            ),
            dcc.Interval(id=ids.LIVE_INTERVAL, interval=int(settings.refresh_s * 1000), n_intervals=0),
        ],
        className="page",
    )


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
        power_tile = kpi_tile(ids.KPI_PLANT_POWER, "Plant power now", "—",
                              f"no value in the last {format_age(settings.stale_after_s)}", "muted")
    else:
        detail = f"{power.machines} machine{'s' * (power.machines != 1)}"
        detail += f", {power.stale} stale left out" if power.stale else ""
        power_tile = kpi_tile(ids.KPI_PLANT_POWER, "Plant power now", f"{power.total_kw:,.1f} kW", detail)
    if energy.kwh is None:
        energy_tile = kpi_tile(ids.KPI_ENERGY_TODAY, "Energy today", "—", "no values since midnight", "muted")
    else:
        sources = []
        if energy.from_register:
            sources.append(f"{energy.from_register} from energy registers")
        if energy.from_power:
            sources.append(f"{energy.from_power} integrated from power")
        energy_tile = kpi_tile(ids.KPI_ENERGY_TODAY, "Energy today", f"{energy.kwh:,.1f} kWh",
                               "machines: " + ", ".join(sources))
    states_tile = html.Div(
        [
            html.Div("Machines", className="kpi-title"),
            html.Div(state_chips(states.counts) if states.total else "—", id=ids.KPI_MACHINE_STATES,
                     className="kpi-value kpi-chips"),
            html.Div(f"{states.total} with a state signal" if states.total else "no machine state collected",
                     className="kpi-detail"),
        ],
        className="kpi",
    )
    kpis = [power_tile, energy_tile, states_tile]

    if not view.has_power_series:
        empty = empty_state(
            "No data yet — start a collector or wattline demo",
            html.Span(["Run ", code("wattline demo"), " for a simulated plant, or start a collector that writes to ",
                       code(settings.store_url or "this store"), "."]),
            "This page updates by itself as soon as the first power values arrive.",
        )
        no_fig = dash.no_update
        return kpis, empty, SHOWN, HIDDEN, no_fig, no_fig, _status(view, now_ns, settings)

    revision = f"{view.time_range.key}"
    if view.machines.empty:
        age = format_age((now_ns - view.last_power_ns) / 1e9) if view.last_power_ns else "?"
        text = f"No power values in the last {view.time_range.label}; the newest is {age} old."
        line_fig = machine_fig = message_figure(text)
    else:
        common = dict(start_ns=view.start_ns, stop_ns=view.stop_ns, tz=tz, uirevision=revision)
        line_fig = power_figure(view.lines, show_reporting=True, **common)
        machine_fig = power_figure(view.machines, group_legend_by_line=True, height=420, **common)
    return kpis, [], HIDDEN, SHOWN, line_fig, machine_fig, _status(view, now_ns, settings)


def _status(view: LiveView, now_ns: int, settings: DashboardSettings) -> str:
    window = format_age(view.time_range.window_s).replace(" ", "\u00a0")
    parts = [f"{window} mean per point"]
    if view.last_power_ns is not None:
        parts.append(f"newest value {format_age((now_ns - view.last_power_ns) / 1e9)} old")
    parts.append(f"refreshed {time.strftime('%H:%M:%S', time.localtime(now_ns / 1e9))}")
    return " · ".join(parts)


def register_callbacks(app: dash.Dash) -> None:
    """Attach this page's callbacks to ``app`` (called by :func:`dashboard.app.create_app`)."""
    from dashboard.app import store_of

    @app.callback(
        Output(ids.LIVE_KPIS, "children"),
        Output(ids.LIVE_EMPTY, "children"),
        Output(ids.LIVE_EMPTY, "style"),
        Output(ids.LIVE_GRAPHS, "style"),
        Output(ids.LIVE_LINE_GRAPH, "figure"),
        Output(ids.LIVE_MACHINE_GRAPH, "figure"),
        Output(ids.LIVE_STATUS, "children"),
        Input(ids.LIVE_INTERVAL, "n_intervals"),
        Input(ids.LIVE_RANGE, "value"),
    )
    def refresh(_n, range_key):
        settings = current_settings()
        now_ns = time.time_ns()
        try:
            view = live_view(store_of(app), range_key, now_ns, settings.tz, settings.stale_after_s)
        except StoreError as exc:
            # Keep what is on screen; say why it is not moving.
            return (dash.no_update,) * 6 + (html.Span(f"Cannot read the store: {exc}", className="error"),)
        return render_live(view, settings, now_ns)

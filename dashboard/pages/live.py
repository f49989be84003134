"""Live plant (/): current power per line and machine, KPI tiles, refreshed every few seconds.

Audience: the plant manager and the shift lead. The callback is a thin wrapper over
:func:`dashboard.live_refresh.live_outputs`: :func:`dashboard.data.live_view` (numbers) rendered by
:func:`dashboard.render.render_live` (components and figures), shared per site for one refresh interval.
"""

from __future__ import annotations

import dash
from dash import Input, Output, dcc, html

from core.errors import StoreError
from dashboard import ids
from dashboard.components import card, graph, kpi_tile, page_header
from dashboard.data import TIME_RANGES, get_time_range
from dashboard.errors import DashboardError
from dashboard.live_refresh import live_outputs
from dashboard.render import HIDDEN
from dashboard.settings import current_settings

dash.register_page(__name__, path="/", name="Live plant", title="Wattline · Live plant", order=0)


def layout(range: str | None = None, **_kwargs) -> html.Div:
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


def register_callbacks(app: dash.Dash) -> None:
    """Attach this page's callbacks to ``app`` (called by :func:`dashboard.app.create_app`)."""
    from dashboard.app import user_store

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
        Input(ids.SITE, "value"),
    )
    def refresh(_n, range_key, site):
        try:
            return live_outputs(user_store(app, site), range_key, current_settings())
        except StoreError as exc:
            # Keep what is on screen; say why it is not moving.
            return (dash.no_update,) * 6 + (html.Span(f"Cannot read the store: {exc}", className="error"),)


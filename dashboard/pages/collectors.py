"""Collectors (/collectors): every collector and server with its health, and data quality per machine.

Audience: engineers keeping the data flowing. Collector health is read from the ``wattline_collector`` series the
collectors write themselves; data quality from the store's hourly counts (:mod:`dashboard.collectors`).
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

import dash
from dash import Input, Output, dcc, html

from core.errors import StoreError
from dashboard import ids
from dashboard.access import PAGE_ROLES, allow, current_user, may_open
from dashboard.collectors import (
    COLLECTOR_COLUMNS,
    collector_rows,
    collector_summary,
    health_store,
    shared_quality_rows,
    table,
)
from dashboard.components import card, code, data_grid, downloads, empty_state, forbidden, page_header
from dashboard.render import HIDDEN, SHOWN

dash.register_page(__name__, path="/collectors", name="Collectors", title="Wattline · Collectors", order=8)

_PCT = "params.value == null ? '—' : d3.format('.1%')(params.value)"
#: The quality grid: one row per machine (hundreds on a large plant), sorted by completeness, lowest first.
QUALITY_GRID_COLUMNS = [
    {"field": "machine", "headerName": "Machine", "flex": 2, "minWidth": 200, "filter": "agTextColumnFilter"},
    {"field": "completeness_share", "headerName": "Completeness", "flex": 1, "type": "numericColumn", "sort": "asc",
     "filter": "agNumberColumnFilter", "valueFormatter": {"function": _PCT}},
    {"field": "gaps", "headerName": "Gaps", "flex": 1, "type": "numericColumn", "filter": "agNumberColumnFilter"},
    {"field": "longest_gap", "headerName": "Longest gap", "flex": 1},
    {"field": "bad_share", "headerName": "Bad values (last hour)", "flex": 1},
    {"field": "last_value", "headerName": "Last value", "flex": 1},
]


def layout(**_kwargs) -> html.Div:
    """Page skeleton; the tables are filled by the callback (every 10 s and when site or period change)."""
    if not may_open(current_user(), __name__):
        return forbidden()
    export = downloads(ids.COL_EXPORT, ids.COL_EXPORT_PARQUET, "/export/collectors.csv")
    quality_export = downloads(ids.COL_QUALITY_EXPORT, ids.COL_QUALITY_EXPORT_PARQUET, "/export/quality.csv")
    return html.Div(
        [
            page_header("Collectors and data quality",
                        "Is every value arriving? Connection, rate and backlog per collector; gaps per machine."),
            html.Div(id=ids.COL_SUMMARY, className="status-line"),
            card("Collectors", html.Div(id=ids.COL_TABLE, className="table-scroll"), extra=export),
            card("Data quality per machine",
                 html.Div([html.Div(id=ids.COL_QUALITY_EMPTY, style=HIDDEN),
                           data_grid(ids.COL_QUALITY_GRID, QUALITY_GRID_COLUMNS, "params.data.machine",
                                     "No energy data in this period", height="50vh")], id=ids.COL_QUALITY),
                 extra=quality_export),
            dcc.Interval(id=ids.COL_INTERVAL, interval=10_000, n_intervals=0),
        ],
        className="page",
    )


def collectors_view(collectors: list[dict], quality: list[dict], period_label: str):
    """(collector table, quality grid rows, quality empty state, its style, summary) of the page."""
    col_table: html.Table | html.Div
    if collectors:
        col_table = table(collectors, COLLECTOR_COLUMNS, row_class=lambda r: f"state-{r['state']}",
                          numeric=("values_per_s", "backlog", "bad_nodes", "reconnects"))
    else:
        col_table = empty_state("No collector has reported yet",
                                html.Span(["Collectors write their health every 10 s; start one with ",
                                           code("wattline collect --config collector.yaml"), "."]))
    q_empty: list | html.Div = [] if quality else empty_state("No energy data in this period",
                                                              "Choose a longer period or another site.")
    summary = collector_summary(collectors)
    if quality:
        worst = min(quality, key=lambda r: r["completeness_share"])
        stale = sum(r["status"] == "stale" for r in quality)
        summary = (summary + " · " if summary else "") + (
            f"{len(quality)} machines, {period_label.lower()}: lowest completeness {worst['completeness']} "
            f"({worst['machine']})" + (f"; {stale} without a value for over an hour" if stale else ""))
    return col_table, quality, q_empty, HIDDEN if quality else SHOWN, summary


def register_callbacks(app: dash.Dash) -> None:
    """Attach this page's callbacks to ``app``."""
    from dashboard.app import store_of
    from dashboard.context import view_context
    from dashboard.settings import current_settings

    @app.callback(
        Output(ids.COL_TABLE, "children"),
        Output(ids.COL_QUALITY_GRID, "rowData"),
        Output(ids.COL_QUALITY_EMPTY, "children"),
        Output(ids.COL_QUALITY_EMPTY, "style"),
        Output(ids.COL_SUMMARY, "children"),
        Output(ids.COL_EXPORT, "href"),
        Output(ids.COL_QUALITY_EXPORT, "href"),
        Input(ids.COL_INTERVAL, "n_intervals"),
        Input(ids.SITE, "value"),
        Input(ids.PERIOD, "value"),
    )
    @allow(*PAGE_ROLES[__name__])
    def refresh(_n, site, period):
        now = time.time_ns()
        ctx = view_context(store_of(app), site, period, now)
        tz = current_settings().tz
        try:
            collectors = collector_rows(health_store(store_of(app), ctx, site), now, tz)
            quality = shared_quality_rows(ctx.store, ctx.start_ns, ctx.stop_ns, now, tz)
        except StoreError as exc:
            return (dash.no_update,) * 4 + (html.Span(f"Cannot read the store: {exc}", className="error"),
                                            dash.no_update, dash.no_update)
        query = urlencode({"site": site or "all", "period": ctx.period.key})
        return (*collectors_view(collectors, quality, ctx.period.label), f"/export/collectors.csv?{query}",
                f"/export/quality.csv?{query}")

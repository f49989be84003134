"""Data (/series): every stored series with its extent and the age of its newest value.

Audience: engineers checking that a collector delivers. Stale series (no value for longer than the stale limit) are
highlighted. The callback wraps :func:`dashboard.data.series_selection` and :func:`dashboard.render.render_series`;
the rows go to an ag-grid (only ``rowData`` is sent; the browser draws the visible rows).
"""

from __future__ import annotations

import time

import dash
from dash import Input, Output, dcc, html

from core.errors import StoreError
from dashboard import ids
from dashboard.access import PAGE_ROLES, allow, current_user, may_open
from dashboard.components import data_grid, forbidden, page_header
from dashboard.data import SERIES_LIST_TTL_S, series_selection
from dashboard.render import HIDDEN, MAX_SERIES_ROWS, SERIES_GRID_COLUMNS, SERIES_ROW_ID, render_series
from dashboard.settings import current_settings

dash.register_page(__name__, path="/series", name="Data", title="Wattline · Stored series", order=10)


def layout(**_kwargs) -> html.Div:
    """Page skeleton; the table is filled by the interval callback."""
    if not may_open(current_user(), __name__):
        return forbidden()
    settings = current_settings()
    search = dcc.Input(id=ids.SERIES_FILTER, type="search", placeholder="Filter: machine, line, field, stale ...",
                       debounce=True, className="search")
    # The series list is re-read every SERIES_LIST_TTL_S; a table of hundreds of rows re-rendered more often only
    # keeps the browser busy (ages are shown to the minute past 90 s). The filter and site still update it at once.
    interval_ms = int(max(settings.refresh_s, SERIES_LIST_TTL_S) * 1000)
    return html.Div(
        [
            page_header("Stored series", "What the store holds: one row per measurement, tag set and field.", search,
                        html.A("Download CSV", href="/export/series.csv", className="button"),
                        html.A("Parquet", href="/export/series.parquet", className="button")),
            html.Div(id=ids.SERIES_SUMMARY, className="status-line"),
            html.Div(id=ids.SERIES_EMPTY, style=HIDDEN),
            html.Div(data_grid(ids.SERIES_TABLE, SERIES_GRID_COLUMNS, SERIES_ROW_ID, "No series match", "70vh"),
                     className="card"),
            dcc.Interval(id=ids.SERIES_INTERVAL, interval=interval_ms, n_intervals=0),
        ],
        className="page",
    )


def register_callbacks(app: dash.Dash) -> None:
    """Attach this page's callbacks to ``app``."""
    from dashboard.app import user_store

    @app.callback(
        Output(ids.SERIES_TABLE, "rowData"),
        Output(ids.SERIES_SUMMARY, "children"),
        Output(ids.SERIES_EMPTY, "children"),
        Output(ids.SERIES_EMPTY, "style"),
        Input(ids.SERIES_INTERVAL, "n_intervals"),
        Input(ids.SERIES_FILTER, "value"),
        Input(ids.SITE, "value"),
    )
    @allow(*PAGE_ROLES[__name__])
    def refresh(_n, filter_text, site):
        settings = current_settings()
        try:
            selection = series_selection(user_store(app, site), time.time_ns(), settings.tz, settings.stale_after_s,
                                         filter_text, MAX_SERIES_ROWS)
        except StoreError as exc:
            return dash.no_update, html.Span(f"Cannot read the store: {exc}", className="error"), [], HIDDEN
        return render_series(selection, settings)

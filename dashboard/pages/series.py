"""Data (/series): every stored series with its extent and the age of its newest value.

Audience: engineers checking that a collector delivers. Stale series (no value for longer than the stale limit) are
highlighted. The callback wraps :func:`dashboard.data.series_rows`.
"""

from __future__ import annotations

import time

import dash
from dash import Input, Output, dash_table, dcc, html

from core.errors import StoreError
from dashboard import ids
from dashboard.components import page_header
from dashboard.data import series_rows
from dashboard.render import HIDDEN, render_series
from dashboard.settings import current_settings

dash.register_page(__name__, path="/series", name="Data", title="Wattline · Stored series", order=10)

#: Columns shown (id, header); ``age_s`` is used for sorting by age and hidden.
COLUMNS = (
    ("measurement", "Measurement"),
    ("tags", "Tags"),
    ("field", "Field"),
    ("unit", "Unit"),
    ("count", "Points"),
    ("first", "First value"),
    ("last", "Last value"),
    ("age", "Age of last"),
    ("status", "Status"),
)


def layout(**_kwargs) -> html.Div:
    """Page skeleton; the table is filled by the interval callback."""
    settings = current_settings()
    table = dash_table.DataTable(
        id=ids.SERIES_TABLE,
        columns=[{"id": cid, "name": name, "type": "numeric" if cid == "count" else "text"} for cid, name in COLUMNS],
        data=[],
        sort_action="native",
        filter_action="native",
        page_action="native",
        page_size=50,
        style_as_list_view=True,
        style_table={"overflowX": "auto"},
        style_header={"fontWeight": "600", "backgroundColor": "#f5f7fa", "borderBottom": "1px solid #d5dbe1"},
        style_cell={"fontFamily": "inherit", "fontSize": "13px", "padding": "6px 10px", "textAlign": "left",
                    "whiteSpace": "normal", "height": "auto"},
        style_cell_conditional=[{"if": {"column_id": "count"}, "textAlign": "right"}],
        style_data_conditional=[
            {"if": {"filter_query": '{status} = "stale"'}, "backgroundColor": "#fff4e5", "color": "#8a4b00"},
            {"if": {"filter_query": '{status} = "stale"', "column_id": "status"}, "fontWeight": "700"},
        ],
    )
    # The series list changes slowly; refresh it less often than the live page.
    interval_ms = int(max(settings.refresh_s, 5.0) * 1000)
    return html.Div(
        [
            page_header("Stored series", "What the store holds: one row per measurement, tag set and field."),
            html.Div(id=ids.SERIES_SUMMARY, className="status-line"),
            html.Div(id=ids.SERIES_EMPTY, style=HIDDEN),
            html.Div(table, className="card"),
            dcc.Interval(id=ids.SERIES_INTERVAL, interval=interval_ms, n_intervals=0),
        ],
        className="page",
    )


def register_callbacks(app: dash.Dash) -> None:
    """Attach this page's callbacks to ``app``."""
    from dashboard.app import store_of

    @app.callback(
        Output(ids.SERIES_TABLE, "data"),
        Output(ids.SERIES_SUMMARY, "children"),
        Output(ids.SERIES_EMPTY, "children"),
        Output(ids.SERIES_EMPTY, "style"),
        Input(ids.SERIES_INTERVAL, "n_intervals"),
    )
    def refresh(_n):
        settings = current_settings()
        try:
            rows = series_rows(store_of(app), time.time_ns(), settings.tz, settings.stale_after_s)
        except StoreError as exc:
            return dash.no_update, html.Span(f"Cannot read the store: {exc}", className="error"), [], HIDDEN
        return render_series(rows, settings)

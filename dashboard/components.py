"""Small building blocks shared by the pages: KPI tiles, the empty state, page headers."""

from __future__ import annotations

import dash_ag_grid as dag
from dash import dcc, html


def page_header(title: str, subtitle: str, *controls) -> html.Div:
    """Page title with a one-line explanation and optional controls on the right."""
    return html.Div(
        [html.Div([html.H1(title), html.P(subtitle, className="subtitle")]), html.Div(list(controls), className="controls")],
        className="page-header",
    )


def kpi_tile(value_id: str, title: str, value: str = "—", detail: str = "", tone: str = "") -> html.Div:
    """A KPI tile: title, big value, one line of detail. ``value_id`` names the value element (see ids.py)."""
    return html.Div(
        [
            html.Div(title, className="kpi-title"),
            html.Div(value, id=value_id, className="kpi-value"),
            html.Div(detail, className="kpi-detail"),
        ],
        className=f"kpi {tone}".strip(),
    )


def state_chips(counts: dict[str, int]) -> list:
    """Machine-state counts as coloured chips, in a fixed order; zero counts are shown dimmed."""
    chips = []
    for name in ("running", "idle", "off", "fault", "unknown"):
        n = int(counts.get(name, 0))
        if name in ("fault", "unknown") and n == 0:
            continue  # rare states only appear when they happen
        chips.append(html.Span([html.B(str(n)), f" {name}"], className=f"chip chip-{name}" + (" chip-zero" if n == 0 else "")))
    return chips


def empty_state(title, *lines) -> html.Div:
    """A friendly "nothing to show yet" panel that tells the person what to do."""
    return html.Div([html.Div("⚡", className="empty-icon"), html.H2(title), *[html.P(line) for line in lines]],
                    className="empty-state")


def code(text: str) -> html.Code:
    """Inline command text."""
    return html.Code(text)


def card(title: str, body, *, extra=None) -> html.Div:
    """A white card with a title row."""
    head = [html.H3(title)] + ([extra] if extra is not None else [])
    return html.Div([html.Div(head, className="card-head"), body], className="card")


def downloads(csv_id: str, parquet_id: str, csv_href: str) -> html.Span:
    """A table's download buttons: CSV and Parquet of the same rows. The Parquet link follows the CSV link's href
    (:func:`dashboard.exports.install_parquet_twins`), so callbacks only set the CSV one."""
    return html.Span([html.A("Download CSV", id=csv_id, href=csv_href, className="button"),
                      html.A("Parquet", id=parquet_id, href=parquet_href(csv_href), className="button")],
                     className="downloads")


def parquet_href(csv_href: str) -> str:
    """``/export/x.csv?q`` -> ``/export/x.parquet?q``."""
    path, sep, query = csv_href.partition("?")
    return path.removesuffix(".csv") + ".parquet" + sep + query


def graph(graph_id: str) -> dcc.Graph:
    """A Plotly graph without the mode bar clutter a plant screen does not need."""
    return dcc.Graph(
        id=graph_id,
        config={"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d", "autoScale2d"]},
    )


def forbidden() -> html.Div:
    """What a page shows to a role that may not open it (its callbacks refuse too)."""
    return html.Div(empty_state("Not available for your role",
                                "Ask an administrator if you need this page."), className="page")


def data_grid(grid_id: str, columns: list[dict], row_id: str, no_rows: str, height: str = "60vh") -> dag.AgGrid:
    """A sortable, filterable grid whose callback sends only ``rowData``: the browser draws the visible rows
    (virtualised), and rows keep their identity (``row_id``, a JavaScript expression of ``params.data``, e.g.
    ``"params.data.machine"``) across refreshes, so a refresh updates only
    what changed. Rows with ``status == "stale"`` carry the ``stale`` class. For tables of hundreds of rows and more,
    which as HTML tables cost thousands of components per refresh."""
    return dag.AgGrid(id=grid_id, columnDefs=columns, rowData=[], getRowId=row_id,
                      defaultColDef={"sortable": True, "resizable": True, "filter": True},
                      rowClassRules={"stale": "params.data.status == 'stale'"},
                      dashGridOptions={"animateRows": False, "overlayNoRowsTemplate": no_rows,
                                       "suppressColumnVirtualisation": True},
                      style={"height": height}, className="ag-theme-alpine")

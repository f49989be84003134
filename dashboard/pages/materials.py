"""Materials (/materials): energy intensity per material id (kWh/kg, kWh per good unit) over the chosen period.

Search over thousands of ids in the grid (dash-ag-grid's quick filter), the most energy-intensive materials as bars,
and the long tail (how few materials carry most of the energy). Numbers from :mod:`dashboard.materials`.
"""

from __future__ import annotations

import dash
import dash_ag_grid as dag
from dash import Input, Output, dcc, html

from dashboard import ids
from dashboard.components import card, downloads, graph, page_header
from dashboard.materials import materials_for, tail_figure, top_figure

dash.register_page(__name__, path="/materials", name="Materials", title="Wattline · Materials", order=3)

_NUM = "params.value == null ? '—' : d3.format(',.{p}f')(params.value)"
COLUMNS = [
    {"field": "material", "headerName": "Material", "width": 180, "pinned": "left", "filter": "agTextColumnFilter"},
    {"field": "kwh_per_kg", "headerName": "kWh per kg", "width": 140, "type": "numericColumn", "sort": "desc",
     "filter": "agNumberColumnFilter", "valueFormatter": {"function": _NUM.format(p=3)}},
    {"field": "kg", "headerName": "Consumed kg", "width": 150, "type": "numericColumn",
     "filter": "agNumberColumnFilter", "valueFormatter": {"function": _NUM.format(p=0)}},
    {"field": "kwh_per_unit", "headerName": "kWh per unit", "width": 140, "type": "numericColumn",
     "filter": "agNumberColumnFilter", "valueFormatter": {"function": _NUM.format(p=4)},
     "headerTooltip": "Energy per good part made from this material (blank where the machines count no parts)"},
    {"field": "units", "headerName": "Good units", "width": 130, "type": "numericColumn",
     "filter": "agNumberColumnFilter", "valueFormatter": {"function": _NUM.format(p=0)}},
    {"field": "kwh", "headerName": "Energy kWh", "width": 140, "type": "numericColumn",
     "filter": "agNumberColumnFilter", "valueFormatter": {"function": _NUM.format(p=0)}},
    {"field": "share_of_energy", "headerName": "Share of energy", "flex": 1, "type": "numericColumn",
     "valueFormatter": {"function": "params.value == null ? '—' : d3.format('.2%')(params.value)"}},
]


def layout(**_kwargs) -> html.Div:
    """Skeleton; the callback fills it for the sites chosen in the header."""
    search = dcc.Input(id=ids.MAT_SEARCH, type="search", placeholder="Search material id ...", debounce=False,
                       className="search")
    export = downloads(ids.MAT_EXPORT, ids.MAT_EXPORT_PARQUET, "/export/materials.csv")
    return html.Div(
        [
            page_header("Materials", "Production energy per kg and per good unit of each material over the period, "
                        "from the latest analysis run.",
                        search, export),
            html.Div(id=ids.MAT_STATUS, className="status-line"),
            html.Div([card("Most energy-intensive materials [kWh/kg]", graph(ids.MAT_TOP)),
                      card("The long tail: cumulative share of energy", graph(ids.MAT_TAIL))], className="two-col"),
            dag.AgGrid(id=ids.MAT_GRID, columnDefs=COLUMNS, rowData=[],
                       defaultColDef={"sortable": True, "resizable": True},
                       dashGridOptions={"pagination": True, "paginationPageSize": 50, "animateRows": False,
                                        "overlayNoRowsTemplate": "No materials recorded for this site"},
                       style={"height": "60vh"}, className="ag-theme-alpine"),
        ],
        className="page",
    )


def status_text(m, period_label: str = "") -> str:
    """One line: how many materials, over which days, and the long tail."""
    if not m.rows:
        where = f" in {period_label.lower()}" if period_label else ""
        return (f"No material consumption analysed{where}: run 'wattline analyze' on a store with material "
                "consumption, or choose a longer period.")
    days = (f" from {m.start:%d %b %Y} to {m.stop:%d %b %Y}" if m.start is not None and m.stop is not None else "")
    head = f"{period_label}: " if period_label else ""
    small = f" ({m.unranked:,} more below 1 kg, counted but not ranked)" if m.unranked else ""
    return (f"{head}{len(m.rows):,} materials{small}{days} (analysis run {m.run}); {m.head_count:,} of them take "
            f"80 % of the materials' energy, the other {m.tail_count:,} (the long tail) {100 * (m.tail_share or 0):.1f} %")


def register_callbacks(app: dash.Dash) -> None:
    """Attach this page's callbacks to ``app``."""
    import time
    from urllib.parse import urlencode

    from dashboard.access import require_user
    from dashboard.app import store_of
    from dashboard.cache import cache_of

    @app.callback(
        Output(ids.MAT_GRID, "rowData"),
        Output(ids.MAT_STATUS, "children"),
        Output(ids.MAT_TOP, "figure"),
        Output(ids.MAT_TAIL, "figure"),
        Output(ids.MAT_EXPORT, "href"),
        Input(ids.SITE, "value"),
        Input(ids.PERIOD, "value"),
    )
    def refresh(site, period):
        m, chosen = materials_for(store_of(app), require_user(), site, period, time.time_ns(), cache_of(app))
        return (m.rows, status_text(m, chosen.label), top_figure(m), tail_figure(m),
                "/export/materials.csv?" + urlencode({"site": site or "all", "period": chosen.key}))

    @app.callback(Output(ids.MAT_GRID, "dashGridOptions"), Input(ids.MAT_SEARCH, "value"))
    def search(text):
        return {"quickFilterText": text or "", "pagination": True, "paginationPageSize": 50, "animateRows": False,
                "overlayNoRowsTemplate": "No materials recorded for this site"}

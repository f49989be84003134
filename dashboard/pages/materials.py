"""Materials (/materials): energy intensity per material id (kWh/kg) from the newest analysis run.

Search over thousands of ids in the grid (dash-ag-grid's quick filter), the most energy-intensive materials as bars,
and the long tail (how few materials carry most of the energy). Numbers from :mod:`dashboard.materials`.
"""

from __future__ import annotations

import dash
import dash_ag_grid as dag
from dash import Input, Output, dcc, html

from dashboard import ids
from dashboard.components import card, graph, page_header
from dashboard.materials import read_materials, tail_figure, top_figure

dash.register_page(__name__, path="/materials", name="Materials", title="Wattline · Materials", order=3)

_NUM = "params.value == null ? '—' : d3.format(',.{p}f')(params.value)"
COLUMNS = [
    {"field": "material", "headerName": "Material", "width": 180, "pinned": "left", "filter": "agTextColumnFilter"},
    {"field": "kwh_per_kg", "headerName": "kWh per kg", "width": 140, "type": "numericColumn", "sort": "desc",
     "filter": "agNumberColumnFilter", "valueFormatter": {"function": _NUM.format(p=3)}},
    {"field": "kg", "headerName": "Consumed kg", "width": 150, "type": "numericColumn",
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
    export = html.A("Download CSV", id=ids.MAT_EXPORT, href="/export/materials.csv", className="button")
    return html.Div(
        [
            page_header("Materials", "Production energy per kg of each material, from the latest analysis run.",
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


def status_text(m) -> str:
    """One line: how many materials, since when, and the long tail."""
    if not m.rows:
        return "No material intensities yet: run 'wattline analyze' on a store with material consumption."
    since = f" from {m.start:%d %b %Y}" if m.start is not None else ""
    return (f"{len(m.rows):,} materials{since} (analysis run {m.run}); {m.head_count:,} of them take 80 % of the "
            f"materials' energy, the other {m.tail_count:,} (the long tail) {100 * (m.tail_share or 0):.1f} %")


def register_callbacks(app: dash.Dash) -> None:
    """Attach this page's callbacks to ``app``."""
    from urllib.parse import urlencode

    from dashboard.access import require_user, scoped_store, sites_for
    from dashboard.app import store_of
    from dashboard.overview import known_sites
    from dashboard.settings import current_settings

    @app.callback(
        Output(ids.MAT_GRID, "rowData"),
        Output(ids.MAT_STATUS, "children"),
        Output(ids.MAT_TOP, "figure"),
        Output(ids.MAT_TAIL, "figure"),
        Output(ids.MAT_EXPORT, "href"),
        Input(ids.SITE, "value"),
    )
    def refresh(site):
        user = require_user()
        raw = store_of(app)
        sites = sites_for(user, site, known_sites(scoped_store(raw, user), current_settings().plant))
        m = read_materials(raw, sites)
        return (m.rows, status_text(m), top_figure(m), tail_figure(m),
                "/export/materials.csv?" + urlencode({"site": site or "all"}))

    @app.callback(Output(ids.MAT_GRID, "dashGridOptions"), Input(ids.MAT_SEARCH, "value"))
    def search(text):
        return {"quickFilterText": text or "", "pagination": True, "paginationPageSize": 50, "animateRows": False,
                "overlayNoRowsTemplate": "No materials recorded for this site"}

"""Findings (/findings): every waste, anomaly and data-quality finding of the latest analysis, sortable and filterable.

Audience: plant managers and engineers deciding what to fix first. Rows come from the analytics' stored findings
(:func:`dashboard.overview.finding_rows`); each links to its machine's page; the CSV export is the same rows
(``/export/findings.csv``, checked for role and site like every callback).
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

import dash
import dash_ag_grid as dag
from dash import Input, Output, dcc, html

from core.errors import WattlineError
from dashboard import ids
from dashboard.components import page_header
from dashboard.overview import fmt_energy, fmt_money, finding_rows

dash.register_page(__name__, path="/findings", name="Findings", title="Wattline · Findings", order=2)

CATEGORIES = (("all", "All findings"), ("Waste", "Waste"), ("Data quality", "Data quality"))
_NUM = "params.value == null ? '—' : d3.format(',.{p}f')(params.value)"

COLUMNS = [
    {"field": "machine_md", "headerName": "Machine", "cellRenderer": "markdown", "linkTarget": "_self",
     "filter": "agTextColumnFilter", "pinned": "left", "width": 140},
    {"field": "kind", "headerName": "Finding", "width": 190, "filter": True},
    {"field": "kwh", "headerName": "Avoidable kWh", "width": 165, "type": "numericColumn", "sort": "desc",
     "filter": "agNumberColumnFilter", "valueFormatter": {"function": _NUM.format(p=0)}},
    {"field": "cost", "headerName": "Cost", "width": 105, "type": "numericColumn", "filter": "agNumberColumnFilter",
     "valueFormatter": {"function": "params.value == null ? '—' : params.data.money"}},
    {"field": "explanation", "headerName": "What happened", "flex": 1, "minWidth": 420, "wrapText": True,
     "autoHeight": True, "filter": "agTextColumnFilter",
     "cellStyle": {"lineHeight": "20px", "paddingTop": "8px", "paddingBottom": "8px", "wordBreak": "normal"}},
    {"field": "co2_kg", "headerName": "CO₂ kg", "width": 100, "type": "numericColumn", "filter": "agNumberColumnFilter",
     "valueFormatter": {"function": _NUM.format(p=0)}},
    {"field": "start", "headerName": "Start (plant time)", "width": 150, "filter": "agTextColumnFilter"},
    {"field": "hours", "headerName": "Hours", "width": 90, "type": "numericColumn", "filter": "agNumberColumnFilter",
     "valueFormatter": {"function": _NUM.format(p=1)}},
    {"field": "line", "headerName": "Line", "width": 90, "filter": True},
    {"field": "site", "headerName": "Site", "width": 90, "filter": True},
]


def layout(**_kwargs) -> html.Div:
    """Grid skeleton; rows arrive through the callback for the site and period chosen in the header."""
    category = dcc.RadioItems(id=ids.FINDINGS_KIND, options=[{"label": l, "value": v} for v, l in CATEGORIES],
                              value="all", inline=True, className="segmented")
    export = html.A("Download CSV", id=ids.FINDINGS_EXPORT, href="/export/findings.csv", className="button")
    return html.Div(
        [
            page_header("Findings", "What the analytics found: avoidable energy, its cost and CO₂, and meter faults. "
                        "Click a machine to see its energy.", category, export),
            html.Div(id=ids.FINDINGS_STATUS, className="status-line"),
            dag.AgGrid(id=ids.FINDINGS_GRID, columnDefs=COLUMNS, rowData=[],
                       defaultColDef={"sortable": True, "resizable": True, "floatingFilter": True},
                       dashGridOptions={"pagination": True, "paginationPageSize": 50, "animateRows": False,
                                        "overlayNoRowsTemplate": "No findings for this site and period"},
                       style={"height": "70vh"}, className="ag-theme-alpine"),
        ],
        className="page",
    )


def grid_rows(rows: list[dict], category: str | None) -> list[dict]:
    """Rows of one category with the machine as a markdown link."""
    out = []
    for r in rows:
        if category not in (None, "", "all") and r["category"] != category:
            continue
        name = r["machine_name"]
        out.append({**r, "machine_md": f"[{name}]({r['link']})" if r["link"] else name})
    return out


def register_callbacks(app: dash.Dash) -> None:
    """Attach this page's callback."""
    from dashboard.app import store_of
    from dashboard.context import view_context
    from dashboard.settings import current_settings

    @app.callback(
        Output(ids.FINDINGS_GRID, "rowData"),
        Output(ids.FINDINGS_STATUS, "children"),
        Output(ids.FINDINGS_EXPORT, "href"),
        Input(ids.SITE, "value"),
        Input(ids.PERIOD, "value"),
        Input(ids.FINDINGS_KIND, "value"),
    )
    def refresh(site, period, category):
        try:
            ctx = view_context(store_of(app), site, period, time.time_ns())
        except WattlineError as exc:
            return dash.no_update, html.Span(f"Cannot read the store: {exc}", className="error"), dash.no_update
        rows = grid_rows(finding_rows(ctx.findings, ctx.plant, current_settings().tz), category)
        kwh = sum(r["kwh"] for r in rows if r["category"] == "Waste")
        currencies = {r["currency"] for r in rows if r["cost"] is not None}
        money = fmt_money(sum(r["cost"] or 0 for r in rows), currencies.pop()) if len(currencies) == 1 else None
        status = f"{len(rows)} findings · {fmt_energy(kwh)} avoidable" + (f" · {money}" if money else "")
        href = "/export/findings.csv?" + urlencode({"site": site or "all", "period": ctx.period.key,
                                                    "category": category or "all"})
        return rows, status + f" · {ctx.period.label}", href

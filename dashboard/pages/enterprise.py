"""Enterprise KPIs (/enterprise): per site and in total, for chief data officers and admins.

Energy, cost and CO2, the EnPI energy per good unit and its weekly trend, the remaining reduction potential, data
coverage; verified savings and work-order closure KPIs when they exist; the monthly PDF report
(``/report/monthly.pdf?month=YYYY-MM``). Numbers from :mod:`dashboard.enterprise`.
"""

from __future__ import annotations

import datetime as dt
import time
from urllib.parse import urlencode

import dash
from dash import Input, Output, dcc, html

from dashboard import ids
from dashboard.access import PAGE_ROLES, allow, current_user, may_open
from dashboard.components import card, downloads, forbidden, graph, page_header
from dashboard.overview import fmt_co2, fmt_energy, fmt_money, fmt_pct

dash.register_page(__name__, path="/enterprise", name="Enterprise", title="Wattline · Enterprise KPIs", order=5)

COLUMNS = (("site", "Site"), ("energy", "Energy"), ("cost", "Cost"), ("co2", "CO₂"), ("enpi", "kWh per good unit"),
           ("potential", "Remaining potential"), ("coverage", "Machines metered"), ("completeness", "Completeness"))


def _months(n: int = 12) -> list[dict]:
    today = dt.date.today().replace(day=1)
    out = []
    for i in range(n):
        y, m = divmod(today.year * 12 + today.month - 1 - i, 12)
        first = dt.date(y, m + 1, 1)
        out.append({"label": f"{first:%B %Y}", "value": f"{first:%Y-%m}"})
    return out


def layout(**_kwargs) -> html.Div:
    """Skeleton; the callback fills it for the site and period chosen in the header."""
    if not may_open(current_user(), __name__):
        return forbidden()
    months = _months()
    month = dcc.Dropdown(id=ids.ENT_MONTH, options=months, value=months[0]["value"], clearable=False,
                         className="selector")
    pdf = html.A("Monthly report (PDF)", id=ids.ENT_PDF, href="/report/monthly.pdf", className="button")
    export = downloads(ids.ENT_EXPORT, ids.ENT_EXPORT_PARQUET, "/export/enterprise.csv")
    return html.Div(
        [
            page_header("Enterprise KPIs", "Every site at a glance: energy, EnPI, what is still avoidable, and how "
                        "complete the data is.", month, pdf, export),
            html.Div(id=ids.ENT_STATUS, className="status-line"),
            card("Sites", html.Div(id=ids.ENT_TABLE, className="table-scroll")),
            card("Energy per good unit by week [kWh/unit]", graph(ids.ENT_TREND)),
            card("Work-order loop (all orders to date) and verified savings", html.Div(id=ids.ENT_ORDERS)),
        ],
        className="page",
    )


def _cells(row: dict) -> dict:
    unit = row.get("kwh_per_unit")
    return {"site": row["site"], "energy": fmt_energy(row["energy_kwh"]), "cost": fmt_money(row["cost"], row["currency"]),
            "co2": fmt_co2(row["co2_kg"]), "enpi": "—" if unit is None else f"{unit:,.2f} kWh",
            "potential": f"{fmt_energy(row['potential_kwh'])} ({fmt_pct(row['potential_share'])})",
            "coverage": f"{row['metered']} of {row['machines']}", "completeness": fmt_pct(row["completeness"])}


def kpi_table(kpis, total) -> html.Table:
    """Sites and, with more than one, the total row."""
    rows = [_cells(k.row()) for k in kpis] + ([_cells(total)] if len(kpis) > 1 else [])
    head = html.Thead(html.Tr([html.Th(t) for _k, t in COLUMNS]))
    body = html.Tbody([html.Tr([html.Td(r[k], className="num" if k != "site" else None) for k, _t in COLUMNS],
                               className="total" if i == len(kpis) else None) for i, r in enumerate(rows)])
    return html.Table([head, body], className="series-table")


def trend_figure(kpis):
    """Weekly kWh per good unit per site (week starts, plant time)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for k in kpis:
        if k.weekly.empty or k.weekly["kwh_per_unit"].isna().all():
            continue
        fig.add_trace(go.Scatter(x=k.weekly["week"], y=k.weekly["kwh_per_unit"], mode="lines+markers",
                                 name=k.site.name, hovertemplate="week of %{x|%d %b}: %{y:.2f} kWh/unit"))
    fig.update_layout(margin=dict(l=10, r=10, t=10, b=40), height=320, plot_bgcolor="white", paper_bgcolor="white",
                      yaxis_title="kWh per good unit", xaxis_title="Week (plant time)", legend_orientation="h",
                      yaxis_rangemode="tozero")
    return fig


def loop_panel(user, site: str | None):
    """The work-order loop of the sites chosen: closure KPIs per site and in total, the rates against the reference
    line, open orders by age, verified savings (orders verified with measured kWh) against the expected savings."""
    from core.errors import WattlineError
    from core.orders.kpi import kpis
    from dashboard.orders import current_orders
    from dashboard.orders_view import actor_for, visible_orders
    from dashboard.render_orders import loop_panel as render_loop

    try:
        service = current_orders()
        if service is None:
            return render_loop(None, "no work-order database yet: 'wattline orders sync' opens orders from the "
                                     "findings (or start the dashboard with --orders-db).")
        orders = visible_orders(service.list(actor=actor_for(user)), user, site)  # AccessDenied for another site
    except WattlineError as exc:
        return render_loop(None, f"cannot read the work orders: {exc}")
    return render_loop(kpis(orders) if orders else None)


def register_callbacks(app: dash.Dash) -> None:
    """Attach this page's callbacks to ``app``."""
    from dashboard.access import require_user
    from dashboard.app import store_of
    from dashboard.enterprise import enterprise_view
    from dashboard.periods import get_period
    from dashboard.settings import current_settings

    @app.callback(
        Output(ids.ENT_TABLE, "children"),
        Output(ids.ENT_TREND, "figure"),
        Output(ids.ENT_ORDERS, "children"),
        Output(ids.ENT_STATUS, "children"),
        Output(ids.ENT_EXPORT, "href"),
        Output(ids.ENT_PDF, "href"),
        Input(ids.SITE, "value"),
        Input(ids.PERIOD, "value"),
        Input(ids.ENT_MONTH, "value"),
    )
    @allow(*PAGE_ROLES[__name__])
    def refresh(site, period_key, month):
        user = require_user()
        period = get_period(period_key)
        settings = current_settings()
        kpis, total, _rows = enterprise_view(store_of(app), user, site, settings.plant, settings.tz, time.time_ns(),
                                             days=period.days, with_rows=False)
        status = f"{len(kpis)} site(s) · {period.label} · potential from the latest analysis run"
        q = {"site": site or "all"}
        return (kpi_table(kpis, total), trend_figure(kpis), loop_panel(user, site), status,
                "/export/enterprise.csv?" + urlencode({**q, "period": period.key}),
                "/report/monthly.pdf?" + urlencode({**q, "month": month or ""}))

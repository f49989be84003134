"""Findings (/findings): every waste, anomaly and data-quality finding of the latest analysis, sortable and filterable.

Audience: plant managers and engineers deciding what to fix first. Rows come from the analytics' stored findings
(:func:`dashboard.overview.finding_rows`); each links to its machine's page; the CSV and Parquet exports are the same
rows (``/export/findings.csv|.parquet``, checked for role and site like every callback).

Each finding shows its work order (id, status, owner, due) and the closure KPIs sit above the grid. Selecting a
finding shows its order and the changes the user's role and site allow (acknowledge, start, resolve, reject with a
reason, assign to a team); the change is made at the server by :func:`dashboard.orders_view.apply_action`, which
checks role and site again whatever the browser sent, and audits it under the logged-in user's name.

A selected anomaly finding can be marked as normal (with a comment) or the mark undone, and a machine's false-alarm
budget set; :mod:`dashboard.anomaly_prefs` checks role and site and writes the file ``wattline analyze`` reads.
"""

from __future__ import annotations

import datetime as dt
import time
from urllib.parse import urlencode

import dash
import dash_ag_grid as dag
from dash import Input, Output, State, dcc, html

from core.errors import WattlineError
from core.orders import OrdersUsageError
from core.orders.kpi import kpis
from dashboard import anomaly_prefs as prefs_view
from dashboard import ids
from dashboard.components import downloads, page_header
from dashboard.orders_view import (
    actor_for,
    allowed_actions,
    apply_action,
    finding_order_rows,
    order_cells,
    site_orders,
)
from dashboard.overview import fmt_energy, fmt_money, site_info
from dashboard.render_orders import action_options, closure_strip, no_orders, order_panel

dash.register_page(__name__, path="/findings", name="Findings", title="Wattline · Findings", order=2)

CATEGORIES = (("all", "All findings"), ("Waste", "Waste"), ("Data quality", "Data quality"))
_NUM = "params.value == null ? '—' : d3.format(',.{p}f')(params.value)"

COLUMNS = [
    {"field": "machine_md", "headerName": "Machine", "cellRenderer": "markdown", "linkTarget": "_self",
     "filter": "agTextColumnFilter", "pinned": "left", "width": 140},
    {"field": "kind", "headerName": "Finding", "width": 190, "filter": True},
    {"field": "order_id", "headerName": "Order", "width": 95, "type": "numericColumn", "filter": "agNumberColumnFilter",
     "valueFormatter": {"function": "params.value == null ? '—' : '#' + params.value"}},
    {"field": "order_status", "headerName": "Status", "width": 135, "filter": True,
     "cellClass": {"function": "'status-' + (params.data.status_key || 'none')"}},
    {"field": "order_owner", "headerName": "Owner", "width": 150, "filter": True},
    {"field": "order_due", "headerName": "Due (plant time)", "width": 150, "filter": "agTextColumnFilter",
     "cellClassRules": {"overdue": "params.data.overdue"}},
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
    category = dcc.RadioItems(id=ids.FINDINGS_KIND, options=[{"label": label, "value": v} for v, label in CATEGORIES],
                              value="all", inline=True, className="segmented")
    export = downloads(ids.FINDINGS_EXPORT, ids.FINDINGS_EXPORT_PARQUET, "/export/findings.csv")
    return html.Div(
        [
            page_header("Findings", "What the analytics found: avoidable energy, its cost and CO₂, and meter faults. "
                        "Click a machine to see its energy.", category, export),
            html.Div(id=ids.FINDINGS_STATUS, className="status-line"),
            html.Div(id=ids.FINDINGS_LOOP),
            order_form(),
            anomaly_form(),
            dag.AgGrid(id=ids.FINDINGS_GRID, columnDefs=COLUMNS, rowData=[], getRowId="params.data.row_id",
                       defaultColDef={"sortable": True, "resizable": True, "floatingFilter": True},
                       dashGridOptions={"pagination": True, "paginationPageSize": 50, "animateRows": False,
                                        "rowSelection": {"mode": "singleRow", "checkboxes": False,
                                                         "enableClickSelection": True},
                                        "overlayNoRowsTemplate": "No findings for this site and period"},
                       style={"height": "70vh"}, className="ag-theme-alpine"),
        ],
        className="page",
    )


def order_form() -> html.Div:
    """The selected finding's order and the status change form (filled by the selection callback)."""
    return html.Div(
        [
            dcc.Store(id=ids.FINDINGS_ORDER_ID, data=None),
            dcc.Store(id=ids.FINDINGS_CHANGED, data=0),
            html.Div("Select a finding to see its work order.", id=ids.FINDINGS_ORDER_INFO, className="order-info"),
            html.Div(
                [
                    dcc.RadioItems(id=ids.FINDINGS_ACTION, options=[], value=None, inline=True, className="segmented"),
                    dcc.Dropdown(id=ids.FINDINGS_TEAM, options=[], value=None, placeholder="team (to assign)",
                                 clearable=True, className="selector"),
                    dcc.Input(id=ids.FINDINGS_REASON, type="text", placeholder="reason (needed to reject)",
                              maxLength=500, debounce=False, className="text-input"),
                    dcc.Input(id=ids.FINDINGS_COMMENT, type="text", placeholder="comment for the log",
                              maxLength=2000, debounce=False, className="text-input"),
                    html.Button("Apply", id=ids.FINDINGS_APPLY, n_clicks=0, className="button"),
                ],
                className="order-form",
            ),
            html.Div(id=ids.FINDINGS_ACTION_MSG, className="status-line"),
        ],
        id=ids.FINDINGS_ORDER,
        className="card order-card",
    )


def anomaly_form() -> html.Div:
    """Mark the selected anomaly finding as normal (or undo it) and set a machine's false-alarm budget."""
    return html.Div(
        [
            dcc.Store(id=ids.ANOMALY_CHANGED, data=0),
            html.Div(id=ids.ANOMALY_INFO, className="order-info"),
            html.Div(
                [
                    dcc.Input(id=ids.ANOMALY_NOTE, type="text", placeholder="why this is normal (comment)",
                              maxLength=500, className="text-input"),
                    html.Button("Mark as normal", id=ids.ANOMALY_MARK, n_clicks=0, disabled=True, className="button"),
                    dcc.Dropdown(id=ids.ANOMALY_MARKED, options=[], value=None, placeholder="marked as normal (to undo)",
                                 clearable=True, className="selector"),
                    html.Button("Undo", id=ids.ANOMALY_UNDO, n_clicks=0, disabled=True, className="button"),
                    dcc.Dropdown(id=ids.ANOMALY_MACHINE, options=[], value=None, placeholder="machine",
                                 clearable=False, className="selector"),
                    dcc.Input(id=ids.ANOMALY_BUDGET, type="number", min=0, step="any", className="text-input",
                              placeholder="alerts/week (default 1)"),
                    html.Button("Set budget", id=ids.ANOMALY_BUDGET_SET, n_clicks=0, disabled=True,
                                className="button"),
                ],
                className="order-form",
            ),
            html.Div(id=ids.ANOMALY_MSG, className="status-line"),
        ],
        className="card order-card",
    )


def grid_rows(rows: list[dict], category: str | None) -> list[dict]:
    """Rows of one category with the machine as a markdown link and a stable row id (selection survives updates)."""
    out = []
    for r in rows:
        if category not in (None, "", "all") and r["category"] != category:
            continue
        name = r["machine_name"]
        out.append({**r, "machine_md": f"[{name}]({r['link']})" if r["link"] else name,
                    "row_id": f"{r['machine']}|{r['kind']}|{r['start']}"})
    return out


def register_callbacks(app: dash.Dash) -> None:
    """Attach this page's callback."""
    from dashboard.access import allow, require_user
    from dashboard.app import store_of
    from dashboard.context import view_context
    from dashboard.orders import current_orders
    from dashboard.settings import current_settings

    @app.callback(
        Output(ids.FINDINGS_GRID, "rowData"),
        Output(ids.FINDINGS_STATUS, "children"),
        Output(ids.FINDINGS_EXPORT, "href"),
        Output(ids.FINDINGS_LOOP, "children"),
        Input(ids.SITE, "value"),
        Input(ids.PERIOD, "value"),
        Input(ids.FINDINGS_KIND, "value"),
        Input(ids.FINDINGS_CHANGED, "data"),
        Input(ids.ANOMALY_CHANGED, "data"),
    )
    def refresh(site, period, category, _changed, _marked):
        try:
            ctx = view_context(store_of(app), site, period, time.time_ns())
            orders, note = site_orders(ctx.user, [s.id for s in ctx.sites])  # never raises: the findings still show
        except WattlineError as exc:
            return (dash.no_update, html.Span(f"Cannot read the store: {exc}", className="error"), dash.no_update,
                    dash.no_update)
        now = dt.datetime.now(dt.UTC)
        rows = grid_rows(finding_order_rows(ctx.findings, orders or [], ctx.plant, current_settings().tz, now),
                         category)
        prefs, _error = prefs_view.read_prefs(prefs_view.preferences_file(current_settings().store_url)[0])
        rows = prefs_view.mark_rows(rows, ctx.findings, prefs, ctx.plant, current_settings().tz)
        kwh = sum(r["excess_kwh"] for r in rows if r["category"] == "Waste")  # unrounded: equals the analysis total
        currencies = {r["currency"] for r in rows if r["cost"] is not None}
        money = fmt_money(sum(r["cost"] or 0 for r in rows), currencies.pop()) if len(currencies) == 1 else None
        status = f"{len(rows)} findings · {fmt_energy(kwh)} avoidable" + (f" · {money}" if money else "")
        href = "/export/findings.csv?" + urlencode({"site": site or "all", "period": ctx.period.key,
                                                    "category": category or "all"})
        loop = closure_strip(kpis(orders, now)["total"]) if orders else no_orders(note)
        return rows, status + f" · {ctx.period.label}", href, loop

    @app.callback(
        Output(ids.FINDINGS_ORDER_INFO, "children"),
        Output(ids.FINDINGS_ORDER_ID, "data"),
        Output(ids.FINDINGS_ACTION, "options"),
        Output(ids.FINDINGS_ACTION, "value"),
        Output(ids.FINDINGS_TEAM, "options"),
        Output(ids.FINDINGS_REASON, "value"),
        Output(ids.FINDINGS_COMMENT, "value"),
        Input(ids.FINDINGS_GRID, "selectedRows"),
        Input(ids.FINDINGS_CHANGED, "data"),
    )
    def select(selected, _changed):
        return (*show_order(selected), "", "")  # a new selection or a change made: empty reason and comment

    def show_order(selected):
        user = require_user()
        row = (selected or [None])[0]
        if not row:
            return "Select a finding to see its work order.", None, [], None, []
        service = current_orders()
        if service is None or row.get("order_id") is None:
            return order_panel(None, [], [], {}), None, [], None, []
        try:
            order = service.get(int(row["order_id"]), actor=actor_for(user))  # re-read: never trust the row
        except (OrdersUsageError, ValueError, TypeError):
            return "No order you may see for this finding.", None, [], None, []
        except WattlineError as exc:
            return f"Cannot read the work orders: {exc}", None, [], None, []
        tz = site_info(order["site"], current_settings().plant, current_settings().tz).tz
        teams = service.teams()
        actions = allowed_actions(user, order, teams)
        cells = order_cells(order, tz, dt.datetime.now(dt.UTC))
        team_options = [{"label": t, "value": t} for t in teams if t != order.get("team")] if "assign" in actions else []
        return (order_panel(order, actions, teams, cells), {"id": order["id"], "version": order["version"]},
                action_options(actions), None, team_options)

    @app.callback(
        Output(ids.FINDINGS_ACTION_MSG, "children"),
        Output(ids.FINDINGS_CHANGED, "data"),
        Input(ids.FINDINGS_APPLY, "n_clicks"),
        State(ids.FINDINGS_ORDER_ID, "data"),
        State(ids.FINDINGS_ACTION, "value"),
        State(ids.FINDINGS_TEAM, "value"),
        State(ids.FINDINGS_REASON, "value"),
        State(ids.FINDINGS_COMMENT, "value"),
        State(ids.FINDINGS_CHANGED, "data"),
        prevent_initial_call=True,
    )
    @allow("engineer", "plant_manager", "admin")  # roles that may change some order (ACTION_ROLES); cdo only reads
    def apply(_clicks, order, action, team, reason, comment, changed):
        user = require_user()
        order = order if isinstance(order, dict) else {}
        ok, message = apply_action(current_orders(), user, order.get("id"), action, reason=reason, team=team,
                                   comment=comment, version=order.get("version"))
        return (html.Span(message, className="ok" if ok else "error"),
                (int(changed or 0) + 1) if ok else dash.no_update)

    @app.callback(
        Output(ids.ANOMALY_INFO, "children"),
        Output(ids.ANOMALY_MARK, "disabled"),
        Output(ids.ANOMALY_UNDO, "disabled"),
        Output(ids.ANOMALY_BUDGET_SET, "disabled"),
        Output(ids.ANOMALY_MACHINE, "options"),
        Output(ids.ANOMALY_MACHINE, "value"),
        Output(ids.ANOMALY_BUDGET, "value"),
        Output(ids.ANOMALY_NOTE, "value"),
        Output(ids.ANOMALY_MARKED, "options"),
        Output(ids.ANOMALY_MARKED, "value"),
        Input(ids.FINDINGS_GRID, "selectedRows"),
        Input(ids.ANOMALY_CHANGED, "data"),
    )
    def anomaly_select(selected, _changed):
        from dashboard.access import scoped_store

        user = require_user()
        path, note = prefs_view.preferences_file(current_settings().store_url)
        prefs, error = prefs_view.read_prefs(path)
        machines = prefs_view.energy_machines(scoped_store(store_of(app), user))
        st = prefs_view.selection_state(user, (selected or [None])[0], prefs, machines, note or error)
        marked = [] if note or error else prefs_view.marked_options(user, prefs)
        return (st["text"], not st["can_mark"], not marked, not st["can_budget"],
                [{"label": m, "value": m} for m in machines], st["machine"], st["budget"], "", marked, st["undo"])

    @app.callback(
        Output(ids.ANOMALY_MSG, "children"),
        Output(ids.ANOMALY_CHANGED, "data"),
        Input(ids.ANOMALY_MARK, "n_clicks"),
        Input(ids.ANOMALY_UNDO, "n_clicks"),
        Input(ids.ANOMALY_BUDGET_SET, "n_clicks"),
        State(ids.FINDINGS_GRID, "selectedRows"),
        State(ids.ANOMALY_NOTE, "value"),
        State(ids.ANOMALY_MARKED, "value"),
        State(ids.ANOMALY_MACHINE, "value"),
        State(ids.ANOMALY_BUDGET, "value"),
        State(ids.SITE, "value"),
        State(ids.PERIOD, "value"),
        State(ids.ANOMALY_CHANGED, "data"),
        prevent_initial_call=True,
    )
    @allow(*prefs_view.PREF_ROLES)  # cdo only reads
    def anomaly_apply(_mark, _undo, _budget, selected, note, marked, machine, budget, site, period, changed):
        from dashboard.access import scoped_store

        user = require_user()
        path = prefs_view.preferences_file(current_settings().store_url)[0]
        row = (selected or [None])[0] or {}
        fid = row.get("finding_id") if isinstance(row, dict) else None
        if dash.ctx.triggered_id == ids.ANOMALY_MARK:
            ctx = view_context(store_of(app), site, period, time.time_ns())  # the findings this user may see
            ok, message = prefs_view.mark_finding(user, path, ctx.findings, fid, note)
        elif dash.ctx.triggered_id == ids.ANOMALY_UNDO:
            ok, message = prefs_view.unmark_finding(user, path, marked)  # any pattern of the user's sites
        else:
            machines = prefs_view.energy_machines(scoped_store(store_of(app), user))
            ok, message = prefs_view.set_machine_budget(user, path, machines, machine, budget)
        return (html.Span(message, className="ok" if ok else "error"),
                (int(changed or 0) + 1) if ok else dash.no_update)

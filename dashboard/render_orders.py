"""Components and figures of the work-order loop (findings, machine and enterprise pages); data from
:mod:`dashboard.orders_view` and :func:`core.orders.kpi.kpis`, no arithmetic here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dash import dcc, html

from dashboard.orders_view import ACTION_LABELS, STATUS_LABELS, closure_summary, loop_table_rows

LOOP_COLUMNS = (("site", "Site"), ("orders", "Orders"), ("auto", "Auto-dispatched"),
                ("ack", "Acknowledge mean / p90"), ("close", "Close mean / p90"), ("on_time", "Closed on time"),
                ("passed", "Passed on > once"), ("age", "Open orders by age"), ("savings", "Verified savings"))
REFERENCE_NOTE = ("Reference (red marks): the city work-order loop this is modelled on: 86 % auto-dispatched, > 98 % "
                  "closed on time, handling time -80 % against its own past.")


def no_orders(message: str) -> html.Div:
    """Said plainly when there are no orders to show, with what to do."""
    return html.Div([html.P([html.B("Work orders: "), message], className="muted")])


def status_badge(status: str | None) -> html.Span:
    return html.Span(STATUS_LABELS.get(status or "", "No order"), className=f"badge badge-{status or 'none'}")


def loop_table(result: Mapping[str, Any], group: str = "by_site") -> html.Table:
    """Closure KPIs per site (or team) and in total (:func:`dashboard.orders_view.loop_table_rows`)."""
    rows = loop_table_rows(result, group)
    n_sites = len(result[group])
    head = html.Thead(html.Tr([html.Th("Team" if group == "by_team" and k == "site" else t) for k, t in LOOP_COLUMNS]))
    body = html.Tbody([html.Tr([html.Td(r[k], className=None if k == "site" else "num") for k, _t in LOOP_COLUMNS],
                               className="total" if n_sites > 1 and i == len(rows) - 1 else None)
                       for i, r in enumerate(rows)])
    return html.Table([head, body], className="series-table")


def loop_figure(result: Mapping[str, Any]):
    """Auto-dispatch rate and on-time closure per site and in total [%], with the reference marks (86 %, 98 %).

    A rate without orders (or without closed orders) is left out rather than drawn as 0.
    """
    import plotly.graph_objects as go

    ref = result["reference"]
    groups = [("Auto-dispatched", "auto_dispatch_rate", 100.0, 100.0 * ref["auto_dispatch_rate"]),
              ("Closed on time", "on_time_pct", 1.0, float(ref["on_time_pct"]))]
    named = list(result["by_site"].items()) + ([("Total", result["total"])] if len(result["by_site"]) > 1 else [])
    fig = go.Figure()
    for name, k in named:
        xs, ys = [], []
        for label, key, scale, _r in groups:
            if k[key] is not None:
                xs.append(label)
                ys.append(round(k[key] * scale, 1))
        fig.add_trace(go.Bar(x=xs, y=ys, name=name, text=[f"{y:.0f} %" for y in ys], textposition="inside",
                             hovertemplate=f"{name}: " + "%{x} %{y:.1f} %<extra></extra>"))
    fig.add_trace(go.Scatter(x=[g[0] for g in groups], y=[g[3] for g in groups], mode="markers+text",
                             name="Reference", text=[f"ref {g[3]:.0f} %" for g in groups], textposition="middle right", cliponaxis=False,
                             marker={"symbol": "line-ew-open", "size": 60, "line": {"width": 3, "color": "#d62728"}},
                             hovertemplate="reference %{y:.0f} %<extra></extra>"))
    fig.update_layout(barmode="group", margin=dict(l=10, r=10, t=10, b=40), height=300, plot_bgcolor="white",
                      paper_bgcolor="white", yaxis={"range": [0, 110], "title": "%"}, legend_orientation="h")
    return fig


def age_figure(result: Mapping[str, Any]):
    """Open orders by age since opening, stacked, per site."""
    import plotly.graph_objects as go

    fig = go.Figure()
    sites = list(result["by_site"])
    buckets = list(result["total"]["open_by_age"])
    for bucket in buckets:
        fig.add_trace(go.Bar(x=sites, y=[result["by_site"][s]["open_by_age"][bucket] for s in sites], name=bucket,
                             hovertemplate=f"%{{x}}: %{{y}} open {bucket}<extra></extra>"))
    fig.update_layout(barmode="stack", margin=dict(l=10, r=10, t=10, b=40), height=260, plot_bgcolor="white",
                      paper_bgcolor="white", yaxis_title="open orders", legend_orientation="h",
                      legend_title_text="age")
    return fig


def loop_panel(result: Mapping[str, Any] | None, message: str = "") -> html.Div:
    """The enterprise page's work-order loop: KPI table, rates against the reference, open orders by age."""
    if result is None or not result["total"]["orders"]:
        return no_orders(message or "no orders for these sites yet.")
    return html.Div([
        html.Div(loop_table(result), className="table-scroll"),
        html.Details([html.Summary("By owner team"), html.Div(loop_table(result, "by_team"), className="table-scroll")]),
        html.Div([html.Div(dcc.Graph(figure=loop_figure(result), config={"displaylogo": False}), className="half"),
                  html.Div(dcc.Graph(figure=age_figure(result), config={"displaylogo": False}), className="half")],
                 className="two-col"),
        html.P(REFERENCE_NOTE, className="muted"),
    ])


def closure_strip(total: Mapping[str, Any]) -> html.Div:
    """The findings page's closure KPIs: label and value chips."""
    return html.Div([html.Span([html.Span(label + ": ", className="muted"), html.B(value)], className="chip")
                     for label, value in closure_summary(total)], className="closure-kpis")


def order_panel(order: Mapping[str, Any] | None, actions: Sequence[str], teams: Sequence[str], tz_cells: Mapping) -> list:
    """What the panel under the grid shows for the selected finding's order (children of the panel's info div)."""
    if order is None:
        return [html.Span("This finding opened no work order (below the opening threshold).", className="muted")]
    info = [html.B(f"Order {order['id']}"), " · ", status_badge(order["status"]),
            f" · owner {tz_cells['order_owner']} · due {tz_cells['order_due']}"
            + (" (overdue)" if tz_cells.get("overdue") else "")
            + f" · {order['findings']} finding(s), {order['excess_kwh']:,.0f} kWh"]
    if order.get("reject_reason"):
        info.append(f" · rejected: {order['reject_reason']}")
    if not actions:
        info.append(html.Span(" · no change your role and site allow in this status", className="muted"))
    return info


def action_options(actions: Sequence[str]) -> list[dict]:
    return [{"label": ACTION_LABELS[a], "value": a} for a in actions]


def machine_orders_table(rows: Sequence[Mapping[str, Any]], message: str = "") -> html.Table | html.P:
    """The machine page's card: its open work orders (id, finding, status, owner, due, kWh)."""
    if not rows:
        return html.P(message or "No open work orders for this machine.", className="muted")
    head = html.Thead(html.Tr([html.Th(t) for t in ("Order", "Finding", "Status", "Owner", "Due", "Excess",
                                                    "Expected savings")]))
    body = html.Tbody([html.Tr([html.Td(f"#{r['id']}"), html.Td(r["kind"]), html.Td(status_badge(r["status_key"])),
                                html.Td(r["order_owner"]),
                                html.Td(r["order_due"] + (" (overdue)" if r["overdue"] else ""),
                                        className="overdue" if r["overdue"] else None),
                                html.Td(r["kwh"], className="num"), html.Td(r["expected"], className="num")])
                       for r in rows])
    return html.Table([head, body], className="series-table")


def machine_orders_card(path: str | None) -> html.Table | html.P:
    """The machine page's open work orders for the logged-in user (AccessDenied for a site they may not see)."""
    import datetime as dt

    from core.errors import WattlineError
    from dashboard.access import AccessDenied, machine_site, require_user
    from dashboard.orders import current_orders
    from dashboard.orders_view import actor_for, machine_open_orders
    from dashboard.overview import site_info
    from dashboard.settings import current_settings

    user = require_user()
    site = machine_site(str(path or ""))
    if site is None or not user.may_see(site):
        raise AccessDenied(f"user {user.name} may not see machine {path!r}")
    settings = current_settings()
    try:
        service = current_orders()
        if service is None:
            return machine_orders_table([], "No work-order database yet ('wattline orders sync' opens orders).")
        orders = service.list(site=site, actor=actor_for(user))
    except WattlineError as exc:
        return machine_orders_table([], f"Cannot read the work orders: {exc}")
    tz = site_info(site, settings.plant, settings.tz).tz
    return machine_orders_table(machine_open_orders(orders, str(path), tz, dt.datetime.now(dt.UTC)))

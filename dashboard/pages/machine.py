"""Machine (/machine/<site>/<line>/<machine>): hourly energy with the machine's findings shaded, and the findings.

Audience: the engineer or plant manager following a finding. Only for a user who may see the machine's site; the
callback checks it again (a hand-made request for another site's machine gets nothing).
"""

from __future__ import annotations

import time

import dash
from dash import Input, Output, dcc, html

from core.errors import WattlineError
from dashboard import ids
from dashboard.access import current_user
from dashboard.components import card, empty_state, graph, page_header
from dashboard.machine_data import baseline_summary, daily_kwh_per_unit, read_baseline
from dashboard.overview import KIND_LABELS, STATE_DAYS, fmt_energy, fmt_money, machine_energy_by_hour, state_hours
from dashboard.render_overview import finding_list, machine_figure, state_figure, unit_figure

dash.register_page(__name__, path_template="/machine/<site>/<line>/<machine>", name="Machine",
                   title="Wattline · Machine", nav=False, order=50)


def layout(site: str | None = None, line: str | None = None, machine: str | None = None, **_kwargs) -> html.Div:
    """Skeleton for one machine; a site the user may not see looks like an unknown machine."""
    user = current_user()
    if user is None or not site or not line or not machine or not user.may_see(site):
        return html.Div(empty_state("Machine not found", "There is no machine at this address that you may see."),
                        className="page")
    path = f"{site}/{line}/{machine}"
    return html.Div(
        [
            dcc.Store(id=ids.MACHINE_PATH, data=path),
            page_header(machine, f"Site {site} · line {line} · energy per hour against the baseline, findings shaded"),
            html.Div(id=ids.MACHINE_TITLE, className="status-line"),
            card("Energy per hour, actual vs baseline [kWh]", graph(ids.MACHINE_GRAPH)),
            card("Energy per good unit by day [kWh/unit]", graph(ids.MACHINE_UNIT)),
            card(f"States, last {STATE_DAYS} days of the period", graph(ids.MACHINE_STATES)),
            card("Findings on this machine", html.Div(id=ids.MACHINE_FINDINGS)),
            card("Open work orders", html.Div(id=ids.MACHINE_ORDERS)),
        ],
        className="page",
    )


def register_callbacks(app: dash.Dash) -> None:
    """Attach this page's callback."""
    from dashboard.app import store_of
    from dashboard.cache import cache_of
    from dashboard.context import view_context

    @app.callback(
        Output(ids.MACHINE_GRAPH, "figure"),
        Output(ids.MACHINE_FINDINGS, "children"),
        Output(ids.MACHINE_TITLE, "children"),
        Output(ids.MACHINE_STATES, "figure"),
        Output(ids.MACHINE_UNIT, "figure"),
        Input(ids.MACHINE_PATH, "data"),
        Input(ids.PERIOD, "value"),
    )
    def refresh(path, period):
        site, line, machine = [*str(path).split("/"), "", "", ""][:3]
        now_ns = time.time_ns()
        try:
            ctx = view_context(store_of(app), site, period, now_ns)  # AccessDenied for another site
            # Everyone following this machine shares its view for the cache's lifetime (a new analysis run changes
            # the key); figures are cached as the dicts Dash sends: building them costs more than the reads.
            return cache_of(app).get_or_compute(ctx.cache_key(f"machine|{path}", now_ns),
                                                lambda: _outputs(ctx, store_of(app), line, machine, now_ns))
        except WattlineError as exc:
            return (dash.no_update, dash.no_update, html.Span(f"Cannot read the store: {exc}", className="error"),
                    dash.no_update, dash.no_update)

    @app.callback(Output(ids.MACHINE_ORDERS, "children"), Input(ids.MACHINE_PATH, "data"))
    def open_orders(path):
        from dashboard.render_orders import machine_orders_card

        return machine_orders_card(path)  # role and site checked there


def _outputs(ctx, raw_store, line: str, machine: str, now_ns: int) -> tuple:
    """The refresh callback's outputs for ``machine`` on ``line`` of the one site of view ``ctx``: only this machine's
    hourly rollups, states and stored baseline are read."""
    info = ctx.sites[0]
    path = f"{info.id}/{line}/{machine}"
    hours = machine_energy_by_hour(ctx.store, info, line, machine, ctx.start_ns, ctx.stop_ns)
    states = state_hours(ctx.store, info, line, machine, ctx.start_ns, min(ctx.stop_ns, now_ns))
    base = read_baseline(raw_store, info.id, line, machine, ctx.start_ns, ctx.stop_ns)  # the caller checked the site
    mine = sorted((e for e in ctx.findings if e.machine == path), key=lambda e: e.start)
    waste = sum(e.excess_kwh for e in mine if not e.kind.startswith("meter_"))
    cost = sum((e.details or {}).get("cost") or 0 for e in mine)
    kinds = sorted({KIND_LABELS.get(e.kind, e.kind) for e in mine})
    status = (f"{ctx.period.label}: {fmt_energy(float(hours['kwh'].sum()))} used, {fmt_energy(waste)} avoidable"
              + (f" ({fmt_money(cost, info.currency)})" if info.currency and cost else "")
              + (f" · {', '.join(kinds)}" if kinds else " · no findings") + baseline_summary(base))
    return (machine_figure(hours, mine, info.tz, base.hours).to_plotly_json(),
            finding_list(sorted(mine, key=lambda e: -e.excess_kwh), 50), status,
            state_figure(states, info.tz).to_plotly_json(),
            unit_figure(daily_kwh_per_unit(base, info.tz), base.kwh_per_unit).to_plotly_json())

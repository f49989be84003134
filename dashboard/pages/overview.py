"""Plant overview (/overview): energy, cost and CO2; the reduction potential by cause; where the waste is; when the
plant draws power; where the energy flows; the latest findings.

Audience: the plant manager. Reads the store's hourly rollups and the analytics' stored findings
(:mod:`dashboard.overview`); the callback only renders (:mod:`dashboard.render_overview`).
"""

from __future__ import annotations

import time

import dash
from dash import Input, Output, html

from core.errors import WattlineError
from dashboard import ids
from dashboard.components import card, graph, page_header
from dashboard.overview import overview
from dashboard.render_overview import (
    finding_list,
    heatmap_figure,
    kpi_tiles,
    no_data,
    pareto_figure,
    potential_tiles,
    sankey_figure,
    top_machine_table,
)

dash.register_page(__name__, path="/overview", name="Overview", title="Wattline · Plant overview", order=1)


def layout(**_kwargs) -> html.Div:
    """Skeleton; the callback fills it for the site and period chosen in the header."""
    return html.Div(
        [
            page_header("Plant overview", "What the plant uses, what it costs, and how much of it is avoidable."),
            html.Div(id=ids.OV_STATUS, className="status-line"),
            html.Div(id=ids.OV_KPIS, className="kpi-row"),
            html.Div(id=ids.OV_POTENTIAL, className="kpi-row"),
            html.Div(
                [
                    card("Reduction potential by cause", graph(ids.OV_PARETO)),
                    card("Top machines by avoidable energy", html.Div(id=ids.OV_TOP_MACHINES, className="table-scroll")),
                ],
                className="two-col",
            ),
            html.Div(
                [
                    card("Load profile: mean power by weekday and hour [kW]", graph(ids.OV_HEATMAP)),
                    card("Latest findings", html.Div(id=ids.OV_LATEST)),
                ],
                className="two-col",
            ),
            card("Energy flow: site → lines → machines [kWh]", graph(ids.OV_SANKEY)),
        ],
        className="page",
    )


def _top_export(site, period_key: str):
    """Download link of the top-machines table for the site and period shown."""
    from urllib.parse import urlencode

    query = urlencode({"site": site or "all", "period": period_key})
    return html.Div([html.A("Download CSV", href="/export/top-machines.csv?" + query, className="button"),
                     html.A("Parquet", href="/export/top-machines.parquet?" + query, className="button")],
                    className="card-foot")


def register_callbacks(app: dash.Dash) -> None:
    """Attach this page's callback."""
    from dashboard.app import store_of
    from dashboard.cache import cache_of
    from dashboard.context import view_context

    @app.callback(
        Output(ids.OV_STATUS, "children"),
        Output(ids.OV_KPIS, "children"),
        Output(ids.OV_POTENTIAL, "children"),
        Output(ids.OV_PARETO, "figure"),
        Output(ids.OV_TOP_MACHINES, "children"),
        Output(ids.OV_HEATMAP, "figure"),
        Output(ids.OV_SANKEY, "figure"),
        Output(ids.OV_LATEST, "children"),
        Input(ids.SITE, "value"),
        Input(ids.PERIOD, "value"),
    )
    def refresh(site, period):
        now_ns = time.time_ns()
        try:
            ctx = view_context(store_of(app), site, period, now_ns)
            cache = cache_of(app)
            # Many users of a site ask for the same overview: computed once per cache lifetime, shared by the workers.
            # The rendered outputs are cached too: building the Plotly figures costs more than reading them back.
            return cache.get_or_compute(ctx.cache_key(f"overview-outputs|{site}", now_ns),
                                        lambda: _outputs(ctx, site, cache.get_or_compute(
                                            ctx.cache_key("overview", now_ns),
                                            lambda: overview(ctx.store, ctx.findings, ctx.sites, ctx.start_ns,
                                                             ctx.stop_ns, now_ns))))
        except WattlineError as exc:
            return (html.Span(f"Cannot read the store: {exc}", className="error"),) + (dash.no_update,) * 7


def _figure(fig) -> dict:
    """A figure as the plain dict Dash sends (cheap to cache and read back; a ``go.Figure`` re-validates)."""
    return fig.to_plotly_json()


def _outputs(ctx, site, ov) -> tuple:
    """The callback's outputs for an overview ``ov`` of view ``ctx``."""
    names = {s.id: s.name for s in ctx.sites}
    lines = {(site.id, line.id): line.name or line.id for site in getattr(ctx.plant, "sites", ()) for line in site.lines}
    where = ", ".join(names.values()) or "no site"
    status = f"{where} · {ctx.period.label} · findings of the latest analysis run"
    if ov.energy_kwh <= 0 and not ov.findings:
        return (status, kpi_tiles(ov), [no_data()], _figure(pareto_figure(ov.by_cause)),
                top_machine_table(ov.top_machines, ov.currency), _figure(heatmap_figure(ov.heatmap)),
                _figure(sankey_figure(ov.flows, names, lines)), finding_list(ov.latest))
    return (status, kpi_tiles(ov), potential_tiles(ov, ctx.period.label), _figure(pareto_figure(ov.by_cause)),
            [top_machine_table(ov.top_machines, ov.currency), _top_export(site, ctx.period.key)],
            _figure(heatmap_figure(ov.heatmap)),
            _figure(sankey_figure(ov.flows, names, lines)), finding_list(ov.latest))

"""Downloads: every table of the dashboard as CSV and as Parquet (``/export/<table>.csv`` and ``.parquet``, the same
rows), and the monthly PDF report. Behind the login gate like every route, and checked for role and site here.

Parquet keeps the column types (numbers stay numbers, no locale or quoting questions) and is what pandas, Spark,
DuckDB and Power BI read fastest: the open-data half of a table a person downloads."""

from __future__ import annotations

import io
import time

from flask import Response, request

from dashboard import ids

#: Media type of each download format.
TABLE_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


def table_body(frame, fmt: str) -> tuple[bytes, str]:
    """A table as a file: CSV (times ISO 8601 UTC) or Parquet (zstd; times ``timestamp[ns, UTC]``, types kept).

    Returns
    -------
    tuple
        The bytes and their media type.
    """
    if fmt == "csv":
        return frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%SZ").encode("utf-8"), TABLE_TYPES["csv"]
    if fmt == "parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False, compression="zstd")
        return buf.getvalue(), TABLE_TYPES["parquet"]
    raise ValueError(f"table format {fmt!r}; valid: {', '.join(TABLE_TYPES)}")


#: The pages' CSV download links (ids) and their Parquet twins (:func:`dashboard.components.downloads`).
PARQUET_TWINS = {ids.COL_EXPORT: ids.COL_EXPORT_PARQUET, ids.COL_QUALITY_EXPORT: ids.COL_QUALITY_EXPORT_PARQUET,
                 ids.MAT_EXPORT: ids.MAT_EXPORT_PARQUET, ids.ENT_EXPORT: ids.ENT_EXPORT_PARQUET,
                 ids.FINDINGS_EXPORT: ids.FINDINGS_EXPORT_PARQUET}
#: In the browser: the Parquet link's href is the CSV link's with .parquet (no server round trip, no data).
_TWIN_JS = """function(href) {
    return href ? href.replace(/\\.csv(\\?|$)/, '.parquet$1') : window.dash_clientside.no_update;
}"""


def install_parquet_twins(app) -> None:
    """Keep every Parquet download link's href equal to its CSV link's (site, period, filters) as callbacks set it."""
    from dash import Input, Output

    for csv_id, parquet_id in PARQUET_TWINS.items():
        app.clientside_callback(_TWIN_JS, Output(parquet_id, "href"), Input(csv_id, "href"))


def install_exports(app) -> None:
    """Add the downloads (``/export/<table>.csv|.parquet?site=&period=...``, ``/report/monthly.pdf``) to ``app``."""
    from dashboard.access import AccessDenied
    from dashboard.app import store_of
    from dashboard.context import view_context
    from dashboard.settings import current_settings

    def table(name: str, make) -> None:
        """Serve ``make() -> (frame, file name stem)`` as ``/export/<name>.csv`` and ``/export/<name>.parquet``."""

        def view(fmt: str):
            try:
                frame, stem = make()
            except AccessDenied:
                return {"error": "not allowed for your account"}, 403
            body, mimetype = table_body(frame, fmt)
            return Response(body, mimetype=mimetype,
                            headers={"Content-Disposition": f"attachment; filename={stem}.{fmt}"})

        for fmt in TABLE_TYPES:
            app.server.add_url_rule(f"/export/{name}.{fmt}", f"wattline_export_{name.replace('-', '_')}_{fmt}",
                                    lambda fmt=fmt: view(fmt))

    def findings():
        import datetime as dt

        from dashboard.orders_view import finding_order_rows, site_orders
        from dashboard.overview import findings_frame
        from dashboard.pages.findings import grid_rows

        ctx = view_context(store_of(app), request.args.get("site"), request.args.get("period"), time.time_ns())
        orders, _note = site_orders(ctx.user, [s.id for s in ctx.sites])  # each finding with its work order, as shown
        rows = grid_rows(finding_order_rows(ctx.findings, orders or [], ctx.plant, current_settings().tz,
                                            dt.datetime.now(dt.UTC)), request.args.get("category"))
        return findings_frame(rows), f"wattline-findings-{ctx.period.key}"

    def collectors(what: str):
        from dashboard.access import PAGE_ROLES, require_user
        from dashboard.collectors import (
            COLLECTOR_CSV,
            QUALITY_CSV,
            collector_rows,
            health_store,
            quality_rows,
            rows_frame,
        )

        now = time.time_ns()
        require_user(PAGE_ROLES["dashboard.pages.collectors"])
        ctx = view_context(store_of(app), request.args.get("site"), request.args.get("period"), now)
        tz = current_settings().tz
        if what == "collectors":
            frame = rows_frame(collector_rows(health_store(store_of(app), ctx, request.args.get("site")), now, tz),
                               COLLECTOR_CSV)
        else:
            frame = rows_frame(quality_rows(ctx.store, ctx.start_ns, ctx.stop_ns, now, tz), QUALITY_CSV)
        return frame, f"wattline-{what}-{ctx.period.key}"

    def materials():
        from dashboard.access import require_user
        from dashboard.cache import cache_of
        from dashboard.materials import materials_for, materials_frame

        m, period = materials_for(store_of(app), require_user(), request.args.get("site"), request.args.get("period"),
                                  time.time_ns(), cache_of(app))
        return materials_frame(m.rows), f"wattline-materials-{period.key}"

    def enterprise():
        from dashboard.access import require_user
        from dashboard.enterprise import enterprise_view, kpis_frame
        from dashboard.periods import get_period

        user = require_user()
        kpis, total, _rows = enterprise_view(store_of(app), user, request.args.get("site"),
                                             current_settings().plant, current_settings().tz, time.time_ns(),
                                             days=get_period(request.args.get("period")).days)
        return kpis_frame([k.row() for k in kpis] + [total]), "wattline-enterprise-kpis"

    def monthly_report():
        import datetime as dt

        from dashboard.access import require_user
        from dashboard.enterprise import enterprise_view
        from dashboard.report_pdf import monthly_pdf

        month = request.args.get("month") or dt.date.today().strftime("%Y-%m")
        try:
            user = require_user()
            kpis, total, rows = enterprise_view(store_of(app), user, request.args.get("site"),
                                                current_settings().plant, current_settings().tz, time.time_ns(),
                                                month=month)
        except AccessDenied:
            return {"error": "not allowed for your account"}, 403
        except ValueError as exc:
            return {"error": f"{exc}; use /report/monthly.pdf?month=YYYY-MM"}, 400
        from core.orders.kpi import kpis as loop_kpis
        from dashboard.orders_view import site_orders

        # The work-order loop of the report's sites only (already checked for this user), as the enterprise page's.
        orders, note = site_orders(user, [k.site.id for k in kpis])
        made = f"Made by Wattline on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC for {user.name}."
        pdf = monthly_pdf(month, kpis, total, rows, made, loop=loop_kpis(orders) if orders else None, loop_note=note)
        return Response(pdf, mimetype="application/pdf",
                        headers={"Content-Disposition": f"attachment; filename=wattline-report-{month}.pdf"})

    def top_machines():
        import pandas as pd

        from dashboard.cache import cache_of
        from dashboard.overview import overview

        now = time.time_ns()
        ctx = view_context(store_of(app), request.args.get("site"), request.args.get("period"), now)
        ov = cache_of(app).get_or_compute(ctx.cache_key("overview", now), lambda: overview(
            ctx.store, ctx.findings, ctx.sites, ctx.start_ns, ctx.stop_ns, now))
        top = ov.top_machines if not ov.top_machines.empty else pd.DataFrame(columns=["machine", "kwh", "cost",
                                                                                      "findings"])
        top = top[["machine", "kwh", "cost", "findings"]].rename(columns={"kwh": "avoidable_kwh"})
        top.insert(3, "currency", ov.currency or "")
        return top, f"wattline-top-machines-{ctx.period.key}"

    def series():
        import pandas as pd

        from dashboard.access import PAGE_ROLES, require_user
        from dashboard.app import user_store
        from dashboard.data import series_rows

        require_user(PAGE_ROLES["dashboard.pages.series"])
        settings = current_settings()
        rows = series_rows(user_store(app, request.args.get("site")), time.time_ns(), settings.tz,
                           settings.stale_after_s)
        return pd.DataFrame(rows), "wattline-series"

    table("findings", findings)
    table("collectors", lambda: collectors("collectors"))
    table("quality", lambda: collectors("quality"))
    table("materials", materials)
    table("enterprise", enterprise)
    table("top-machines", top_machines)
    table("series", series)
    app.server.add_url_rule("/report/monthly.pdf", "wattline_report_monthly", monthly_report)
    install_parquet_twins(app)

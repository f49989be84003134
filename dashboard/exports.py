"""Downloads: the findings as CSV. Behind the login gate like every route, and checked for role and site here."""

from __future__ import annotations

import io
import time

from flask import Response, request

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


def install_exports(app) -> None:
    """Add ``/export/findings.csv?site=&period=&category=`` to ``app``'s server."""
    from dashboard.access import AccessDenied
    from dashboard.app import store_of
    from dashboard.context import view_context
    from dashboard.overview import finding_rows, findings_csv
    from dashboard.pages.findings import grid_rows
    from dashboard.settings import current_settings

    def export_findings():
        try:
            ctx = view_context(store_of(app), request.args.get("site"), request.args.get("period"), time.time_ns())
        except AccessDenied:
            return {"error": "not allowed for your account"}, 403
        rows = grid_rows(finding_rows(ctx.findings, ctx.plant, current_settings().tz), request.args.get("category"))
        name = f"wattline-findings-{ctx.period.key}.csv"
        return Response(findings_csv(rows), mimetype="text/csv",
                        headers={"Content-Disposition": f"attachment; filename={name}"})

    app.server.add_url_rule("/export/findings.csv", "wattline_export_findings", export_findings)

    def export_collectors(what: str):
        from dashboard.access import PAGE_ROLES, require_user
        from dashboard.collectors import (
            COLLECTOR_CSV,
            QUALITY_CSV,
            collector_rows,
            health_store,
            quality_rows,
            rows_csv,
        )

        now = time.time_ns()
        try:
            require_user(PAGE_ROLES["dashboard.pages.collectors"])
            ctx = view_context(store_of(app), request.args.get("site"), request.args.get("period"), now)
        except AccessDenied:
            return {"error": "not allowed for your account"}, 403
        tz = current_settings().tz
        if what == "collectors":
            text = rows_csv(collector_rows(health_store(store_of(app), ctx, request.args.get("site")), now, tz),
                            COLLECTOR_CSV)
        else:
            text = rows_csv(quality_rows(ctx.store, ctx.start_ns, ctx.stop_ns, now, tz), QUALITY_CSV)
        return Response(text, mimetype="text/csv",
                        headers={"Content-Disposition": f"attachment; filename=wattline-{what}-{ctx.period.key}.csv"})

    def export_materials():
        from dashboard.access import require_user, scoped_store, sites_for
        from dashboard.materials import materials_csv, read_materials
        from dashboard.overview import known_sites

        try:
            user = require_user()
            raw = store_of(app)
            sites = sites_for(user, request.args.get("site"), known_sites(scoped_store(raw, user),
                                                                          current_settings().plant))
        except AccessDenied:
            return {"error": "not allowed for your account"}, 403
        return Response(materials_csv(read_materials(raw, sites).rows), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=wattline-materials.csv"})

    app.server.add_url_rule("/export/materials.csv", "wattline_export_materials", export_materials)

    def export_enterprise():
        from dashboard.access import require_user
        from dashboard.enterprise import enterprise_view, kpis_csv
        from dashboard.periods import get_period

        try:
            user = require_user()
            kpis, total, _rows = enterprise_view(store_of(app), user, request.args.get("site"),
                                                 current_settings().plant, current_settings().tz, time.time_ns(),
                                                 days=get_period(request.args.get("period")).days)
        except AccessDenied:
            return {"error": "not allowed for your account"}, 403
        return Response(kpis_csv([k.row() for k in kpis] + [total]), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=wattline-enterprise-kpis.csv"})

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
        made = f"Made by Wattline on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC for {user.name}."
        pdf = monthly_pdf(month, kpis, total, rows, made)
        return Response(pdf, mimetype="application/pdf",
                        headers={"Content-Disposition": f"attachment; filename=wattline-report-{month}.pdf"})

    app.server.add_url_rule("/export/enterprise.csv", "wattline_export_enterprise", export_enterprise)

    def export_top_machines():
        import pandas as pd

        from dashboard.cache import cache_of
        from dashboard.overview import overview

        now = time.time_ns()
        try:
            ctx = view_context(store_of(app), request.args.get("site"), request.args.get("period"), now)
        except AccessDenied:
            return {"error": "not allowed for your account"}, 403
        ov = cache_of(app).get_or_compute(ctx.cache_key("overview", now), lambda: overview(
            ctx.store, ctx.findings, ctx.sites, ctx.start_ns, ctx.stop_ns, now))
        top = ov.top_machines if not ov.top_machines.empty else pd.DataFrame(columns=["machine", "kwh", "cost",
                                                                                      "findings"])
        top = top[["machine", "kwh", "cost", "findings"]].rename(columns={"kwh": "avoidable_kwh"})
        top.insert(3, "currency", ov.currency or "")
        return Response(top.to_csv(index=False), mimetype="text/csv", headers={
            "Content-Disposition": f"attachment; filename=wattline-top-machines-{ctx.period.key}.csv"})

    def export_series():
        import pandas as pd

        from dashboard.access import PAGE_ROLES, require_user
        from dashboard.app import user_store
        from dashboard.data import series_rows

        try:
            require_user(PAGE_ROLES["dashboard.pages.series"])
            settings = current_settings()
            rows = series_rows(user_store(app, request.args.get("site")), time.time_ns(), settings.tz,
                               settings.stale_after_s)
        except AccessDenied:
            return {"error": "not allowed for your account"}, 403
        return Response(pd.DataFrame(rows).to_csv(index=False), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=wattline-series.csv"})

    app.server.add_url_rule("/export/top-machines.csv", "wattline_export_top_machines", export_top_machines)
    app.server.add_url_rule("/export/series.csv", "wattline_export_series", export_series)
    app.server.add_url_rule("/report/monthly.pdf", "wattline_report_monthly", monthly_report)
    app.server.add_url_rule("/export/collectors.csv", "wattline_export_collectors",
                            lambda: export_collectors("collectors"))
    app.server.add_url_rule("/export/quality.csv", "wattline_export_quality", lambda: export_collectors("quality"))

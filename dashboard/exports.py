"""Downloads: the findings as CSV. Behind the login gate like every route, and checked for role and site here."""

from __future__ import annotations

import time

from flask import Response, request


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

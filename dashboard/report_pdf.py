"""The monthly report as PDF (reportlab): what a chief data officer forwards. KPIs per site and in total, daily
energy per site as a bar chart, the largest findings of the month, and the work-order loop (closure KPIs per site and
in total against the reference, verified against expected savings); no browser or image renderer needed.

The loop's numbers are :func:`core.orders.kpi.kpis` of the user's orders and its cells are the enterprise page's
(:func:`dashboard.orders_view.loop_table_rows`, :func:`dashboard.orders_view.closure_summary`): nothing is computed
here."""

from __future__ import annotations

import datetime as dt
import io
from xml.sax.saxutils import escape

from dashboard.overview import fmt_co2 as _fmt_co2
from dashboard.overview import fmt_energy, fmt_money, fmt_pct


def fmt_co2(kg):
    """CO2 with a plain 2: the PDF's standard fonts have no subscript two."""
    return _fmt_co2(kg).replace("₂", "2")


def fmt_co2_text(text: str) -> str:
    return str(text).replace("₂", "2")


def _fmt_row(row: dict) -> list[str]:
    unit = row.get("kwh_per_unit")
    return [row["site"], fmt_energy(row["energy_kwh"]), fmt_money(row["cost"], row["currency"]),
            fmt_co2(row["co2_kg"]), "—" if unit is None else f"{unit:,.2f}",
            fmt_energy(row["potential_kwh"]) + f" ({fmt_pct(row['potential_share'])})",
            f"{row['metered']}/{row['machines']}", fmt_pct(row["completeness"])]


def _loop_chart(loop: dict, names: dict[str, str]):
    """Auto-dispatch rate and on-time closure [%] per site and in total as grouped bars, with the reference figures
    (86 %, 98 %) as red lines across their group: the enterprise page's :func:`dashboard.render_orders.loop_figure`
    drawn by reportlab. A rate without orders (or without closed orders) is left out rather than drawn as 0."""
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.shapes import Drawing, Line, String
    from reportlab.lib import colors

    ref = loop["reference"]
    groups = [("Auto-dispatched", "auto_dispatch_rate", 100.0, 100.0 * ref["auto_dispatch_rate"]),
              ("Closed on time", "on_time_pct", 1.0, float(ref["on_time_pct"]))]
    named = [(names.get(s, s), k) for s, k in loop["by_site"].items()]
    named += [("Total", loop["total"])] if len(named) > 1 else []
    palette = [colors.HexColor(c) for c in ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#333333")]
    drawing = Drawing(380, 175)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 35, 22, 240, 125
    chart.data = [[None if k[key] is None else round(k[key] * scale, 1) for _l, key, scale, _r in groups]
                  for _n, k in named]
    chart.categoryAxis.categoryNames = [f"{g[0]} (ref {g[3]:.0f} %)" for g in groups]
    chart.categoryAxis.labels.fontSize = 8
    chart.valueAxis.valueMin, chart.valueAxis.valueMax, chart.valueAxis.valueStep = 0, 100, 20
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.labelTextFormat = "%d %%"
    chart.barLabelFormat = "%.0f"
    chart.barLabels.fontSize = 6
    chart.barLabels.nudge = 5
    for i in range(len(named)):
        chart.bars[i].fillColor = palette[i % len(palette)]
        chart.bars[i].strokeColor = None
    drawing.add(chart)
    group_w = chart.width / len(groups)
    for i, (_label, _key, _scale, value) in enumerate(groups):
        y = chart.y + chart.height * value / 100.0
        x0 = chart.x + i * group_w + 4
        drawing.add(Line(x0, y, x0 + group_w - 8, y, strokeColor=colors.HexColor("#d62728"), strokeWidth=1.5,
                         strokeDashArray=[4, 2]))
    drawing.add(String(chart.x, 163, "Closure KPIs [%] against the reference (red dashes)", fontSize=9))
    for i, (name, _k) in enumerate(named):
        drawing.add(String(chart.x + chart.width + 12, chart.y + chart.height - 12 * i, f"■ {name}"[:22],
                           fontSize=8, fillColor=palette[i % len(palette)]))
    return drawing


def loop_story(loop: dict | None, note: str, names: dict[str, str], styles) -> list:
    """The report's work-order loop section: closure KPIs per site and in total (the enterprise page's table),
    the totals against the reference figures with verified against expected savings, and the chart.

    Parameters
    ----------
    loop : dict or None
        :func:`core.orders.kpi.kpis` of the orders of the report's sites (None: no database, or no orders).
    note : str
        What to say when there is nothing to show (no orders database configured, none for these sites, or it cannot
        be read): :func:`dashboard.orders_view.site_orders`'s message.
    names : dict
        Site id -> name as the report's other tables show it.
    """
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import KeepTogether, Paragraph, Spacer, Table, TableStyle

    from dashboard.orders_view import closure_summary, loop_table_rows
    from dashboard.render_orders import LOOP_COLUMNS, REFERENCE_NOTE

    story = [Paragraph("Work-order loop and verified savings", styles["Heading3"])]
    if loop is None or not loop["total"]["orders"]:
        return [KeepTogether([*story, Paragraph(f"<b>Work orders:</b> {escape(note or 'no orders for these sites yet.')} "
                                                "Verified savings: none (there are no work orders to verify).",
                                                styles["Normal"])])]
    now = dt.datetime.fromisoformat(loop["now"]).astimezone(dt.UTC)
    story.append(Paragraph(f"All orders to date (as of {now:%Y-%m-%d %H:%M} UTC), not only this month's: "
                           "verified savings are counted from each order's resolution.", styles["Normal"]))
    cell = ParagraphStyle("loopcell", parent=styles["Normal"], fontSize=7.5, leading=9)
    head = ParagraphStyle("loophead", parent=cell, fontName="Helvetica-Bold", textColor=colors.white)
    rows = [[Paragraph(escape(t), head) for _k, t in LOOP_COLUMNS]]
    for r in loop_table_rows(loop):
        r["site"] = names.get(r["site"], r["site"])
        rows.append([Paragraph(escape(fmt_co2_text(r[k])), cell) for k, _t in LOOP_COLUMNS])
    table = Table(rows, repeatRows=1, colWidths=[28 * mm, 16 * mm, 30 * mm, 28 * mm, 28 * mm, 24 * mm, 26 * mm,
                                                 40 * mm, 47 * mm])
    total_row = len(loop["by_site"]) > 1
    table.setStyle(TableStyle([
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#102a43")), ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#c3ccd6")),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f4f6f8")]),
    ] + ([("BACKGROUND", (0, -1), (-1, -1), colors.HexColor("#e4e9ef"))] if total_row else [])))
    summary = Table([[Paragraph(escape(label), cell), Paragraph(f"<b>{escape(value)}</b>", cell)]
                     for label, value in closure_summary(loop["total"])], colWidths=[38 * mm, 70 * mm])
    summary.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("TOPPADDING", (0, 0), (-1, -1), 1),
                                 ("BOTTOMPADDING", (0, 0), (-1, -1), 1)]))
    side = Table([[summary, _loop_chart(loop, names)]], colWidths=[115 * mm, None])
    side.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (0, 0), 0)]))
    # One block: a reader should not find the totals and the chart on another page than their table.
    return [KeepTogether([*story, Spacer(1, 2 * mm), table, Spacer(1, 3 * mm),
                          Paragraph("<b>In total</b> (all sites of this report)", styles["Normal"]), side,
                          Paragraph(f"<font size=7 color='#627d98'>{escape(REFERENCE_NOTE)}</font>", styles["Normal"])])]


def monthly_pdf(month: str, kpis: list, total: dict, findings: list[dict], generated: str, *,
                loop: dict | None = None, loop_note: str = "") -> bytes:
    """Build the PDF.

    Parameters
    ----------
    month : str
        ``YYYY-MM``.
    kpis : list of dashboard.enterprise.SiteKpis
        Per site, over the month.
    total : dict
        :func:`dashboard.enterprise.totals`.
    findings : list of dict
        Largest findings of the month: ``machine``, ``kind``, ``kwh``, ``explanation``.
    generated : str
        When and for whom it was made (footer).
    loop : dict, optional
        :func:`core.orders.kpi.kpis` of the orders of the user's sites in the report (None: none to show).
    loop_note : str
        Said instead when ``loop`` is None: why (no orders database configured, none yet, cannot be read).
    """
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=landscape(A4), leftMargin=15 * mm, rightMargin=15 * mm,
                            topMargin=12 * mm, bottomMargin=12 * mm, title=f"Wattline monthly report {month}")
    styles = getSampleStyleSheet()
    story = [Paragraph(f"Energy report {month}", styles["Title"]),
             Paragraph(f"{len(kpis)} site(s): energy, cost and CO<sub>2</sub>, energy per good unit (EnPI), "
                       "remaining reduction potential from the latest analysis, and data coverage.", styles["Normal"]),
             Spacer(1, 5 * mm)]
    head = ["Site", "Energy", "Cost", "CO2", "kWh per good unit", "Avoidable (share)", "Metered", "Completeness"]
    rows = [head] + [_fmt_row(k.row()) for k in kpis] + ([_fmt_row(total)] if len(kpis) > 1 else [])
    table = Table(rows, repeatRows=1)
    table.setStyle(TableStyle([
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#102a43")), ("TEXTCOLOR", (0, 0), (-1, 0), colors.white),
        ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"), ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#c3ccd6")), ("FONTSIZE", (0, 0), (-1, -1), 9),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f4f6f8")]),
    ] + ([("FONTNAME", (0, -1), (-1, -1), "Helvetica-Bold")] if len(kpis) > 1 else [])))
    story += [table, Spacer(1, 6 * mm)]
    palette = [colors.HexColor(c) for c in ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9")]
    days = sorted({d for k in kpis if not k.daily.empty for d in k.daily["day"]})
    if days:
        drawing = Drawing(760, 190)
        chart = VerticalBarChart()
        chart.x, chart.y, chart.width, chart.height = 50, 30, 690, 140
        chart.data = [[float(k.daily.set_index("day")["kwh"].get(d, 0.0)) if not k.daily.empty else 0.0
                       for d in days] for k in kpis]
        chart.categoryAxis.categoryNames = [f"{d:%d}" for d in days]
        chart.categoryAxis.labels.fontSize = 7
        chart.valueAxis.valueMin = 0
        chart.valueAxis.labels.fontSize = 7
        chart.valueAxis.labelTextFormat = lambda v: f"{v:,.0f}"
        chart.categoryAxis.style = "stacked"
        for i in range(len(kpis)):
            chart.bars[i].fillColor = palette[i % len(palette)]
            chart.bars[i].strokeColor = None
        drawing.add(chart)
        drawing.add(String(50, 178, "Energy per day [kWh] (day of month, plant time)", fontSize=9))
        for i, k in enumerate(kpis):
            drawing.add(String(520 + 110 * i, 178, f"■ {k.site.name}"[:24], fontSize=8, fillColor=palette[i % 5]))
        story += [drawing, Spacer(1, 4 * mm)]
    if findings:
        story.append(Paragraph("Largest findings of the month", styles["Heading3"]))
        for f in findings[:8]:
            story.append(Paragraph(f"<b>{escape(f['machine'])}</b> ({escape(f['start'])}): "
                                   f"{escape(fmt_co2_text(f['explanation']))}",
                                   styles["Normal"]))
    else:
        story.append(Paragraph("No findings in this month in the latest analysis run.", styles["Normal"]))
    story += [Spacer(1, 4 * mm), *loop_story(loop, loop_note, {k.site.id: k.site.name for k in kpis}, styles),
              Spacer(1, 3 * mm), Paragraph(f"<font size=7 color='#627d98'>{generated}</font>", styles["Normal"])]
    doc.build(story)
    return buf.getvalue()

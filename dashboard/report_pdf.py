"""The monthly report as PDF (reportlab): what a chief data officer forwards. KPIs per site and in total, daily
energy per site as a bar chart, and the largest findings of the month; no browser or image renderer needed."""

from __future__ import annotations

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


def monthly_pdf(month: str, kpis: list, total: dict, findings: list[dict], generated: str) -> bytes:
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
    story += [Spacer(1, 4 * mm), Paragraph("Verified savings: no verified savings yet (none stored for this month).",
                                           styles["Normal"]),
              Spacer(1, 3 * mm), Paragraph(f"<font size=7 color='#627d98'>{generated}</font>", styles["Normal"])]
    doc.build(story)
    return buf.getvalue()

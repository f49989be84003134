"""Enterprise KPIs and the monthly PDF on a backfilled, analysed store (real SQLite, real analysis run)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import time

import pytest

from core.plant import read_plant
from core.storage import open_store
from dashboard.enterprise import month_range, site_kpis, totals
from dashboard.overview import latest_run_findings, site_info
from simulator.plant import DEFAULT_PLANT_FILE

pytestmark = pytest.mark.integration  # its plant is made by the wattline CLI in child processes

NS = 1_000_000_000


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("enterprise")
    for args in (("simulate", "backfill", "--days", "10", "--machines", "6", "--resolution", "300", "--store",
                  "p.db", "--quiet"), ("analyze", "--store", "p.db", "--quiet")):
        done = subprocess.run([sys.executable, "-m", "wattline", *args], cwd=folder, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    return folder / "p.db"


def test_site_kpis_add_up_to_the_hourly_energy_and_the_findings(analysed):
    plant = read_plant(DEFAULT_PLANT_FILE)
    store = open_store(str(analysed))
    now = time.time_ns()
    start = now - 30 * 86400 * NS
    info = site_info("north", plant, dt.UTC)
    findings = latest_run_findings(store, start, now)
    k = site_kpis(store, info, findings, plant, start, now, now)
    assert k.energy_kwh > 0 and abs(k.daily["kwh"].sum() - k.energy_kwh) < 1e-6 * k.energy_kwh
    assert abs(k.weekly["kwh"].sum() - k.energy_kwh) < 1e-6 * k.energy_kwh
    assert k.good_units > 0 and k.kwh_per_unit == k.energy_kwh / k.good_units
    waste = sum(e.excess_kwh for e in findings if e.kind not in ("meter_stuck", "meter_reset", "meter_gap",
                                                                 "meter_spike", "anomaly"))
    assert 0 < k.potential_kwh <= waste + 1e-6
    north_machines = sum(ref.site.id == "north" for ref in plant.machines)
    assert (k.metered, k.machines) == (6, north_machines) and 0.9 < k.completeness <= 1.0
    t = totals([k, k])
    assert t["energy_kwh"] == 2 * k.energy_kwh and t["currency"] == "EUR"


def test_month_range_is_local_and_checked():
    start, stop = month_range("2026-03", "Europe/Berlin")
    assert (stop - start) / NS / 3600 == 31 * 24 - 1  # the spring DST change: one hour shorter
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_range("2026-13", "UTC")


def test_monthly_pdf_renders_and_is_gated(analysed, tmp_path):
    from dashboard.app import create_app
    from dashboard.tests.helpers import logged_in, make_users

    make_users(tmp_path / "users.json")
    app = create_app(str(analysed), users=tmp_path / "users.json", plant=DEFAULT_PLANT_FILE)
    month = dt.date.today().strftime("%Y-%m")
    response = logged_in(app, "carla").get(f"/report/monthly.pdf?month={month}")
    assert response.status_code == 200 and response.data[:5] == b"%PDF-"
    assert app.server.test_client().get(f"/report/monthly.pdf?month={month}").status_code == 401  # no login
    assert logged_in(app, "sam").get(f"/report/monthly.pdf?site=north&month={month}").status_code == 403
    assert logged_in(app, "carla").get("/report/monthly.pdf?month=2026-13").status_code == 400
    csv = logged_in(app, "carla").get("/export/enterprise.csv").get_data(as_text=True)
    assert csv.startswith("site,energy_kwh") and "All sites" in csv
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(response.data)
    if shutil.which("pdftoppm"):  # render the first page as a person would see it (an artifact to look at)
        from pathlib import Path

        out = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(pdf),
                               str(out / "report-monthly")], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr


def test_every_table_has_a_csv_gated_like_its_page(analysed, tmp_path):
    import io

    import pandas as pd

    from dashboard.app import create_app
    from dashboard.tests.helpers import logged_in, make_users

    make_users(tmp_path / "users.json")
    app = create_app(str(analysed), users=tmp_path / "users.json", plant=DEFAULT_PLANT_FILE)
    top = pd.read_csv(io.BytesIO(logged_in(app, "anna").get("/export/top-machines.csv?period=30d").data))
    findings = pd.read_csv(io.BytesIO(logged_in(app, "anna").get("/export/findings.csv?period=30d").data))
    # The top machines rank the reduction potential: the waste causes' findings (an anomaly, also under "Waste" in the
    # findings table, is not part of it; whether the analysis finds one depends on the simulated days).
    from core.model import WASTE_KINDS
    from dashboard.overview import KIND_LABELS

    causes = {KIND_LABELS.get(k, k) for k in WASTE_KINDS}
    waste = findings[(findings["category"] == "Waste") & findings["kind"].isin(causes)]
    assert len(top) > 0 and top["avoidable_kwh"].is_monotonic_decreasing
    first = waste[waste["machine"] == top["machine"].iloc[0].split("/")[-1]]["avoidable_kwh"].sum()
    assert abs(first - top["avoidable_kwh"].iloc[0]) < 0.1 * len(waste) + 1e-6  # the findings' kWh, rounded per row
    assert logged_in(app, "sam").get("/export/top-machines.csv?site=north").status_code == 403
    series = logged_in(app, "erik").get("/export/series.csv").get_data(as_text=True)
    assert "electrical" in series and "south" not in series
    assert logged_in(app, "anna").get("/export/series.csv").status_code == 403  # not a plant manager's page

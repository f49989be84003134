"""The monthly PDF carries the work-order loop: closure KPIs per site and in total, with the reference figures, and
verified against expected savings, equal to :func:`core.orders.kpi.kpis` of the user's orders; kept to the user's
sites; said plainly when no orders database is configured. Real SQLite store and orders database, orders taken
through open -> acknowledged -> resolved -> verified, rejected and reassigned by the service; the text read back from
the PDF with pypdf."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from core.model import Event
from core.orders.config import SAMPLE_FILE
from core.orders.kpi import kpis
from core.orders.service import Actor
from core.storage import open_store
from dashboard.orders import open_service
from dashboard.overview import fmt_energy
from dashboard.tests.helpers import NS, fill_plant, logged_in, make_users, write_power

MANAGER = Actor("test-manager", "admin", ())
DAY = dt.timedelta(days=1)
H = dt.timedelta(hours=1)


def pdf_text(data: bytes) -> str:
    """All pages' text, whitespace collapsed (wrapped table cells read as one line)."""
    from pypdf import PdfReader

    assert data[:5] == b"%PDF-"
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages).split())


@pytest.fixture
def plant(tmp_path):
    """A store with a north and a south site (a few hours of power up to now) and its orders database with orders in
    every state, on a clock 20 days back: returns (store path, orders URL, service)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    store_path = tmp_path / "plant.db"
    end_s = int(now.timestamp())
    with open_store(str(store_path)) as store:
        fill_plant(store, end_s, 3 * 3600, step_s=60)
        write_power(store, {"site": "south", "line": "S1", "machine": "s1-press"}, range(end_s - 3 * 3600, end_s, 60),
                    [40.0] * 180)
    url = f"sqlite:///{tmp_path / 'orders.db'}"
    svc = open_service(url, str(SAMPLE_FILE))
    d0 = now - 20 * DAY
    clock = {"t": d0}
    svc.now = lambda: clock["t"]

    def idle(machine: str, kind: str, day: int, kwh: float) -> Event:
        start = d0 - (10 - day) * DAY
        return Event(machine, kind, start, start + 4 * H, kwh, {"cost": kwh * 0.2, "currency": "EUR"})

    svc.sync([idle("north/L1/l1-m1", "idle_running", d, 30.0) for d in range(10)]  # maintenance-north, due 120 h
             + [idle("north/L2/l2-m1", "off_shift_load", 9, 80.0),  # maintenance-north
                idle("south/S1/s1-press", "excess_specific_energy", 9, 120.0),  # no rule: the dispatch queue
                idle("south/S1/s1-oven", "idle_running", 9, 90.0)], run="run-1")  # maintenance-south
    by = {o["machine"]: o["id"] for o in svc.list()}
    a, b, d = by["north/L1/l1-m1"], by["north/L2/l2-m1"], by["south/S1/s1-oven"]
    for at, step in ((d0 + 2 * H, lambda: svc.transition(d, "reject", MANAGER, reason="planned warm-up")),
                     (d0 + 3 * H, lambda: svc.transition(a, "ack", MANAGER)),
                     (d0 + DAY, lambda: svc.transition(a, "resolve", MANAGER, "valve closed")),  # on time
                     (d0 + 30 * H, lambda: svc.transition(b, "ack", MANAGER)),
                     (d0 + 31 * H, lambda: svc.assign(b, "utilities", MANAGER, "compressed air?")),
                     (d0 + 40 * H, lambda: svc.assign(b, "maintenance-north", MANAGER, "no, a machine")),  # 2 passes
                     (d0 + 41 * H, lambda: svc.transition(b, "start", MANAGER)),
                     (d0 + 150 * H, lambda: svc.transition(b, "resolve", MANAGER))):  # late (due 120 h)
        clock["t"] = at
        step()
    clock["t"] = d0 + 17 * DAY
    assert [o["id"] for o in svc.verify(d0 + 16 * DAY, MANAGER)] == [a]  # the pattern stayed away 15 days
    yield store_path, url, svc
    svc.engine.dispose()


def _app(tmp_path, store_path, url):
    from dashboard.app import create_app

    make_users(tmp_path / "users.json")
    return create_app(str(store_path), users=tmp_path / "users.json", orders_db=url, orders_rules=SAMPLE_FILE)


def _pct(value):
    return f"{value:.0f} %"


def test_pdf_shows_the_loop_kpis_of_the_users_sites(plant, tmp_path):
    from dashboard.app import close_store

    store_path, url, svc = plant
    app = _app(tmp_path, store_path, url)
    month = dt.date.today().strftime("%Y-%m")
    try:
        response = logged_in(app, "carla").get(f"/report/monthly.pdf?month={month}")
        assert response.status_code == 200
        text = pdf_text(response.data)
        expected = kpis(svc.list())
        total, north, south = expected["total"], expected["by_site"]["north"], expected["by_site"]["south"]
        # The scenario: 3 of 4 orders routed; 2 closed on time of 3 closed (one late, one rejected); one passed on twice.
        assert (total["orders"], total["auto_dispatch_rate"], total["closed"]) == (4, 0.75, 3)
        assert round(total["on_time_pct"]) == 67 and total["passed_on_more_than_once"] == 1
        assert total["verified_orders"] == 1 and total["verified_savings_kwh"] > 0
        assert "Work-order loop and verified savings" in text and "no verified savings yet" not in text
        assert f"Auto-dispatched {_pct(100 * total['auto_dispatch_rate'])} (reference 86 %)" in text
        assert f"Closed on time {_pct(total['on_time_pct'])} (reference > 98 %)" in text
        assert f"Verified savings {fmt_energy(total['verified_savings_kwh'])} of " \
               f"{fmt_energy(total['expected_savings_kwh'])}/yr expected" in text
        assert "86 % auto-dispatched, > 98 % closed on time" in text  # the reference note under the chart
        assert "Auto-dispatched (ref 86 %)" in text and "Closed on time (ref 98 %)" in text  # the chart's axis
        for name, k in (("north", north), ("south", south), ("Total", total)):  # one table row each, in order
            row = (f"{name} {k['orders']} {_pct(100 * k['auto_dispatch_rate'])}"
                   + (f" ({k['in_dispatch_queue']} queued)" if k["in_dispatch_queue"] else ""))
            assert row in text, row
            assert f"{k['passed_on_more_than_once']} ({k['reassignments']} passes)" in text
        assert f"{_pct(north['on_time_pct'])} of {north['closed']}" in text
        assert f"{_pct(south['on_time_pct'])} of {south['closed']}" in text
        assert f"{fmt_energy(north['verified_savings_kwh'])} ± {fmt_energy(north['verified_uncertainty_kwh'])}" in text

        # A plant manager of north: north's orders only, nothing of south's, no total row.
        anna = pdf_text(logged_in(app, "anna").get(f"/report/monthly.pdf?month={month}").data)
        mine = kpis([o for o in svc.list() if o["site"] == "north"])["total"]
        assert f"Auto-dispatched {_pct(100 * mine['auto_dispatch_rate'])} (reference 86 %)" in anna
        assert f"north {mine['orders']} {_pct(100 * mine['auto_dispatch_rate'])}" in anna
        assert "south" not in anna and "Total" not in anna and "queued" not in anna
        assert f"Verified savings {fmt_energy(mine['verified_savings_kwh'])} of " \
               f"{fmt_energy(mine['expected_savings_kwh'])}/yr expected" in anna
        assert logged_in(app, "anna").get(f"/report/monthly.pdf?site=south&month={month}").status_code == 403

        pdf = tmp_path / "report.pdf"
        pdf.write_bytes(response.data)
        if shutil.which("pdftoppm"):  # every page as a person sees it (artifacts to look at)
            out = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
            out.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(["pdftoppm", "-png", "-r", "80", str(pdf), str(out / "report-monthly-orders")],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
    finally:
        close_store(app)


def test_pdf_says_plainly_when_no_orders_database_is_configured(tmp_path, monkeypatch):
    from dashboard.app import close_store, create_app

    monkeypatch.delenv("WATTLINE_ORDERS_DB", raising=False)
    store_path = tmp_path / "plant.db"
    with open_store(str(store_path)) as store:
        fill_plant(store, time.time_ns() // NS, 3600, step_s=60)
    make_users(tmp_path / "users.json")
    app = create_app(str(store_path), users=tmp_path / "users.json")  # no --orders-db, none beside the store
    try:
        text = pdf_text(logged_in(app, "carla").get(f"/report/monthly.pdf?month={dt.date.today():%Y-%m}").data)
    finally:
        close_store(app)
    assert "Work orders: no work-order database yet" in text and "--orders-db" in text
    assert "Auto-dispatched" not in text and "Verified savings: none" in text

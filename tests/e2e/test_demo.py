"""``wattline demo`` as a user runs it: a separate process, a real browser, then ``wattline series``."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from dashboard import ids
from tests.e2e.conftest import SCREENSHOTS, free_port
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

MACHINE_TRACES_JS = """
const el = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');
if (!el || !el.data) return null;
return el.data.map(t => [t.name, t.x && t.x.length ? String(t.x[t.x.length - 1]) : null]);
"""


def wattline(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wattline", *args], capture_output=True, text=True, timeout=120, **kwargs)


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def _text(browser, element_id: str) -> str | None:
    """Text of an element once it holds a number (None while absent or still a dash)."""
    found = browser.find_elements("id", element_id)
    text = found[0].text.strip() if found else ""
    return text if text and text[0].isdigit() else None


def read_logins(demo) -> dict[str, tuple[str, str]]:
    """{role: (user, password)} from the demo's banner (printed once at start)."""
    logins = {}
    while len(logins) < 4:
        line = demo.stdout.readline()
        assert line, "the demo ended before printing its logins"
        parts = line.split()
        if len(parts) == 5 and parts[1] == "user" and parts[3] == "password":
            logins[parts[0]] = (parts[2], parts[4])
    return logins


def test_demo_serves_a_live_dashboard_and_stores_every_machine(tmp_path, browser):
    store = tmp_path / "x.db"
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "wattline", "demo", "--duration", "40", "--machines", "8", "--store", str(store),
         "--port", str(port), "--opcua-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        logins = read_logins(demo)
        assert set(logins) == {"plant_manager", "engineer", "cdo", "admin"}
        status, page = wait_for(lambda: get(url), 60, "the dashboard page", interval=0.5)
        assert status == 200 and "Log in" in page  # every page needs a login

        name, password = logins["plant_manager"]
        browser.get(url + "login")
        browser.find_element("id", "username").send_keys(name)
        browser.find_element("id", "password").send_keys(password)
        browser.find_element("id", "login-submit").click()
        browser.get(url)
        first = wait_for(lambda: browser.execute_script(MACHINE_TRACES_JS, ids.LIVE_MACHINE_GRAPH), 60, "machine traces",
                         interval=0.5)
        first_last_x = {name: x for name, x in first}

        def moved():
            now = browser.execute_script(MACHINE_TRACES_JS, ids.LIVE_MACHINE_GRAPH) or []
            advanced = [name for name, x in now if name in first_last_x and x and x > (first_last_x[name] or "")]
            return now if len(now) == 8 and len(advanced) == len(now) else None

        after = wait_for(moved, 60, "every machine trace to gain newer points", interval=0.5)
        assert len(after) == 8
        browser.save_screenshot(str(SCREENSHOTS / "demo-live.png"))

        # The backfilled, analysed history: the overview shows a reduction potential at once.
        browser.get(url + "overview")
        potential = wait_for(lambda: _text(browser, ids.KPI_POTENTIAL_KWH), 60, "the overview's potential", interval=0.5)
        assert any(ch in "123456789" for ch in potential.split()[0]), potential
        browser.save_screenshot(str(SCREENSHOTS / "demo-overview.png"))
        _out, err = demo.communicate(timeout=90)
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
            demo.wait(timeout=30)
    assert demo.returncode == 0, err
    assert "Traceback" not in err

    listed = wattline("series", "--store", str(store), "--json")
    assert listed.returncode == 0, listed.stderr
    series = json.loads(listed.stdout)
    power = [s for s in series if s["measurement"] == "electrical" and s["field"] == "active_power_kw"]
    assert len({s["tags"]["machine"] for s in power}) == 8
    assert all(s["count"] >= 20 for s in power), [(s["tags"]["machine"], s["count"]) for s in power]

    # Work orders opened from the analysed history by the sample rules, beside the store, none of them progressed.
    orders = wattline("orders", "list", "--store", str(store), "--json")
    assert orders.returncode == 0, orders.stderr
    opened = json.loads(orders.stdout)
    assert opened and {o["status"] for o in opened} == {"open"}
    assert all(o["owner"] for o in opened if o["auto_dispatched"])

    # Every machine page has its baseline: actual and expected energy per hour from the demo's analysis (run "demo").
    from core.storage import open_store
    from core.storage.results import results_for

    with open_store(str(store)) as stored, results_for(stored) as results:
        hours = results.read_outputs("baseline", run="demo")
    assert hours["machine"].nunique() == 8 and hours["expected_kwh"].notna().mean() > 0.9


def _newest_plant_value(store) -> dt.datetime | None:
    """Time of the newest stored plant value (None while there is none), read as a user would: ``wattline series``."""
    listed = json.loads(wattline("series", "--store", str(store), "--json").stdout)
    return max((dt.datetime.fromisoformat(s["last"]) for s in listed if not s["measurement"].startswith("wattline_")),
               default=None)


def test_ctrl_c_stops_cleanly_and_keeps_what_was_received(tmp_path):
    store = tmp_path / "x.db"
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "wattline", "demo", "--machines", "3", "--store", str(store), "--port", str(port),
         "--opcua-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    # Wait until the demo says it is up, its dashboard answers and live values are stored, then press Ctrl-C.
    banner = ""
    while "History:" not in banner:  # the banner ends with what the backfilled history's analysis found
        line = demo.stdout.readline()
        assert line, banner
        banner += line
    assert "Dashboard:" in banner and "avoidable" in banner, banner
    up = dt.datetime.now(dt.UTC)  # the collector starts after the banner: newer values are live ones
    wait_for(lambda: get(f"http://127.0.0.1:{port}/")[0] == 200, 60, "the dashboard page", interval=0.5)
    wait_for(lambda: (_newest_plant_value(store) or up) > up, 60, f"a live value stored (after {up})", interval=1.0)
    demo.send_signal(signal.SIGINT)
    out, err = demo.communicate(timeout=60)
    assert demo.returncode == 0, err
    summary = [line for line in out.splitlines() if "values stored" in line]
    assert summary, out
    reported = int(summary[0].split(";")[1].split()[0])
    live = int(summary[0].split("(")[1].split()[0].replace(",", ""))
    assert live > 0, summary
    listed = json.loads(wattline("series", "--store", str(store), "--json").stdout)
    # Plant values only: wattline_* series are the collector's health and the analysis's outputs (materials).
    stored = sum(s["count"] for s in listed if not s["measurement"].startswith("wattline_"))
    assert reported > 0 and stored == reported

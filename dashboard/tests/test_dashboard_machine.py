"""Machine page: actual vs baseline from the analysis's stored outputs, findings shaded, energy per good unit; the
callback answered through Dash's own endpoint, as the browser calls it (no browser needed), and checked for site."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from core.model import Event
from core.storage.results import results_for
from core.storage.sqlite import SQLiteStore
from dashboard import ids
from dashboard.machine_data import MachineBaseline, baseline_summary, daily_kwh_per_unit
from dashboard.render_overview import machine_figure, unit_figure
from dashboard.tests.helpers import fill_plant, logged_in

OUTPUTS = [(ids.MACHINE_GRAPH, "figure"), (ids.MACHINE_FINDINGS, "children"), (ids.MACHINE_TITLE, "children"),
           (ids.MACHINE_STATES, "figure"), (ids.MACHINE_UNIT, "figure")]


def hours(start: pd.Timestamp, n: int, actual: float, expected: float, good: float) -> pd.DataFrame:
    return pd.DataFrame({"time": pd.date_range(start, periods=n, freq="h", tz="UTC"), "actual_kwh": actual,
                         "expected_kwh": expected, "good": good})


def test_figures_and_summary_from_the_stored_hours():
    t0 = pd.Timestamp("2026-03-02 00:00", tz="UTC")
    base = MachineBaseline(hours(t0, 48, 12.0, 10.0, 40.0), "run-1")
    assert base.deviation == pytest.approx(0.2) and base.kwh_per_unit == pytest.approx(0.3)
    text = baseline_summary(base)
    assert "576 kWh against a baseline of 480 kWh (+20.0 %)" in text and "0.300 kWh per good unit" in text
    assert "no baseline yet" in baseline_summary(MachineBaseline())
    energy = pd.DataFrame({"time": pd.date_range(t0, periods=48, freq="h", tz="UTC"), "kwh": 12.0})
    finding = Event("north/L1/m1", "idle_running", t0.to_pydatetime(), (t0 + pd.Timedelta(hours=3)).to_pydatetime(),
                    6.0, {})
    fig = machine_figure(energy, [finding], "Europe/Berlin", base.hours)
    assert [t.name for t in fig.data] == ["Actual", "Baseline (expected)", "Waste finding"]
    assert list(fig.data[1].y) == [10.0] * 48
    assert fig.layout.annotations[0].text == "Idle running"  # one finding: labelled on the chart
    assert str(fig.data[1].x[0]).startswith("2026-03-02T01:00:00")  # plant time (Berlin, UTC+1)
    assert len(fig.layout.shapes) == 1 and fig.layout.showlegend  # the finding, shaded
    # Without outputs the chart is the actual energy alone; many findings are shaded without labels.
    many = [finding] * 9 + [Event("north/L1/m1", "meter_gap", finding.start, finding.end, 0.0, {})]
    plain = machine_figure(energy, many, "UTC", MachineBaseline().hours)
    assert [t.name for t in plain.data] == ["Actual", "Waste finding", "Meter fault"]
    assert len(plain.layout.shapes) == 10 and not plain.layout.annotations
    daily = daily_kwh_per_unit(base, "UTC")
    assert daily["kwh_per_unit"].tolist() == pytest.approx([0.3, 0.3])
    unit = unit_figure(daily, base.kwh_per_unit)
    assert unit.data[0].type == "bar" and len(unit.layout.shapes) == 1
    assert "No good units" in unit_figure(daily.iloc[0:0]).layout.annotations[0].text


def values(encoded) -> list:
    """A figure array as numbers (Plotly sends numeric arrays base64-encoded)."""
    import base64

    if isinstance(encoded, dict):
        return np.frombuffer(base64.b64decode(encoded["bdata"]), dtype=encoded["dtype"]).tolist()
    return list(encoded)


def machine_request(path: str, period: str = "7d") -> dict:
    return {"output": ".." + "...".join(f"{i}.{p}" for i, p in OUTPUTS) + "..",
            "outputs": [{"id": i, "property": p} for i, p in OUTPUTS],
            "inputs": [{"id": ids.MACHINE_PATH, "property": "data", "value": path},
                       {"id": ids.PERIOD, "property": "value", "value": period}],
            "changedPropIds": [f"{ids.MACHINE_PATH}.data"], "state": []}


def test_machine_callback_draws_the_stored_baseline_for_its_site_only(tmp_path, users_path):
    from dashboard.app import create_app

    path = tmp_path / "plant.db"
    store = SQLiteStore(path)
    now_s = int(time.time())
    fill_plant(store, now_s, 12 * 3600, step_s=60)
    start = pd.Timestamp(now_s - 12 * 3600, unit="s", tz="UTC").ceil("h")
    frame = hours(start, 10, 20.0, 18.0, 100.0)
    frame["expected_kwh"] = 18.0 + np.arange(10)
    both = pd.concat([frame.assign(site="north"), frame.assign(site="south", expected_kwh=frame["expected_kwh"] * 100)])
    with results_for(store) as results:
        results.write_outputs("analyze-x", "baseline", both.assign(line="L1", machine="l1-m1"))
    store.close()
    app = create_app(str(path), users=users_path)
    answer = logged_in(app, "anna").post("/_dash-update-component", json=machine_request("north/L1/l1-m1"))
    assert answer.status_code == 200, answer.data[:300]
    response = json.loads(answer.data)["response"]
    traces = response[ids.MACHINE_GRAPH]["figure"]["data"]
    assert [t["name"] for t in traces][:2] == ["Actual", "Baseline (expected)"]
    assert values(traces[1]["y"]) == pytest.approx(list(18.0 + np.arange(10)))  # north's, not south's (x100)
    assert "against a baseline of" in json.dumps(response[ids.MACHINE_TITLE]["children"])
    assert response[ids.MACHINE_UNIT]["figure"]["data"][0]["type"] == "bar"
    # A user of another site asking by hand gets nothing.
    forged = logged_in(app, "sam").post("/_dash-update-component", json=machine_request("north/L1/l1-m1"))
    assert forged.status_code == 204 and forged.data == b""

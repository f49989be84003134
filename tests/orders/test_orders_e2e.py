"""End to end: a backfilled and analysed plant whose scenario removes a waste from a date (``fixes``); orders are
opened and routed by the sample rules, KPIs computed, and the fixed orders go from open to verified with their
measured savings; a waste that was not fixed comes back and its order returns to in_progress."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from core.orders.config import SAMPLE_FILE, read_orders_config

FIX_DATE = "2026-01-26"
FIXED = ("cnc-01", "cnc-02", "imm-01", "imm-02")

pytestmark = pytest.mark.integration  # end to end: backfill, analyze, orders over 42 days

@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """42 days of 8 machines with idle running fixed on four of them from FIX_DATE, analysed (findings stored)."""
    from core.storage import open_store
    from simulator.backfill import backfill
    from simulator.plant import default_plant
    from simulator.scenario import read_scenario
    from wattline.cli_analyze import run_analyze

    folder = tmp_path_factory.mktemp("orders-e2e")
    scenario_file = folder / "fix.yaml"
    scenario_file.write_text(f"fixes:\n  - {{cause: idle_running, machines: [{', '.join(FIXED)}], date: {FIX_DATE}}}\n")
    store = str(folder / "plant.db")
    plant = default_plant(8)
    with open_store(store) as st:
        result = backfill(st, plant, 42, read_scenario(scenario_file), 0, dt.date(2026, 1, 5), 300,
                          folder / "truth.json", progress=False)
    run_analyze(store, None, None, None, None, run="analysis", progress=False)
    users = folder / "users.json"
    from dashboard.users import UsersFile

    UsersFile(users).add("anna", "plant_manager", ["north", "south"], "correct-horse-battery")
    return {"store": store, "users": str(users), "truth": result.manifest}


def test_findings_to_verified_savings(analysed, db_url, monkeypatch, capsys, tmp_path):
    from tests.orders.test_orders_cli import run_cli

    monkeypatch.chdir(tmp_path)
    base = ["--store", analysed["store"], "--db", db_url, "--rules", str(SAMPLE_FILE)]
    user = ["--users", analysed["users"], "--as", "anna"]

    def cli(*args):
        code, out, err = run_cli(monkeypatch, capsys, "orders", *args)
        assert code == 0, err
        assert out.strip() or "--json" not in args, (args, err)
        return json.loads(out) if "--json" in args else out

    synced = cli("sync", *base, "--json")
    orders = cli("list", *base, "--json")
    assert synced["opened"] and len(orders) == len(synced["opened"])
    config = read_orders_config(SAMPLE_FILE)
    for o in orders:  # routed by the sample rules, or honestly left in the queue
        routed = config.route(o["machine"], o["kind"], o["severity"])
        assert o["owner"] == (routed[1].team if routed else None)
        assert o["excess_kwh"] > 0 or o["category"] == "data_quality"
    kpi = cli("kpi", *base, "--json")["total"]
    assert kpi["orders"] == len(orders)
    assert kpi["auto_dispatch_rate"] == pytest.approx(sum(o["owner"] is not None for o in orders) / len(orders),
                                                      abs=1e-4)
    assert kpi["expected_savings_kwh"] > 0

    fixed = [o for o in orders if o["kind"] == "idle_running" and o["machine"].rsplit("/", 1)[-1] in FIXED]
    assert fixed, "the analysis found no idle running on the fixed machines"
    not_fixed = next(o for o in orders if o["kind"] == "excess_specific_energy" and o["window_start"] < "2026-01-25"
                     and o["window_end"] > "2026-02-05")  # a waste that goes on after the fix date
    fix_at = f"{FIX_DATE}T00:00:00+01:00"  # local midnight in Europe/Berlin, as the scenario's fix
    for o in [*fixed, not_fixed]:
        if o["owner"] is None:
            cli("assign", str(o["id"]), "maintenance-north", *base, *user)
        cli("ack", str(o["id"]), *base, *user)
        cli("resolve", str(o["id"]), *base, *user, "--at", fix_at, "-m", "fix in place")
    verified = {o["id"]: o for o in cli("verify", *base, "--json")}
    assert set(verified) == {o["id"] for o in fixed}
    truth = analysed["truth"]["fixes"]["machines"]
    measured = sum(o["verified_kwh"] for o in verified.values())
    true_avoided = sum(truth[o["machine"]]["avoided_kwh"] for o in fixed)
    assert all(o["verified_kwh"] > 0 and o["verified_uncertainty_kwh"] > 0 for o in verified.values())
    # Measured against the baseline where it is conclusive (wattline savings), else by the pattern's absence.
    assert {o["verification_method"] for o in verified.values()} <= {"baseline", "absence"}
    assert any(o["verification_method"] == "baseline" for o in verified.values())
    assert 0.5 * true_avoided < measured < 2.0 * true_avoided, (measured, true_avoided)
    back = cli("show", str(not_fixed["id"]), *base, "--json")
    assert back["status"] == "in_progress" and back["audit"][-1]["action"] == "returned"
    shown = cli("show", str(fixed[0]["id"]), *base, "--json")
    assert [a["to"] for a in shown["audit"]][-3:] == ["acknowledged", "resolved", "verified"]
    total = cli("kpi", *base, "--json")["total"]
    assert total["verified_orders"] == len(fixed)
    assert total["verified_savings_kwh"] == pytest.approx(measured, abs=0.1)
    print(f"verified {measured:.1f} kWh against {true_avoided:.1f} kWh truly avoided: "
          + ", ".join(f"{o['machine']} {o['verification_method']} {o['verified_kwh']:.0f} +- "
                      f"{o['verified_uncertainty_kwh']:.0f} (truth {truth[o['machine']]['avoided_kwh']:.0f})"
                      for o in verified.values()))

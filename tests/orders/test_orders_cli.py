"""``wattline orders``: sync from stored findings, list --json, status changes, and one clear error per bad input
with nothing changed (on SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import sys

import pytest

from core.model import Event
from core.orders.config import SAMPLE_FILE
from core.orders.db import open_orders_db
from core.orders.service import OrderService

UTC = dt.UTC
D0 = dt.datetime(2026, 1, 5, tzinfo=UTC)


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``wattline ARGS`` in this process; returns (exit code, stdout, stderr)."""
    from wattline.cli import main

    monkeypatch.setattr(sys, "argv", ["wattline", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def findings() -> list[Event]:
    out = []
    for day in range(5):
        start = D0 + dt.timedelta(days=day, hours=18)
        out.append(Event("north/l1/cnc-01", "idle_running", start, start + dt.timedelta(hours=3), 40.0,
                         {"cost": 8.0, "co2_kg": 16.0, "severity": 0.4, "explanation": f"cnc-01 idled on day {day}"}))
    out.append(Event("south/l2/imm-01", "excess_specific_energy", D0, D0 + dt.timedelta(days=2), 300.0,
                     {"cost": 60.0}))
    return out


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A store with one analysis run's findings and a users file (read only by the tests; made once: argon2 is slow)."""
    from core.storage import open_store
    from core.storage.results import results_for
    from dashboard.users import UsersFile

    folder = tmp_path_factory.mktemp("orders-cli")
    store = folder / "plant.db"
    with open_store(str(store)) as st, results_for(st) as results:
        results.write_findings("analyze-test", findings())
    users = folder / "users.json"
    uf = UsersFile(users)
    uf.add("anna", "plant_manager", ["north", "south"], "correct-horse-battery")
    uf.add("eric", "engineer", ["north"], "correct-horse-battery")
    uf.add("carl", "cdo", [], "correct-horse-battery")
    return store, users


@pytest.fixture
def plant(shared, tmp_path, db_url, monkeypatch):
    """The shared store and users file, and an empty orders database."""
    store, users = shared
    monkeypatch.chdir(tmp_path)
    base = ["--store", str(store), "--db", db_url, "--rules", str(SAMPLE_FILE)]
    return {"base": base, "users": ["--users", str(users)], "db": db_url}


def snapshot(db_url: str) -> list:
    engine = open_orders_db(db_url)
    try:
        svc = OrderService(engine)
        return [svc.get(o["id"]) for o in svc.list()]
    finally:
        engine.dispose()


def test_sync_list_and_status_changes(monkeypatch, capsys, plant):
    code, out, err = run_cli(monkeypatch, capsys, "orders", "sync", *plant["base"], "--json")
    assert code == 0, err
    synced = json.loads(out)
    assert synced["run"] == "analyze-test" and len(synced["opened"]) == 2 and len(synced["queued"]) == 1
    code, out, _ = run_cli(monkeypatch, capsys, "orders", "list", *plant["base"], "--json")
    orders = {o["machine"]: o for o in json.loads(out)}
    keys = {"id", "status", "owner", "site", "machine", "kind", "opened", "due", "excess_kwh", "expected_savings_kwh"}
    assert all(keys <= set(o) for o in orders.values())
    cnc = orders["north/l1/cnc-01"]
    assert cnc["owner"] == "maintenance-north" and cnc["excess_kwh"] == pytest.approx(200.0)
    assert orders["south/l2/imm-01"]["owner"] is None
    code, out, err = run_cli(monkeypatch, capsys, "orders", "ack", str(cnc["id"]), *plant["base"], *plant["users"],
                             "--as", "eric", "-m", "looking", "--json")
    assert code == 0, err and json.loads(out)["status"] == "acknowledged"
    code, out, err = run_cli(monkeypatch, capsys, "orders", "assign", str(orders["south/l2/imm-01"]["id"]),
                             "maintenance-south", *plant["base"], *plant["users"], "--as", "anna")
    assert code == 0, err
    code, out, _ = run_cli(monkeypatch, capsys, "orders", "show", str(cnc["id"]), *plant["base"], "--json")
    shown = json.loads(out)
    assert [a["action"] for a in shown["audit"]] == ["open", "ack"] and shown["audit"][1]["comment"] == "looking"
    code, out, _ = run_cli(monkeypatch, capsys, "orders", "kpi", *plant["base"], "--json")
    assert json.loads(out)["total"]["auto_dispatch_rate"] == pytest.approx(0.5)


@pytest.mark.parametrize("case", ["unknown order", "illegal transition", "no role", "wrong site", "unknown user",
                                  "unknown team", "reject without reason", "rules with unknown team"])
def test_bad_input_one_clear_error_nothing_changed(monkeypatch, capsys, plant, tmp_path, case):
    code, out, err = run_cli(monkeypatch, capsys, "orders", "sync", *plant["base"], "--json")
    assert code == 0, err
    ids = {o["machine"]: o["id"] for o in json.loads(run_cli(monkeypatch, capsys, "orders", "list", *plant["base"],
                                                              "--json")[1])}
    north, south = str(ids["north/l1/cnc-01"]), str(ids["south/l2/imm-01"])
    before = snapshot(plant["db"])
    base, users = plant["base"], plant["users"]
    bad_rules = tmp_path / "bad-rules.yaml"
    bad_rules.write_text("teams:\n  - id: maintenance\nrules:\n  - match: {site: north}\n    team: maintenace\n")
    args, expected = {
        "unknown order": (["ack", "4242", *base, *users, "--as", "anna"], "no order 4242"),
        "illegal transition": (["resolve", north, *base, *users, "--as", "anna"], "cannot resolve it"),
        "no role": (["ack", north, *base, *users, "--as", "carl"], "role cdo"),
        "wrong site": (["assign", south, "utilities", *base, *users, "--as", "eric"], "role engineer"),
        "unknown user": (["ack", north, *base, *users, "--as", "mallory"], "unknown user 'mallory'"),
        "unknown team": (["assign", south, "nobody", *base, *users, "--as", "anna"], "unknown team 'nobody'"),
        "reject without reason": (["reject", north, *base, *users, "--as", "anna"], "reject needs a reason"),
        "rules with unknown team": (["ack", north, "--store", base[1], "--db", plant["db"], "--rules", str(bad_rules),
                                     *users, "--as", "anna"], "unknown team 'maintenace'; valid teams: maintenance"),
    }[case]
    code, out, err = run_cli(monkeypatch, capsys, "orders", *args)
    assert code in (1, 2), (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wattline: error:") and expected in lines[0], err
    assert "Traceback" not in err and out == ""
    assert snapshot(plant["db"]) == before


def test_engineer_of_another_site_is_refused(monkeypatch, capsys, plant):
    run_cli(monkeypatch, capsys, "orders", "sync", *plant["base"])
    south = next(o for o in json.loads(run_cli(monkeypatch, capsys, "orders", "list", *plant["base"], "--json")[1])
                 if o["site"] == "south")
    run_cli(monkeypatch, capsys, "orders", "assign", str(south["id"]), "maintenance-south", *plant["base"],
            *plant["users"], "--as", "anna")
    before = snapshot(plant["db"])
    code, _, err = run_cli(monkeypatch, capsys, "orders", "ack", str(south["id"]), *plant["base"], *plant["users"],
                           "--as", "eric")
    assert code == 2 and "may not act on site 'south'" in err
    assert snapshot(plant["db"]) == before

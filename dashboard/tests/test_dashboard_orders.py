"""Work orders in the dashboard without a browser: findings rows with their orders, the changes a user's role and site
allow, status changes through the findings page's callback (and hand-made requests refused), closure KPIs, the machine
page's open orders, the JSON API mounted beside the dashboard. SQLite and PostgreSQL (tests/orders/conftest.py)."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from core.model import Event
from core.orders.api import hash_token
from core.orders.config import SAMPLE_FILE
from core.orders.kpi import kpis
from dashboard import ids
from dashboard.access import AccessDenied
from dashboard.app import create_app
from dashboard.orders import open_service, resolve_orders_db
from dashboard.orders_view import (
    allowed_actions,
    apply_action,
    closure_summary,
    finding_order_rows,
    loop_table_rows,
    machine_open_orders,
    visible_orders,
)
from dashboard.tests.helpers import TEST_USERS, client_of, logged_in
from dashboard.users import User
from tests.orders.conftest import db_url, pg_url  # noqa: F401 - the two backends' fixtures

UTC = dt.UTC
D0 = dt.datetime(2026, 1, 5, tzinfo=UTC)
H = dt.timedelta(hours=1)
USERS = {name: User(name, role, tuple(sites), "") for name, (role, sites, _pw) in TEST_USERS.items()}


def findings() -> list[Event]:
    return [
        # north waste: routed to maintenance-north by the sample rules
        Event("north/L1/l1-m1", "idle_running", D0, D0 + 5 * H, 90.0, {"cost": 18.0, "currency": "EUR"}),
        # south excess energy per unit: no rule routes it -> the dispatch queue
        Event("south/S1/s1-press", "excess_specific_energy", D0, D0 + 6 * H, 120.0, {"cost": 20.0}),
        # below the 50 kWh threshold: no order
        Event("north/L2/l2-m1", "off_shift_load", D0, D0 + 2 * H, 10.0, {}),
    ]


@pytest.fixture
def service(db_url):  # noqa: F811
    svc = open_service(db_url, str(SAMPLE_FILE))
    svc.now = lambda: D0 + 6 * H  # orders open when the findings were synced, not when the test runs
    svc.sync(findings(), run="run-1")
    yield svc
    svc.engine.dispose()


def by_machine(svc, machine: str) -> dict:
    return next(o for o in svc.list() if o["machine"] == machine)


# -- pure functions ------------------------------------------------------------------------------------------------------
def test_each_finding_row_shows_its_order(service):
    now = D0 + 200 * H  # past the north order's due time (120 h)
    rows = {r["machine"]: r for r in finding_order_rows(findings(), service.list(), None, UTC, now)}
    north = by_machine(service, "north/L1/l1-m1")
    assert rows["north/L1/l1-m1"]["order_id"] == north["id"]
    assert rows["north/L1/l1-m1"]["order_status"] == "Open"
    assert rows["north/L1/l1-m1"]["order_owner"] == "maintenance-north"
    assert rows["north/L1/l1-m1"]["order_due"] == north["due"][:16].replace("T", " ")  # UTC plant time here
    assert rows["north/L1/l1-m1"]["overdue"] is True
    assert rows["south/S1/s1-press"]["order_owner"] == "dispatch queue"
    assert rows["north/L2/l2-m1"]["order_id"] is None and rows["north/L2/l2-m1"]["order_status"] == "No order"
    assert [r["kwh"] for r in rows.values()] == sorted((r["kwh"] for r in rows.values()), reverse=True)


def test_actions_follow_role_site_and_status(service):
    north = by_machine(service, "north/L1/l1-m1")
    south = by_machine(service, "south/S1/s1-press")
    teams = service.teams()
    assert allowed_actions(USERS["anna"], north, teams) == ["ack", "reject", "assign"]  # plant manager, north
    assert allowed_actions(USERS["erik"], north, teams) == ["ack"]  # engineer: no reject, no assign
    assert allowed_actions(USERS["sam"], north, teams) == []  # another site
    assert allowed_actions(USERS["carla"], north, teams) == []  # the CDO reads only
    assert allowed_actions(USERS["admin"], north, teams) == ["ack", "reject", "assign"]
    # In the dispatch queue: assign first (ack, start and resolve need an owner).
    assert allowed_actions(USERS["sam"], south, teams) == ["reject", "assign"]
    assert allowed_actions(USERS["sam"], south, []) == ["reject"]  # no teams configured: nothing to assign to


def test_status_changes_are_audited_under_the_dashboard_user(service):
    north = by_machine(service, "north/L1/l1-m1")
    ok, message = apply_action(service, USERS["erik"], north["id"], "ack", comment="on it")
    assert ok and "open → acknowledged" in message and "erik" in message
    order = service.get(north["id"])
    assert order["status"] == "acknowledged"
    assert order["audit"][-1]["actor"] == "erik" and order["audit"][-1]["comment"] == "on it"
    ok, _ = apply_action(service, USERS["erik"], north["id"], "start")
    ok2, _ = apply_action(service, USERS["erik"], north["id"], "resolve", comment="valve closed")
    assert ok and ok2 and service.get(north["id"])["status"] == "resolved"


@pytest.mark.parametrize("user, action, kwargs, expected", [
    ("erik", "start", {}, "cannot start it"),  # illegal transition: open -> in progress
    ("anna", "reject", {"reason": "  "}, "needs a reason"),
    ("erik", "reject", {"reason": "not ours"}, "may not reject"),  # engineers may not reject
    ("sam", "ack", {}, "no order"),  # another site's order looks like no order
    ("carla", "ack", {}, "may not ack"),
    ("anna", "assign", {"team": "nobody"}, "unknown team"),
    ("anna", "assign", {"team": "maintenance-north"}, "already belongs"),
    ("anna", "assign", {}, "Choose the team"),
    ("anna", "explode", {}, "Choose an action"),
    ("anna", "ack", {"version": 99}, "changed since version 99"),
])
def test_refused_changes_say_why_and_change_nothing(service, user, action, kwargs, expected):
    north = by_machine(service, "north/L1/l1-m1")
    before = service.get(north["id"])
    ok, message = apply_action(service, USERS[user], north["id"], action, **kwargs)
    assert not ok and expected in message, message
    after = service.get(north["id"])
    assert after["version"] == before["version"] and after["status"] == "open" and after["audit"] == before["audit"]


def test_reassignment_counts_and_shows_in_the_kpis(service):
    south = by_machine(service, "south/S1/s1-press")
    assert apply_action(service, USERS["sam"], south["id"], "assign", team="maintenance-south")[0]
    assert apply_action(service, USERS["sam"], south["id"], "assign", team="utilities")[0]
    assert apply_action(service, USERS["sam"], south["id"], "assign", team="maintenance-south")[0]
    result = kpis(service.list(), now=D0 + 40 * 24 * H)
    assert result["by_site"]["south"]["passed_on_more_than_once"] == 1
    rows = {r["site"]: r for r in loop_table_rows(result)}
    assert set(rows) == {"north", "south", "Total"}
    assert rows["south"]["passed"] == "1 (2 passes)"
    assert rows["Total"]["auto"] == "50 % (1 queued)" or rows["Total"]["auto"] == "50 %"
    assert rows["north"]["age"].startswith("<1d 0 · 1-7d 0 · 7-30d 0 · >30d 1")
    teams = {r["site"]: r for r in loop_table_rows(result, "by_team")}
    assert set(teams) == {"maintenance-north", "maintenance-south", "Total"}  # the queued order was assigned
    assert teams["maintenance-south"]["passed"] == "1 (2 passes)"
    summary = dict(closure_summary(result["total"]))
    assert summary["Auto-dispatched"] == "50 % (reference 86 %)"
    assert summary["Open orders"] == "2 (2 overdue)"


def test_orders_are_limited_to_the_users_sites(service):
    orders = service.list()
    assert {o["site"] for o in visible_orders(orders, USERS["anna"])} == {"north"}
    assert {o["site"] for o in visible_orders(orders, USERS["carla"])} == {"north", "south"}
    assert {o["site"] for o in visible_orders(orders, USERS["carla"], "south")} == {"south"}
    with pytest.raises(AccessDenied):
        visible_orders(orders, USERS["anna"], "south")


def test_machine_page_lists_open_orders_only(service):
    north = by_machine(service, "north/L1/l1-m1")
    rows = machine_open_orders(service.list(), "north/L1/l1-m1", "UTC", D0)
    assert [r["id"] for r in rows] == [north["id"]] and rows[0]["order_status"] == "Open"
    assert apply_action(service, USERS["anna"], north["id"], "reject", reason="planned test run")[0]
    assert machine_open_orders(service.list(), "north/L1/l1-m1", "UTC", D0) == []


def test_orders_database_resolution_is_that_of_wattline_orders(tmp_path, monkeypatch):
    monkeypatch.delenv("WATTLINE_ORDERS_DB", raising=False)
    assert resolve_orders_db(str(tmp_path / "w.db"), None) == (f"sqlite:///{tmp_path / 'w.db'}.orders.db", False)
    assert resolve_orders_db("influx://localhost:8086?bucket=b", None) == (None, False)
    assert resolve_orders_db("x.db", "postgresql://u@h/db") == ("postgresql+psycopg://u@h/db", True)
    monkeypatch.setenv("WATTLINE_ORDERS_DB", "sqlite:////tmp/o.db")
    assert resolve_orders_db("x.db", None) == ("sqlite:////tmp/o.db", True)
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="postgresql"):
        resolve_orders_db("x.db", "mysql://h/db")


# -- through the dashboard's server --------------------------------------------------------------------------------------
APPLY_OUTPUTS = [(ids.FINDINGS_ACTION_MSG, "children"), (ids.FINDINGS_CHANGED, "data")]


def apply_request(order_id, action, *, version=None, team=None, reason=None, comment="") -> dict:
    """The request the findings page's Apply button sends, made by hand."""
    states = [(ids.FINDINGS_ORDER_ID, "data", {"id": order_id, "version": version}),
              (ids.FINDINGS_ACTION, "value", action), (ids.FINDINGS_TEAM, "value", team),
              (ids.FINDINGS_REASON, "value", reason), (ids.FINDINGS_COMMENT, "value", comment),
              (ids.FINDINGS_CHANGED, "data", 0)]
    return {
        "output": ".." + "...".join(f"{i}.{p}" for i, p in APPLY_OUTPUTS) + "..",
        "outputs": [{"id": i, "property": p} for i, p in APPLY_OUTPUTS],
        "inputs": [{"id": ids.FINDINGS_APPLY, "property": "n_clicks", "value": 1}],
        "changedPropIds": [f"{ids.FINDINGS_APPLY}.n_clicks"],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in states],
    }


@pytest.fixture
def app(tmp_path, users_path, service, db_url):  # noqa: F811
    app = create_app(str(tmp_path / "plant.db"), users=users_path, orders_db=db_url, orders_rules=SAMPLE_FILE)
    yield app
    from dashboard.app import close_store

    close_store(app)


def _message(response) -> str:
    return json.dumps(response.get_json()["response"][ids.FINDINGS_ACTION_MSG]["children"], ensure_ascii=False)


def test_status_change_through_the_findings_callback(app, service):
    north = by_machine(service, "north/L1/l1-m1")
    erik = logged_in(app, "erik")
    response = erik.post("/_dash-update-component", json=apply_request(north["id"], "ack", version=north["version"]))
    assert response.status_code == 200
    assert "open → acknowledged" in _message(response)
    assert response.get_json()["response"][ids.FINDINGS_CHANGED]["data"] == 1
    order = service.get(north["id"])
    assert order["status"] == "acknowledged" and order["audit"][-1]["actor"] == "erik"
    # An illegal transition from the page: a clear message, nothing changed, the grid not refreshed.
    response = erik.post("/_dash-update-component", json=apply_request(north["id"], "resolve", version=0))
    assert "Not changed" in _message(response) and ids.FINDINGS_CHANGED not in response.get_json()["response"]
    assert service.get(north["id"])["status"] == "acknowledged"


@pytest.mark.parametrize("user, action, status", [
    ("sam", "ack", 200),  # plant manager of south: north's order is "no order"
    ("sam", "reject", 200),
    ("erik", "reject", 200),  # engineer of north: may not reject
    ("carla", "ack", 204),  # CDO: the callback is refused at the guard (reads only)
])
def test_hand_made_requests_cannot_change_what_the_user_may_not(app, service, user, action, status):
    north = by_machine(service, "north/L1/l1-m1")
    before = service.get(north["id"])
    client = logged_in(app, user)
    response = client.post("/_dash-update-component",
                           json=apply_request(north["id"], action, reason="forged", version=north["version"]))
    assert response.status_code == status
    if status == 200:
        assert "Not changed" in _message(response)
        if user == "sam":  # another site's order: as if it did not exist, nothing of it in the answer
            assert f"no order {north['id']}" in _message(response) and "l1-m1" not in response.get_data(as_text=True)
    after = service.get(north["id"])
    assert after["status"] == "open" and after["version"] == before["version"] and after["audit"] == before["audit"]


def test_without_a_session_the_callback_is_401(app, service):
    north = by_machine(service, "north/L1/l1-m1")
    response = client_of(app).post("/_dash-update-component", json=apply_request(north["id"], "ack"))
    assert response.status_code == 401
    assert service.get(north["id"])["status"] == "open"


def test_json_api_is_mounted_with_a_tokens_file(tmp_path, users_path, service, db_url):  # noqa: F811
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [
        {"name": "cmms", "sha256": hash_token("tok-north-" + "n" * 20), "role": "plant_manager", "sites": ["north"]}]}))
    os.chmod(tokens, 0o600)
    app = create_app(str(tmp_path / "plant.db"), users=users_path, orders_db=db_url, orders_rules=SAMPLE_FILE,
                     api_tokens=tokens)
    client = app.server.test_client()  # no Origin, no cookie: a CMMS
    auth = {"Authorization": "Bearer tok-north-" + "n" * 20}
    listed = client.get("/api/v1/orders", headers=auth)
    assert listed.status_code == 200 and {o["site"] for o in listed.get_json()} == {"north"}
    north = by_machine(service, "north/L1/l1-m1")
    changed = client.post(f"/api/v1/orders/{north['id']}/status", json={"action": "ack"}, headers=auth)
    assert changed.status_code == 200 and changed.get_json()["order"]["status"] == "acknowledged"
    assert service.get(north["id"])["audit"][-1]["actor"] == "api:cmms"
    assert client.get("/api/v1/orders").status_code == 401  # no token: the login gate's 401, never a redirect
    assert client.get("/api/v1/orders", headers={"Authorization": "Bearer wrong"}).status_code == 401
    # A logged-in browser session alone does not open the token API.
    assert logged_in(app, "admin").get("/api/v1/orders").status_code == 401
    # Without a tokens file there is no API at all.
    plain = create_app(str(tmp_path / "plant.db"), users=users_path, orders_db=db_url)
    assert plain.server.test_client().get("/api/v1/orders", headers=auth).status_code == 401
    page = logged_in(plain, "admin").get("/api/v1/orders", headers=auth)  # Dash's page route (its 404 page)
    assert page.mimetype == "text/html" and b"maintenance-north" not in page.data


def machine_orders_request(path: str) -> dict:
    return {"output": f"{ids.MACHINE_ORDERS}.children", "outputs": {"id": ids.MACHINE_ORDERS, "property": "children"},
            "inputs": [{"id": ids.MACHINE_PATH, "property": "data", "value": path}],
            "changedPropIds": [f"{ids.MACHINE_PATH}.data"], "state": []}


def test_machine_page_orders_card_is_checked_for_site(app, service):
    south = by_machine(service, "south/S1/s1-press")
    sam = logged_in(app, "sam").post("/_dash-update-component", json=machine_orders_request("south/S1/s1-press"))
    assert sam.status_code == 200
    body = sam.get_data(as_text=True)
    assert f"#{south['id']}" in body and "dispatch queue" in body and "Excess energy per unit" in body
    forged = logged_in(app, "anna").post("/_dash-update-component", json=machine_orders_request("south/S1/s1-press"))
    assert forged.status_code == 204 and forged.data == b""


# -- command line and wattline serve ----------------------------------------------------------------------------------------
@pytest.mark.integration  # the wattline CLI in a child process
def test_dashboard_options_fail_clearly(tmp_path, users_path):
    import subprocess
    import sys

    from dashboard.tests.test_dashboard_cli_serve import free_port

    store = tmp_path / "plant.db"
    store.touch()

    def run(*args):  # each fails while checking its settings, before it would listen
        return subprocess.run([sys.executable, "-m", "wattline", "dashboard", "--store", str(store), "--users",
                               str(users_path), "--port", str(free_port()), *args], capture_output=True, text=True,
                              timeout=120)

    bad_url = run("--orders-db", "mysql://db-host/orders")
    assert bad_url.returncode == 2 and "postgresql+psycopg://" in bad_url.stderr and "Traceback" not in bad_url.stderr
    no_rules = run("--orders-rules", str(tmp_path / "none.yaml"))
    assert no_rules.returncode == 2 and "none.yaml" in no_rules.stderr and "Traceback" not in no_rules.stderr
    tokens = tmp_path / "tokens.json"
    tokens.write_text('{"tokens": []}')
    os.chmod(tokens, 0o644)
    loose = run("--api-tokens", str(tokens))
    assert loose.returncode == 2 and "tokens.json" in loose.stderr and "Traceback" not in loose.stderr


def test_serve_passes_the_orders_section_to_the_dashboard(tmp_path):
    from wattline.cli_serve import build_services
    from wattline.serve_config import ServeConfig

    cfg = ServeConfig.model_validate({
        "store": str(tmp_path / "w.db"), "analytics": {"enabled": False},
        "orders": {"enabled": True, "db": "postgresql+psycopg://wattline@db:5432/wattline?passfile=/etc/pgpass",
                   "rules": str(tmp_path / "orders.yaml")},
        "dashboard": {"users": str(tmp_path / "users.json"), "api_tokens": str(tmp_path / "tokens.json")}})
    args = next(s for s in build_services(cfg) if s.name == "dashboard").args
    assert args[args.index("--orders-db") + 1] == cfg.orders.db
    assert args[args.index("--orders-rules") + 1] == str(tmp_path / "orders.yaml")
    assert args[args.index("--api-tokens") + 1] == str(tmp_path / "tokens.json")
    plain = ServeConfig.model_validate({"store": str(tmp_path / "w.db"),
                                        "dashboard": {"users": str(tmp_path / "users.json")}})
    args = next(s for s in build_services(plain) if s.name == "dashboard").args
    assert "--orders-db" not in args and "--api-tokens" not in args  # default: beside the store, as 'wattline orders'


def test_findings_export_carries_each_findings_order(tmp_path, users_path, db_url):  # noqa: F811
    import io

    import pandas as pd

    from core.storage import open_store
    from core.storage.results import results_for

    start = dt.datetime.now(UTC).replace(microsecond=0) - 48 * H
    events = [Event("north/L1/l1-m1", "idle_running", start, start + 5 * H, 90.0, {"cost": 18.0}),
              Event("north/L2/l2-m1", "off_shift_load", start, start + 2 * H, 10.0, {})]  # below the threshold
    store = str(tmp_path / "plant.db")
    with open_store(store) as st, results_for(st) as results:
        results.write_findings("run-1", events)
    svc = open_service(db_url, str(SAMPLE_FILE))
    svc.sync(events, run="run-1")
    order = svc.list()[0]
    svc.engine.dispose()
    app = create_app(store, users=users_path, orders_db=db_url, orders_rules=SAMPLE_FILE)
    csv = logged_in(app, "anna").get("/export/findings.csv?site=all&period=7d")
    assert csv.status_code == 200
    frame = pd.read_csv(io.BytesIO(csv.data)).set_index("machine")
    assert frame.loc["l1-m1", "order_id"] == order["id"] and frame.loc["l1-m1", "order_status"] == "Open"
    assert frame.loc["l1-m1", "order_owner"] == "maintenance-north"
    assert frame.loc["l2-m1", "order_status"] == "No order" and pd.isna(frame.loc["l2-m1", "order_id"])
    assert logged_in(app, "sam").get("/export/findings.csv?site=north&period=7d").status_code == 403
    from dashboard.app import close_store

    close_store(app)

"""The /api/v1 blueprint over a real HTTP server on loopback: token auth, site scoping, idempotent status updates,
errors as JSON with the right status code (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import urllib.error
import urllib.request

import pytest

from core.errors import ConfigError
from core.model import Event
from core.orders.api import findings_from_store, hash_token, orders_api, read_api_tokens
from core.orders.config import SAMPLE_FILE, read_orders_config
from core.orders.db import open_orders_db
from core.orders.service import OrderService

UTC = dt.UTC
D0 = dt.datetime(2026, 1, 5, tzinfo=UTC)
TOKENS = {"cmms": "tok-cmms-" + "x" * 20, "north": "tok-north-" + "y" * 20, "cdo": "tok-cdo-" + "z" * 20}


def events() -> list[Event]:
    return [Event("north/l1/cnc-01", "idle_running", D0, D0 + dt.timedelta(hours=5), 90.0, {"cost": 18.0}),
            Event("south/l1/cnc-11", "idle_running", D0, D0 + dt.timedelta(hours=5), 90.0, {"cost": 18.0})]


@pytest.fixture
def server(db_url, tmp_path):
    from flask import Flask
    from werkzeug.serving import make_server

    from core.storage import open_store
    from core.storage.results import results_for

    store = str(tmp_path / "plant.db")
    with open_store(store) as st, results_for(st) as results:
        results.write_findings("run-1", events())
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [
        {"name": "cmms", "sha256": hash_token(TOKENS["cmms"]), "role": "plant_manager", "sites": ["north", "south"]},
        {"name": "north", "sha256": hash_token(TOKENS["north"]), "role": "engineer", "sites": ["north"]},
        {"name": "cdo", "sha256": hash_token(TOKENS["cdo"]), "role": "cdo"}]}))
    os.chmod(tokens, 0o600)
    engine = open_orders_db(db_url)
    svc = OrderService(engine, read_orders_config(SAMPLE_FILE))
    svc.sync(events(), run="run-1")
    app = Flask("orders-api-test")
    app.register_blueprint(orders_api(svc, read_api_tokens(tokens), findings=findings_from_store(store)))
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}/api/v1", svc
    http.shutdown()
    thread.join(timeout=10)
    engine.dispose()


def call(base: str, path: str, token: str | None = None, body: dict | None = None) -> tuple[int, object]:
    req = urllib.request.Request(base + path, method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_token_auth_scoping_and_idempotent_updates(server):
    base, svc = server
    assert call(base, "/orders")[0] == 401
    assert call(base, "/orders", "not-a-token")[0] == 401
    status, orders = call(base, "/orders", TOKENS["cmms"])
    assert status == 200 and {o["site"] for o in orders} == {"north", "south"}
    status, north_only = call(base, "/orders", TOKENS["north"])
    assert [o["site"] for o in north_only] == ["north"]
    south = next(o for o in orders if o["site"] == "south")
    north = north_only[0]
    assert call(base, f"/orders/{south['id']}", TOKENS["north"])[0] == 404  # another site looks like no order
    status, first = call(base, f"/orders/{north['id']}/status", TOKENS["north"], {"action": "ack", "comment": "odoo"})
    assert status == 200 and first["changed"] and first["order"]["status"] == "acknowledged"
    status, again = call(base, f"/orders/{north['id']}/status", TOKENS["north"], {"action": "ack"})
    assert status == 200 and not again["changed"]
    audit = svc.get(north["id"])["audit"]
    assert [(a["action"], a["actor"]) for a in audit] == [("open", "wattline"), ("ack", "api:north")]
    assert call(base, f"/orders/{north['id']}/status", TOKENS["north"], {"action": "reject", "reason": "x"})[0] == 403
    assert call(base, f"/orders/{north['id']}/status", TOKENS["cdo"], {"action": "start"})[0] == 403
    assert call(base, f"/orders/{south['id']}/status", TOKENS["cmms"], {"action": "verify"})[0] == 400
    status, err = call(base, f"/orders/{south['id']}/status", TOKENS["cmms"], {"action": "resolve"})
    assert status == 409 and "cannot resolve" in err["error"]
    stale = call(base, f"/orders/{south['id']}/status", TOKENS["cmms"], {"action": "ack", "version": 0})
    assert stale[0] == 409 and "changed since version 0" in stale[1]["error"]
    status, moved = call(base, f"/orders/{south['id']}/assign", TOKENS["cmms"], {"team": "utilities"})
    assert status == 200 and moved["order"]["owner"] == "utilities" and moved["order"]["reassignments"] == 1
    assert not call(base, f"/orders/{south['id']}/assign", TOKENS["cmms"], {"team": "utilities"})[1]["changed"]
    assert call(base, "/orders/999", TOKENS["cmms"])[0] == 404
    status, found = call(base, "/findings", TOKENS["north"])
    assert status == 200 and [f["machine"] for f in found] == ["north/l1/cnc-01"] and found[0]["run"] == "run-1"
    status, kpi = call(base, "/kpi", TOKENS["cdo"])
    assert status == 200 and kpi["total"]["orders"] == 2 and kpi["total"]["reassignments"] == 1


def test_tokens_file_is_checked(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [{"name": "a", "sha256": "00", "role": "boss"}]}))
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match=r"tokens\[0\]: unknown role 'boss'"):
        read_api_tokens(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_api_tokens(path)

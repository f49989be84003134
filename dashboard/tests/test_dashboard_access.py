"""Users and access, enforced at the server: forged requests through Flask's test client, no browser."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from core.errors import WattlineError
from dashboard import ids
from dashboard.access import SiteScopedStore, is_guarded
from dashboard.app import create_app, store_of
from dashboard.store import EXTENSION
from dashboard.tests.helpers import (
    NS,
    TEST_USERS,
    client_of,
    fill_plant,
    form_token,
    logged_in,
    login,
    machine_tags,
    write_power,
)
from dashboard.users import UsersError, UsersFile

LIVE_OUTPUTS = [(ids.LIVE_KPIS, "children"), (ids.LIVE_EMPTY, "children"), (ids.LIVE_EMPTY, "style"),
                (ids.LIVE_GRAPHS, "style"), (ids.LIVE_LINE_GRAPH, "figure"), (ids.LIVE_MACHINE_GRAPH, "figure"),
                (ids.LIVE_STATUS, "children")]
SERIES_OUTPUTS = [(ids.SERIES_TABLE, "rowData"), (ids.SERIES_SUMMARY, "children"), (ids.SERIES_EMPTY, "children"),
                  (ids.SERIES_EMPTY, "style")]


def callback_payload(outputs, inputs) -> dict:
    return {
        "output": ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..",
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "changedPropIds": [f"{inputs[0][0]}.{inputs[0][1]}"],
        "state": [],
    }


def live_request(site):
    return callback_payload(LIVE_OUTPUTS, [(ids.LIVE_INTERVAL, "n_intervals", 1), (ids.LIVE_RANGE, "value", "15m"),
                                           (ids.SITE, "value", site)])


def series_request(site):
    return callback_payload(SERIES_OUTPUTS, [(ids.SERIES_INTERVAL, "n_intervals", 1), (ids.SERIES_FILTER, "value", ""),
                                             (ids.SITE, "value", site)])


@pytest.fixture
def app(tmp_path, users_path):
    """The dashboard over a store with two sites: north (L1, L2) and south (S1)."""
    app = create_app(str(tmp_path / "plant.db"), users=users_path)
    store = store_of(app)
    now = time.time_ns() // NS
    fill_plant(store, now, 120)
    times = list(range(now - 120, now, 5))
    write_power(store, machine_tags("S1", "s1-press", site="south"), times, [77.0] * len(times))
    yield app
    app.server.extensions[EXTENSION].close()


def machine_names(response_json) -> list[str]:
    return [t["name"] for t in response_json["response"][ids.LIVE_MACHINE_GRAPH]["figure"]["data"]]


# -- the gate --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/series", "/findings", "/overview", "/machine/north/L1/l1-m1", "/no-such-page"])
def test_pages_redirect_to_login_without_a_session(app, path):
    response = client_of(app).get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("method, path", [
    ("GET", "/_dash-layout"), ("GET", "/_dash-dependencies"), ("POST", "/_dash-update-component"),
    ("GET", "/export/findings.csv"), ("GET", "/_reload-hash"), ("GET", "/_mcp"), ("GET", "/_favicon.ico"),
])
def test_everything_else_is_401_without_a_session(app, method, path):
    client = client_of(app)
    response = client.open(path, method=method, json=live_request("north") if method == "POST" else None)
    assert response.status_code == 401
    assert b"l1-m1" not in response.data and b"s1-press" not in response.data


def test_the_component_bundles_are_gated_too(app):
    client = logged_in(app)
    index = client.get("/").get_data(as_text=True)
    bundle = next(part.split('"')[0] for part in index.split('src="')[1:] if "_dash-component-suites" in part)
    assert client.get(bundle).status_code == 200
    assert client_of(app).get(bundle).status_code == 401


def test_mcp_endpoint_is_off(app):
    assert not app._enable_mcp
    client = logged_in(app)
    assert not any(rule.rule.startswith("/_mcp") for rule in app.server.url_map.iter_rules())
    assert b"l1-m1" not in client.post("/_mcp", json={"jsonrpc": "2.0", "method": "tools/list", "id": 1}).data


def find_prop(node, key, value):
    """The props of the first component in a layout whose ``key`` prop equals ``value``."""
    if isinstance(node, dict):
        props = node.get("props")
        if isinstance(props, dict) and props.get(key) == value:
            return props
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = find_prop(child, key, value)
        if found is not None:
            return found
    return None


# -- login, session, logout, CSRF, rate limit --------------------------------------------------------------------------------
def test_login_sets_a_strict_httponly_cookie_and_returns_to_the_page(app):
    client = client_of(app)
    token = form_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"username": "anna", "password": TEST_USERS["anna"][2], "csrf": token,
                                           "next": "/series"})
    assert response.status_code == 302 and response.headers["Location"] == "/series"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.get("/_dash-layout").status_code == 200


@pytest.mark.parametrize("next_path", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(app, next_path):
    client = client_of(app)
    token = form_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"username": "anna", "password": TEST_USERS["anna"][2], "csrf": token,
                                           "next": next_path})
    assert response.headers["Location"] == "/"


def test_wrong_password_and_missing_form_token_are_refused(app):
    client = client_of(app)
    assert login(client, "anna", "not-the-password").status_code == 401
    assert client.get("/_dash-layout").status_code == 401
    response = client.post("/login", data={"username": "anna", "password": TEST_USERS["anna"][2]})
    assert response.status_code == 400 and client.get("/_dash-layout").status_code == 401


def test_failed_logins_are_rate_limited(app):
    client = client_of(app)
    for _ in range(5):
        assert login(client, "sam", "wrong-password-x").status_code == 401
    blocked = login(client, "sam")  # even the right password now waits
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert client.get("/_dash-layout").status_code == 401


@pytest.mark.parametrize("origin", [None, "http://evil.example", "null"])
def test_state_changing_requests_need_this_servers_origin(app, origin):
    client = logged_in(app)
    client.environ_base.pop("HTTP_ORIGIN", None)
    headers = {"Origin": origin} if origin else {}
    response = client.post("/_dash-update-component", json=live_request("north"), headers=headers)
    assert response.status_code == 403 and b"l1-m1" not in response.data


def test_logout_ends_the_session(app):
    client = logged_in(app, "anna")
    token = find_prop(client.get("/_dash-layout").get_json(), "name", "csrf")["value"]
    assert client.post("/logout", data={"csrf": token}).status_code == 302
    assert client.get("/_dash-layout").status_code == 401


def test_a_password_change_or_removal_ends_open_sessions(tmp_path, app):
    users_file = UsersFile(tmp_path / "own-users.json")
    users_file.add("tom", "plant_manager", ["north"], "tom-password-1")
    app2 = create_app(str(tmp_path / "plant.db"), users=users_file)
    client = client_of(app2)
    assert login(client, "tom", "tom-password-1").status_code == 302
    assert client.get("/_dash-layout").status_code == 200
    users_file.set_password("tom", "tom-password-2")
    assert client.get("/_dash-layout").status_code == 401
    assert login(client, "tom", "tom-password-2").status_code == 302
    users_file.remove("tom")
    assert client.get("/_dash-layout").status_code == 401


# -- every callback guarded -----------------------------------------------------------------------------------------------------
def test_every_callback_is_wrapped_by_the_guard(app):
    client = logged_in(app)
    client.get("/")  # Dash registers its page-routing callback on the first request
    client.get("/_dash-dependencies")
    assert len(app.callback_map) >= 5
    # Clientside callbacks (Dash's page-title one) run in the browser: the server holds no function for them.
    clientside = {c["output"] for c in app._callback_list if c.get("clientside_function")}
    assert all(key in clientside for key, cb in app.callback_map.items() if "callback" not in cb)
    unguarded = [key for key, cb in app.callback_map.items() if "callback" in cb and not is_guarded(cb["callback"])]
    assert not unguarded, f"callbacks without the access guard: {unguarded}"


# -- sites ----------------------------------------------------------------------------------------------------------------------------
def test_a_plant_manager_sees_only_their_site_in_callbacks(app):
    anna = logged_in(app, "anna")
    mine = anna.post("/_dash-update-component", json=live_request("all"))
    assert mine.status_code == 200
    assert machine_names(mine.get_json()) == ["l1-m1", "l1-m2", "l1-m3", "l2-m1", "l2-m2"]
    forged = anna.post("/_dash-update-component", json=live_request("south"))
    assert forged.status_code == 204 and forged.data == b""
    sam = logged_in(app, "sam")
    assert machine_names(sam.post("/_dash-update-component", json=live_request("all")).get_json()) == ["s1-press"]
    assert sam.post("/_dash-update-component", json=live_request("north")).status_code == 204
    carla = logged_in(app, "carla")
    assert len(machine_names(carla.post("/_dash-update-component", json=live_request("all")).get_json())) == 6


def test_roles_are_checked_inside_callbacks(app):
    # The stored-series page is for engineers, CDOs and admins; a plant manager's forged request gets nothing.
    assert logged_in(app, "anna").post("/_dash-update-component", json=series_request("all")).status_code == 204
    erik = logged_in(app, "erik").post("/_dash-update-component", json=series_request("all"))
    assert erik.status_code == 200
    text = json.dumps(erik.get_json())
    assert "l1-m1" in text and "s1-press" not in text


def test_site_scoped_store_never_widens_a_filter(app):
    view = SiteScopedStore(store_of(app), ["north"])
    assert set(view.last_values("electrical", "active_power_kw")["site"]) == {"north"}
    assert view.last_values("electrical", "active_power_kw", tags={"site": "south"}).empty
    assert view.last_values("electrical", "active_power_kw", tags={"site": ["south", "north"]})["site"].unique().tolist() == ["north"]
    assert {i.key.tag_dict["site"] for i in view.series()} == {"north"}


# -- the users file ------------------------------------------------------------------------------------------------------------
def test_users_file_is_private_and_holds_no_password(tmp_path):
    users = UsersFile(tmp_path / "u.json")
    users.add("ida", "engineer", ["north", "south"], "ida-password-1")
    mode = stat.S_IMODE(os.stat(users.path).st_mode)
    assert mode == 0o600
    text = users.path.read_text()
    assert "ida-password-1" not in text and "$argon2id$" in text
    assert users.authenticate("ida", "ida-password-1").sites == ("north", "south")
    assert users.authenticate("ida", "wrong") is None and users.authenticate("nobody", "x") is None
    os.chmod(users.path, 0o644)
    with pytest.raises(WattlineError, match="chmod 600"):
        UsersFile(users.path).users()


@pytest.mark.parametrize("role, sites, match", [
    ("plant_manager", [], "at least one site"), ("cdo", ["north"], "every site"), ("boss", [], "valid roles"),
])
def test_users_file_refuses_bad_roles_and_sites(tmp_path, role, sites, match):
    with pytest.raises(UsersError, match=match):
        UsersFile(tmp_path / "u.json").add("x", role, sites, "long-enough-1")


def test_the_dashboard_needs_a_users_file(tmp_path):
    from dashboard.errors import DashboardError

    with pytest.raises(DashboardError, match="users file"):
        create_app(str(tmp_path / "plant.db"))

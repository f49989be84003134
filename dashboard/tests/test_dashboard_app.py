"""The app shell and the server, through Flask's test client and real localhost sockets (no browser)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from core.errors import WattlineError
from dashboard import ids
from dashboard.app import create_app, store_of
from dashboard.errors import DashboardError, PortInUseError
from dashboard.serve import DashboardServer, run_dashboard
from dashboard.store import EXTENSION, StoreProvider
from dashboard.tests.helpers import NS, fill_plant, logged_in
from tests.support import wait_for

LIVE_OUTPUTS = [
    (ids.LIVE_KPIS, "children"),
    (ids.LIVE_EMPTY, "children"),
    (ids.LIVE_EMPTY, "style"),
    (ids.LIVE_GRAPHS, "style"),
    (ids.LIVE_LINE_GRAPH, "figure"),
    (ids.LIVE_MACHINE_GRAPH, "figure"),
    (ids.LIVE_STATUS, "children"),
]


def call_live_callback(client, range_key="15m") -> dict:
    """POST the live page's callback request the way the browser does; return {id: {prop: value}}."""
    payload = {
        "output": ".." + "...".join(f"{i}.{p}" for i, p in LIVE_OUTPUTS) + "..",
        "outputs": [{"id": i, "property": p} for i, p in LIVE_OUTPUTS],
        "inputs": [
            {"id": ids.LIVE_INTERVAL, "property": "n_intervals", "value": 1},
            {"id": ids.LIVE_RANGE, "property": "value", "value": range_key},
            {"id": ids.SITE, "property": "value", "value": "all"},
        ],
        "changedPropIds": [f"{ids.LIVE_INTERVAL}.n_intervals"],
        "state": [],
    }
    response = client.post("/_dash-update-component", json=payload)
    assert response.status_code == 200, response.data[:500]
    return json.loads(response.data)["response"]


def test_create_app_reads_nothing_until_a_callback_asks(tmp_path, users_path):
    path = tmp_path / "lazy" / "plant.db"
    app = create_app(str(path), refresh_s=1.5, users=users_path)
    client = logged_in(app)
    assert client.get("/").status_code == 200
    layout = client.get("/_dash-layout")
    assert layout.status_code == 200 and b"Wattline" in layout.data
    assert not path.exists() and not app.server.extensions[EXTENSION].is_open
    response = call_live_callback(client)
    assert path.exists()  # the callback opened (and so created) the store
    assert "No data yet" in json.dumps(response[ids.LIVE_EMPTY]["children"])
    assert response[ids.LIVE_GRAPHS]["style"] == {"display": "none"}


def test_dash_first_request_setup_is_done_before_any_request(tmp_path, users_path):
    """Dash's first-request hooks (callback merge, pages router) ran while the app was built, in one thread.

    Otherwise a fresh gunicorn worker's threads race on them with their first requests (seen under load as
    "dictionary changed size during iteration" in Dash's background-callback validation).
    """
    app = create_app(str(tmp_path / "plant.db"), users=users_path)
    outputs = " ".join(app.callback_map)
    assert "_pages_content.children" in outputs  # the pages router exists before the first request
    assert ids.NAV in outputs
    client = app.server.test_client()
    assert client.get("/_dash-layout").status_code == 401  # the login gate still answers after the warm-up


def test_live_callback_returns_machine_traces(tmp_path, users_path):
    path = tmp_path / "plant.db"
    app = create_app(str(path), users=users_path)
    store = store_of(app)
    fill_plant(store, time.time_ns() // NS, 300)
    response = call_live_callback(logged_in(app))
    names = [trace["name"] for trace in response[ids.LIVE_MACHINE_GRAPH]["figure"]["data"]]
    assert names == ["l1-m1", "l1-m2", "l1-m3", "l2-m1", "l2-m2"]
    assert [t["name"] for t in response[ids.LIVE_LINE_GRAPH]["figure"]["data"]] == ["L1", "L2"]
    assert response[ids.LIVE_MACHINE_GRAPH]["figure"]["layout"]["yaxis"]["title"]["text"] == "Power [kW]"
    app.server.extensions[EXTENSION].close()


def test_two_apps_in_one_process_each_serve_their_own_store(tmp_path, users_path):
    first, second = create_app(str(tmp_path / "a.db"), users=users_path), create_app(str(tmp_path / "b.db"), users=users_path)
    fill_plant(store_of(second), time.time_ns() // NS, 120, lines=(("L9", 1),))
    assert "No data yet" in json.dumps(call_live_callback(logged_in(first))[ids.LIVE_EMPTY])
    figure = call_live_callback(logged_in(second))[ids.LIVE_MACHINE_GRAPH]["figure"]
    assert [t["name"] for t in figure["data"]] == ["l9-m1"]
    for app in (first, second):
        app.server.extensions[EXTENSION].close()


def test_series_page_and_navigation(tmp_path, users_path):
    app = create_app(str(tmp_path / "plant.db"), users=users_path)
    client = logged_in(app)
    assert client.get("/series").status_code == 200
    layout = json.dumps(json.loads(client.get("/_dash-layout").data))
    assert '"href": "/series"' in layout and '"href": "/"' in layout


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(store_url=""), "store URL"),
        (dict(store_url="x.db", refresh_s=0), "refresh_s"),
        (dict(store_url="x.db", stale_after_s=-1), "stale_after_s"),
        (dict(store_url="x.db", tz="Nowhere/Town"), "Europe/Berlin"),
    ],
)
def test_bad_settings_raise_dashboard_errors(kwargs, match, users_path):
    url = kwargs.pop("store_url")
    with pytest.raises(DashboardError, match=match):
        create_app(url, **kwargs, users=users_path)


def test_store_provider_opens_once_and_reopens_after_close():
    opened = []

    class FakeStore:
        def close(self):
            opened.append("closed")

    def opener(url):
        opened.append(url)
        return FakeStore()

    provider = StoreProvider("x.db", opener)
    threads = [threading.Thread(target=provider.get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opened == ["x.db"]
    provider.close()
    assert opened == ["x.db", "closed"] and not provider.is_open
    provider.get()
    assert opened == ["x.db", "closed", "x.db"]


def test_a_shared_store_is_used_and_left_open(tmp_path, users_path):
    from core.storage.sqlite import SQLiteStore

    shared = SQLiteStore(tmp_path / "shared.db")
    fill_plant(shared, time.time_ns() // NS, 60, lines=(("L4", 1),))
    app = create_app("shown-only.db", store=shared, users=users_path)
    figure = call_live_callback(logged_in(app))[ids.LIVE_MACHINE_GRAPH]["figure"]
    assert [t["name"] for t in figure["data"]] == ["l4-m1"]
    server = DashboardServer(app, port=0).start()
    server.stop()
    assert len(shared.series()) == 3  # still open and readable after the dashboard stopped
    assert not Path("shown-only.db").exists()  # the URL was only shown, never opened
    shared.close()


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def test_server_serves_on_a_free_port_and_stops_cleanly(tmp_path, users_path):
    app = create_app(str(tmp_path / "plant.db"), users=users_path)
    server = DashboardServer(app, port=0).start()
    try:
        status, body = _get(server.url)  # redirected to the login page
        assert status == 200 and "<title>Wattline · Log in</title>".encode() in body
        fill_plant(store_of(app), time.time_ns() // NS, 60, lines=(("L1", 1),))
        with pytest.raises(urllib.error.HTTPError) as info:
            _get(server.url + "_dash-layout")
        assert info.value.code == 401
    finally:
        server.stop()
    assert not app.server.extensions[EXTENSION].is_open
    with pytest.raises(urllib.error.URLError):
        _get(server.url)


def test_port_in_use_is_a_clear_error(tmp_path, users_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        with pytest.raises(PortInUseError) as info:
            DashboardServer(create_app(str(tmp_path / "plant.db"), users=users_path), "127.0.0.1", port)
    finally:
        blocker.close()
    error = info.value
    assert isinstance(error, WattlineError) and isinstance(error, DashboardError)
    assert error.port == port and error.exit_code == 2
    assert f"port {port}" in str(error) and "--port" in str(error)


def test_bad_host_is_a_clear_error(tmp_path, users_path):
    with pytest.raises(DashboardError, match="host"):
        DashboardServer(create_app(str(tmp_path / "plant.db"), users=users_path), "no-such-host.invalid", 0)


def test_run_dashboard_returns_a_running_server_that_the_stop_event_stops(tmp_path, users_path):
    app = create_app(str(tmp_path / "plant.db"), users=users_path)
    stop = threading.Event()
    server = run_dashboard(app, "127.0.0.1", 0, stop)
    assert server.port > 0 and _get(server.url)[0] == 200
    store_of(app)  # opened by a request in a real run
    stop.set()
    wait_for(lambda: not app.server.extensions[EXTENSION].is_open, 10, "the store closed by the stop event")
    with pytest.raises(urllib.error.URLError):
        _get(server.url)
    server.stop()  # stopping twice is harmless


def test_run_dashboard_without_event_is_stopped_by_its_handle(tmp_path, users_path):
    server = run_dashboard(create_app(str(tmp_path / "plant.db"), users=users_path), "127.0.0.1", 0)
    assert _get(server.url)[0] == 200
    server.stop()
    with pytest.raises(urllib.error.URLError):
        _get(server.url)

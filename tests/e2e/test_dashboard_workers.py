"""Stateless dashboard workers: two ``wattline dashboard`` gunicorn workers (each behind its own port, so the test
chooses which one answers) over one store and one work-order database (SQLite file and PostgreSQL). A login made on
one worker holds on the other, a status change made through one is seen through the other, and a change based on a
version the other worker already superseded is refused instead of overwriting it."""

from __future__ import annotations

import functools
import http.client
import http.cookiejar
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from core.orders.config import SAMPLE_FILE
from dashboard import ids
from dashboard.tests.helpers import NS, TEST_USERS, fill_plant, make_users
from dashboard.tests.test_dashboard_orders import apply_request, by_machine, findings
from tests.orders.conftest import fresh_pg_database
from tests.support import wait_for

pytestmark = [pytest.mark.integration]

SELECT_OUTPUTS = [(ids.FINDINGS_ORDER_INFO, "children"), (ids.FINDINGS_ORDER_ID, "data"),
                  (ids.FINDINGS_ACTION, "options"), (ids.FINDINGS_ACTION, "value"), (ids.FINDINGS_TEAM, "options"),
                  (ids.FINDINGS_REASON, "value"), (ids.FINDINGS_COMMENT, "value")]


def select_request(order_id: int) -> dict:
    """What the findings page sends when a finding row with this order is selected."""
    inputs = [(ids.FINDINGS_GRID, "selectedRows", [{"order_id": order_id}]), (ids.FINDINGS_CHANGED, "data", 0)]
    return {"output": ".." + "...".join(f"{i}.{p}" for i, p in SELECT_OUTPUTS) + "..",
            "outputs": [{"id": i, "property": p} for i, p in SELECT_OUTPUTS],
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "changedPropIds": [f"{ids.FINDINGS_GRID}.selectedRows"], "state": []}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _FromAddress(urllib.request.HTTPHandler):
    """Plain HTTP whose connections leave from a given loopback address (another client address for the server)."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def http_open(self, req):
        return self.do_open(functools.partial(http.client.HTTPConnection, source_address=(self.address, 0)), req)


class Client:
    """One browser: a cookie jar used against any worker, connecting from loopback address ``address``."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _FromAddress(address))

    def get(self, url: str):
        return self.opener.open(url, timeout=30)

    def post_json(self, base: str, path: str, payload: dict):
        req = urllib.request.Request(base + path, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Origin": base})
        return self.opener.open(req, timeout=60)

    def login(self, base: str, name: str) -> None:
        self.login_as(base, name, TEST_USERS[name][2])

    def login_as(self, base: str, name: str, password: str) -> None:
        page = self.get(base + "/login").read().decode()
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"username": name, "password": password, "csrf": token,
                                       "next": "/"}).encode()
        self.opener.open(urllib.request.Request(base + "/login", data=form, headers={"Origin": base}), timeout=30)


def status(response) -> int:
    return response.status


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def orders_db(request, tmp_path_factory):
    """The URL of an empty work-order database shared by this module's tests, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('orders') / 'orders.db'}"
    else:
        with fresh_pg_database() as url:
            yield url


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, orders_db):
    """The store, the orders database with synced orders, and two dashboard workers on two ports, started once per
    backend for the module's tests (each test logs in from its own client address and as its own users, so the login
    limiter's counts of one test never refuse another's logins)."""
    from core.storage.sqlite import SQLiteStore
    from dashboard.orders import open_service

    tmp_path = tmp_path_factory.mktemp("workers")
    store = tmp_path / "plant.db"
    with SQLiteStore(store) as st:
        fill_plant(st, time.time_ns() // NS, 60)
    # A users file of this backend's own: its session key and shared cache (login failures) start empty.
    users_path = tmp_path / "users.json"
    make_users(users_path)
    service = open_service(orders_db, str(SAMPLE_FILE))
    service.sync(findings(), run="run-1")
    procs, bases = [], []
    for _ in range(2):
        port = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "wattline", "dashboard", "--store", str(store), "--users", str(users_path),
             "--port", str(port), "--workers", "1", "--orders-db", orders_db, "--orders-rules", str(SAMPLE_FILE)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        bases.append(f"http://127.0.0.1:{port}")

    def up(base: str) -> bool:
        try:
            with urllib.request.urlopen(base + "/login", timeout=5) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    try:
        for base in bases:
            wait_for(lambda b=base: up(b), timeout=120, what=f"the dashboard at {base}")
        yield bases, service
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        errs = [p.communicate(timeout=60)[1] for p in procs]
        service.engine.dispose()
    for p, err in zip(procs, errs):
        assert p.returncode == 0, err
        assert "Traceback" not in err


def test_login_and_status_changes_hold_across_workers(two_workers):
    (a, b), service = two_workers
    erik = Client()
    erik.login(a, "erik")
    # The session made by worker A is valid on worker B (signed with the shared key, no per-process state).
    assert status(erik.get(b + "/_dash-layout")) == 200
    stranger = Client()
    with pytest.raises(urllib.error.HTTPError) as info:
        stranger.get(b + "/_dash-layout")
    assert info.value.code == 401
    north = by_machine(service, "north/L1/l1-m1")
    # Acknowledged through A ...
    changed = json.loads(erik.post_json(a, "/_dash-update-component",
                                        apply_request(north["id"], "ack", version=north["version"])).read())
    assert "open → acknowledged" in json.dumps(changed["response"][ids.FINDINGS_ACTION_MSG], ensure_ascii=False)
    # ... seen through B at once (no worker keeps its own copy of the orders).
    seen = json.loads(erik.post_json(b, "/_dash-update-component", select_request(north["id"])).read())
    assert seen["response"][ids.FINDINGS_ORDER_ID]["data"]["version"] == north["version"] + 1
    assert "acknowledged" in json.dumps(seen["response"][ids.FINDINGS_ORDER_INFO], ensure_ascii=False).lower()
    # B's view of the order is what A wrote; a change through B from the version A superseded is refused.
    stale = json.loads(erik.post_json(b, "/_dash-update-component",
                                      apply_request(north["id"], "start", version=north["version"])).read())
    assert "Not changed" in json.dumps(stale["response"][ids.FINDINGS_ACTION_MSG], ensure_ascii=False)
    assert service.get(north["id"])["status"] == "acknowledged"
    # Logging in again on B (a new session) does not end the one A made: both workers still accept the first.
    other = Client()
    other.login(b, "erik")
    assert status(erik.get(a + "/_dash-layout")) == 200 and status(other.get(a + "/_dash-layout")) == 200


def test_failed_logins_count_across_workers(two_workers):
    """The login limit holds for the dashboard, not per worker: failures on A block the next try on B."""
    (a, b), _ = two_workers
    limit = 5  # dashboard.auth.LoginLimiter's default
    # A client address and a user of this test's own: the limit they reach refuses no other test's logins.
    address = "127.0.0.2"
    for _ in range(limit):
        with pytest.raises(urllib.error.HTTPError) as info:
            Client(address).login_as(a, "sam", "not-sams-password")
        assert info.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as info:
        Client(address).login(b, "sam")  # even the right password, on the other worker
    assert info.value.code == 429 and int(info.value.headers["Retry-After"]) > 0
    # The count is the dashboard's, per client address and user name: the same user from another address is
    # refused as well (its name is over the limit), another user from the first address too (the address is).
    for client, name in ((Client(), "sam"), (Client(address), "anna")):
        with pytest.raises(urllib.error.HTTPError) as info:
            client.login(a, name)
        assert info.value.code == 429, name


def test_limiters_sharing_a_file_share_the_count(tmp_path):
    from dashboard.auth import LoginLimiter

    one, two = (LoginLimiter(max_failures=3, window_s=60, path=tmp_path / "logins.sqlite") for _ in range(2))
    keys = ("ip:10.0.0.1", "user:sam")
    for t in (100.0, 101.0):
        one.failed(keys, now=t)
    assert two.retry_after(keys, now=102.0) == 0
    two.failed(keys, now=102.0)
    assert one.retry_after(keys, now=103.0) == pytest.approx(57.0)  # the first failure leaves the window at 160
    assert two.retry_after(keys, now=161.0) == 0
    one.succeeded("user:sam")
    assert two.retry_after(("user:sam",), now=103.0) == 0

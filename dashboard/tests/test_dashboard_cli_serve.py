"""``wattline dashboard``: gunicorn with several workers, a login across workers, clear errors (a subprocess)."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from dashboard.tests.helpers import NS, TEST_USERS, fill_plant
from tests.support import wait_for as support_wait_for

pytestmark = [pytest.mark.integration]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what: str, timeout: float = 60.0):
    """``tests.support.wait_for`` with this module's argument order (what, then timeout)."""
    return support_wait_for(predicate, timeout, what, interval=0.2)


def test_gunicorn_serves_with_workers_and_a_login_holds_across_them(tmp_path, users_path):
    from core.storage.sqlite import SQLiteStore

    store_path = tmp_path / "plant.db"
    with SQLiteStore(store_path) as store:
        fill_plant(store, time.time_ns() // NS, 60)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "wattline", "dashboard", "--store", str(store_path), "--users",
                             str(users_path), "--port", str(port), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = wait_for(lambda: opener.open(base + "/login", timeout=5), "the login page")
        assert page.headers["Server"].startswith("gunicorn")
        token = re.search(r'name="csrf" value="([^"]+)"', page.read().decode()).group(1)
        form = urllib.parse.urlencode({"username": "anna", "password": TEST_USERS["anna"][2], "csrf": token,
                                       "next": "/"}).encode()
        opener.open(urllib.request.Request(base + "/login", data=form, headers={"Origin": base}), timeout=10)
        pids = set()
        for _ in range(12):  # several requests: both workers answer, both accept the session
            with opener.open(base + "/_dash-layout", timeout=10) as response:
                assert response.status == 200
        ps = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True)
        pids = {int(p) for p in ps.stdout.split()}
        assert len(pids) == 2
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + "/_dash-layout", timeout=5)
        assert info.value.code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and TEST_USERS["anna"][2] not in out + err


def test_errors_are_one_line(tmp_path, users_path):
    store = tmp_path / "plant.db"
    store.touch()
    run = lambda *a: subprocess.run([sys.executable, "-m", "wattline", "dashboard", "--store", str(store), *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    no_users = run("--users", str(tmp_path / "none.json"))
    assert no_users.returncode == 2 and "wattline users add" in no_users.stderr
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        taken = run("--users", str(users_path), "--port", str(blocker.getsockname()[1]))
    finally:
        blocker.close()
    assert taken.returncode == 2 and "--port" in taken.stderr and "Traceback" not in taken.stderr
    os.chmod(users_path, 0o644)
    try:
        loose = run("--users", str(users_path))
    finally:
        os.chmod(users_path, 0o600)
    assert loose.returncode == 2 and "chmod 600" in loose.stderr

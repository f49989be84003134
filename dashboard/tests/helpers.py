"""Test helpers: write a small plant or single series into a store at known times."""

from __future__ import annotations

import numpy as np

from core.model import SeriesKey

NS = 1_000_000_000
#: A fixed "now" (2026-11-26 10:00:07 UTC) so that window arithmetic in assertions is exact.
NOW_NS = 1_795_687_207 * NS


def machine_tags(line: str, machine: str, site: str = "north") -> dict[str, str]:
    return {"site": site, "line": line, "machine": machine}


def write_power(store, tags, times_s, values) -> None:
    """Write active power [kW] of one machine at whole-second times [s since the epoch]."""
    key = SeriesKey.of("electrical", tags, "active_power_kw")
    store.write_arrays(key, np.asarray(times_s, dtype=np.int64) * NS, np.asarray(values, dtype=float))


def write_field(store, measurement, field, tags, times_s, values) -> None:
    key = SeriesKey.of(measurement, tags, field)
    store.write_arrays(key, np.asarray(times_s, dtype=np.int64) * NS, np.asarray(values, dtype=float))


def fill_plant(store, end_s: int, seconds: int, step_s: int = 5, lines=(("L1", 3), ("L2", 2)), seed: int = 1) -> dict:
    """Write a small plant: power, energy register and state for each machine over ``seconds`` up to ``end_s``.

    Returns {machine label: (tags, times_s, power values)}.
    """
    rng = np.random.default_rng(seed)
    written = {}
    times = np.arange(end_s - seconds, end_s, step_s, dtype=np.int64)
    for line, n in lines:
        for i in range(n):
            name = f"{line.lower()}-m{i + 1}"
            tags = machine_tags(line, name)
            base = 10.0 + 5 * i + (20 if line == "L2" else 0)
            power = base + 2 * np.sin(times / 60.0 + i) + rng.normal(0, 0.3, len(times))
            write_power(store, tags, times, power)
            energy = 1000.0 + np.cumsum(power * step_s / 3600.0)
            write_field(store, "electrical", "energy_kwh", tags, times, energy)
            write_field(store, "machine_state", "state", tags, times, np.full(len(times), 2 if i else 1))
            written[name] = (tags, times, power)
    return written


# -- users and logins ----------------------------------------------------------------------------------------------------
#: name -> (role, sites, password) of the test users.
TEST_USERS = {
    "admin": ("admin", (), "admin-password-1"),
    "anna": ("plant_manager", ("north",), "anna-password-1"),
    "sam": ("plant_manager", ("south",), "sam-password-1"),
    "erik": ("engineer", ("north",), "erik-password-1"),
    "carla": ("cdo", (), "carla-password-1"),
}


def make_users(path):
    """Write the test users into a users file at ``path``; returns the UsersFile."""
    from dashboard.users import UsersFile

    users = UsersFile(path)
    for name, (role, sites, password) in TEST_USERS.items():
        users.add(name, role, sites, password)
    return users


def client_of(app, origin: str = "http://localhost"):
    """A Flask test client that sends this server's Origin on every request, as a browser does on POSTs."""
    client = app.server.test_client()
    if origin:
        client.environ_base["HTTP_ORIGIN"] = origin
    return client


def form_token(html_text: str) -> str:
    import re

    match = re.search(r'name="csrf" value="([^"]+)"', html_text)
    assert match, "no csrf token in the login form"
    return match.group(1)


def login(client, name: str, password: str | None = None):
    """Log ``client`` in as test user ``name``; returns the response of the POST."""
    token = form_token(client.get("/login").get_data(as_text=True))
    password = TEST_USERS[name][2] if password is None else password
    return client.post("/login", data={"username": name, "password": password, "csrf": token, "next": "/"})


def logged_in(app, name: str = "admin"):
    client = client_of(app)
    response = login(client, name)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return client


def browser_login(driver, base_url: str, name: str, timeout: float = 30.0) -> None:
    """Log a Selenium-driven browser in as test user ``name`` through the login form (logging out whoever was in)."""
    from tests.support import wait_for

    driver.delete_all_cookies()
    driver.get(base_url.rstrip("/") + "/login")
    driver.find_element("id", "username").send_keys(name)
    driver.find_element("id", "password").send_keys(TEST_USERS[name][2])
    driver.find_element("id", "login-submit").click()
    if wait_for(lambda: "/login" not in driver.current_url and driver.find_elements("id", "user-box"), timeout,
                interval=0.1, fail=False):
        return
    raise AssertionError(f"login as {name} did not reach the dashboard; at {driver.current_url}")

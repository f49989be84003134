"""Benchmark: the dashboard's pages on a year of a large plant (issue 12, "Fast").

What a person gets: ``wattline dashboard`` (gunicorn, as in production) on a store of N machines x D days that the
simulator backfilled and ``wattline analyze`` analysed once; every page is opened in headless Chromium, logged in, and
then each of its callbacks is replayed over real HTTP (``POST /_dash-update-component`` with the very payload the
page sent, captured in the browser). Run on demand::

    python -m tests.benchmarks.bench_dashboard                          # 200 machines x 365 days, embedded SQLite
    python -m tests.benchmarks.bench_dashboard --machines 20 --days 30  # quick
    python -m tests.benchmarks.bench_dashboard --store 'influx://...&bucket=dash-bench' --machines 200 --days 365
    python -m tests.benchmarks.bench_dashboard --profile /tmp/dash-prof  # cProfile of each page's callbacks

The store (and its plant file) is built once and kept under ``~/.cache/wattline/bench/`` (an InfluxDB bucket: a
marker file there); the analysis runs once per store. Reported per page:

- ``ready_ms``: page ready in the browser: from navigation start to the end of the last callback of the page load,
  once no callback is pending and no loading spinner is shown (p50 / p95 over ``--loads`` loads);
- ``warm_ms``: callback round trips on localhost (= server time + a loopback hop) as most requests get them: results
  that many users share come from the dashboard's cache (p50 / p95 over every callback x ``--repeats``);
- ``cold_ms``: the same with the results cache emptied before each request (the first user after new data);
- ``expired_ms``: with only the per-view results dropped (their 2-min lifetime over), the closed days' hourly
  results (energy, value counts: keys ``closed|...``, 1 h) still cached: what a user gets on a page nobody opened for
  a few minutes.

Load average (1 min) is printed with every figure: the machine is shared, compare ratios within one run.
Results: one JSON line per page on stdout (and ``--out``), a markdown table with ``--markdown``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import json
import os
import pstats
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.path.expanduser("~/.cache/wattline/bench"))
PAGES = ("overview", "findings", "machine", "materials", "collectors", "enterprise", "series", "live")
USER, PASSWORD = "bench-admin", "bench-password-1"
PERIOD_ID, DEFAULT_PERIOD = "period-select", "30d"  # dashboard.ids.PERIOD, dashboard.periods.DEFAULT_PERIOD

pytestmark = pytest.mark.benchmark

#: Injected before any page script: counts Dash's callback requests, their bodies and their end times.
TRACE_JS = """
window.__wl = {pending: 0, done: 0, last: 0, calls: []};
const __fetch = window.fetch;
window.fetch = function (input, init) {
  const url = (typeof input === 'string') ? input : (input && input.url) || '';
  if (!url.includes('_dash-update-component')) { return __fetch.apply(this, arguments); }
  const t0 = performance.now();
  window.__wl.pending += 1;
  const body = init && init.body;
  return __fetch.apply(this, arguments).finally(function () {
    const t1 = performance.now();
    window.__wl.pending -= 1; window.__wl.done += 1; window.__wl.last = t1;
    window.__wl.calls.push({body: body, start: t0, end: t1});
  });
};
"""

READY_JS = """
const w = window.__wl;
if (!w) { return null; }
const loading = document.querySelectorAll('[data-dash-is-loading="true"]').length;
return {pending: w.pending, done: w.done, last: w.last, now: performance.now(), loading: loading};
"""


def load() -> float:
    return round(os.getloadavg()[0], 2)


def pct(values: list[float], q: float) -> float | None:
    """Percentile ``q``; NaN (a page not ready within the timeout) counts as the slowest."""
    import numpy as np

    values = [float("inf") if v != v else v for v in values]
    method = "higher" if float("inf") in values else "linear"
    return round(float(np.percentile(values, q, method=method)), 1) if values else None


# -- the store -------------------------------------------------------------------------------------------------------------
def prepare_store(store: str | None, machines: int, days: int, resolution: int,
                  analyse: bool = True) -> tuple[str, str]:
    """(store URL, plant file): backfilled once (cached under ~/.cache/wattline/bench) and analysed once."""
    from tests.benchmarks.bench_analytics_speed import scaled_plant_yaml

    CACHE.mkdir(parents=True, exist_ok=True, mode=0o700)
    plant = CACHE / f"dash-plant-{machines}m.yaml"
    if not plant.exists():
        scaled_plant_yaml(machines, str(plant))
    store = store or str(CACHE / f"dash-{machines}m-{days}d.db")
    tag = hashlib.sha256(f"{store}|{machines}|{days}|{resolution}".encode()).hexdigest()[:12]
    done, analysed = CACHE / f"dash-{tag}.backfilled", CACHE / f"dash-{tag}.analysed"
    if not done.exists():
        print(f"backfilling {machines} machines x {days} days at {resolution} s into {store.split('?')[0]} "
              f"(load {load()}) ...", file=sys.stderr, flush=True)
        if "://" in store and not store.startswith("sqlite"):
            from core.storage.influx import InfluxSettings, setup_influx

            setup_influx(InfluxSettings.from_url(store), backfill=False, progress=False)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "wattline", "simulate", "backfill", "--days", str(days), "--plant",
                        str(plant), "--store", store, "--resolution", str(resolution), "--quiet", "--truth",
                        str(CACHE / f"dash-{tag}.truth.json")], check=True, cwd=ROOT)
        done.write_text(json.dumps({"store": store.split("?")[0], "seconds": round(time.perf_counter() - t, 1)}))
        analysed.unlink(missing_ok=True)
    if analyse and not analysed.exists():
        print(f"wattline analyze (load {load()}) ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "wattline", "analyze", "--store", store, "--plant", str(plant),
                        "--json", str(CACHE / f"dash-{tag}.report.json"), "--quiet"], check=True, cwd=ROOT)
        analysed.write_text(json.dumps({"seconds": round(time.perf_counter() - t, 1)}))
    return store, str(plant)


def first_machine(plant: str) -> str:
    from core.plant import read_plant

    ref = read_plant(plant).machines[0]
    return f"/machine/{ref.site.id}/{ref.line.id}/{ref.spec.id}"


def page_paths(plant: str) -> dict[str, str]:
    return {"overview": "/overview", "findings": "/findings", "machine": first_machine(plant),
            "materials": "/materials", "collectors": "/collectors", "enterprise": "/enterprise", "series": "/series",
            "live": "/"}


# -- the server ------------------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard(store: str, plant: str, folder: Path, workers: int, threads: int):
    """``wattline dashboard`` in a subprocess: yields (base URL, cache file)."""
    from dashboard.users import UsersFile
    from tests.support import wait_for

    users = folder / "users.json"
    UsersFile(users).add(USER, "admin", (), PASSWORD)
    port = free_port()
    log = (folder / "dashboard.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "wattline", "dashboard", "--store", store, "--plant", plant,
                             "--users", str(users), "--port", str(port), "--workers", str(workers), "--threads",
                             str(threads)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        import requests

        if proc.poll() is not None:
            raise RuntimeError(f"wattline dashboard exited: {(folder / 'dashboard.log').read_text()[-2000:]}")
        try:
            return requests.get(base + "/login", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(up, 120, "the dashboard to answer")
        yield base, Path(str(users) + ".cache") / "results.sqlite"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
        log.close()


def clear_cache(path: Path, views_only: bool = False) -> None:
    """Empty the dashboard's results cache; ``views_only``: only the per-view results (as when their 2-min lifetime
    ends), keeping the closed days' hourly results (1 h; ``dashboard.overview.CLOSED_PREFIX``)."""
    if path.exists():
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
            db.execute("DELETE FROM cache WHERE key NOT LIKE 'closed|%'" if views_only else "DELETE FROM cache")
            db.commit()


# -- the browser -----------------------------------------------------------------------------------------------------------
def browser_login(driver, base: str, attempts: int = 3) -> None:
    """Log in through the form (again when a loaded machine let the first attempt time out)."""
    from tests.support import wait_for

    for _attempt in range(attempts):
        driver.get(base + "/login")
        wait_for(lambda: driver.find_elements("id", "username"), 60, "the login form")
        driver.find_element("id", "username").send_keys(USER)
        driver.find_element("id", "password").send_keys(PASSWORD)
        driver.find_element("id", "login-submit").click()
        done = wait_for(lambda: "/login" not in driver.current_url and driver.find_elements("id", "user-box"), 60,
                        "the login", fail=False)
        if done and not isinstance(done, Exception):
            return
    raise RuntimeError(f"login failed {attempts} times; at {driver.current_url}: {driver.page_source[:500]}")


def load_page(driver, url: str, quiet_ms: float = 700, timeout_s: float = 120) -> tuple[float, list[dict]]:
    """Open ``url``; return (ready time [ms] from navigation start, the callbacks' {body, start, end})."""
    from tests.support import wait_for

    driver.get(url)

    def ready():
        s = driver.execute_script(READY_JS)
        return (s is not None and s["done"] > 0 and s["pending"] == 0 and s["loading"] == 0
                and s["now"] - s["last"] >= quiet_ms) and s

    state = wait_for(ready, timeout_s, f"{url} to be ready", interval=0.1, fail=False)
    calls = driver.execute_script("return window.__wl.calls") or []
    if not state or isinstance(state, Exception):
        return float("nan"), calls  # not ready within timeout_s (reported as such, the replays still run)
    # Callbacks that ended after the page was first quiet (interval refreshes) are not part of the page load.
    calls = [c for c in calls if c["end"] <= state["last"] + 1]
    return float(state["last"]), calls


def unique_payloads(calls: list[dict]) -> list[dict]:
    """One payload per callback output (an interval may have sent the same callback twice)."""
    seen, out = set(), []
    for call in calls:
        body = json.loads(call["body"])
        if body["output"] not in seen:
            seen.add(body["output"])
            out.append(body)
    return out


# -- measuring -------------------------------------------------------------------------------------------------------------
def time_callbacks(session, base: str, payloads: list[dict], repeats: int, cache_file: Path | None,
                   by_output: dict | None = None, views_only: bool = False) -> list[float]:
    """Round trips [ms] of every payload ``repeats`` times (emptying the results cache first when given); each
    time is also appended to ``by_output[output]``."""
    out = []
    for _ in range(repeats):
        for body in payloads:
            if cache_file is not None:
                clear_cache(cache_file, views_only)
            t = time.perf_counter()
            r = session.post(base + "/_dash-update-component", json=body, headers={"Origin": base}, timeout=300)
            ms = (time.perf_counter() - t) * 1000
            out.append(ms)
            if by_output is not None:
                by_output.setdefault(body["output"], []).append(ms)
            if r.status_code not in (200, 204):
                raise RuntimeError(f"{body['output'][:80]}: HTTP {r.status_code} {r.text[:300]}")
    return out


def slowest(cold: dict, warm: dict, n: int = 3) -> list[dict]:
    """The ``n`` callbacks with the slowest cold median [ms]."""
    rows = [{"output": out[:70], "cold_ms": pct(ms, 50), "warm_ms": pct(warm.get(out, []), 50)}
            for out, ms in cold.items()]
    return sorted(rows, key=lambda r: -r["cold_ms"])[:n]


def profile_callbacks(store: str, plant: str, folder: Path, name: str, payloads: list[dict], out: Path) -> Path:
    """cProfile of the page's callbacks in this process (Flask test client, empty cache each time)."""
    from dashboard.app import create_app

    users = folder / "users.json"
    app = create_app(store, users=users, plant=plant)
    client = app.server.test_client()
    client.environ_base["HTTP_ORIGIN"] = "http://localhost"
    page = client.get("/login").get_data(as_text=True)
    import re

    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    client.post("/login", data={"username": USER, "password": PASSWORD, "csrf": token, "next": "/"})
    prof = cProfile.Profile()
    for body in payloads:
        app.server.extensions["wattline_cache"]._memory.clear()
        prof.enable()
        client.post("/_dash-update-component", json=body)
        prof.disable()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.prof"
    prof.dump_stats(path)
    with (out / f"{name}.txt").open("w") as fh:
        pstats.Stats(str(path), stream=fh).sort_stats("cumulative").print_stats(40)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machines", type=int, default=200)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--resolution", type=int, default=900)
    ap.add_argument("--store", help="store URL (default: a SQLite file under ~/.cache/wattline/bench)")
    ap.add_argument("--pages", nargs="+", default=list(PAGES), choices=PAGES)
    ap.add_argument("--loads", type=int, default=5, help="page loads in the browser per page")
    ap.add_argument("--repeats", type=int, default=10, help="replays of each callback (warm)")
    ap.add_argument("--cold", type=int, default=3, help="replays of each callback with the cache emptied")
    ap.add_argument("--period", default="365d", help="period chosen in the header for every page (7d 30d 90d 365d)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--skip-analyze", action="store_true", help="measure without (re)running wattline analyze")
    ap.add_argument("--profile", type=Path, help="folder for a cProfile of each page's callbacks")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)

    import requests

    from tests.support import start_chromium

    store, plant = prepare_store(args.store, args.machines, args.days, args.resolution, not args.skip_analyze)
    paths = page_paths(plant)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-dash-") as tmp:
        folder = Path(tmp)
        with dashboard(store, plant, folder, args.workers, args.threads) as (base, cache_file):
            driver = start_chromium(folder / "chromium", 180)
            try:
                driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TRACE_JS})
                browser_login(driver, base)
                # The period selector persists per browser session (Dash persistence in sessionStorage): set once.
                driver.execute_script("window.sessionStorage.setItem('_dash_persistence.' + arguments[0] + "
                                      "'.value.true', JSON.stringify([arguments[1], arguments[2]]))",
                                      PERIOD_ID, args.period, DEFAULT_PERIOD)
                session = requests.Session()
                for c in driver.get_cookies():
                    session.cookies.set(c["name"], c["value"])
                for name in args.pages:
                    url = base + paths[name]
                    print(f"{name} (load {load()}) ...", file=sys.stderr, flush=True)
                    ready, calls = [], []
                    for i in range(args.loads):
                        if i == 0:
                            clear_cache(cache_file)  # the first load is a cold one
                        ms, got = load_page(driver, url)
                        ready.append(ms)
                        calls = calls or got
                    payloads = [with_period(p, args.period) for p in unique_payloads(calls)]
                    seen = sorted({v for p in unique_payloads(calls) for v in _periods(p)})
                    warm_by, cold_by = {}, {}
                    warm = time_callbacks(session, base, payloads, args.repeats, None, warm_by)
                    cold = time_callbacks(session, base, payloads, args.cold, cache_file, cold_by)
                    time_callbacks(session, base, payloads, 1, None)  # closed days cached again
                    expired = time_callbacks(session, base, payloads, args.cold, cache_file, None, views_only=True)
                    row = {"page": name, "path": paths[name], "period": args.period, "browser_periods": seen,
                           "callbacks": len(payloads),
                           "ready_first_ms": round(ready[0], 1), "ready_timeouts": sum(r != r for r in ready), "ready_p50_ms": pct(ready, 50),
                           "ready_p95_ms": pct(ready, 95), "warm_p50_ms": pct(warm, 50), "warm_p95_ms": pct(warm, 95),
                           "cold_p50_ms": pct(cold, 50), "cold_p95_ms": pct(cold, 95),
                           "expired_p50_ms": pct(expired, 50), "expired_p95_ms": pct(expired, 95),
                           "slowest": slowest(cold_by, warm_by),
                           "load": load(), "machines": args.machines, "days": args.days,
                           "store": store.split("?")[0], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
                    if args.profile:
                        row["profile"] = str(profile_callbacks(store, plant, folder, name, payloads, args.profile))
                    results.append(row)
                    line = json.dumps(row)
                    print(line, flush=True)
                    if args.out:
                        with args.out.open("a") as fh:
                            fh.write(line + "\n")
            finally:
                driver.quit()
    if args.markdown:
        print("| page | callbacks | ready first / p50 / p95 [ms] | warm p50 / p95 [ms] | expired p50 / p95 [ms] | "
              "cold p50 / p95 [ms] | load |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['page']} | {r['callbacks']} | {r['ready_first_ms']:,.0f} / {r['ready_p50_ms']:,.0f} / "
                  f"{r['ready_p95_ms']:,.0f} | {r['warm_p50_ms']:,.0f} / {r['warm_p95_ms']:,.0f} | "
                  f"{r['expired_p50_ms']:,.0f} / {r['expired_p95_ms']:,.0f} | "
                  f"{r['cold_p50_ms']:,.0f} / {r['cold_p95_ms']:,.0f} | {r['load']} |")


def _periods(payload: dict) -> list:
    return [i.get("value") for i in payload.get("inputs", []) + payload.get("state", [])
            if isinstance(i, dict) and i.get("id") == PERIOD_ID]


def with_period(payload: dict, period: str) -> dict:
    """The payload with the period selector's value set to ``period`` (the browser may have sent the default)."""
    out = json.loads(json.dumps(payload))
    for item in out.get("inputs", []) + out.get("state", []):
        if isinstance(item, dict) and item.get("id") == PERIOD_ID:
            item["value"] = period
    return out


@pytest.mark.benchmark
def test_bench_dashboard_small(tmp_path):
    """Run on demand (marker ``benchmark``): the whole benchmark on a small store, every page ready."""
    out = tmp_path / "rows.jsonl"
    main(["--machines", "6", "--days", "14", "--loads", "1", "--repeats", "1", "--cold", "1", "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["page"] for r in rows] == list(PAGES)
    assert all(r["callbacks"] >= 1 and r["ready_first_ms"] > 0 for r in rows)


if __name__ == "__main__":
    main()

"""``wattline demo``: a live simulated plant, a collector streaming it into the store, and the dashboard.

First it backfills a few weeks of the demo plant's history (waste injected by the shipped scenario) into the store,
runs the analysis on it (the code of ``wattline analyze``) and opens work orders from the findings with the sample
routing rules (``core/orders/sample.yaml``, the code of ``wattline orders sync``) in an orders database beside the
store, so every page has real content at once; then it streams live values on top, with the energy registers going on
from where the history left them. The orders are freshly opened: the demo invents no acknowledgements or fixes, so
the closure KPIs show what is true of a new loop (auto-dispatch rate, open orders by age) and nothing else.

All three live parts run in this process: the simulator's OPC UA server and the collector share one asyncio loop, and the
dashboard's web server runs in a thread. The collector reaches the simulator over a real localhost socket, exactly as
it would reach a plant's server, and the dashboard only reads the store.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from core.config import parse_config
from core.errors import WattlineError
from core.storage import open_store
from wattline.settings import AppSettings

log = logging.getLogger(__name__)


class DemoError(WattlineError):
    """The demo cannot start (runtime problem, e.g. a port in use)."""


def check_port_free(host: str, port: int, option: str) -> None:
    """Raise DemoError naming the port and the option to change when ``host:port`` cannot be bound."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DemoError(f"port {port} on {host} is in use ({exc.strerror}); stop what uses it or choose another with {option}") from None


def run_demo(settings: AppSettings) -> None:
    """Run the demo until ``settings.demo.duration`` elapses or the user presses Ctrl-C."""
    check_port_free(settings.dashboard.host, settings.dashboard.port, "--port")
    check_port_free(settings.demo.opcua_host, settings.demo.opcua_port, "--opcua-port")
    try:
        history = prepare_history(settings)
    except KeyboardInterrupt:
        print("Demo stopped while preparing its history; what was written so far is kept.", flush=True)
        return
    asyncio.run(_run(settings, history))


class History:
    """What :func:`prepare_history` made: values written, the analysis report, the registers where it ended."""

    def __init__(self, values: int = 0, report: dict | None = None, registers: dict | None = None,
                 orders: dict | None = None) -> None:
        self.values = values
        self.report = report or {}
        self.registers = registers or {}
        self.orders = orders or {}

    def line(self) -> str:
        """One line for the banner: days, values and what the analysis found."""
        if not self.values:
            return "History: none (--history-days 0); pages fill as live values arrive."
        pot = (self.report.get("potential") or {})
        kwh, pct = pot.get("total_kwh"), pot.get("fraction")
        found = (f"; the analysis finds {kwh:,.0f} kWh avoidable ({100 * pct:.1f} %)"
                 if isinstance(kwh, (int, float)) and isinstance(pct, (int, float)) else "")
        line = f"History: {self.values:,} values backfilled{found}."
        o = self.orders
        if o.get("orders"):
            line += (f"\nWork orders: {o['orders']} opened from the findings, {o['auto_dispatched']} routed to a team by "
                     f"the sample rules, {o['queued']} waiting in the dispatch queue (findings page; KPIs on the "
                     "enterprise page).")
        return line


def prepare_history(settings: AppSettings, progress: bool = True) -> History:
    """Backfill ``settings.demo.history_days`` days of the demo plant (shipped waste scenario) and analyse them.

    The analysis is :func:`wattline.cli_analyze.run_analyze`, the code of ``wattline analyze``; its findings are
    stored in the store's results (run ``demo``), which the overview, findings and machine pages read.
    """
    import contextlib
    import io

    from simulator.backfill import backfill
    from simulator.plant import default_plant
    from simulator.scenario import read_scenario
    from wattline.cli_analyze import run_analyze

    demo = settings.demo
    if demo.history_days == 0:
        return History()
    plant = default_plant(machines=demo.machines)
    with open_store(settings.store) as store:
        result = backfill(store, plant, demo.history_days, read_scenario(None), demo.seed, progress=progress)
        registers = last_registers(store, result.manifest)
    with contextlib.redirect_stdout(io.StringIO()):  # the banner says what it found, in one line
        report = run_analyze(settings.store, None, None, None, None, run="demo", progress=progress)
    return History(result.values, report, registers, open_demo_orders(settings, "demo"))


def demo_orders_url(settings: AppSettings) -> str:
    """The demo's orders database: beside an embedded store (as ``wattline orders``), else a file in the folder."""
    from core.orders.db import orders_url

    if "://" in settings.store and not settings.store.startswith("sqlite:///"):
        return f"sqlite:///{Path('wattline-demo.orders.db').resolve()}"
    return orders_url(settings.store, None)


def open_demo_orders(settings: AppSettings, run: str) -> dict:
    """Open work orders from the findings of analysis ``run`` with the sample routing rules (the code of ``wattline
    orders sync``); returns ``{"url", "orders", "auto_dispatched", "queued"}``. Idempotent: a demo started again on
    the same store attaches each finding once."""
    from core.orders.config import SAMPLE_FILE
    from core.storage.results import results_for
    from dashboard.orders import open_service

    service = open_service(demo_orders_url(settings), str(SAMPLE_FILE))
    try:
        with open_store(settings.store) as store, results_for(store) as results:
            findings = results.query_findings(run=run)
        service.sync(findings, run=run)
        orders = service.list()
    finally:
        service.engine.dispose()
    return {"url": demo_orders_url(settings), "orders": len(orders),
            "auto_dispatched": sum(1 for o in orders if o["auto_dispatched"]),
            "queued": sum(1 for o in orders if o["team"] is None)}


def last_registers(store, manifest: dict | None = None) -> dict[str, float]:
    """The newest energy register reading of every machine in ``store`` (path -> [kWh])."""
    infos = [i for i in store.series("electrical") if i.key.field == "energy_kwh" and i.count]
    if not infos:
        return {}
    last = max(i.last_ns for i in infos)
    day = 86400 * 1_000_000_000
    frame = store.aggregate("electrical", "energy_kwh", last - day, last + 1, every=86400 + 1, agg="last")
    out: dict[str, float] = {}
    for row in frame.dropna(subset=["value"]).itertuples(index=False):
        out[f"{row.site}/{row.line}/{row.machine}"] = float(row.value)
    return out


async def _run(settings: AppSettings, history: History | None = None) -> None:
    from collectors.opcua.collector import Collector
    from collectors.opcua.config import CollectorConfig
    from collectors.opcua.discover import get_starter_config
    from dashboard.app import create_app
    from dashboard.serve import run_dashboard
    from simulator.plant import default_plant
    from simulator.server import PlantServer

    demo = settings.demo
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    store = open_store(settings.store)
    plant = around_the_clock(default_plant(machines=demo.machines))
    history = history or History()
    # The live energy registers go on from where the history left them (no bogus meter reset at the seam).
    server = PlantServer(plant, speed=demo.speed, host=demo.opcua_host, port=demo.opcua_port, seed=demo.seed,
                         registers=history.registers)
    dashboard_server = None
    users_dir = None
    try:
        await server.start()
        # The demo configures its collector the way an engineer would: discover the server, use the starter config.
        starter = await get_starter_config(server.endpoint)
        starter.update(_demo_collector_overrides(settings))
        collector_config = parse_config(CollectorConfig, starter, "<demo: discovered starter config>")
        collector = Collector(collector_config, store)

        users_dir = tempfile.TemporaryDirectory(prefix="wattline-demo-users-")
        users_file, logins = demo_users(Path(users_dir.name) / "users.json", [s.id for s in plant.sites])
        from core.orders.config import SAMPLE_FILE

        app = create_app(settings.store, refresh_s=settings.dashboard.refresh_s, store=store, users=users_file,
                         plant=plant, orders_db=history.orders.get("url") or demo_orders_url(settings),
                         orders_rules=SAMPLE_FILE)
        dashboard_server = run_dashboard(app, settings.dashboard.host, settings.dashboard.port)
        url = f"http://{settings.dashboard.host}:{settings.dashboard.port}/"
        print(
            f"Wattline demo: {demo.machines} machines served at {server.endpoint}, stored in {store.description}\n"
            f"Dashboard: {url}   (Ctrl-C stops; every value received is kept)\n"
            "Demo logins (one per role, passwords made for this run and shown only now):\n"
            + "\n".join(f"  {role:<14} user {name:<14} password {password}" for role, name, password in logins)
            + "\n" + history.line(),
            flush=True,
        )
        started = time.monotonic()
        collecting = asyncio.create_task(collector.run(stop))
        waiting = asyncio.create_task(stop.wait())
        await asyncio.wait({collecting, waiting}, timeout=demo.duration, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        waiting.cancel()
        await collecting  # flushes everything received before returning; re-raises if the collector failed
        print(_summary(collector, time.monotonic() - started, history.values), flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if dashboard_server is not None:
            dashboard_server.stop()
        await server.stop()
        store.close()
        if users_dir is not None:
            users_dir.cleanup()  # the demo's users and passwords live only as long as the demo


def demo_users(path: Path, sites: list[str]):
    """One user per role with a random password: (users file, [(role, name, password)]); site-bound roles get the
    plant's first site."""
    from dashboard.users import UsersFile, new_password

    users = UsersFile(path)
    logins = []
    for role, name in (("plant_manager", "manager"), ("engineer", "engineer"), ("cdo", "cdo"), ("admin", "admin")):
        password = new_password()
        users.add(name, role, sites[:1] if role in ("plant_manager", "engineer") else (), password)
        logins.append((role, name, password))
    return users, logins


def around_the_clock(plant):
    """Return the plant working three shifts every day of the year.

    The demo runs in real time, so with the default plant's calendar a newcomer trying it at night or on a Sunday
    would watch idle machines; ``wattline simulate serve`` keeps the plant file's calendar.
    """
    from core.plant import CalendarSpec
    from simulator.plant import Plant

    continuous = CalendarSpec(
        shifts=3, first_shift_start="06:00", shift_hours=8,
        workdays=("mon", "tue", "wed", "thu", "fri", "sat", "sun"), holidays=(),
    )
    sites = tuple(
        site.model_copy(
            update={"calendar": continuous, "lines": tuple(line.model_copy(update={"calendar": None}) for line in site.lines)}
        )
        for site in plant.sites
    )
    return Plant(plant.spec.model_copy(update={"sites": sites}), f"{plant.source} (demo: three shifts, seven days)")


def _demo_collector_overrides(settings: AppSettings) -> dict:
    """Keep the demo collector's files beside an embedded store, and never fight another process for a port."""
    base = settings.store
    if "://" in base:
        base = "wattline-demo"
    return {
        "store": settings.store,
        "spool": {"path": f"{base}.spool"},
        "status_file": f"{base}.collector-status.json",
        "metrics": {"listen": "127.0.0.1:0"},
    }


def _summary(collector, elapsed_s: float, history_values: int = 0) -> str:
    live = collector.stats.values_written
    return (f"Demo stopped after {elapsed_s:.0f} s; {live + history_values} values stored "
            f"({live:,} streamed live, {history_values:,} backfilled).")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: wattline demo")

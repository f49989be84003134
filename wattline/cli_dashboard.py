"""``wattline dashboard``: serve the web dashboard with gunicorn (the Dash development server only with ``--debug``).

Each gunicorn worker is a process with its own app, built from the same settings; workers share nothing but the store
(opened lazily per worker, on the first request that reads data), the results cache (``<users file>.cache/``,
:mod:`dashboard.cache`) and the session key file beside the users file, so a login holds whichever worker answers. Workers are ``gthread`` workers: a few threads each, which keeps the number of
SQLite connections bounded. The settings are checked once in the master before any worker starts, so a bad users or
plant file, or a port in use, is one clear error instead of N crashing workers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

DEFAULT_WORKERS = 2
DEFAULT_THREADS = 4


def _app_factory(store: str, plant: Path | None, users: Path, secure_cookies: bool,
                 cache_dir: Path | None = None, orders_db: str | None = None,
                 orders_rules: Path | None = None, api_tokens: Path | None = None,
                 api_limits: Any = None) -> Callable[[], Any]:
    def build():
        from dashboard.app import create_app

        return create_app(store, users=users, plant=plant, secure_cookies=secure_cookies, cache_dir=cache_dir,
                          orders_db=orders_db, orders_rules=orders_rules, api_tokens=api_tokens,
                          api_limits=api_limits)

    return build


def _check_orders_db(app: Any) -> None:
    """Open an explicitly given orders database once in the master (creating or migrating its schema), so a wrong
    URL or an unreachable server is one clear error before any worker starts."""
    from dashboard.orders import orders_provider

    provider = orders_provider(app.server)
    if provider is not None and provider.explicit:
        provider.get()
        provider.close()  # each worker opens its own engine


def serve_gunicorn(factory: Callable[[], Any], host: str, port: int, workers: int, threads: int) -> None:
    """Run gunicorn in the foreground until SIGTERM / Ctrl-C (gunicorn stops its workers gracefully)."""
    from gunicorn.app.base import BaseApplication

    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 120,
        "graceful_timeout": 20,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "wattline-dashboard",
    }

    class DashboardApplication(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return factory().server  # in each worker: its own app and store

    DashboardApplication().run()


def register(app: typer.Typer) -> None:
    """Add ``dashboard`` to the ``wattline`` command line."""

    @app.command()
    def dashboard(
        store: str | None = typer.Option(None, "--store", "-s", help="Store URL: a file path (embedded SQLite, default wattline.db), sqlite:///path or influx://host:port?..."),
        plant: Path | None = typer.Option(None, "--plant", help="Plant file (sites, currencies, tariffs, CO2 factors, time zones).", dir_okay=False),
        users: Path = typer.Option(Path("wattline-users.json"), "--users", "-u", help="Users file made with 'wattline users add' (mode 600).", dir_okay=False),
        port: int | None = typer.Option(None, "--port", "-p", help="TCP port (default 8050)."),
        host: str | None = typer.Option(None, "--host", help="Interface to listen on (default 127.0.0.1; 0.0.0.0 serves the network: put HTTPS in front)."),
        workers: int = typer.Option(DEFAULT_WORKERS, "--workers", "-w", min=1, max=64, help="Worker processes."),
        threads: int = typer.Option(DEFAULT_THREADS, "--threads", min=1, max=64, help="Request threads per worker."),
        secure_cookies: bool = typer.Option(False, "--secure-cookies", help="Mark the session cookie Secure (when served over HTTPS)."),
        debug: bool = typer.Option(False, "--debug", help="Dash's development server with reloading and error pages (never in production)."),
        orders_db: str | None = typer.Option(None, "--orders-db", help="Work-order database URL, as 'wattline orders --db': sqlite:///path.db or postgresql+psycopg://user@host:port/db?passfile=FILE (default: env WATTLINE_ORDERS_DB, else <store>.orders.db beside an embedded store once 'wattline orders sync' made it)."),
        orders_rules: Path | None = typer.Option(None, "--orders-rules", help="Orders settings YAML, as 'wattline orders --rules': its teams are what orders can be reassigned to (env WATTLINE_ORDERS_RULES).", dir_okay=False),
        api_tokens: Path | None = typer.Option(None, "--api-tokens", help="Tokens file (JSON, mode 600) of the JSON API: serves /api/v1/orders, /findings, /kpi for a CMMS (see docs/orders.md).", dir_okay=False),
        api_limit: list[str] = typer.Option([], "--api-limit", metavar="KEY=VALUE", help="A limit of /api/v1 (repeatable): requests_per_minute (per token, default 600; null: none), max_rows, max_series_days, max_raw_series_days (docs/api.md); overrides the settings file's dashboard.api_limits."),
        config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings file (keys store, dashboard.host, dashboard.port, dashboard.api_limits); options override it.", dir_okay=False),
    ) -> None:
        """Serve the dashboard (login required) with gunicorn; Ctrl-C or SIGTERM stops it."""
        from core.errors import ConfigError
        from dashboard.api_limits import parse_api_limit_options
        from dashboard.serve import bind_socket
        from wattline.cli import _require_existing_store
        from wattline.settings import read_app_settings

        settings = read_app_settings(config, {"store": store, "dashboard": {"port": port, "host": host}})
        limits = parse_api_limit_options(api_limit, settings.dashboard.api_limits)
        _require_existing_store(settings.store)
        if not users.exists():
            raise ConfigError(f"users file {users} does not exist; create it with 'wattline users add NAME --role admin "
                              f"--users {users}' and pass --users")
        cache_dir = Path(str(users) + ".cache")  # beside the users file: private to the dashboard's account
        factory = _app_factory(settings.store, plant, users, secure_cookies, cache_dir, orders_db, orders_rules,
                               api_tokens, limits)
        app = factory()  # checks the users, plant, rules and tokens files and makes the session key once
        _check_orders_db(app)
        host_, port_ = settings.dashboard.host, settings.dashboard.port
        bind_socket(host_, port_).close()  # a port in use is a clear error (exit 2), not a gunicorn retry loop
        from core.orders.db import safe_url
        from dashboard.settings import CONFIG_KEY

        orders_url = app.server.config[CONFIG_KEY].orders_db
        typer.echo(f"Wattline dashboard at http://{host_}:{port_}/ ({'debug server' if debug else f'{workers} workers'}, "
                   f"store {settings.store.split('?', 1)[0]}"
                   + (f", orders {safe_url(orders_url)}" if orders_url else "") + ")")
        if debug:
            app.run(host=host_, port=port_, debug=True)
            return
        del app
        serve_gunicorn(factory, host_, port_, workers, threads)

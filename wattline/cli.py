"""The ``wattline`` command line.

This module is the one place that wires the parts together: it opens stores, starts the simulator, the collectors and
the dashboard. Imports of the parts happen inside the commands so that ``wattline --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer

from core.errors import WattlineError
from wattline import __version__
from wattline.cli_analyze import register as register_analyze_command
from wattline.cli_anomalies import anomalies_app
from wattline.cli_backup import register as register_backup_commands
from wattline.cli_collect import register as register_collect_commands
from wattline.cli_dashboard import register as register_dashboard_command
from wattline.cli_export import register as register_export_commands
from wattline.cli_import import import_app
from wattline.cli_influx import influx_app
from wattline.cli_orders import orders_app
from wattline.cli_savings import register as register_savings_command
from wattline.cli_serve import register as register_serve_command
from wattline.cli_simulate import simulate_app
from wattline.cli_users import users_app

app = typer.Typer(
    help="Wattline: energy monitoring for factories. OPC UA collectors, a time-series store, analytics and a web dashboard.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[kW]" and "[/path]" must print as written
    add_completion=False,
)
app.add_typer(simulate_app, name="simulate")
app.add_typer(influx_app, name="influx")
app.add_typer(import_app, name="import")
app.add_typer(users_app, name="users")
app.add_typer(orders_app, name="orders")
app.add_typer(anomalies_app, name="anomalies")
register_collect_commands(app)
register_analyze_command(app)
register_dashboard_command(app)
register_savings_command(app)
register_serve_command(app)
register_backup_commands(app)
register_export_commands(app)

ConfigOption = typer.Option(
    None, "--config", "-c", help="YAML settings file; options given on the command line override it.", dir_okay=False
)
StoreOption = typer.Option(
    None, "--store", "-s", help="Store URL: a file path (embedded SQLite, default wattline.db), sqlite:///path or influx://host:port?...",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wattline {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-v info, -vv debug)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        # asyncua reports its own recoverable protocol chatter as warnings; ours are logged by the collector.
        logging.getLogger("asyncua").setLevel(logging.ERROR)


@app.command()
def demo(
    duration: float | None = typer.Option(None, "--duration", "-d", help="Stop by itself after this many seconds; runs until Ctrl-C when omitted."),
    machines: int | None = typer.Option(None, "--machines", "-m", help="Number of simulated machines (default 8)."),
    store: str | None = StoreOption,
    port: int | None = typer.Option(None, "--port", "-p", help="Dashboard port on 127.0.0.1 (default 8050)."),
    opcua_port: int | None = typer.Option(None, "--opcua-port", help="Port of the simulated plant's OPC UA server (default 4840; 0 picks a free port)."),
    speed: float | None = typer.Option(None, "--speed", help="Simulated seconds per real second (default 1)."),
    history_days: int | None = typer.Option(None, "--history-days", help="Days of history (waste injected) backfilled and analysed first, so every page has content at once (default 21; 0: none).", min=0),
    config: Path | None = ConfigOption,
) -> None:
    """Run a live demo plant: a simulated factory served over OPC UA, a collector streaming it into the store, and the
    dashboard at http://127.0.0.1:8050. Ctrl-C stops everything and keeps every value received."""
    from wattline.demo import run_demo
    from wattline.settings import read_app_settings

    settings = read_app_settings(
        config,
        {
            "store": store,
            "demo": {"duration": duration, "machines": machines, "opcua_port": opcua_port, "speed": speed,
                     "history_days": history_days},
            "dashboard": {"port": port},
        },
    )
    run_demo(settings)


@app.command()
def series(
    store: str | None = StoreOption,
    measurement: str | None = typer.Option(None, "--measurement", help="Only series of this measurement."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON array instead of a table."),
    config: Path | None = ConfigOption,
) -> None:
    """List the stored series (measurement, tags, field) with point count and first/last timestamp."""
    from core.storage import open_store
    from wattline.settings import read_app_settings

    settings = read_app_settings(config, {"store": store})
    _require_existing_store(settings.store)
    with open_store(settings.store) as opened:
        infos = [info.to_dict() for info in opened.series(measurement)]
    if as_json:
        typer.echo(json.dumps(infos, ensure_ascii=False))
        return
    if not infos:
        typer.echo(f"no series in {settings.store}")
        return
    rows = [
        (i["measurement"], ",".join(f"{k}={v}" for k, v in i["tags"].items()), i["field"], str(i["count"]), i["first"], i["last"])
        for i in infos
    ]
    header = ("MEASUREMENT", "TAGS", "FIELD", "POINTS", "FIRST", "LAST")
    widths = [max(len(r[c]) for r in [*rows, header]) for c in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _require_existing_store(url: str) -> None:
    """Refuse to create an empty database when the user only wants to read one."""
    from core.errors import ConfigError

    if "://" not in url and not Path(url).exists():
        raise ConfigError(f"store {url} does not exist; give the path of an existing store with --store")


def main() -> None:
    """Entry point: run the app and turn Wattline's errors into one line and an exit code, never a traceback."""
    try:
        app(standalone_mode=False)
    except typer.TyperException as exc:  # usage errors: unknown option, bad value, missing argument
        if type(exc).__name__ == "NoArgsIsHelpError":
            # show() is defined from typer's (private, vendored) ClickException down; the public TyperException lacks it
            exc.show()  # type: ignore[attr-defined]  # a bare command prints its help
            sys.exit(0)
        usage = getattr(exc, "ctx", None)
        hint = f" (see '{usage.command_path} --help')" if usage is not None else ""
        typer.echo(f"wattline: error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except WattlineError as exc:
        typer.echo(f"wattline: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()

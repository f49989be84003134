"""``wattline influx ...``: InfluxDB administration commands."""

import typer

influx_app = typer.Typer(help="Prepare and inspect an InfluxDB server for Wattline.", no_args_is_help=True)

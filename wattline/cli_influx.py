"""``wattline influx ...``: InfluxDB administration commands."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

influx_app = typer.Typer(help="Prepare and inspect an InfluxDB server for Wattline.", no_args_is_help=True)


@influx_app.command("setup")
def setup(
    store: Optional[str] = typer.Option(
        None,
        "--store",
        "-s",
        help="InfluxDB store URL, e.g. influx://127.0.0.1:8086?org=wattline&bucket=wattline&token_file=/etc/wattline/token "
        "(the token comes from token_file or $WATTLINE_INFLUX_TOKEN, never from the URL).",
    ),
    backfill: bool = typer.Option(True, "--backfill/--no-backfill", help="Compute rollups for points already in the bucket."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML settings file with a `store:` key.", dir_okay=False),
) -> None:
    """Create the buckets, retention rules and rollup tasks (1 min, 15 min, 1 h) Wattline needs. Safe to run again."""
    from core.errors import ConfigError
    from core.storage.influx import InfluxSettings, setup_influx
    from wattline.settings import read_app_settings

    settings = read_app_settings(config, {"store": store})
    if not settings.store.startswith(("influx://", "influxs://")):
        raise ConfigError(f"--store {settings.store!r} is not an InfluxDB URL; give influx://HOST:PORT?org=...&bucket=...")
    for line in setup_influx(InfluxSettings.from_url(settings.store)):
        typer.echo(line)

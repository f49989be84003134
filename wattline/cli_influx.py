"""``wattline influx ...``: InfluxDB administration commands."""

from __future__ import annotations

from pathlib import Path

import typer

influx_app = typer.Typer(help="Prepare and inspect an InfluxDB server for Wattline.", no_args_is_help=True)


@influx_app.command("setup")
def setup(
    store: str | None = typer.Option(
        None,
        "--store",
        "-s",
        help="InfluxDB store URL, e.g. influx://127.0.0.1:8086?org=wattline&bucket=wattline&token_file=/etc/wattline/token "
        "(the token comes from token_file or $WATTLINE_INFLUX_TOKEN, never from the URL).",
    ),
    backfill: bool = typer.Option(True, "--backfill/--no-backfill", help="Compute rollups for points already in the bucket."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings file with a `store:` key.", dir_okay=False),
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


def _influx_settings(url: str, option: str):
    from core.errors import ConfigError
    from core.storage.influx import InfluxSettings

    if not url.startswith(("influx://", "influxs://")):
        raise ConfigError(f"{option} {url!r} is not an InfluxDB URL; give influx://HOST:PORT?org=...&bucket=...&token_file=...")
    return InfluxSettings.from_url(url)


@influx_app.command("replicate")
def replicate(
    store: str = typer.Option(
        ..., "--store", "-s", help="The edge InfluxDB (influx://HOST:PORT?org=...&bucket=...&token_file=...), whose bucket is replicated."
    ),
    to: str | None = typer.Option(
        None, "--to", help="The central InfluxDB as influx://HOST:PORT?org=...&bucket=...&token_file=... (URL as the edge server "
        "reaches it; the token is stored in the edge server as its remote and needs write access to the central buckets).",
    ),
    name: str = typer.Option("wattline-central", "--name", help="Name of the remote on the edge; streams are NAME:BUCKET."),
    rollups: bool = typer.Option(True, "--rollups/--no-rollups", help="Also replicate the rollup buckets (computed at the edge)."),
    max_queue_mb: int = typer.Option(1024, "--max-queue-mb", min=1, help="Disk queue per stream on the edge [MiB]; size it for the longest outage."),
    max_age_days: float = typer.Option(7.0, "--max-age-days", min=0, help="Queued data older than this is dropped [days]; 0 keeps it."),
    drop_non_retryable: bool = typer.Option(False, "--drop-non-retryable", help="Drop batches the central rejects (HTTP 400) instead of retrying them."),
    remove: bool = typer.Option(False, "--remove", help="Delete the streams and the remote NAME instead (unsent queued data is discarded)."),
) -> None:
    """Replicate the edge bucket to a central InfluxDB with InfluxDB's own edge data replication; safe to run again."""
    from core.storage.influx_replication import remove_replication, setup_replication

    edge = _influx_settings(store, "--store")
    if remove:
        lines = remove_replication(edge, name)
    elif to is None:
        from core.errors import ConfigError

        raise ConfigError("which central server? give --to influx://HOST:PORT?org=...&bucket=...&token_file=...")
    else:
        lines = setup_replication(edge, _influx_settings(to, "--to"), name=name, rollups=rollups, max_queue_mb=max_queue_mb,
                                  max_age_days=max_age_days, drop_non_retryable=drop_non_retryable)
    for line in lines:
        typer.echo(line)


@influx_app.command("replications")
def replications(
    store: str = typer.Option(..., "--store", "-s", help="The edge InfluxDB (influx://...)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the edge's replication streams: queue on disk, bytes not yet sent, the central's last answer."""
    import json

    from core.storage.influx_replication import get_replication_status

    rows = get_replication_status(_influx_settings(store, "--store"))
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        typer.echo("no replication streams")
    for r in rows:
        state = "nothing sent yet" if r["latest_status"] is None else (
            f"last answer HTTP {r['latest_status']}" if r["latest_status"] else "last attempt got no answer")
        error = f", error: {r['latest_error']}" if r["latest_error"] else ""
        typer.echo(f"{r['name']}: {r['remaining_bytes']} B to send, {r['queue_bytes']} B queued of "
                   f"{r['max_queue_bytes']} B, {state}{error}")

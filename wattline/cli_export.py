"""``wattline export`` (CSV, Parquet, InfluxDB line protocol) and ``wattline import lp`` (line protocol in).

The formats are described in :mod:`core.export`. Nothing is locked in: what Wattline stores leaves in formats every
tool reads, and years of history from an InfluxDB-based system come in through line protocol.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

StoreOpt = typer.Option(None, "--store", "-s", help="Store URL: a file path (embedded SQLite, default wattline.db), sqlite:///path or influx://host:port?...")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML settings file (key: store); options override it.", dir_okay=False)


def export(
    fmt: str = typer.Option(..., "--format", "-f", help="csv, parquet or lp (InfluxDB line protocol)."),
    measurement: str = typer.Option(..., "--measurement", "-m", help="Measurement to export (see 'wattline series')."),
    field: list[str] | None = typer.Option(None, "--field", help="Only this field (repeatable); default all."),
    start: str | None = typer.Option(None, "--from", help="Start (YYYY-MM-DD or ISO 8601; UTC without offset). Default: the first value."),
    stop: str | None = typer.Option(None, "--to", help="End, exclusive. Default: after the last value."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default: standard output; Parquet needs a file).", dir_okay=False),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
    store: str | None = StoreOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Export stored series as CSV, Parquet or InfluxDB line protocol, one row per stored value (time UTC, tags,
    field, value, OPC UA status); a missing value stays missing."""
    from core.errors import ConfigError
    from core.export import FORMATS, export_series, parse_time_ns
    from core.storage import open_store
    from wattline.cli import _require_existing_store
    from wattline.settings import read_app_settings

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not valid; valid options: {', '.join(FORMATS)}")
    lo, hi = parse_time_ns(start, "from"), parse_time_ns(stop, "to")
    if lo is not None and hi is not None and hi <= lo:
        raise ConfigError(f"--to {stop} is not after --from {start}")
    if fmt == "parquet" and out is None:
        raise ConfigError("--format parquet writes a binary file: give it with --out FILE.parquet")
    if out is not None and out.exists() and not force:
        raise ConfigError(f"{out} exists; pass --force to overwrite it or choose another --out")
    settings = read_app_settings(config, {"store": store})
    _require_existing_store(settings.store)
    with open_store(settings.store) as opened:
        if out is None:
            summary = export_series(opened, sys.stdout, fmt, measurement, tuple(field or ()) or None, lo, hi)
            sys.stdout.flush()
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            partial = out.with_name(out.name + ".partial")
            try:
                if fmt == "parquet":
                    summary = export_series(opened, partial, fmt, measurement, tuple(field or ()) or None, lo, hi,
                                            progress=sys.stderr.isatty())
                else:
                    with open(partial, "w", encoding="utf-8", newline="") as fh:
                        summary = export_series(opened, fh, fmt, measurement, tuple(field or ()) or None, lo, hi,
                                                progress=sys.stderr.isatty())
                partial.replace(out)  # a failed export leaves no half file under the real name
            finally:
                partial.unlink(missing_ok=True)
    typer.echo(summary.line(fmt, str(out) if out else "standard output"), err=True)


def import_lp(
    file: Path = typer.Argument(..., help="Line-protocol file, plain or gzip (from 'wattline export --format lp', 'influx query' or Telegraf).", dir_okay=False),
    precision: str = typer.Option("ns", "--precision", help="Unit of the timestamps: ns, us, ms or s."),
    store: str | None = StoreOpt,
    max_errors: int = typer.Option(50, "--max-errors", min=1, help="List at most this many bad lines."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the whole file and print the summary; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    chunk_lines: int = typer.Option(250_000, "--chunk-lines", min=1, help="Lines written at a time (memory is about 150 bytes per value of a chunk)."),
    config: Path | None = ConfigOpt,
) -> None:
    """Import InfluxDB line protocol: every line is checked first; with any bad line nothing is written and the bad
    lines are listed. Numeric fields become series; wattline_status and wattline_missing are read back as written.
    Both passes stream the file, so its size is not bounded by memory."""
    from core.export import check_line_protocol, import_line_protocol
    from core.importer import DataFileError
    from core.storage import open_store
    from wattline.settings import read_app_settings

    settings = read_app_settings(config, {"store": store})
    progress = sys.stderr.isatty()
    # Pass 1 checks the whole file before the store is opened: a bad file writes nothing and creates no empty store.
    check = check_line_protocol(file, precision=precision, max_errors=max_errors, progress=progress)
    if check.error_count:
        more = f"\n... and {check.error_count - len(check.errors)} more" if check.error_count > len(check.errors) else ""
        raise DataFileError(f"{file}: {check.error_count} of {check.lines} lines are bad; nothing was written:\n"
                            + "\n".join(check.errors) + more)
    if not check.values:
        raise DataFileError(f"{file}: no values (empty file or only comments)")
    written = 0
    if not dry_run:
        with open_store(settings.store) as opened:
            written = import_line_protocol(file, opened, precision=precision, chunk_lines=chunk_lines,
                                           progress=progress)
    summary = {"file": str(file), "lines": check.lines, "series": check.series, "values": check.values,
               "written": written, "dry_run": dry_run}
    typer.echo(json.dumps(summary) if as_json else
               f"{'checked' if dry_run else 'imported'} {check.values} values of {check.series} series from "
               f"{check.lines} lines" + ("" if dry_run else f" into {settings.store.split('?', 1)[0]}"))


def register(app: typer.Typer) -> None:
    """Add ``export`` to the command line and ``lp`` beside ``csv`` under ``wattline import``."""
    from wattline.cli_import import import_app

    app.command("export")(export)
    import_app.command("lp")(import_lp)

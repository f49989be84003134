"""``wattline import csv FILE --mapping MAPPING.yaml``: meter exports into the store (see ``core.importer``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

import_app = typer.Typer(
    help="Bring meter exports into the store.", no_args_is_help=True, rich_markup_mode=None, add_completion=False
)


@import_app.command("csv")
def import_csv_command(
    file: Path = typer.Argument(..., help="The CSV file; its first line is the header.", dir_okay=False),
    mapping: Path = typer.Option(
        ..., "--mapping", "-m", help="YAML mapping: time column, format, zone, columns to measurement.field with units, "
        "tags (see docs/examples/steel-industry.yaml).", dir_okay=False,
    ),
    store: str | None = typer.Option(
        None, "--store", "-s", help="Store URL: a file path (embedded SQLite, default wattline.db), sqlite:///path or influx://host:port?...",
    ),
    max_errors: int = typer.Option(50, "--max-errors", min=1, help="List at most this many bad rows."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the whole file and print the summary; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON instead of one line."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML settings file (its `store` is used unless --store is given).", dir_okay=False
    ),
) -> None:
    """Import a CSV meter export: every row is checked first; with any bad row nothing is written and the bad rows are
    listed with their line numbers. Interval energy is stored as the energy register, stamps as interval ends in UTC."""
    import sys

    from core.importer import check_csv, read_mapping, write_parsed
    from core.storage import open_store
    from wattline.settings import read_app_settings

    settings = read_app_settings(config, {"store": store})
    parsed_mapping = read_mapping(mapping)
    progress = sys.stderr.isatty()
    # The whole file is checked before the store is opened: a bad file writes nothing and creates no empty store.
    parsed = check_csv(file, parsed_mapping, max_errors=max_errors, progress=progress)
    if dry_run:
        summary = write_parsed(parsed, parsed_mapping, None)
    else:
        with open_store(settings.store) as opened:
            summary = write_parsed(parsed, parsed_mapping, opened, progress=progress)
    for warning in summary.warnings:
        typer.echo(f"wattline: warning: {warning}", err=True)
    typer.echo(json.dumps(summary.to_dict(), ensure_ascii=False) if as_json else summary.line())

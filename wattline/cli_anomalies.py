"""``wattline anomalies``: the users' say on anomaly findings -- list them with their ids, set a machine's false-alarm
budget (alerts per week; its threshold follows), mark a finding as normal (that pattern is no longer reported) or
take the mark back. What is set lives in the preferences file beside the store
(:mod:`analytics.anomaly.preferences`); ``wattline analyze`` reads it, ``wattline analyze --follow`` re-reads it as
soon as it changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

anomalies_app = typer.Typer(help="Anomaly findings: list them, set a false-alarm budget per machine, mark a finding "
                            "as normal.", no_args_is_help=True)

STORE_HELP = "Store URL: a file path (embedded SQLite, default wattline.db), sqlite:///path or influx://host:port?..."
PREFS_HELP = ("Preferences file (default: beside a SQLite store, <store>.anomaly-preferences.json; for other stores "
              "required here or in WATTLINE_ANOMALY_PREFERENCES).")


def _store_url(store: str | None, config: Path | None) -> str:
    from wattline.cli import _require_existing_store
    from wattline.settings import read_app_settings

    url = read_app_settings(config, {"store": store}).store
    _require_existing_store(url)
    return url


def anomaly_findings(store_url: str, run: str | None = None, machine: str | None = None) -> list:
    """Stored findings of kind ``anomaly`` (all runs, or ``run``), optionally of one machine."""
    from core.storage import open_store
    from core.storage.results import results_for

    with open_store(store_url) as store, results_for(store) as results:
        return results.query_findings(kinds=["anomaly"], run=run, machines=[machine] if machine else None)


def stored_machines(store_url: str) -> list[str]:
    """Machine paths with energy data in the store."""
    from core.storage import open_store
    from wattline.cli_analyze import _energy_machines

    with open_store(store_url) as store:
        return sorted(_energy_machines(store)[0])


def set_machine_budget(store_url: str, machine: str, alerts_per_week: float | None,
                       preferences: Path | None = None) -> dict[str, Any]:
    """Set or clear a machine's false-alarm budget (the machine must be in the store); returns the preferences."""
    from analytics.anomaly.preferences import preferences_path, set_budget
    from core.errors import ConfigError

    known = stored_machines(store_url)
    if machine not in known:
        near = [m for m in known if m.endswith("/" + machine)]
        hint = f"; did you mean {near[0]}?" if len(near) == 1 else f"; valid: {', '.join(known[:10])}"
        raise ConfigError(f"machine {machine!r} has no energy data in {store_url} (give site/line/machine){hint}")
    return set_budget(preferences_path(store_url, preferences), machine, alerts_per_week).model_dump()


def mark_finding_normal(store_url: str, finding: str, note: str = "", preferences: Path | None = None) -> dict:
    """Mark the stored anomaly finding ``finding`` (id or unique id prefix) as normal; returns the stored pattern."""
    from analytics.anomaly.preferences import find_finding, mark_normal, preferences_path

    event = find_finding(anomaly_findings(store_url), finding)
    return mark_normal(preferences_path(store_url, preferences), event, note).model_dump()


@anomalies_app.command("list")
def list_cmd(
    store: str | None = typer.Option(None, "--store", "-s", help=STORE_HELP),
    run: str | None = typer.Option(None, "--run", help="Only this run's findings (e.g. follow-anomalies)."),
    machine: str | None = typer.Option(None, "--machine", help="Only this machine (path or machine tag)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: Path | None = typer.Option(None, "--config", "-c", dir_okay=False, help="YAML settings file (key: store)."),
) -> None:
    """Stored anomaly findings with the ids that mark-normal takes."""
    from analytics.anomaly.preferences import finding_id

    events = anomaly_findings(_store_url(store, config), run, machine)
    rows = [{"id": finding_id(e), **e.to_dict()} for e in events]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, default=str))
        return
    if not rows:
        typer.echo("no anomaly findings stored")
    for e in events:
        typer.echo(f"{finding_id(e)}  {e.machine}  {e.start.isoformat()}  "
                   f"{e.details.get('explanation') or f'{e.excess_kwh:.0f} kWh above baseline'}")


@anomalies_app.command("budget")
def budget_cmd(
    machine: str = typer.Argument(..., help="Machine path site/line/machine."),
    alerts_per_week: float | None = typer.Argument(None, help="False-alarm budget [alerts per week], e.g. 0.5."),
    clear: bool = typer.Option(False, "--clear", help="Remove the machine's budget (back to the default)."),
    store: str | None = typer.Option(None, "--store", "-s", help=STORE_HELP),
    preferences: Path | None = typer.Option(None, "--preferences", help=PREFS_HELP),
    config: Path | None = typer.Option(None, "--config", "-c", dir_okay=False, help="YAML settings file (key: store)."),
) -> None:
    """Set how many false alarms per week a machine may raise; its anomaly threshold follows."""
    from core.errors import ConfigError

    if (alerts_per_week is None) == (not clear):
        raise ConfigError("give the budget in alerts per week (e.g. 'wattline anomalies budget s/l/m 0.5') or --clear")
    prefs = set_machine_budget(_store_url(store, config), machine, None if clear else alerts_per_week, preferences)
    now = prefs["alerts_per_week"].get(machine)
    typer.echo(f"{machine}: " + (f"{now:g} alerts per week" if now is not None else "default budget"))


@anomalies_app.command("mark-normal")
def mark_normal_cmd(
    finding: str = typer.Argument(..., help="Finding id from 'wattline anomalies list' (or a unique prefix)."),
    note: str = typer.Option("", "--note", help="Why it is normal."),
    store: str | None = typer.Option(None, "--store", "-s", help=STORE_HELP),
    preferences: Path | None = typer.Option(None, "--preferences", help=PREFS_HELP),
    config: Path | None = typer.Option(None, "--config", "-c", dir_okay=False, help="YAML settings file (key: store)."),
) -> None:
    """Mark an anomaly finding as normal: findings of that machine with the same pattern are no longer reported."""
    pattern = mark_finding_normal(_store_url(store, config), finding, note, preferences)
    typer.echo(f"marked {pattern['id']} ({pattern['machine']}, from {pattern['start']}) as normal")


@anomalies_app.command("unmark")
def unmark_cmd(
    finding: str = typer.Argument(..., help="Id of a finding marked as normal."),
    store: str | None = typer.Option(None, "--store", "-s", help=STORE_HELP),
    preferences: Path | None = typer.Option(None, "--preferences", help=PREFS_HELP),
    config: Path | None = typer.Option(None, "--config", "-c", dir_okay=False, help="YAML settings file (key: store)."),
) -> None:
    """Report a pattern marked as normal again."""
    from analytics.anomaly.preferences import preferences_path, unmark
    from core.errors import ConfigError

    if not unmark(preferences_path(_store_url(store, config), preferences), finding):
        raise ConfigError(f"no pattern marked as normal has the id {finding!r}; see 'wattline anomalies preferences'")
    typer.echo(f"{finding} is reported again")


@anomalies_app.command("preferences")
def preferences_cmd(
    store: str | None = typer.Option(None, "--store", "-s", help=STORE_HELP),
    preferences: Path | None = typer.Option(None, "--preferences", help=PREFS_HELP),
    config: Path | None = typer.Option(None, "--config", "-c", dir_okay=False, help="YAML settings file (key: store)."),
) -> None:
    """Print the budgets and the patterns marked as normal (JSON)."""
    from analytics.anomaly.preferences import preferences_path, read_preferences

    path = preferences_path(_store_url(store, config), preferences)
    typer.echo(json.dumps({"file": str(path), **read_preferences(path).model_dump()}, indent=1, ensure_ascii=False))

"""``wattline savings``: verified savings of an intervention (IPMVP Option B/C, ASHRAE Guideline 14).

Reads the scope's interval data from the store, fits the baseline before the intervention date, predicts the reporting
period and prints avoided energy, money and CO2 with the fractional savings uncertainty (see docs/savings.md).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, overload

import typer

from core.errors import ConfigError, WattlineError
from wattline.cli_analyze import NS, WINDOW_S, _choose_plant, _energy_machines


class SavingsError(WattlineError):
    """The savings cannot be computed on this store (runtime: exit 1)."""


@overload
def _date(value: str, what: str) -> dt.date: ...
@overload
def _date(value: str | None, what: str) -> dt.date | None: ...
def _date(value: str | None, what: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"--{what} {value!r} is not a date; use YYYY-MM-DD such as 2026-03-02") from None


def run_savings(store_url: str, scope: str, intervention: str, reporting_days: int | None = None,
                reporting_from: str | None = None, plant_file: Path | None = None, json_path: Path | None = None,
                model: str = "auto", causes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Compute the savings and return the result (:meth:`analytics.savings.Savings.to_dict`); ``causes``: the waste
    causes the intervention addressed (the other causes' findings are taken out of both periods)."""
    from analytics.data import IntervalData
    from analytics.errors import AnalyticsError, InsufficientDataError
    from analytics.savings import Savings, SavingsSettings
    from core.storage import open_store

    day = _date(intervention, "intervention")
    start_rep = _date(reporting_from, "reporting-from")
    if reporting_days is not None and reporting_days < 1:
        raise ConfigError(f"--reporting-days must be at least 1, got {reporting_days}")
    if model not in ("auto", "baseline", "change_point"):
        raise ConfigError(f"--model {model!r} is not valid; valid: auto, baseline, change_point")
    from core.model import WASTE_KINDS

    bad = [c for c in causes if c not in WASTE_KINDS]
    if bad:
        raise ConfigError(f"--cause {bad[0]!r} is not a waste cause; valid: {', '.join(WASTE_KINDS)}")
    notes: list = []
    with open_store(store_url) as store:
        stored, first, last = _energy_machines(store)
        if not stored or first is None or last is None:  # no machine, or only series without values
            raise SavingsError(f"store {store_url} holds no energy data (measurement 'electrical' with site, line and "
                               "machine tags); fill it with a collector, 'wattline import csv' or 'wattline simulate backfill'")
        valid = sorted({p.split("/")[0] for p in stored} | {"/".join(p.split("/")[:2]) for p in stored} | set(stored))
        key = scope.strip("/")
        members = {p for p in stored if p == key or p.startswith(key + "/")}
        if not members:
            shown = ", ".join(valid[:20]) + (f" ... ({len(valid)} in all)" if len(valid) > 20 else "")
            raise ConfigError(f"--scope {scope!r} is not in the store; valid scopes: {shown}")
        plant = _choose_plant(plant_file, stored, notes)
        w = WINDOW_S * NS
        lo, hi = (first - 1) // w * w, -(-last // w) * w
        day_ns = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()) * NS
        if not lo + 86400 * NS < day_ns < hi:
            raise ConfigError(f"--intervention {day} is outside the stored data ({_iso(lo)} to {_iso(hi)}); give a "
                              "date with data before and after it")
        if reporting_days is not None:
            hi = min(hi, day_ns + (reporting_days + 2 + ((start_rep - day).days if start_rep else 0)) * 86400 * NS)
        if plant is not None:
            from wattline.cli_analyze import _plant_subset

            plant = _plant_subset(plant, members)
            if not plant.machines:
                plant = None
        try:
            data = IntervalData.from_store(store, plant, _utc(lo), _utc(hi), resolution_s=WINDOW_S, progress=False)
            settings = SavingsSettings(scope=key, intervention=day, reporting_from=start_rep,
                                       reporting_days=reporting_days, model=model, causes=tuple(causes))
            result = Savings(settings).fit(data).to_dict()
        except InsufficientDataError as exc:
            raise SavingsError(str(exc)) from None
        except AnalyticsError as exc:
            raise ConfigError(str(exc)) from None
    result["warnings"] = [n.to_dict() for n in notes] + result["warnings"]
    if json_path is not None:
        try:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
        except OSError as exc:
            raise SavingsError(f"cannot write {json_path}: {exc}") from None
    for line in summary_lines(result):
        typer.echo(line)
    if json_path is not None:
        typer.echo(f"result written to {json_path}")
    return result


def summary_lines(r: dict[str, Any]) -> list[str]:
    """A few lines a plant manager reads."""
    frac = r["savings_fraction"]
    out = [f"savings at {r['scope']} after {r['intervention']}: {r['savings_kwh']:,.0f} kWh"
           + (f" ({frac:.1%} of the adjusted baseline)" if frac is not None else ""),
           (f"  baseline {r['baseline_period'][0]} to {r['baseline_period'][1]} ({r['baseline_days']} days), reporting "
            f"{r['reporting_period'][0]} to {r['reporting_period'][1]} ({r['reporting_days']} days), model "
            f"{r['model'].get('type')}"),
           (f"  adjusted baseline {r['baseline_kwh']:,.0f} kWh, actual {r['actual_kwh']:,.0f} kWh; 90 % interval "
            f"{r['savings_interval_90_kwh'][0]:,.0f} to {r['savings_interval_90_kwh'][1]:,.0f} kWh"),
           "  FSU " + ", ".join(f"{k[-2:]} % {r[k]:.0%}" if r[k] is not None else f"{k[-2:]} % n/a" for k in ("fsu_68", "fsu_90"))
           + f"; CV(RMSE) {r['cv_rmse']:.1%} daily, NMBE {r['nmbe']:.2%}; Guideline 14 "
           + ("passed" if r["passes_g14"] else "not passed")]
    if r.get("cost_savings"):
        out.append(f"  money {r['cost_savings']['amount']:,.0f} {r['cost_savings']['currency']}, CO2 {r['co2_kg']:,.0f} kg")
    for w in r["warnings"]:
        out.append(f"  warning: {w.get('message')}")
    return out


def _utc(t_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_ns / NS, dt.UTC)


def _iso(t_ns: int) -> str:
    return _utc(t_ns).date().isoformat()


def register(app: typer.Typer) -> None:
    """Add ``savings`` to the ``wattline`` command line."""

    @app.command()
    def savings(
        store: str | None = typer.Option(None, "--store", "-s", help="Store URL: a file path (embedded SQLite, default wattline.db), sqlite:///path or influx://host:port?..."),
        scope: str = typer.Option(..., "--scope", help="What was changed: site, site/line or site/line/machine."),
        intervention: str = typer.Option(..., "--intervention", help="Date of the intervention (YYYY-MM-DD, local midnight of the site)."),
        reporting_days: int | None = typer.Option(None, "--reporting-days", help="Length of the reporting period [days]; default all data after the intervention."),
        reporting_from: str | None = typer.Option(None, "--reporting-from", help="First day of the reporting period (YYYY-MM-DD) when an installation window is left out."),
        plant: Path | None = typer.Option(None, "--plant", help="Plant file (calendars, tariffs, CO2 factors). Default: the simulator's demo plant when the store holds it, else none (no money)."),
        model: str = typer.Option("auto", "--model", help="auto, baseline (hourly drivers) or change_point (daily temperature model)."),
        cause: list[str] | None = typer.Option(None, "--cause", help="Waste cause the intervention addressed (repeatable; e.g. idle_running): the other causes the analytics find are taken out of both periods (IPMVP non-routine adjustment)."),
        json_file: Path | None = typer.Option(None, "--json", help="Write the JSON result here."),
        config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings file (key: store); options override it.", dir_okay=False),
    ) -> None:
        """Verified savings of an intervention: avoided energy (adjusted baseline - actual) in kWh, money and CO2 with
        the ASHRAE Guideline 14 fractional savings uncertainty at 68 % and 90 %."""
        from wattline.cli import _require_existing_store
        from wattline.settings import read_app_settings

        settings = read_app_settings(config, {"store": store})
        _require_existing_store(settings.store)
        run_savings(settings.store, scope, intervention, reporting_days, reporting_from, plant, json_file, model,
                    tuple(cause or ()))

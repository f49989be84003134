"""``wattline analyze``: where the energy goes, what is avoidable and why, in kWh, money and CO2.

Reads interval data from the store (with the plant file's calendars, tariffs and machine kinds when there is one), finds
meter faults, the reduction potential by cause and the baselines, prints a short summary, writes the JSON report and
stores the findings beside the series (``core.storage.results``, replacing what the same run wrote before).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import typer

from analytics.parallel import ParallelSettings
from core.errors import ConfigError, WattlineError

log = logging.getLogger(__name__)

NS = 1_000_000_000
WINDOW_S = 900


class AnalyzeError(WattlineError):
    """The analysis cannot run on this store or range (runtime: exit 1)."""


def _parse_time(value: str | None, what: str) -> dt.datetime | None:
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--{what} {value!r} is not a date or time; use YYYY-MM-DD or ISO 8601 such as "
                          "2026-03-02T06:00:00+01:00") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _energy_machines(store) -> tuple[dict[str, dict], int | None, int | None]:
    """Machines with electrical series in the store (path -> tags) and the extent of their data [ns]."""
    machines: dict[str, dict] = {}
    first, last = None, None
    for info in store.series("electrical"):
        tags = info.key.tag_dict
        if not {"site", "line", "machine"} <= set(tags) or info.key.field not in ("energy_kwh", "active_power_kw"):
            continue
        path = f"{tags['site']}/{tags['line']}/{tags['machine']}"
        machines[path] = {k: tags[k] for k in ("site", "line", "machine")}
        if info.count:
            first = info.first_ns if first is None else min(first, info.first_ns)
            last = info.last_ns if last is None else max(last, info.last_ns)
    return machines, first, last


def _plant_subset(plant, paths: set[str]):
    """The plant restricted to the machines in ``paths`` (sites and lines without any are dropped)."""
    from core.plant import Plant

    sites = []
    for site in plant.sites:
        lines = []
        for line in site.lines:
            kept = tuple(m for m in line.machines if f"{site.id}/{line.id}/{m.id}" in paths)
            if kept:
                lines.append(line.model_copy(update={"machines": kept}))
        if lines:
            sites.append(site.model_copy(update={"lines": tuple(lines)}))
    spec = plant.spec.model_copy(update={"sites": tuple(sites)})
    return type(plant)(spec, plant.source) if isinstance(plant, Plant) else Plant(spec, plant.source)


def _choose_plant(plant_file: Path | None, stored: dict[str, dict], notes: list):
    """The plant file given, else the simulator's shipped demo plant when the store's machines are all in it (a store
    filled by ``wattline simulate backfill``), else none (analytics run on what the store has, with warnings)."""
    from core.notices import Notice
    from core.plant import read_plant

    if plant_file is not None:
        if not plant_file.exists():
            raise ConfigError(f"plant file {plant_file} does not exist; give an existing YAML file with --plant")
        plant = read_plant(plant_file)
        paths = {ref.path for ref in plant.machines}
        missing = sorted(paths - set(stored))
        if len(missing) == len(paths):
            raise ConfigError(f"{plant_file}: none of its {len(paths)} machines has energy data in the store (e.g. "
                              f"{missing[0]!r}); the store has {sorted(stored)[:5]}; check the site/line/machine ids")
        if missing:
            notes.append(Notice("analytics.plant.machines_without_data",
                                f"{len(missing)} machine(s) of {plant_file} have no energy data in the store and are "
                                f"left out: {', '.join(missing[:5])}", {"machines": missing[:100]}))
        extra = sorted(set(stored) - paths)
        if extra:
            notes.append(Notice("analytics.plant.machines_not_in_plant",
                                f"{len(extra)} machine(s) in the store are not in {plant_file} and are left out: "
                                f"{', '.join(extra[:5])}", {"machines": extra[:100]}))
        return _plant_subset(plant, set(stored)) if missing else plant
    try:
        from simulator.plant import DEFAULT_PLANT_FILE
    except ImportError:  # the simulator is optional
        return None
    try:
        demo = read_plant(DEFAULT_PLANT_FILE)
    except WattlineError:
        return None
    if stored and set(stored) <= {ref.path for ref in demo.machines}:
        notes.append(Notice("analytics.plant.demo",
                            f"no --plant given: the store's {len(stored)} machines are the simulator's demo plant, so "
                            f"its plant file {DEFAULT_PLANT_FILE} is used", {"plant": str(DEFAULT_PLANT_FILE)},
                            level="info"))
        return _plant_subset(demo, set(stored))
    return None


def _fine_power(store, machines: dict[str, dict]):
    """1-min mean power of one machine from the store (for demand peaks)."""
    import numpy as np

    def read(path: str, start_ns: int, stop_ns: int):
        frame = store.aggregate("electrical", "active_power_kw", start_ns, stop_ns, every=60, agg="mean",
                                tags=machines[path])
        if frame.empty:
            return np.zeros(0, np.int64), np.zeros(0)
        times = frame["time"].dt.tz_convert("UTC").astype("int64").to_numpy() if hasattr(frame["time"], "dt") else \
            np.asarray(frame["time"], dtype=np.int64)
        return times, frame["value"].to_numpy(dtype=float)

    return read


def _baselines(data, exclude, notes: list, fanout=None):
    """The fitted baseline (``analytics.baseline``, meter-fault windows left out) and its statistics per scope;
    ``(None, [])`` when there is too little data. The anomaly detector scores residuals of this same model."""
    from analytics.baseline import Baseline
    from analytics.errors import InsufficientDataError

    try:
        model = Baseline().fit(data, exclude=exclude, fanout=fanout)
    except InsufficientDataError as exc:
        from core.notices import Notice

        notes.append(Notice("analytics.baseline.insufficient_data", f"baselines were not fitted: {exc}", {}))
        return None, []
    notes.extend(model.warnings)
    return model, model.statistics()


def _anomaly_settings(store_url: str):
    """Anomaly settings with the users' budgets and patterns marked as normal (analytics.anomaly.preferences)."""
    from analytics.anomaly.preferences import read_preferences
    from wattline.cli_follow import _preferences_file

    path = _preferences_file(store_url)
    return None if path is None else read_preferences(path).plant_settings()


def run_analyze(store_url: str, plant_file: Path | None, start: str | None, stop: str | None,
                json_path: Path | None, run: str | None = None, progress: bool = True,
                parallel: ParallelSettings | None = None) -> dict[str, Any]:
    """Run the analysis and return the report (see :mod:`analytics.report`); ``parallel`` says where the per-machine
    fits and scoring run (:mod:`analytics.parallel`; default: this box, see ``ParallelSettings.jobs``)."""
    from tqdm import tqdm

    from analytics.data import IntervalData
    from analytics.errors import AnalyticsError
    from analytics.parallel import Fanout
    from analytics.potential import ReductionPotential
    from analytics.quality import find_meter_faults
    from analytics.report import build_report, event_row, summary_lines
    from core.storage import open_store

    t_start, t_stop = _parse_time(start, "from"), _parse_time(stop, "to")
    if t_start is not None and t_stop is not None and t_stop <= t_start:
        raise ConfigError(f"--to {stop} is not after --from {start}; give a range that holds data")
    notes: list = []
    steps = ["read", "meter faults", "causes", "baselines", "report"]
    with open_store(store_url) as store, Fanout(parallel) as fan:
        stored, first, last = _energy_machines(store)
        if not stored or first is None or last is None:  # no machine, or only series without values
            raise AnalyzeError(f"store {store_url} holds no energy data (measurement 'electrical' with site, line and "
                               "machine tags); fill it with a collector, 'wattline import' or 'wattline simulate backfill'")
        plant = _choose_plant(plant_file, stored, notes)
        w = WINDOW_S * NS
        lo = (first - 1) // w * w  # a value stamped at a window's end belongs to it
        hi = -(-last // w) * w
        s_ns = int(t_start.timestamp() * NS) if t_start is not None else lo
        e_ns = int(t_stop.timestamp() * NS) if t_stop is not None else hi
        if e_ns <= lo or s_ns >= hi or e_ns <= s_ns:
            raise AnalyzeError(f"no energy data between {dt.datetime.fromtimestamp(s_ns / NS, dt.UTC).isoformat()} "
                               f"and {dt.datetime.fromtimestamp(e_ns / NS, dt.UTC).isoformat()}; the store has "
                               f"data from {dt.datetime.fromtimestamp(first / NS, dt.UTC).isoformat()} to "
                               f"{dt.datetime.fromtimestamp(last / NS, dt.UTC).isoformat()}")
        s_ns, e_ns = max(s_ns, lo), min(e_ns, hi)
        t0 = dt.datetime.fromtimestamp(s_ns / NS, dt.UTC)
        t1 = dt.datetime.fromtimestamp(e_ns / NS, dt.UTC)
        bar = tqdm(total=len(steps), desc="analyze", unit="step", disable=not progress, leave=False)
        bar.set_postfix_str("reading interval data")
        try:
            try:
                data = IntervalData.from_store(store, plant, t0, t1, resolution_s=WINDOW_S, progress=False)
            except ModuleNotFoundError as exc:
                bar.close()
                raise AnalyzeError(f"this installation cannot read interval data from a store ({exc}); "
                                   "update Wattline") from None
            fan.work = len(data.frame)  # with analytics.jobs unset, small data are fitted in this process
            bar.update(1)
            bar.set_postfix_str("meter faults")
            quality = find_meter_faults(data)
            bar.update(1)
            bar.set_postfix_str("causes")
            potential = ReductionPotential().fit(data, fault=quality.mask, fine_power=_fine_power(store, stored))
            bar.update(1)
            bar.set_postfix_str("baselines")
            baseline, baselines = _baselines(data, quality.mask, notes, fan)
            from analytics.anomaly.plant import find_anomalies

            anomalies, found_notes = find_anomalies(data, quality, potential, baseline=baseline, fanout=fan,
                                                    settings=_anomaly_settings(store_url))
            notes.extend(found_notes)
            bar.update(1)
        except AnalyticsError as exc:
            bar.close()
            raise AnalyzeError(str(exc)) from None
        run_id = run or f"analyze-{t0:%Y%m%dT%H%M}-{t1:%Y%m%dT%H%M}"
        report = build_report(data, potential, quality, baselines, warnings=notes,
                              extra={"run": run_id, "anomalies": [event_row(e) for e in anomalies]})
        _store_findings(store, run_id, potential.events + list(quality.events) + anomalies, report)
        from wattline.analyze_materials import store_materials  # kWh/kg per site and material (dashboard Materials)

        store_materials(store, run_id, data, report)
        from wattline.analyze_outputs import store_baseline  # actual vs baseline per machine and hour (Machine page)

        store_baseline(store, run_id, data, baseline, report)
        bar.update(1)
    bar.close()
    if json_path is not None:
        try:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
        except OSError as exc:
            raise AnalyzeError(f"cannot write the report {json_path}: {exc}") from None
    for line in summary_lines(report):
        typer.echo(line)
    if json_path is not None:
        typer.echo(f"report written to {json_path}")
    return report


def _store_findings(store, run_id: str, events: list, report: dict) -> None:
    """Write the findings back beside the series (replacing what this run wrote before)."""
    from core.notices import Notice

    try:
        from core.storage.results import results_for
    except ImportError:
        return
    from analytics.report import jsonable
    from core.model import Event

    # Details as plain JSON (numpy scalars to Python, NaN to null): the results store refuses anything else.
    clean = [Event(e.machine, e.kind, e.start, e.end, float(e.excess_kwh), jsonable(dict(e.details))) for e in events]
    try:
        with results_for(store) as results:
            results.write_findings(run_id, clean, replace=True)
    except WattlineError as exc:
        note = Notice("analytics.results.not_stored", f"findings could not be stored: {exc}", {"run": run_id})
        report["warnings"].append({"name": note.name, "message": note.message, "details": note.details,
                                   "level": note.level})
        return
    report["stored_run"] = run_id


def register(app: typer.Typer) -> None:
    """Add ``analyze`` to the ``wattline`` command line."""

    @app.command()
    def analyze(
        store: str | None = typer.Option(None, "--store", "-s", help="Store URL: a file path (embedded SQLite, default wattline.db), sqlite:///path or influx://host:port?..."),
        plant: Path | None = typer.Option(None, "--plant", help="Plant file (YAML: sites, lines, machines, calendars, tariffs). Default: the simulator's demo plant when the store holds it, else none (fewer causes assessed, with warnings)."),
        start: str | None = typer.Option(None, "--from", help="Start of the range (YYYY-MM-DD or ISO 8601). Default: the first energy data."),
        stop: str | None = typer.Option(None, "--to", help="End of the range, exclusive. Default: the last energy data."),
        json_file: Path | None = typer.Option(None, "--json", help="Write the JSON report here."),
        run: str | None = typer.Option(None, "--run", help="Run id the findings are stored under (default: analyze-<from>-<to>; the same id replaces them)."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
        follow: bool = typer.Option(False, "--follow", help="Keep scoring the newest intervals for anomalies (models fitted on the last 28 days, refitted nightly); Ctrl-C stops."),
        every: str = typer.Option("5m", "--every", help="With --follow: how often to score new intervals (e.g. 5m, 90s)."),
        window: str = typer.Option("15m", "--window", help="With --follow: window the new data are scored in (15m as the batch analysis; 1m reports a large excess within minutes)."),
        history: float = typer.Option(28.0, "--history", help="With --follow: days of history the models are fitted on.", min=1),
        cluster: str | None = typer.Option(None, "--cluster", help="Dask scheduler address (tcp://host:8786): the per-machine fits and scoring run on its workers (config key analytics.cluster). Default: this box."),
        jobs: int | None = typer.Option(None, "--jobs", "-j", min=1, help="Worker processes on this box when no --cluster is given (config key analytics.jobs). Default: one per CPU core for large data (1,000,000 machine-windows and more), else in this process; 1: in this process."),
        config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings file (keys: store, analytics); options override it.", dir_okay=False),
    ) -> None:
        """Find where energy is wasted, how much and why: reduction potential by cause in kWh, money and CO2, meter
        faults, baselines; prints a summary and writes the JSON report."""
        from wattline.cli import _require_existing_store
        from wattline.settings import read_app_settings

        settings = read_app_settings(config, {"store": store, "analytics": {"cluster": cluster, "jobs": jobs}})
        _require_existing_store(settings.store)
        if follow:
            from wattline.cli_follow import parse_every, run_follow

            run_follow(settings.store, plant, parse_every(every), history_days=history, run=run,
                       window_s=parse_every(window, "--window"), parallel=settings.analytics)
            return
        run_analyze(settings.store, plant, start, stop, json_file, run=run, progress=not quiet,
                    parallel=settings.analytics)

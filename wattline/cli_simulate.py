"""``wattline simulate ...``: the plant simulator's commands (owned by the simulator).

Errors are raised as :class:`core.errors.WattlineError` subclasses; ``wattline.cli.main`` turns them into one line and
an exit code.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from pathlib import Path

import typer
from pydantic import Field

from core.config import FrozenModel, read_config, read_secret_file
from core.errors import ConfigError

simulate_app = typer.Typer(help="Run the plant simulator: serve it over OPC UA or backfill history into a store.", no_args_is_help=True)

PlantOpt = typer.Option(None, "--plant", help="Plant file (YAML: sites -> lines -> machines). Default: the shipped 60-machine plant.", exists=False)
ScenarioOpt = typer.Option(None, "--scenario", help="Scenario file (YAML) with the waste and meter faults to inject. Default: the shipped scenario (about 8 % avoidable energy).")
SeedOpt = typer.Option(None, "--seed", help="Random seed; the same seed gives the same plant history. Default 0.")
MachinesOpt = typer.Option(None, "--machines", help="Use only the first N machines of the default plant (ignored with --plant).", min=1)


class UserSpec(FrozenModel):
    name: str
    password_file: Path = Field(description="File holding the password; must be readable by its owner only (chmod 600).")


class SecuritySpec(FrozenModel):
    modes: tuple[str, ...] = ("SignAndEncrypt",)
    cert_dir: Path = Path("simulator-certs")
    users: tuple[UserSpec, ...] = ()


class ServeConfig(FrozenModel):
    """``wattline simulate serve --config FILE``: the same settings as the options (options win)."""

    plant: Path | None = None
    scenario: Path | None = None
    machines: int | None = Field(None, ge=1)
    speed: float = Field(1.0, gt=0, le=100000)
    host: str = "127.0.0.1"
    port: int = Field(4840, ge=0, le=65535)
    seed: int = 0
    truth: Path | None = None
    security: SecuritySpec | None = None


class BackfillConfig(FrozenModel):
    """``wattline simulate backfill --config FILE``: the same settings as the options (options win)."""

    days: int | None = Field(None, ge=1)
    plant: Path | None = None
    scenario: Path | None = None
    seed: int = 0
    machines: int | None = Field(None, ge=1)
    store: str = "wattline.db"
    truth: Path | None = None
    resolution: float = Field(60.0, ge=1)
    start: str | None = None


def _plant(path: Path | None, machines: int | None):
    from simulator.plant import default_plant, read_plant

    return read_plant(path) if path else default_plant(machines)


def _scenario(path: Path | None):
    from simulator.scenario import read_scenario

    return read_scenario(path)


@simulate_app.command("serve")
def serve(
    plant: Path | None = PlantOpt,
    scenario: Path | None = ScenarioOpt,
    speed: float | None = typer.Option(None, "--speed", help="Simulated seconds per real second: 1 is real time, 60 is one simulated hour per real minute. Default 1.", min=0.001),
    port: int | None = typer.Option(None, "--port", help="TCP port to listen on (0 picks a free one). Default 4840.", min=0, max=65535),
    host: str | None = typer.Option(None, "--host", help="Interface to listen on; 0.0.0.0 for all. Default 127.0.0.1."),
    seed: int | None = SeedOpt,
    machines: int | None = MachinesOpt,
    truth: Path | None = typer.Option(None, "--truth", help="Write the ground-truth manifest (JSON) here every simulated hour and on exit."),
    security: str | None = typer.Option(None, "--security", help="Secured endpoint: 'Sign', 'SignAndEncrypt' or both comma-separated ('None' adds an open endpoint). Basic256Sha256. Default: open endpoint only."),
    cert_dir: Path | None = typer.Option(None, "--cert-dir", help="Folder for the server key and self-signed certificate, generated at start. Default ./simulator-certs."),
    user: str | None = typer.Option(None, "--user", help="Require this username (password from --password-file or env WATTLINE_SIMULATOR_PASSWORD)."),
    password_file: Path | None = typer.Option(None, "--password-file", help="File with the password for --user (chmod 600)."),
    config: Path | None = typer.Option(None, "--config", help="YAML file with these settings (keys: plant, scenario, machines, speed, host, port, seed, truth, security); options override it."),
    continue_from: str | None = typer.Option(None, "--continue-from", help="Store URL or path: the energy registers go on from each machine's newest reading in it (after 'wattline simulate backfill' into the store the collector writes to), instead of a random start that a store reads as a meter reset at the seam."),
) -> None:
    """Serve the simulated plant over OPC UA until Ctrl-C."""
    from simulator.server import PlantServer, SecuritySettings

    overrides = {"plant": plant, "scenario": scenario, "speed": speed, "port": port, "host": host, "seed": seed,
                 "machines": machines, "truth": truth}
    if config is not None:
        cfg = read_config(ServeConfig, config, overrides={k: (str(v) if isinstance(v, Path) else v) for k, v in overrides.items()})
    else:
        cfg = ServeConfig(**{k: v for k, v in overrides.items() if v is not None})
    sec = None
    if security or user or cfg.security is not None:
        base = cfg.security or SecuritySpec()
        modes = tuple(m.strip() for m in security.split(",")) if security else base.modes
        users = [(u.name, read_secret_file(u.password_file, f"password file of user {u.name}")) for u in base.users]
        if user:
            if password_file is not None:
                users.append((user, read_secret_file(password_file, "password file")))
            elif os.environ.get("WATTLINE_SIMULATOR_PASSWORD"):
                users.append((user, os.environ["WATTLINE_SIMULATOR_PASSWORD"]))
            else:
                raise ConfigError(f"--user {user}: give the password with --password-file FILE (chmod 600) or env WATTLINE_SIMULATOR_PASSWORD")
        sec = SecuritySettings(modes, cert_dir or base.cert_dir, tuple(users))
    plant_obj = _plant(cfg.plant, cfg.machines)
    scenario_obj = _scenario(cfg.scenario)
    registers = None
    if continue_from is not None:
        from core.storage import open_store
        from wattline.cli import _require_existing_store
        from wattline.demo import last_registers

        _require_existing_store(continue_from)
        with open_store(continue_from) as store:
            registers = last_registers(store)
        if not registers:
            raise ConfigError(f"--continue-from {continue_from}: the store holds no energy register readings "
                              "(electrical energy_kwh); backfill it first with 'wattline simulate backfill'")
    server = PlantServer(plant_obj, scenario_obj, speed=cfg.speed, host=cfg.host, port=cfg.port, seed=cfg.seed,
                         security=sec, truth_path=cfg.truth, registers=registers)
    logging.basicConfig(level=logging.WARNING)

    async def run() -> None:
        async with server:
            typer.echo(f"serving {len(plant_obj)} machines at {server.endpoint} (namespace urn:wattline:simulator, "
                       f"speed {cfg.speed:g}, step {server.step_s} s); Ctrl-C stops")
            while True:
                await asyncio.sleep(3600)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        typer.echo("stopped")


@simulate_app.command("backfill")
def backfill_cmd(
    days: int | None = typer.Option(None, "--days", help="Number of days of history to write (required, here or in --config).", min=1),
    plant: Path | None = PlantOpt,
    scenario: Path | None = ScenarioOpt,
    seed: int | None = SeedOpt,
    machines: int | None = MachinesOpt,
    store: str | None = typer.Option(None, "--store", help="Store URL: a file path or sqlite:///path.db (embedded), or influx://host:port?... (InfluxDB). Default wattline.db."),
    truth: Path | None = typer.Option(None, "--truth", help="Ground-truth manifest (JSON) to write. Default: <store file>.truth.json for an embedded store, ./truth.json otherwise."),
    resolution: float | None = typer.Option(None, "--resolution", help="Seconds between values; must divide a day (1, 5, 10, 15, 30, 60, 300, 900 ...). Default 60.", min=1),
    start: str | None = typer.Option(None, "--start", help="First day (YYYY-MM-DD, UTC). Default: DAYS days before today."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    config: Path | None = typer.Option(None, "--config", help="YAML file with these settings (keys: days, plant, scenario, seed, machines, store, truth, resolution, start); options override it."),
) -> None:
    """Write DAYS days of simulated history into a store at full speed, plus the ground-truth manifest."""
    from core.storage import open_store
    from simulator.backfill import backfill
    from simulator.errors import SimulatorError

    overrides = {"days": days, "plant": plant, "scenario": scenario, "seed": seed, "machines": machines, "store": store,
                 "truth": truth, "resolution": resolution, "start": start}
    if config is not None:
        cfg = read_config(BackfillConfig, config, overrides={k: (str(v) if isinstance(v, Path) else v) for k, v in overrides.items()})
    else:
        cfg = BackfillConfig(**{k: v for k, v in overrides.items() if v is not None})
    if cfg.days is None:
        raise ConfigError("how many days? give --days N (or `days:` in the --config file)")
    days, plant, scenario, seed, machines, store = cfg.days, cfg.plant, cfg.scenario, cfg.seed, cfg.machines, cfg.store
    truth, resolution, start = cfg.truth, cfg.resolution, cfg.start
    if 86400 % resolution:
        raise ConfigError(f"--resolution {resolution:g}: must divide a day (86400 s); valid examples: 1, 5, 10, 15, 30, 60, 300, 900")
    first = None
    if start:
        try:
            first = dt.date.fromisoformat(start)
        except ValueError:
            raise ConfigError(f"--start {start!r}: not a date; use YYYY-MM-DD, e.g. 2026-01-01") from None
    plant_obj = _plant(plant, machines)
    scenario_obj = _scenario(scenario)
    if truth is None:
        truth = Path(store.split("sqlite:///")[-1] + ".truth.json") if "://" not in store or store.startswith("sqlite") else Path("truth.json")
    with open_store(store) as st:
        result = backfill(st, plant_obj, days, scenario_obj, seed, first, resolution, truth, progress=not quiet)
    m = result.manifest
    typer.echo(json.dumps({
        "store": store, "days": days, "values": result.values, "seconds": round(result.seconds, 2),
        "values_per_s": round(result.values_per_s), "plant_energy_kwh": round(m["plant_energy_kwh"], 1),
        "avoidable_fraction": m["avoidable_fraction"], "events": len(m["events"]), "truth": str(result.truth_path),
    }))
    if result.values == 0:
        raise SimulatorError("nothing was written; check --days and the plant file")

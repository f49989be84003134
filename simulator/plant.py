"""The plant: sites -> lines -> machines, read from a YAML plant file.

A plant file is validated at start-up into frozen models; errors name the file, the line, the key path and the valid
options (``core.config``). The default plant (2 sites, 60 machines) ships as ``simulator/plants/default.yaml``.
"""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from core.config import FrozenModel, parse_config, read_yaml
from core.errors import ConfigError
from simulator.errors import PlantFileError

#: Machine archetypes, each with its own load physics (see ``simulator.machines``).
ARCHETYPES = ("cnc", "injection_moulding", "compressor", "furnace", "chiller", "hvac", "conveyor", "lighting")
#: Archetypes that make parts from material (they have good/scrap counts and material consumption).
PRODUCTION_ARCHETYPES = ("cnc", "injection_moulding")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

DEFAULT_PLANT_FILE = Path(__file__).with_name("plants") / "default.yaml"

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
Archetype = Literal["cnc", "injection_moulding", "compressor", "furnace", "chiller", "hvac", "conveyor", "lighting"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class BreakSpec(FrozenModel):
    """A break within every shift: ``after_h`` hours after the shift start, lasting ``minutes``."""

    after_h: float = Field(ge=0, le=12)
    minutes: float = Field(gt=0, le=120)


class CalendarSpec(FrozenModel):
    """Shift calendar of a site or line (local time of the site)."""

    shifts: int = Field(2, ge=1, le=3, description="Shifts per working day (1-3).")
    first_shift_start: str = Field("06:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    shift_hours: float = Field(8.0, gt=0, le=12)
    breaks: tuple[BreakSpec, ...] = (BreakSpec(after_h=2.0, minutes=15), BreakSpec(after_h=4.0, minutes=30))
    workdays: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")
    holidays: tuple[dt.date, ...] = ()

    @model_validator(mode="after")
    def _fits(self) -> "CalendarSpec":
        if self.shifts * self.shift_hours > 24:
            raise ValueError(f"{self.shifts} shifts of {self.shift_hours} h exceed 24 h; lower shifts or shift_hours")
        for brk in self.breaks:
            if brk.after_h + brk.minutes / 60 > self.shift_hours:
                raise ValueError(f"break after {brk.after_h} h lasting {brk.minutes} min ends after the shift")
        return self

    @property
    def start_s(self) -> int:
        """First shift start [s after local midnight]."""
        hours, minutes = self.first_shift_start.split(":")
        return int(hours) * 3600 + int(minutes) * 60


class ClimateSpec(FrozenModel):
    """Outdoor temperature model of a site: yearly mean, seasonal and daily swings [°C]."""

    mean_c: float = Field(10.0, ge=-30, le=40)
    seasonal_amplitude_c: float = Field(9.0, ge=0, le=30)
    daily_amplitude_c: float = Field(4.0, ge=0, le=15)
    coldest_day_of_year: int = Field(20, ge=1, le=366)
    weather_sd_c: float = Field(3.0, ge=0, le=10, description="Day-to-day weather anomaly standard deviation.")


class MachineSpec(FrozenModel):
    """One machine. Archetype-specific keys are ignored by archetypes that do not use them."""

    id: Slug
    name: str | None = None
    archetype: Archetype
    rated_kw: float = Field(gt=0, le=5000, description="Rated electrical power [kW].")
    cycle_s: float = Field(90.0, gt=1, le=7200, description="Part cycle time (production machines) [s].")
    part_kg: float = Field(0.5, gt=0, le=1000, description="Material per part [kg].")
    scrap_rate: float = Field(0.02, ge=0, le=0.5)
    materials: int = Field(300, ge=1, le=100000, description="Material kinds this machine processes.")
    air_m3_min: float = Field(0.0, ge=0, le=100, description="Compressed air used while running [m3/min].")
    capacity_m3_min: float = Field(10.0, gt=0, le=500, description="Compressor free-air delivery [m3/min].")
    setpoint_c: float = Field(850.0, gt=20, le=1600, description="Furnace setpoint [°C].")
    time_constant_h: float = Field(3.0, gt=0.05, le=48, description="Furnace thermal time constant [h].")
    register_max_kwh: float = Field(1_000_000.0, gt=0, description="Energy register rollover value [kWh].")
    continuous: bool = Field(False, description="Runs around the clock (furnaces, compressors, chillers).")

    @property
    def display_name(self) -> str:
        return self.name or self.id.replace("-", " ").upper()


class LineSpec(FrozenModel):
    id: Slug
    name: str | None = None
    calendar: CalendarSpec | None = None
    machines: tuple[MachineSpec, ...] = Field(min_length=1)


class SiteSpec(FrozenModel):
    id: Slug
    name: str | None = None
    timezone: str = "Europe/Berlin"
    climate: ClimateSpec = ClimateSpec()
    calendar: CalendarSpec = CalendarSpec()
    lines: tuple[LineSpec, ...] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin or UTC") from None
        return value


class PlantSpec(FrozenModel):
    """A plant file."""

    name: str = "Wattline plant"
    material_kinds: int = Field(45000, ge=1, le=10_000_000, description="Size of the plant's material catalogue.")
    sites: tuple[SiteSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> "PlantSpec":
        seen: dict[str, str] = {}
        for site in self.sites:
            for line in site.lines:
                for machine in line.machines:
                    where = f"{site.id}/{line.id}"
                    if machine.id in seen:
                        raise ValueError(f"machine id {machine.id!r} is used in {seen[machine.id]} and {where}; "
                                         "machine ids must be unique in the plant (they are tag values)")
                    seen[machine.id] = where
        site_ids = [s.id for s in self.sites]
        if len(set(site_ids)) != len(site_ids):
            raise ValueError(f"site ids must be unique, got {site_ids}")
        for site in self.sites:
            line_ids = [line.id for line in site.lines]
            if len(set(line_ids)) != len(line_ids):
                raise ValueError(f"line ids in site {site.id!r} must be unique, got {line_ids}")
        return self


@dataclass(frozen=True)
class MachineRef:
    """A machine with its place in the plant."""

    index: int
    site: SiteSpec
    line: LineSpec
    spec: MachineSpec

    @property
    def path(self) -> str:
        """``site/line/machine``: the machine id used in events and OPC UA NodeIds."""
        return f"{self.site.id}/{self.line.id}/{self.spec.id}"

    @property
    def tags(self) -> dict[str, str]:
        return {"site": self.site.id, "line": self.line.id, "machine": self.spec.id}

    @property
    def calendar(self) -> CalendarSpec:
        return self.line.calendar or self.site.calendar

    @property
    def archetype(self) -> str:
        return self.spec.archetype


class Plant:
    """A validated plant.

    Parameters
    ----------
    spec : PlantSpec
        The validated plant file.
    source : str
        Where it came from (file path), for messages.
    """

    def __init__(self, spec: PlantSpec, source: str = "<plant>") -> None:
        self.spec = spec
        self.source = source
        self.machines: list[MachineRef] = []
        for site in spec.sites:
            for line in site.lines:
                for machine in line.machines:
                    self.machines.append(MachineRef(len(self.machines), site, line, machine))

    @property
    def sites(self) -> tuple[SiteSpec, ...]:
        return self.spec.sites

    @property
    def name(self) -> str:
        return self.spec.name

    def machine(self, machine_id: str) -> MachineRef:
        """Return a machine by id or ``site/line/machine`` path; raise KeyError listing a few valid ids."""
        for ref in self.machines:
            if machine_id in (ref.spec.id, ref.path):
                return ref
        raise KeyError(f"no machine {machine_id!r}; valid ids include {[m.spec.id for m in self.machines[:8]]}")

    def __len__(self) -> int:
        return len(self.machines)

    def __repr__(self) -> str:
        return f"Plant({self.name!r}, {len(self.sites)} sites, {len(self.machines)} machines, from {self.source})"


def parse_plant(data: object, source: str = "<plant>", lines: dict | None = None) -> Plant:
    """Validate loaded plant data; raise :class:`PlantFileError` naming file, line, key and valid options."""
    if not isinstance(data, dict):
        raise PlantFileError(f"{source}: the top level must be a mapping with a 'sites' key, got {type(data).__name__}")
    try:
        return Plant(parse_config(PlantSpec, data, source, lines), source)
    except ConfigError as exc:
        raise PlantFileError(str(exc)) from None


def read_plant(path: str | os.PathLike) -> Plant:
    """Read and validate a plant file (YAML).

    Raises
    ------
    PlantFileError
        When the file is missing, not YAML, or invalid; the message names the file, line, key and valid options.
    """
    try:
        data, lines = read_yaml(path)
    except ConfigError as exc:
        raise PlantFileError(str(exc)) from None
    return parse_plant(data, str(path), lines)


def default_plant(machines: int | None = None) -> Plant:
    """Return the shipped default plant (2 sites, 60 machines), or a smaller plant of ``machines`` machines.

    A smaller plant takes machines round-robin over the lines of the first site (then the next site), so that even 8
    machines show machining, moulding, utilities and heat treatment.

    Raises
    ------
    PlantFileError
        When ``machines`` is not between 1 and the default plant's size.
    """
    plant = read_plant(DEFAULT_PLANT_FILE)
    if machines is None or machines == len(plant):
        return plant
    if not 1 <= machines <= len(plant):
        raise PlantFileError(f"--machines {machines}: the default plant has 1 to {len(plant)} machines; pick one in that range")
    chosen: dict[tuple[str, str], list[MachineSpec]] = {}
    remaining = machines
    for site in plant.sites:
        queues = [(line, list(line.machines)) for line in site.lines]
        while remaining and any(q for _, q in queues):
            for line, queue in queues:
                if remaining and queue:
                    chosen.setdefault((site.id, line.id), []).append(queue.pop(0))
                    remaining -= 1
        if not remaining:
            break
    sites = []
    for site in plant.sites:
        lines = [line.model_copy(update={"machines": tuple(chosen[(site.id, line.id)])})
                 for line in site.lines if (site.id, line.id) in chosen]
        if lines:
            sites.append(site.model_copy(update={"lines": tuple(lines)}))
    spec = plant.spec.model_copy(update={"sites": tuple(sites), "name": f"{plant.name} ({machines} machines)"})
    return Plant(spec, f"{DEFAULT_PLANT_FILE} (first {machines} machines)")

"""The plant description: sites -> lines -> machines, with calendars, tariffs and CO2 factors.

This is what a real plant configures and what the simulator, the analytics and the dashboard all read: sites (time
zone, currency, shift calendar, electricity tariff, grid CO2 factor), lines and machines (kind, rated power, energy
register size, whether it runs outside shifts by design, and the few ratings a plant knows: compressor delivery,
furnace setpoint, nominal cycle time). Every key is documented in the commented sample ``core/plant_sample.yaml``.

A plant file is validated into frozen models at start-up; errors name the file, the line, the key path and the valid
options (``core.config``). ``simulation:`` mappings (plant, site, machine) hold the simulator's physics keys: core
keeps them as they are and the simulator validates them (``simulator.plant``).
"""

from __future__ import annotations

import os
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from core.calendar import BreakSpec, CalendarSpec
from core.config import FrozenModel, parse_config, read_yaml
from core.errors import ConfigError
from core.tariff import TariffSpec, TouPeriod

__all__ = [
    "MACHINE_KINDS",
    "PRODUCTION_KINDS",
    "SAMPLE_PLANT_FILE",
    "BreakSpec",
    "CalendarSpec",
    "LineSpec",
    "MachineRef",
    "MachineSpec",
    "Plant",
    "PlantError",
    "PlantSpec",
    "SiteSpec",
    "TariffSpec",
    "TouPeriod",
    "parse_plant",
    "read_plant",
]

#: The commented sample plant file: documents every key.
SAMPLE_PLANT_FILE = Path(__file__).with_name("plant_sample.yaml")

#: Machine kinds. Production kinds make parts from material (good/scrap counts, material consumption).
MACHINE_KINDS = ("cnc", "injection_moulding", "compressor", "furnace", "chiller", "hvac", "conveyor", "lighting", "other")
PRODUCTION_KINDS = ("cnc", "injection_moulding")

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
Kind = Literal["cnc", "injection_moulding", "compressor", "furnace", "chiller", "hvac", "conveyor", "lighting", "other"]
#: Opaque simulator physics (validated by ``simulator.plant``, ignored by everything else); an empty section is {}.
Simulation = Annotated[dict[str, Any], BeforeValidator(lambda value: {} if value is None else value)]


class PlantError(ConfigError):
    """A plant file is invalid; the message names the file, line, key and valid options."""


class MachineSpec(FrozenModel):
    """One machine: what a plant knows about it. Kind-specific ratings are None where they do not apply."""

    id: Slug
    name: str | None = None
    kind: Kind
    rated_kw: float = Field(gt=0, le=100_000, description="Rated electrical power [kW].")
    register_max_kwh: float | None = Field(
        None, gt=0, description="Value at which the energy register rolls over to 0 [kWh]; None when unknown.")
    always_on: bool = Field(False, description="Runs outside shifts by design (its off-shift load is expected).")
    capacity_m3_min: float | None = Field(None, gt=0, le=1000, description="Compressor free-air delivery [m3/min].")
    setpoint_c: float | None = Field(None, gt=-100, le=2000, description="Furnace/oven setpoint [°C].")
    cycle_s: float | None = Field(None, gt=0, le=86400, description="Nominal part cycle time (production machines) [s].")
    simulation: Simulation = Field(default_factory=dict, description="Simulator physics keys (simulator only).")

    @property
    def display_name(self) -> str:
        """The name, or the id in capitals."""
        return self.name or self.id.replace("-", " ").upper()


class LineSpec(FrozenModel):
    """A production line (or a utilities group): its machines and, optionally, its own calendar."""

    id: Slug
    name: str | None = None
    calendar: CalendarSpec | None = Field(None, description="Overrides the site's calendar for this line.")
    machines: tuple[MachineSpec, ...] = Field(min_length=1)


class SiteSpec(FrozenModel):
    """A site (factory): time zone, currency, calendar, tariff, grid CO2 factor and lines."""

    id: Slug
    name: str | None = None
    timezone: str = Field("Europe/Berlin", description="IANA time zone; calendars and tariffs are in local time.")
    currency: str = Field("EUR", description="ISO 4217 code of the tariff's prices.")
    calendar: CalendarSpec | None = Field(None, description="Shift calendar of the site; None when unknown.")
    tariff: TariffSpec | None = Field(None, description="Electricity tariff; None when unknown (no costs).")
    co2_kg_per_kwh: float = Field(0.4, ge=0, le=2, description="Grid emission factor [kg CO2/kWh].")
    co2_series: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$",
        description="measurement.field of a time-varying grid factor in the store [kg CO2/kWh] (tag site=<id>).")
    lines: tuple[LineSpec, ...] = Field(min_length=1)
    simulation: Simulation = Field(default_factory=dict, description="Simulator keys for the site (simulator only).")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin or UTC") from None
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not (len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()):
            raise ValueError(f"{value!r} is not a currency code; use an ISO 4217 code such as EUR, USD, GBP, CNY")
        return value


class PlantSpec(FrozenModel):
    """A plant file."""

    name: str = "Wattline plant"
    sites: tuple[SiteSpec, ...] = Field(min_length=1)
    simulation: Simulation = Field(default_factory=dict, description="Simulator keys for the plant (simulator only).")

    @model_validator(mode="after")
    def _unique(self) -> PlantSpec:
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


@dataclass(frozen=True, repr=False)
class MachineRef:
    """A machine with its place in the plant."""

    index: int
    site: SiteSpec
    line: LineSpec
    spec: MachineSpec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.index}, {self.path!r}, {self.spec.kind})"

    @property
    def path(self) -> str:
        """``site/line/machine``: the machine id used in events and OPC UA NodeIds."""
        return f"{self.site.id}/{self.line.id}/{self.spec.id}"

    @property
    def tags(self) -> dict[str, str]:
        """The machine's store tags (site, line, machine)."""
        return {"site": self.site.id, "line": self.line.id, "machine": self.spec.id}

    @property
    def calendar(self) -> CalendarSpec | None:
        """The line's calendar, else the site's; None when the plant file gives none."""
        return self.line.calendar or self.site.calendar

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def archetype(self) -> str:
        """Alias of :attr:`kind` (the simulator's word: the kind selects the load physics)."""
        return self.spec.kind

    @property
    def timezone(self) -> str:
        return self.site.timezone

    @property
    def is_production(self) -> bool:
        return self.spec.kind in PRODUCTION_KINDS


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
        machines: list[MachineRef] = []
        for site in spec.sites:
            for line in site.lines:
                for machine in line.machines:
                    machines.append(self._make_ref(len(machines), site, line, machine))
        # a Sequence, so that a subclass's plant can declare its own kind of MachineRef (the simulator's, with physics)
        self.machines: Sequence[MachineRef] = machines
        self._by_key = {key: ref for ref in self.machines for key in (ref.spec.id, ref.path)}

    def _make_ref(self, index: int, site: SiteSpec, line: LineSpec, machine: MachineSpec) -> MachineRef:
        """Build one machine reference (subclasses attach more, e.g. the simulator its physics)."""
        return MachineRef(index, site, line, machine)

    @property
    def sites(self) -> tuple[SiteSpec, ...]:
        return self.spec.sites

    @property
    def name(self) -> str:
        return self.spec.name

    def machine(self, machine_id: str) -> MachineRef:
        """Return a machine by id or ``site/line/machine`` path; raise KeyError listing a few valid ids."""
        try:
            return self._by_key[machine_id]
        except KeyError:
            raise KeyError(f"no machine {machine_id!r} in {self.source}; valid ids include "
                           f"{[m.spec.id for m in self.machines[:8]]}") from None

    def site(self, site_id: str) -> SiteSpec:
        """Return a site by id; raise KeyError listing the valid ids."""
        for site in self.sites:
            if site.id == site_id:
                return site
        raise KeyError(f"no site {site_id!r} in {self.source}; valid ids: {[s.id for s in self.sites]}")

    def __len__(self) -> int:
        return len(self.machines)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self.sites)} sites, {len(self.machines)} machines, from {self.source})"


def parse_plant(data: object, source: str = "<plant>", lines: dict | None = None) -> Plant:
    """Validate loaded plant data.

    Parameters
    ----------
    data : object
        The loaded YAML (a mapping with a ``sites`` key).
    source : str
        File name for messages.
    lines : dict, optional
        Key path -> line number, from :func:`core.config.read_yaml`.

    Raises
    ------
    PlantError
        Naming file, line, key and valid options.
    """
    if not isinstance(data, dict):
        raise PlantError(f"{source}: the top level must be a mapping with a 'sites' key, got {type(data).__name__}")
    try:
        return Plant(parse_config(PlantSpec, data, source, lines), source)
    except PlantError:
        raise
    except ConfigError as exc:
        raise PlantError(str(exc)) from None


def read_plant(path: str | os.PathLike) -> Plant:
    """Read and validate a plant file (YAML).

    Raises
    ------
    PlantError
        When the file is missing, not YAML, or invalid; the message names the file, line, key and valid options.
    """
    try:
        data, lines = read_yaml(path)
    except ConfigError as exc:
        raise PlantError(str(exc)) from None
    return parse_plant(data, str(path), lines)

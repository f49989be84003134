"""The simulated plant: the core plant description plus the simulator's physics keys.

The plant file format is core's (``core.plant``, every key documented in ``core/plant_sample.yaml``). What only a
simulation needs lives under ``simulation:`` mappings that core keeps opaque and this module validates, with the same
file/line/key errors:

- plant: ``material_kinds`` (size of the material catalogue orders draw from);
- site: ``climate`` (outdoor temperature model);
- machine: ``part_kg``, ``scrap_rate``, ``materials``, ``air_m3_min`` (compressed air while running),
  ``time_constant_h`` (furnace thermal inertia).

Ratings a plant knows but may leave out get simulator defaults here (``cycle_s`` 90 s, ``capacity_m3_min`` 10 m3/min,
``setpoint_c`` 850 °C, ``register_max_kwh`` 1,000,000 kWh), and a site without a calendar works the default calendar
(2 shifts from 06:00, Monday to Friday). The default plant (2 sites, 60 machines) ships as
``simulator/plants/default.yaml``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ConfigDict, Field, field_validator

from core.calendar import WEEKDAYS, BreakSpec, CalendarSpec
from core.config import FrozenModel, parse_config, read_yaml
from core.errors import ConfigError
from core.plant import (
    MACHINE_KINDS,
    PRODUCTION_KINDS,
    LineSpec,
    MachineSpec,
    PlantSpec,
    SiteSpec,
    TariffSpec,
)
from core.plant import MachineRef as CoreMachineRef
from core.plant import Plant as CorePlant
from core.plant import parse_plant as parse_core_plant
from simulator.errors import PlantFileError

__all__ = [
    "ARCHETYPES",
    "DEFAULT_PLANT_FILE",
    "PRODUCTION_ARCHETYPES",
    "WEEKDAYS",
    "BreakSpec",
    "CalendarSpec",
    "ClimateSpec",
    "LineSpec",
    "MachinePhysics",
    "MachineRef",
    "MachineSpec",
    "Plant",
    "PlantPhysics",
    "PlantSpec",
    "SitePhysics",
    "SiteSpec",
    "TariffSpec",
    "default_plant",
    "parse_plant",
    "read_plant",
]

#: Machine kinds the simulator has load physics for (see ``simulator.machines``): every core kind but ``other``.
ARCHETYPES = tuple(kind for kind in MACHINE_KINDS if kind != "other")
#: Kinds that make parts from material (they have good/scrap counts and material consumption).
PRODUCTION_ARCHETYPES = PRODUCTION_KINDS

DEFAULT_PLANT_FILE = Path(__file__).with_name("plants") / "default.yaml"
#: The calendar of a site whose plant file gives none.
DEFAULT_CALENDAR = CalendarSpec()
#: Simulator values of machine ratings a plant file may leave out: key -> (kinds that use it, value).
RATING_DEFAULTS = {"cycle_s": (PRODUCTION_KINDS, 90.0), "capacity_m3_min": (("compressor",), 10.0),
                   "setpoint_c": (("furnace",), 850.0), "register_max_kwh": (MACHINE_KINDS, 1_000_000.0)}


class ClimateSpec(FrozenModel):
    """Outdoor temperature model of a site: yearly mean, seasonal and daily swings [°C]."""

    mean_c: float = Field(10.0, ge=-30, le=40)
    seasonal_amplitude_c: float = Field(9.0, ge=0, le=30)
    daily_amplitude_c: float = Field(4.0, ge=0, le=15)
    coldest_day_of_year: int = Field(20, ge=1, le=366)
    weather_sd_c: float = Field(3.0, ge=0, le=10, description="Day-to-day weather anomaly standard deviation.")


class MachinePhysics(FrozenModel):
    """A machine's ``simulation:`` keys. Keys a kind does not use are ignored by it."""

    part_kg: float = Field(0.5, gt=0, le=1000, description="Material per part [kg].")
    scrap_rate: float = Field(0.02, ge=0, le=0.5, description="Share of parts that are scrap.")
    materials: int = Field(300, ge=1, le=100000, description="Material kinds this machine processes.")
    air_m3_min: float = Field(0.0, ge=0, le=100, description="Compressed air used while running [m3/min].")
    time_constant_h: float = Field(3.0, gt=0.05, le=48, description="Furnace thermal time constant [h].")


class SitePhysics(FrozenModel):
    """A site's ``simulation:`` keys."""

    climate: ClimateSpec = ClimateSpec()


class PlantPhysics(FrozenModel):
    """The plant's ``simulation:`` keys."""

    material_kinds: int = Field(45000, ge=1, le=10_000_000, description="Size of the plant's material catalogue.")


class _Open(FrozenModel):
    """Walks the plant file to its ``simulation:`` mappings; core validates everything else."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class _SimMachine(_Open):
    kind: str
    simulation: MachinePhysics = MachinePhysics()

    @field_validator("kind")
    @classmethod
    def _simulated(cls, value: str) -> str:
        if value not in ARCHETYPES:
            raise ValueError(f"kind {value!r} has no simulator physics; valid options for the simulator: "
                             f"{', '.join(ARCHETYPES)}")
        return value


class _SimLine(_Open):
    machines: tuple[_SimMachine, ...]


class _SimSite(_Open):
    lines: tuple[_SimLine, ...]
    simulation: SitePhysics = SitePhysics()


class _SimFile(_Open):
    sites: tuple[_SimSite, ...]
    simulation: PlantPhysics = PlantPhysics()


def _physics(data: object, source: str, lines: dict | None = None) -> _SimFile:
    try:
        return parse_config(_SimFile, data, source, lines)
    except ConfigError as exc:
        raise PlantFileError(str(exc)) from None


@dataclass(frozen=True, repr=False)
class MachineRef(CoreMachineRef):
    """A machine with its place in the plant and its physics (``sim``)."""

    sim: MachinePhysics = field(default_factory=MachinePhysics)


class Plant(CorePlant):
    """A plant to simulate: a core plant whose ratings and calendars are complete and whose physics are validated.

    Parameters
    ----------
    spec : PlantSpec
        The validated plant file (core format).
    source : str
        Where it came from (file path), for messages.

    Raises
    ------
    PlantFileError
        When a ``simulation:`` mapping is invalid or a machine's kind has no physics.
    """

    machines: Sequence[MachineRef]  # built by _make_ref below: every machine carries its physics

    def __init__(self, spec: PlantSpec, source: str = "<plant>") -> None:
        physics = _physics(_simulation_keys(spec), source)
        self.material_kinds = physics.simulation.material_kinds
        self.climates = {site.id: sim.simulation.climate for site, sim in zip(spec.sites, physics.sites)}
        self._machine_physics = [m.simulation for s in physics.sites for line in s.lines for m in line.machines]
        super().__init__(_complete(spec), source)

    def _make_ref(self, index: int, site: SiteSpec, line: LineSpec, machine: MachineSpec) -> MachineRef:
        return MachineRef(index, site, line, machine, self._machine_physics[index])

    def machine(self, machine_id: str) -> MachineRef:
        ref = super().machine(machine_id)
        assert isinstance(ref, MachineRef)  # every machine is built by _make_ref
        return ref

    def climate(self, site_id: str) -> ClimateSpec:
        """The outdoor temperature model of a site."""
        return self.climates[site_id]


def _simulation_keys(spec: PlantSpec) -> dict:
    """The parts of a validated plant the simulator validates, as a plant file would give them."""
    return {"simulation": spec.simulation, "sites": [
        {"simulation": site.simulation, "lines": [
            {"machines": [{"kind": m.kind, "simulation": m.simulation} for m in line.machines]} for line in site.lines]}
        for site in spec.sites]}


def _complete(spec: PlantSpec) -> PlantSpec:
    """The plant with simulator defaults for missing ratings and calendars (what the simulation actually runs)."""
    sites = []
    for site in spec.sites:
        lines = []
        for line in site.lines:
            machines = tuple(m.model_copy(update={key: value for key, (kinds, value) in RATING_DEFAULTS.items()
                                                  if m.kind in kinds and getattr(m, key) is None})
                             for m in line.machines)
            lines.append(line.model_copy(update={"machines": machines}))
        sites.append(site.model_copy(update={"lines": tuple(lines), "calendar": site.calendar or DEFAULT_CALENDAR}))
    return spec.model_copy(update={"sites": tuple(sites)})


def parse_plant(data: object, source: str = "<plant>", lines: dict | None = None) -> Plant:
    """Validate loaded plant data (core keys, then the simulator's); raise :class:`PlantFileError` naming file, line,
    key and valid options."""
    try:
        core = parse_core_plant(data, source, lines)
    except ConfigError as exc:
        raise PlantFileError(str(exc)) from None
    _physics(data, source, lines)  # with line numbers, before Plant() validates again without them
    return Plant(core.spec, source)


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

"""Wattline's data model: points, series, the catalogue of measurements and the event schema.

The model follows InfluxDB's: a *point* is a measurement name, a set of string tags, one or more numeric fields and a
timestamp. A *series* is one (measurement, tags, field) combination. Timestamps are stored as integer nanoseconds
since the Unix epoch in UTC; for values from OPC UA this is the source timestamp unless the collector is configured
otherwise. See ``docs/data-model.md`` for the full description.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: OPC UA StatusCode value for Good; stored with every value (0 means Good).
STATUS_GOOD = 0

#: Tag keys in the order they are shown and stored; any other tag key is allowed after these.
STANDARD_TAGS = ("site", "line", "machine", "material")


@dataclass(frozen=True)
class FieldSpec:
    """A field of a measurement with its unit.

    Parameters
    ----------
    name : str
        Field name as stored.
    unit : str
        Unit symbol, e.g. ``"kW"``.
    description : str
        What the value is.
    kind : str
        ``"gauge"`` (instantaneous), ``"counter"`` (monotonic register) or ``"state"`` (enumeration code).
    """

    name: str
    unit: str
    description: str
    kind: str = "gauge"


@dataclass(frozen=True)
class MeasurementSpec:
    """A measurement: its tags and fields."""

    name: str
    tags: tuple[str, ...]
    fields: tuple[FieldSpec, ...]
    description: str

    def field(self, name: str) -> FieldSpec:
        """Return the field spec called ``name``; raise KeyError listing the valid fields."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(f"measurement {self.name!r} has no field {name!r}; valid: {[f.name for f in self.fields]}")


MACHINE_TAGS = ("site", "line", "machine")

#: The catalogue of measurements every part of Wattline agrees on.
MEASUREMENTS: dict[str, MeasurementSpec] = {
    m.name: m
    for m in (
        MeasurementSpec(
            "electrical",
            MACHINE_TAGS,
            (
                FieldSpec("active_power_kw", "kW", "Active power, mean over the meter's integration period."),
                FieldSpec("energy_kwh", "kWh", "Active energy import register (monotonic, may roll over).", "counter"),
                FieldSpec("power_factor", "1", "Displacement power factor, 0-1."),
            ),
            "Electrical power and energy per machine.",
        ),
        MeasurementSpec(
            "compressed_air",
            MACHINE_TAGS,
            (
                FieldSpec("flow_m3_min", "m3/min", "Free-air delivery or consumption flow."),
                FieldSpec("volume_m3", "m3", "Cumulated air volume register.", "counter"),
                FieldSpec("pressure_bar", "bar", "Receiver or line pressure (gauge)."),
            ),
            "Compressed air generation and use.",
        ),
        MeasurementSpec(
            "gas",
            MACHINE_TAGS,
            (
                FieldSpec("flow_m3_h", "m3/h", "Natural gas flow."),
                FieldSpec("volume_m3", "m3", "Gas meter register.", "counter"),
            ),
            "Natural gas use.",
        ),
        MeasurementSpec(
            "production",
            MACHINE_TAGS,
            (
                FieldSpec("good_count", "units", "Good parts produced (monotonic counter).", "counter"),
                FieldSpec("scrap_count", "units", "Scrapped parts (monotonic counter).", "counter"),
            ),
            "Production counts per machine.",
        ),
        MeasurementSpec(
            "material",
            (*MACHINE_TAGS, "material"),
            (FieldSpec("consumed_kg", "kg", "Material consumed (monotonic counter per material).", "counter"),),
            "Material consumption per machine and material id.",
        ),
        MeasurementSpec(
            "machine_state",
            MACHINE_TAGS,
            (FieldSpec("state", "code", "Machine state: 0 off, 1 idle, 2 running, 3 fault.", "state"),),
            "Machine operating state.",
        ),
        MeasurementSpec(
            "weather",
            ("site",),
            (FieldSpec("outdoor_temp_c", "°C", "Outdoor air temperature at the site."),),
            "Site weather.",
        ),
    )
}

#: Machine state codes (the OPC UA enumeration uses the same values).
MACHINE_STATES = {0: "off", 1: "idle", 2: "running", 3: "fault"}

#: Event kinds shared by the simulator's ground truth and the analytics' findings.
WASTE_KINDS = ("idle_running", "off_shift_load", "excess_specific_energy", "air_leak", "peak_demand")
METER_FAULT_KINDS = ("meter_stuck", "meter_reset", "meter_gap", "meter_spike")
#: Findings of the anomaly detectors (analytics.anomaly): energy above the baseline that no known cause explains.
ANOMALY_KINDS = ("anomaly",)
EVENT_KINDS = WASTE_KINDS + METER_FAULT_KINDS + ANOMALY_KINDS


def unit_of(measurement: str, field_name: str) -> str | None:
    """Return the catalogue unit of a field, or None when the series is not in the catalogue."""
    spec = MEASUREMENTS.get(measurement)
    if spec is None:
        return None
    try:
        return spec.field(field_name).unit
    except KeyError:
        return None


def to_ns(value: int | float | dt.datetime | str) -> int:
    """Convert a timestamp to integer nanoseconds since the epoch [ns, UTC].

    Integers are taken as nanoseconds already; floats as seconds; naive datetimes are refused because a plant's
    local time is ambiguous twice a year.
    """
    if isinstance(value, bool):
        raise TypeError("a boolean is not a timestamp")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return round(value * 1e9)
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"timestamp {value.isoformat()} has no time zone; give it an offset such as +00:00")
        delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    raise TypeError(f"cannot convert {type(value).__name__} to a timestamp")


def from_ns(ns: int) -> dt.datetime:
    """Convert integer nanoseconds since the epoch to an aware UTC datetime (microsecond precision)."""
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1000)


@dataclass(frozen=True)
class SeriesKey:
    """Identity of one stored series: measurement, tags and field.

    Tags are kept as a sorted tuple of (key, value) pairs so that keys hash and compare by content.
    """

    measurement: str
    tags: tuple[tuple[str, str], ...]
    field: str

    @classmethod
    def of(cls, measurement: str, tags: Mapping[str, str], field: str) -> SeriesKey:
        """Build a key from a tag mapping."""
        return cls(measurement, tuple(sorted((str(k), str(v)) for k, v in tags.items())), field)

    @property
    def tag_dict(self) -> dict[str, str]:
        """Tags as a dict."""
        return dict(self.tags)


@dataclass(frozen=True)
class Point:
    """One timestamped set of field values of a measurement.

    Parameters
    ----------
    measurement : str
        Measurement name, e.g. ``"electrical"``.
    tags : Mapping[str, str]
        Tags, e.g. ``{"site": "north", "line": "L1", "machine": "cnc-01"}``.
    fields : Mapping[str, float | None]
        Field values in the catalogue units. ``None`` or NaN means "no usable number" and must come with a non-Good
        ``status``; such values are stored as missing, never as a number.
    time_ns : int
        Timestamp [ns since the Unix epoch, UTC].
    status : int
        OPC UA StatusCode value of the fields (0 = Good). Uncertain and Bad codes are stored with the value.
    """

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, float | None]
    time_ns: int
    status: int = STATUS_GOOD

    def series_values(self) -> Iterable[tuple[SeriesKey, float | None]]:
        """Yield (series key, value) for each field; non-finite values become None."""
        for name, value in self.fields.items():
            if value is not None:
                value = float(value)
                if not math.isfinite(value):
                    value = None
            yield SeriesKey.of(self.measurement, self.tags, name), value


def status_severity(status: int) -> str:
    """Return ``"good"``, ``"uncertain"`` or ``"bad"`` for an OPC UA StatusCode value (top two bits)."""
    top = (int(status) >> 30) & 0b11
    return {0: "good", 1: "uncertain"}.get(top, "bad")


@dataclass(frozen=True)
class Event:
    """An energy event: injected by the simulator (ground truth) or found by the analytics (finding).

    Parameters
    ----------
    machine : str
        Machine id the event belongs to (``"site/line/machine"`` path or the machine tag).
    kind : str
        One of :data:`EVENT_KINDS`.
    start, end : datetime
        Aware datetimes bounding the event.
    excess_kwh : float
        Avoidable energy of the event [kWh]; 0 for meter faults.
    details : dict
        Kind-specific facts (setpoint, leak rate, ...).
    """

    machine: str
    kind: str
    start: dt.datetime
    end: dt.datetime
    excess_kwh: float
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; valid kinds: {', '.join(EVENT_KINDS)}")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("event start and end need a time zone offset")

    def to_dict(self) -> dict[str, Any]:
        """Return the event in the manifest/finding JSON schema (ISO 8601 times with offset)."""
        return {
            "machine": self.machine,
            "kind": self.kind,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "excess_kwh": round(float(self.excess_kwh), 6),
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Parse an event from its JSON form."""
        return cls(
            machine=str(data["machine"]),
            kind=str(data["kind"]),
            start=dt.datetime.fromisoformat(str(data["start"])),
            end=dt.datetime.fromisoformat(str(data["end"])),
            excess_kwh=float(data.get("excess_kwh", 0.0)),
            details=dict(data.get("details") or {}),
        )

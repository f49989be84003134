"""Well-known OPC UA variable names and how they map onto Wattline's measurement catalogue.

This table is data: ``wattline discover`` uses it to turn a server's variables into config entries, and a user can
give their own table (``wattline discover --mapping FILE``, a YAML mapping of the same shape) for their servers.
Variables not in the table get the generic measurement ``opcua`` and a snake_case field from their BrowseName.
"""

from __future__ import annotations

import re
from typing import Any

#: Generic measurement for variables that are not in the mapping table.
GENERIC_MEASUREMENT = "opcua"

#: Tag keys given by the folder levels below the top folder (``Plant/<site>/<line>/<machine>``).
TAG_LEVELS = ("site", "line", "machine")

#: BrowseName -> measurement, field, expected unit, tags the series keeps, and tags read from sibling variables.
WELL_KNOWN: dict[str, dict[str, Any]] = {
    "ActivePower": {"measurement": "electrical", "field": "active_power_kw", "unit": "kW"},
    "ActiveEnergy": {"measurement": "electrical", "field": "energy_kwh", "unit": "kWh", "counter": True},
    "PowerFactor": {"measurement": "electrical", "field": "power_factor", "unit": "1"},
    "MachineState": {"measurement": "machine_state", "field": "state", "unit": "code"},
    "GoodCount": {"measurement": "production", "field": "good_count", "unit": "units", "counter": True},
    "ScrapCount": {"measurement": "production", "field": "scrap_count", "unit": "units", "counter": True},
    "MaterialConsumed": {
        "measurement": "material",
        "field": "consumed_kg",
        "unit": "kg",
        "counter": True,
        "tags_from_siblings": {"material": "MaterialId"},
    },
    "AirFlow": {"measurement": "compressed_air", "field": "flow_m3_min", "unit": "m3/min"},
    "AirVolume": {"measurement": "compressed_air", "field": "volume_m3", "unit": "m3", "counter": True},
    "AirPressure": {"measurement": "compressed_air", "field": "pressure_bar", "unit": "bar"},
    "GasFlow": {"measurement": "gas", "field": "flow_m3_h", "unit": "m3/h"},
    "GasVolume": {"measurement": "gas", "field": "volume_m3", "unit": "m3", "counter": True},
    "OutdoorTemperature": {
        "measurement": "weather",
        "field": "outdoor_temp_c",
        "unit": "°C",
        "keep_tags": ["site"],
    },
}

#: Unit spellings that mean the same (EngineeringUnits display names vary between servers).
UNIT_ALIASES = {"degC": "°C", "Cel": "°C", "C": "°C", "m³/min": "m3/min", "m³/h": "m3/h", "m³": "m3", "": "1"}


def snake_case(name: str) -> str:
    """Turn a BrowseName into a field name: ``ActivePower`` -> ``active_power``, ``Temp.1`` -> ``temp_1``."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    text = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    if not text or not text[0].isalpha():
        text = "v_" + text
    return text


def normalise_unit(unit: str | None) -> str | None:
    """Return the catalogue spelling of a unit."""
    if unit is None:
        return None
    return UNIT_ALIASES.get(unit, unit)

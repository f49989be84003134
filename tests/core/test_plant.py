"""The plant description (core.plant): the commented sample, the default plant, and errors naming file, line, key."""

import re

import pytest

from core.calendar import BreakSpec, CalendarSpec
from core.errors import ConfigError
from core.plant import (
    MACHINE_KINDS,
    PRODUCTION_KINDS,
    SAMPLE_PLANT_FILE,
    LineSpec,
    MachineSpec,
    PlantError,
    PlantSpec,
    SiteSpec,
    read_plant,
)
from core.tariff import TariffSpec, TouPeriod

GOOD = """name: t
sites:
  - id: a
    timezone: Europe/Berlin
    tariff:
      price_per_kwh: 0.15
      periods:
        - {name: peak, price_per_kwh: 0.25, days: [mon, tue], hours: ["08:00-20:00"]}
    lines:
      - id: l1
        machines:
          - {id: m1, kind: cnc, rated_kw: 20}
"""


def write(tmp_path, text, name="plant.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path, text) -> tuple[str, str]:
    path = write(tmp_path, text)
    with pytest.raises(PlantError) as info:
        read_plant(path)
    return str(path), str(info.value)


def test_sample_parses_with_every_section():
    plant = read_plant(SAMPLE_PLANT_FILE)
    site = plant.sites[0]
    assert site.currency == "EUR" and site.timezone == "Europe/Berlin"
    assert site.tariff is not None and len(site.tariff.periods) == 3 and site.tariff.demand_charge_per_kw > 0
    assert {m.kind for m in plant.machines} >= {"cnc", "injection_moulding", "compressor", "furnace", "chiller"}
    cnc = plant.machine("cnc-01")
    assert cnc.calendar.shifts == 3  # the line's calendar wins over the site's
    assert plant.machine("plant-a/utilities/hvac-01").calendar == site.calendar
    assert plant.machine("chiller-01").spec.always_on
    assert cnc.spec.simulation["part_kg"] == 2.5  # kept as it is, for the simulator
    assert cnc.is_production and not plant.machine("oven-01").is_production


def test_sample_documents_every_key():
    text = SAMPLE_PLANT_FILE.read_text()
    for model in (PlantSpec, SiteSpec, LineSpec, MachineSpec, CalendarSpec, BreakSpec, TariffSpec, TouPeriod):
        for key in model.model_fields:
            assert re.search(rf"\b{key}:", text), f"{model.__name__}.{key} is not in {SAMPLE_PLANT_FILE.name}"
    for kind in MACHINE_KINDS:
        assert kind in text


def test_default_simulator_plant_is_a_core_plant_file():
    from simulator.plant import DEFAULT_PLANT_FILE

    plant = read_plant(DEFAULT_PLANT_FILE)
    assert len(plant) == 60
    for site in plant.sites:
        assert site.tariff is not None and site.tariff.periods and site.tariff.demand_charge_per_kw > 0
        assert 0.05 < site.co2_kg_per_kwh < 1 and site.currency == "EUR"
    assert all(m.spec.register_max_kwh for m in plant.machines)
    assert set(PRODUCTION_KINDS) <= {m.kind for m in plant.machines}


def test_machine_lookup_and_unknown_machine():
    plant = read_plant(SAMPLE_PLANT_FILE)
    ref = plant.machine("imm-01")
    assert ref.path == "plant-a/l2/imm-01" and ref.tags == {"site": "plant-a", "line": "l2", "machine": "imm-01"}
    assert ref.archetype == ref.kind == "injection_moulding"
    with pytest.raises(KeyError, match="no machine 'imm-99'"):
        plant.machine("imm-99")


def test_site_without_calendar_or_tariff(tmp_path):
    text = re.sub(r"    tariff:\n(      .*\n|        .*\n)+", "", GOOD)
    assert "tariff" not in text
    plant = read_plant(write(tmp_path, text))
    assert plant.sites[0].tariff is None and plant.machines[0].calendar is None
    assert plant.sites[0].co2_kg_per_kwh == pytest.approx(0.4)


def test_unknown_key_names_file_line_and_valid_keys(tmp_path):
    path, msg = error_of(tmp_path, GOOD.replace("rated_kw: 20", "rated_kw: 20, ratedkw: 3"))
    assert f"{path}:12" in msg
    assert "sites[0].lines[0].machines[0].ratedkw: unknown key 'ratedkw'" in msg
    assert "valid keys here:" in msg and "rated_kw" in msg and "register_max_kwh" in msg and "kind" in msg


def test_old_archetype_key_points_to_kind(tmp_path):
    _, msg = error_of(tmp_path, GOOD.replace("kind: cnc", "archetype: cnc"))
    assert "unknown key 'archetype'" in msg and "kind" in msg


def test_unknown_kind_lists_valid_kinds(tmp_path):
    path, msg = error_of(tmp_path, GOOD.replace("kind: cnc", "kind: lathe"))
    assert f"{path}:12: sites[0].lines[0].machines[0].kind: 'lathe' is not valid; valid options:" in msg
    for kind in MACHINE_KINDS:
        assert kind in msg


def test_bad_timezone_and_currency(tmp_path):
    path, msg = error_of(tmp_path, GOOD.replace("Europe/Berlin", "Europe/Stuttgart"))
    assert f"{path}:4: sites[0].timezone" in msg and "'Europe/Stuttgart'" in msg and "IANA" in msg
    _, msg = error_of(tmp_path, GOOD.replace("    timezone:", "    currency: euro\n    timezone:"))
    assert "sites[0].currency" in msg and "ISO 4217" in msg


@pytest.mark.parametrize("hours, says", [
    ("08:00-25:00", "outside the day"),
    ("8-20", "not a time range"),
    ("08:00-08:00", "empty"),
    ("08:70-20:00", "outside the day"),
])
def test_bad_tariff_period_times(tmp_path, hours, says):
    path, msg = error_of(tmp_path, GOOD.replace("08:00-20:00", hours))
    assert f"{path}:8: sites[0].tariff.periods[0].hours[0]" in msg
    assert (says in msg and "HH:MM" in msg) or "00:00-24:00" in msg


def test_overlapping_tou_periods(tmp_path):
    text = GOOD.replace(
        '        - {name: peak, price_per_kwh: 0.25, days: [mon, tue], hours: ["08:00-20:00"]}\n',
        '        - {name: peak, price_per_kwh: 0.25, days: [mon, tue], hours: ["08:00-20:00"]}\n'
        '        - {name: night, price_per_kwh: 0.10, days: [tue, wed], hours: ["19:00-06:00"]}\n')
    path, msg = error_of(tmp_path, text)
    assert f"{path}:5: sites[0].tariff" in msg
    assert "'peak'" in msg and "'night'" in msg and "overlap on tue at 19:00" in msg
    # Same hours in different months do not overlap.
    ok = text.replace("days: [tue, wed], hours", "days: [tue, wed], months: [7], hours").replace(
        "days: [mon, tue], hours", "days: [mon, tue], months: [1, 2], hours")
    assert len(read_plant(write(tmp_path, ok)).sites[0].tariff.periods) == 2


def test_duplicate_ids_and_errors_are_config_errors(tmp_path):
    _, msg = error_of(tmp_path, GOOD + "          - {id: m1, kind: lighting, rated_kw: 5}\n")
    assert "machine id 'm1'" in msg
    assert issubclass(PlantError, ConfigError) and PlantError.exit_code == 2
    with pytest.raises(PlantError, match="not found"):
        read_plant(tmp_path / "missing.yaml")
    with pytest.raises(PlantError, match=r"plant.yaml:\d+: not valid YAML"):
        read_plant(write(tmp_path, "sites: [\n  - id: a\n  bad"))


def test_simulator_refuses_kind_without_physics_and_bad_physics_keys(tmp_path):
    from simulator.errors import PlantFileError
    from simulator.plant import read_plant as read_simulated

    path = write(tmp_path, GOOD.replace("kind: cnc", "kind: other"))
    assert read_plant(path).machines[0].kind == "other"  # fine for core
    with pytest.raises(PlantFileError, match=r"plant.yaml:12: .*kind: kind 'other' has no simulator physics"):
        read_simulated(path)
    path = write(tmp_path, GOOD.replace("rated_kw: 20", "rated_kw: 20, simulation: {part_kgs: 1}"))
    assert read_plant(path).machines[0].spec.simulation == {"part_kgs": 1}
    with pytest.raises(PlantError, match=r"plant.yaml:12: .*simulation.part_kgs: unknown key 'part_kgs'.*part_kg"):
        read_simulated(path)

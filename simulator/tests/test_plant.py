"""Plant and scenario files: the default plant, small plants and clear errors for bad files."""

import pytest

from core.errors import ConfigError, WattlineError
from simulator.errors import PlantFileError, SimulatorError
from simulator.plant import ARCHETYPES, default_plant, read_plant
from simulator.scenario import read_scenario


def test_default_plant_has_two_sites_and_about_sixty_machines(plant):
    assert [s.id for s in plant.sites] == ["north", "south"]
    assert len(plant) == 60
    assert {m.archetype for m in plant.machines} == set(ARCHETYPES)
    ids = [m.spec.id for m in plant.machines]
    assert len(set(ids)) == len(ids)
    assert plant.machine("cnc-01").path == "north/l1/cnc-01"


def test_small_plant_spreads_machines_over_lines():
    small = default_plant(8)
    assert len(small) == 8
    assert len({m.line.id for m in small.machines}) >= 3
    assert "compressor" in {m.archetype for m in small.machines}


def test_machines_out_of_range():
    with pytest.raises(PlantFileError, match="1 to 60"):
        default_plant(61)


def test_errors_derive_from_wattline_error():
    assert issubclass(PlantFileError, SimulatorError) and issubclass(SimulatorError, WattlineError)
    assert issubclass(PlantFileError, ConfigError)


GOOD = """name: t
sites:
  - id: a
    lines:
      - id: l1
        machines:
          - {id: m1, kind: cnc, rated_kw: 20}
"""


def write(tmp_path, text, name="plant.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_plant_file(tmp_path):
    plant = read_plant(write(tmp_path, GOOD))
    assert plant.machines[0].path == "a/l1/m1"


def test_unknown_kind_names_file_line_key_and_options(tmp_path):
    path = write(tmp_path, GOOD.replace("kind: cnc", "kind: lathe"))
    with pytest.raises(PlantFileError) as info:
        read_plant(path)
    msg = str(info.value)
    assert f"{path}:7" in msg
    assert "sites[0].lines[0].machines[0].kind" in msg
    assert "'lathe'" in msg and "injection_moulding" in msg and "compressor" in msg


def test_unknown_key_lists_valid_keys(tmp_path):
    path = write(tmp_path, GOOD.replace("rated_kw: 20", "rated_kw: 20, ratedkw: 3"))
    with pytest.raises(PlantFileError, match=r"unknown key 'ratedkw'.*rated_kw"):
        read_plant(path)


def test_duplicate_machine_and_bad_slug_and_timezone(tmp_path):
    dup = GOOD + "          - {id: m1, kind: lighting, rated_kw: 5}\n"
    with pytest.raises(PlantFileError, match="machine id 'm1'"):
        read_plant(write(tmp_path, dup))
    with pytest.raises(PlantFileError, match=r"machines\[0\]\.id"):
        read_plant(write(tmp_path, GOOD.replace("id: m1", "id: CNC 1")))
    with pytest.raises(PlantFileError, match="time zone"):
        read_plant(write(tmp_path, GOOD.replace("  - id: a\n", "  - id: a\n    timezone: Mars/Olympus\n")))


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(PlantFileError, match="not found"):
        read_plant(tmp_path / "nope.yaml")
    with pytest.raises(PlantFileError, match=r"plant.yaml:\d+: not valid YAML"):
        read_plant(write(tmp_path, "sites: [\n  - id: a\n  bad"))


def test_default_scenario_and_bad_scenarios(tmp_path):
    sc = read_scenario()
    assert sc.avoidable_fraction == pytest.approx(0.08)
    path = write(tmp_path, "air_leak:\n  weeks: [8, 2]\n", "scenario.yaml")
    with pytest.raises(PlantFileError, match=r"scenario\.yaml.*air_leak\.weeks"):
        read_scenario(path)
    path = write(tmp_path, "off_shift_load:\n  archetypes: [lighting, oven]\n", "scenario.yaml")
    with pytest.raises(PlantFileError, match="'oven' is not valid; valid options: lighting, hvac, conveyor, chiller"):
        read_scenario(path)
    path = write(tmp_path, "idle_runing: {}\n", "scenario.yaml")
    with pytest.raises(PlantFileError, match=r"scenario.yaml:1.*unknown key 'idle_runing'.*idle_running"):
        read_scenario(path)
    path = write(tmp_path, "avoidable_fraction: 2\n", "scenario.yaml")
    with pytest.raises(PlantFileError, match="avoidable_fraction"):
        read_scenario(path)

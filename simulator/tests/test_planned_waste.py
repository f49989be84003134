"""Waste planned at a known instant (scenario key ``planned``): rendered as extra load from that instant, recorded in
the ground truth with its energy, and bad entries named."""

import datetime as dt

import pytest

from core.model import Event
from simulator.engine import Simulation
from simulator.errors import PlantFileError
from simulator.scenario import ScenarioSpec, no_waste
from simulator.tests.conftest import MONDAY

START = dt.datetime.fromtimestamp(MONDAY * 86400, dt.UTC) + dt.timedelta(hours=3, minutes=10)


def _scenario(**planned) -> ScenarioSpec:
    entry = {"machines": ["cnc-01"], "start": START.isoformat(), "hours": 1.5, "extra_kw": 12.0, **planned}
    return ScenarioSpec.model_validate({**no_waste().model_dump(), "planned": [entry]})


def test_planned_waste_starts_when_planned_with_its_energy(small_plant):
    runs = {}
    for name, scenario in (("planned", _scenario()), ("none", no_waste())):
        sim = Simulation(small_plant, scenario, seed=4, step_s=60.0, start_day=MONDAY, intensity=1.0)
        runs[name] = (sim, sim.render(MONDAY))
    sim, block = runs["planned"]
    events = [Event.from_dict(e) for e in sim.manifest()["events"]]
    assert len(events) == 1
    ev = events[0]
    assert ev.kind == "excess_specific_energy" and ev.machine.endswith("cnc-01")
    assert ev.start == START and ev.end == START + dt.timedelta(hours=1.5)
    # The extra load shows in the measured power from the planned minute on, and nowhere else.
    i = next(k for k, ref in enumerate(small_plant.machines) if ref.spec.id == "cnc-01")
    planned, plain = block.machines[i].true_power, runs["none"][1].machines[i].true_power
    minute = (START.hour * 60 + START.minute)
    extra = planned - plain
    assert abs(extra[:minute - 1]).max() < 1e-9 and abs(extra[minute + 91:]).max() < 1e-9
    assert extra[minute + 1:minute + 89].mean() == pytest.approx(12.0, rel=0.1)
    assert ev.excess_kwh == pytest.approx(12.0 * 1.5, rel=0.1)


def test_planned_waste_errors_name_the_entry(small_plant):
    with pytest.raises(Exception, match="no UTC offset"):
        _scenario(start="2026-03-02T08:00:00")
    with pytest.raises(PlantFileError, match=r"planned\[0\].machines: no machine 'cnc-99'"):
        Simulation(small_plant, _scenario(machines=["cnc-99"]), seed=4, step_s=60.0, start_day=MONDAY, intensity=1.0)
    other = next(ref for ref in small_plant.machines if ref.archetype not in ("cnc", "injection_moulding"))
    with pytest.raises(PlantFileError, match="planned waste is drawn on production machines"):
        Simulation(small_plant, _scenario(machines=[other.spec.id]), seed=4, step_s=60.0, start_day=MONDAY,
                   intensity=1.0)

"""Ground truth: exact accounting, the event schema, meter faults, determinism and the avoidable fraction."""

import datetime as dt

import numpy as np
import pytest

from core.model import EVENT_KINDS, METER_FAULT_KINDS, WASTE_KINDS, Event
from simulator.engine import STATUS_GAP, Simulation
from simulator.scenario import read_scenario
from simulator.tests.conftest import MONDAY
from simulator.truth import read_manifest, write_manifest


@pytest.fixture(scope="module")
def run(small_plant):
    """Two weeks of a 12-machine plant at 5-min resolution with the default scenario at a fixed intensity."""
    sim = Simulation(small_plant, read_scenario(), seed=3, step_s=300.0, start_day=MONDAY, intensity=2.0)
    blocks = [sim.render(d) for d in range(MONDAY, MONDAY + 14)]
    return sim, blocks, sim.manifest()


def test_manifest_accounts_exactly(run):
    _sim, blocks, m = run
    true_total = sum(float(sig.true_power.sum()) for b in blocks for sig in b.machines) * 300 / 3600
    assert m["plant_energy_kwh"] == pytest.approx(true_total, rel=1e-9)
    assert sum(m["machine_energy_kwh"].values()) == pytest.approx(true_total, rel=1e-9)
    events = [Event.from_dict(e) for e in m["events"]]
    waste = sum(e.excess_kwh for e in events if e.kind in WASTE_KINDS)
    assert m["avoidable_kwh"] == pytest.approx(waste, rel=1e-6)
    assert sum(m["by_cause"].values()) == pytest.approx(m["avoidable_kwh"], rel=1e-6)
    assert m["avoidable_fraction"] == pytest.approx(m["avoidable_kwh"] / m["plant_energy_kwh"], rel=1e-5)
    assert set(m["by_cause"]) == set(WASTE_KINDS)


def test_events_follow_the_shared_schema(run):
    _, _, m = run
    kinds = {e["kind"] for e in m["events"]}
    assert kinds <= set(EVENT_KINDS)
    assert {"idle_running", "excess_specific_energy", "air_leak"} <= kinds
    for item in m["events"]:
        assert set(item) == {"machine", "kind", "start", "end", "excess_kwh", "details"}
        start = dt.datetime.fromisoformat(item["start"])
        assert start.utcoffset() is not None and item["start"].endswith("+00:00")
        assert item["machine"].count("/") == 2
        if item["kind"] in METER_FAULT_KINDS:
            assert item["excess_kwh"] == 0
        else:
            assert item["excess_kwh"] > 0


def test_meter_faults_show_in_the_measured_signals(small_plant):
    faults = read_scenario().meter_faults.model_copy(update={"gap_probability": 1.0, "spike_probability": 1.0, "reset_probability": 1.0})
    sc = read_scenario().model_copy(update={"meter_faults": faults})
    sim = Simulation(small_plant, sc, seed=5, step_s=900.0, start_day=MONDAY, intensity=1.0)
    blocks = [sim.render(d) for d in range(MONDAY, MONDAY + 28)]
    events = sim.events()
    by_kind = {k: [e for e in events if e.kind == k] for k in METER_FAULT_KINDS}
    assert all(by_kind[k] for k in ("meter_gap", "meter_spike", "meter_reset")), {k: len(v) for k, v in by_kind.items()}
    times = np.concatenate([b.times_ns for b in blocks])

    def series(machine, attr):
        idx = small_plant.machine(machine).index
        return np.concatenate([getattr(b.machines[idx], attr) for b in blocks])

    gap = by_kind["meter_gap"][0]
    inside = (times > gap.start.timestamp() * 1e9) & (times <= gap.end.timestamp() * 1e9)
    assert np.isnan(series(gap.machine.split("/")[-1], "power")[inside]).all()
    assert (series(gap.machine.split("/")[-1], "status")[inside] == STATUS_GAP).all()
    spike = by_kind["meter_spike"][0]
    name = spike.machine.split("/")[-1]
    ratio = series(name, "power") / series(name, "true_power")
    i = np.argmax(times > spike.start.timestamp() * 1e9)
    assert ratio[i] == pytest.approx(8.0)
    # Registers only ever go down at a rollover or a reset.
    for ref in small_plant.machines:
        reg = series(ref.spec.id, "energy")
        d = np.diff(reg[~np.isnan(reg)])
        drops = d < -1e-6
        assert drops.sum() <= sum(1 for e in by_kind["meter_reset"] if e.machine == ref.path) + 1


def test_register_rolls_over():
    from simulator.plant import default_plant

    plant = default_plant(5)
    ref = plant.machine("furnace-01")
    sim = Simulation(plant, read_scenario(), 0, 900.0, MONDAY, intensity=1.0)
    sim._state[ref.index]["register0"] = ref.spec.register_max_kwh - 100.0
    reg = np.concatenate([sim.render(d).machines[ref.index].energy for d in range(MONDAY, MONDAY + 2)])
    assert reg.max() < ref.spec.register_max_kwh and reg.min() < 5000 and (np.diff(reg) < 0).sum() == 1


def test_deterministic_per_seed(small_plant):
    def go(seed):
        sim = Simulation(small_plant, read_scenario(), seed, 900.0, MONDAY, intensity=1.5)
        blocks = [sim.render(d) for d in range(MONDAY, MONDAY + 3)]
        return sim.manifest(), np.concatenate([m.power for b in blocks for m in b.machines])

    m1, p1 = go(1)
    m2, p2 = go(1)
    _m3, p3 = go(2)
    assert m1 == m2
    np.testing.assert_array_equal(p1, p2)
    assert not np.array_equal(np.nan_to_num(p1), np.nan_to_num(p3))


def test_default_scenario_avoidable_fraction_is_about_8_percent(plant):
    sim = Simulation(plant, read_scenario(), 0, 1800.0, MONDAY, run_days=14)
    for d in range(MONDAY, MONDAY + 14):
        sim.render(d)
    m = sim.manifest()
    assert 0.07 <= m["avoidable_fraction"] <= 0.09, m["by_cause"]
    assert all(v > 0 for v in m["by_cause"].values())


def test_fraction_is_a_scenario_parameter(plant):
    sc = read_scenario().model_copy(update={"avoidable_fraction": 0.04})
    sim = Simulation(plant, sc, 0, 1800.0, MONDAY, run_days=7)
    for d in range(MONDAY, MONDAY + 7):
        sim.render(d)
    assert 0.03 <= sim.manifest()["avoidable_fraction"] <= 0.05


def test_manifest_round_trip(run, tmp_path):
    _, _, m = run
    path = write_manifest(m, tmp_path / "truth.json")
    back = read_manifest(path)
    assert back["plant_energy_kwh"] == m["plant_energy_kwh"]
    assert all(isinstance(e, Event) for e in back["events"]) and len(back["events"]) == len(m["events"])

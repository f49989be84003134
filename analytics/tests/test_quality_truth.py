"""Meter faults found from the store alone, scored against the simulator's ground truth (the simulator only makes the
data and the truth here; the analytics never see the truth)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from analytics.data import IntervalData
from analytics.quality import find_meter_faults
from core.storage.sqlite import SQLiteStore
from simulator.backfill import backfill
from simulator.plant import default_plant
from simulator.scenario import read_scenario

START = dt.date(2025, 3, 24)  # the run crosses the change to summer time (30 March in Europe)
DAYS = 14


def overlaps(truth: dict, found) -> bool:
    return (truth["machine"] == found.machine and truth["kind"] == found.kind
            and pd.Timestamp(truth["start"]) <= found.end and found.start <= pd.Timestamp(truth["end"]))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    scenario = read_scenario()
    faults = scenario.meter_faults.model_copy(update={"stuck_probability": 1.0, "reset_probability": 1.0,
                                                      "gap_probability": 1.0, "spike_probability": 1.0})
    scenario = scenario.model_copy(update={"meter_faults": faults})
    plant = default_plant(machines=16)
    path = tmp_path_factory.mktemp("truth") / "plant.db"
    with SQLiteStore(path) as store:
        result = backfill(store, plant, DAYS, scenario, seed=21, start=START, progress=False, intensity=1.0)
        t0 = dt.datetime.combine(START, dt.time(), dt.UTC)
        data = IntervalData.from_store(store, plant, t0, t0 + dt.timedelta(days=DAYS))
    truth = [e for e in result.manifest["events"] if e["kind"].startswith("meter_")]
    return data, truth, result.manifest


def test_meter_faults_match_the_ground_truth(run):
    data, truth, _ = run
    report = find_meter_faults(data)
    assert len(truth) >= 20
    found = report.events
    precision = sum(any(overlaps(t, f) for t in truth) for f in found) / max(len(found), 1)
    recall = {kind: (sum(any(overlaps(t, f) for f in found) for t in truth if t["kind"] == kind),
                     sum(1 for t in truth if t["kind"] == kind)) for kind in ("meter_stuck", "meter_reset", "meter_gap",
                                                                                "meter_spike")}
    assert precision >= 0.95, (precision, report.counts())
    for kind in ("meter_reset", "meter_gap"):
        hit, total = recall[kind]
        assert hit == total, (kind, recall)
    # a stuck register or a spike on a machine that draws (almost) nothing at the time leaves no trace in the data
    hit = sum(recall[k][0] for k in recall)
    total = sum(recall[k][1] for k in recall)
    assert hit / total >= 0.85, recall
    assert all(ev.excess_kwh == 0 for ev in found)


def test_metered_energy_matches_the_true_energy_despite_the_faults(run):
    """Resets taken for rollovers by the counter rule would add ~10^5 kWh each; the container repairs them, and stuck
    registers, gaps and spikes keep the register's total."""
    data, truth, manifest = run
    assert sum(1 for e in truth if e["kind"] == "meter_reset") >= 3
    energy = data.matrix("energy_kwh")
    for i, path in enumerate(data.machine_ids):
        true_kwh = manifest["machine_energy_kwh"][path]
        assert np.nansum(energy[i]) == pytest.approx(true_kwh, rel=0.01, abs=2.0), path
    assert "analytics.data.register_reset" in {w.name for w in data.warnings}

"""False-alarm budgets per machine and findings marked as normal: kept in the preferences file beside the store, set
from the command line (``wattline anomalies``), followed by the thresholds and by what batch and follow report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analytics.anomaly.plant import PlantAnomalies
from analytics.anomaly.preferences import (
    AnomalyPreferences,
    finding_id,
    preferences_path,
    read_preferences,
    set_budget,
)
from analytics.data import IntervalData
from analytics.errors import AnalyticsError
from analytics.quality import find_meter_faults
from core.model import SeriesKey
from core.storage import open_store
from core.storage.results import results_for
from wattline.cli import app
from wattline.cli_follow import Follower

NS = 1_000_000_000
MACHINES = ("s1/l1/m1", "s1/l1/m2", "s1/l1/m3")
START = pd.Timestamp("2025-03-03", tz="UTC")  # a Monday
STEP_S = 300
PER_DAY = 86400 // STEP_S
#: m2 draws 40 kW more on day 9 and again on day 10 from 08:00 to 12:00 (the same pattern twice), and on day 10 also
#: from 19:00 to 23:00 (another time of day: another pattern).
EXTRAS = [(START + pd.Timedelta(days=d, hours=a), START + pd.Timedelta(days=d, hours=b)) for d, a, b in
          ((8, 8, 12), (9, 8, 12), (9, 19, 23))]


def _power(days: int, seed: int = 11) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    t = START.value + np.arange(days * PER_DAY, dtype=np.int64) * STEP_S * NS
    hour = (t // NS % 86400) / 3600
    weekday = ((t // NS // 86400) + 3) % 7 < 5
    work = weekday & (hour >= 6) & (hour < 22)
    out = {}
    for j, m in enumerate(MACHINES):
        kw = 10 + 5 * j + np.where(work, 30.0 + 5 * j, 0.0) + rng.normal(0, 1.0, len(t))
        if m == MACHINES[1]:
            for a, b in EXTRAS:
                kw = kw + np.where((t >= a.value) & (t < b.value), 40.0, 0.0)
        out[m] = kw
    return t, out


def _write(store, t, power, a: int, b: int, register: dict) -> None:
    for m, kw in power.items():
        site, line, machine = m.split("/")
        tags = {"site": site, "line": line, "machine": machine}
        energy = register.get(m, 1000.0) + np.cumsum(kw[a:b]) * STEP_S / 3600
        register[m] = float(energy[-1])
        store.write_arrays(SeriesKey.of("electrical", tags, "active_power_kw"), t[a:b], kw[a:b])
        store.write_arrays(SeriesKey.of("electrical", tags, "energy_kwh"), t[a:b], energy)


def _hits(events, extra) -> list:
    a, b = extra
    return [e for e in events if e.machine == MACHINES[1] and e.start < b and a < e.end]


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_preferences_file_round_trip_and_errors(tmp_path):
    db = tmp_path / "plant.db"
    path = preferences_path(str(db))
    assert path == tmp_path / "plant.db.anomaly-preferences.json"
    assert read_preferences(path) == AnomalyPreferences()  # no file yet: defaults
    set_budget(path, "s1/l1/m1", 0.5)
    assert read_preferences(path).alerts_per_week == {"s1/l1/m1": 0.5}
    set_budget(path, "s1/l1/m1", None)
    assert read_preferences(path).alerts_per_week == {}
    with pytest.raises(AnalyticsError, match="above 0"):
        set_budget(path, "s1/l1/m1", -1)
    path.write_text('{"alerts_per_week": {"s1/l1/m1": "often"}}')
    with pytest.raises(AnalyticsError, match=r"anomaly-preferences.json: alerts_per_week.s1/l1/m1"):
        read_preferences(path)
    path.write_text("{not json")
    with pytest.raises(AnalyticsError, match="not valid JSON"):
        read_preferences(path)
    with pytest.raises(AnalyticsError, match="--preferences"):
        preferences_path("influx://localhost:8086?bucket=b")
    assert preferences_path("influx://localhost:8086?bucket=b", tmp_path / "p.json") == tmp_path / "p.json"


def test_budget_and_mark_normal_from_the_cli_in_follow_and_batch(tmp_path):
    db = str(tmp_path / "plant.db")
    prefs_file = preferences_path(db)
    t, power = _power(10)
    register: dict = {}
    lines: list[str] = []
    with open_store(db) as store:
        _write(store, t, power, 0, 8 * PER_DAY, register)
        follower = Follower(store, None, history_days=7.5, run="follow-test", echo=lines.append,
                            preferences=prefs_file)
        follower.start()
        for k in range(4):  # day 9 in 6-hour parts
            a, b = 8 * PER_DAY + k * PER_DAY // 4, 8 * PER_DAY + (k + 1) * PER_DAY // 4
            _write(store, t, power, a, b, register)
            follower.tick()
        first = _hits(follower.stream.events, EXTRAS[0])
        assert len(first) == 1, [e.to_dict() for e in follower.stream.events]
        _marked_and_followed(db, store, follower, first[0], t, power, register, lines)


def _marked_and_followed(db, store, follower, first, t, power, register, lines) -> None:
    prefs_file = preferences_path(db)
    default = {p: d.threshold for p, d in follower.stream.model.detectors.items()}
    # The user marks that finding as normal and gives m1 a tighter budget, from the command line.
    listed = json.loads(_cli("anomalies", "list", "--store", db, "--run", "follow-test", "--json"))
    fid = finding_id(first)
    assert fid in [row["id"] for row in listed]
    out = _cli("anomalies", "mark-normal", fid[:6], "--store", db, "--note", "morning cleaning")
    assert fid in out and MACHINES[1] in out
    _cli("anomalies", "budget", MACHINES[0], "0.1", "--store", db)
    bad = CliRunner().invoke(app, ["anomalies", "budget", "m9", "0.1", "--store", db])
    assert bad.exit_code != 0 and "valid: s1/l1/m1" in f"{bad.output}{bad.exception}"
    stored = json.loads(_cli("anomalies", "preferences", "--store", db))
    assert stored["alerts_per_week"] == {MACHINES[0]: 0.1}
    assert [p["id"] for p in stored["normal_patterns"]] == [fid]
    assert stored["normal_patterns"][0]["note"] == "morning cleaning"

    # The follower's store stays open while the command line writes the preferences.
    # The running follower picks both up at its next tick, without refitting.
    for k in range(4):  # day 10
        a, b = 9 * PER_DAY + k * PER_DAY // 4, 9 * PER_DAY + (k + 1) * PER_DAY // 4
        _write(store, t, power, a, b, register)
        follower.tick()
    model = follower.stream.model
    assert model.detectors[MACHINES[0]].threshold > default[MACHINES[0]]  # fewer alerts allowed: higher
    assert model.detectors[MACHINES[1]].threshold == default[MACHINES[1]]
    events = follower.stream.events
    assert not _hits(events, EXTRAS[0])  # the marked finding is withdrawn
    assert not _hits(events, EXTRAS[1])  # the same pattern a day later is not reported
    assert len(_hits(events, EXTRAS[2])) == 1  # an excess at another time of day still is
    from wattline.cli_analyze import _anomaly_settings  # what 'wattline analyze' fits with

    batch_settings = _anomaly_settings(db)
    assert batch_settings.alerts_per_week == {MACHINES[0]: 0.1} and MACHINES[1] in batch_settings.normal_patterns
    with results_for(store) as results:
        kept = results.query_findings(run="follow-test", kinds=["anomaly"])
    assert not _hits(kept, EXTRAS[1]) and len(_hits(kept, EXTRAS[2])) == 1

    # A follower started afresh reads the file at start: thresholds follow the budget.
    fresh = Follower(store, None, history_days=7.5, run="follow-2", echo=lines.append, preferences=prefs_file)
    fresh.start()
    assert fresh.stream.model.detectors[MACHINES[0]].threshold > default[MACHINES[0]] * 1.05

    # Batch (as 'wattline analyze' fits and detects, PlantAnomalies(settings)) with and without the preferences:
    # fitted on the history, then detecting over the two days.
    hist = IntervalData.from_store(store, None, START, START + pd.Timedelta(days=8), resolution_s=900)
    new = IntervalData.from_store(store, None, START + pd.Timedelta(days=8), START + pd.Timedelta(days=10),
                                  resolution_s=900)
    no_fault = np.zeros((len(MACHINES), new.n_times), bool)
    plain = PlantAnomalies().fit(hist, quality=find_meter_faults(hist))
    found = plain.detect(new, plain.expected(new), no_fault, [])
    assert all(len(_hits(found, x)) == 1 for x in EXTRAS), [e.to_dict() for e in found]
    muted = PlantAnomalies(read_preferences(prefs_file).plant_settings()).fit(hist, quality=find_meter_faults(hist))
    found = muted.detect(new, muted.expected(new), no_fault, [])
    assert not _hits(found, EXTRAS[0]) and not _hits(found, EXTRAS[1])
    assert len(_hits(found, EXTRAS[2])) == 1 and muted.suppressed >= 2
    assert muted.detectors[MACHINES[0]].threshold > plain.detectors[MACHINES[0]].threshold
    # A looser budget lowers the threshold (more alerts allowed).
    loose = PlantAnomalies(AnomalyPreferences(alerts_per_week={MACHINES[0]: 20.0}).plant_settings()).fit(hist)
    assert loose.detectors[MACHINES[0]].threshold < plain.detectors[MACHINES[0]].threshold

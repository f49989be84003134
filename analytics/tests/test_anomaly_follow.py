"""``wattline analyze --follow`` against a real embedded store: windows scored as they arrive (no refit), findings
stored, and the same findings as a batch detection over the streamed range."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.data import IntervalData
from analytics.quality import find_meter_faults
from core.model import SeriesKey
from core.storage import open_store
from core.storage.results import results_for
from wattline.cli_follow import Follower, parse_every

NS = 1_000_000_000
MACHINES = ("s1/l1/m1", "s1/l1/m2", "s1/l1/m3")
START = pd.Timestamp("2025-03-03", tz="UTC")  # a Monday
STEP_S = 300
#: m2 draws 40 kW more on day 9 from 08:00 to 12:00 (after the fitted history). Smaller excesses hide under the
#: baseline's misfit at the shift changes of this synthetic plant (up to 30 kW for an hour, which sets the threshold).
EXTRA = (START + pd.Timedelta(days=8, hours=8), START + pd.Timedelta(days=8, hours=12), 40.0)


def _power(days: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    t = START.value + np.arange(days * 86400 // STEP_S, dtype=np.int64) * STEP_S * NS
    hour = (t // NS % 86400) / 3600
    weekday = ((t // NS // 86400) + 3) % 7 < 5  # 1970-01-01 was a Thursday
    work = weekday & (hour >= 6) & (hour < 22)
    out = {}
    for j, m in enumerate(MACHINES):
        kw = 10 + 5 * j + np.where(work, 30.0 + 5 * j, 0.0) + rng.normal(0, 1.0, len(t))
        if m == MACHINES[1]:
            kw = kw + np.where((t >= EXTRA[0].value) & (t < EXTRA[1].value), EXTRA[2], 0.0)
        out[m] = kw
    return t, out


def _write(store, t: np.ndarray, power: dict[str, np.ndarray], a: int, b: int, register: dict[str, float]) -> None:
    for m, kw in power.items():
        site, line, machine = m.split("/")
        tags = {"site": site, "line": line, "machine": machine}
        energy = register[m] + np.cumsum(kw[a:b]) * STEP_S / 3600  # the register counts the energy up to each stamp
        register[m] = float(energy[-1])
        store.write_arrays(SeriesKey.of("electrical", tags, "active_power_kw"), t[a:b], kw[a:b])
        store.write_arrays(SeriesKey.of("electrical", tags, "energy_kwh"), t[a:b], energy)


def test_parse_every():
    assert parse_every("5m") == 300 and parse_every("90s") == 90 and parse_every("1h") == 3600
    with pytest.raises(Exception, match="--every"):
        parse_every("soon")
    with pytest.raises(Exception, match="--window 'x'"):
        parse_every("x", "--window")


def test_follow_scores_new_windows_and_matches_a_batch_run(tmp_path):
    t, power = _power(9, seed=11)
    per_day = 86400 // STEP_S
    register = {m: 1000.0 for m in MACHINES}
    lines: list[str] = []
    with open_store(str(tmp_path / "plant.db")) as store:
        _write(store, t, power, 0, 8 * per_day, register)
        follower = Follower(store, None, history_days=7.5, run="follow-test", echo=lines.append)
        follower.start()
        model = follower.stream.model
        assert set(model.detectors) == set(MACHINES)
        first_seen = None
        for k in range(8):  # day 9 in 3-hour parts, scored as they arrive
            a, b = 8 * per_day + k * per_day // 8, 8 * per_day + (k + 1) * per_day // 8
            _write(store, t, power, a, b, register)
            follower.tick()
            with results_for(store) as results:
                stored = results.query_findings(run="follow-test")
            if first_seen is None and any(e.machine == MACHINES[1] and e.kind == "anomaly" for e in stored):
                first_seen = pd.Timestamp(int(t[b - 1]), tz="UTC")
        assert follower.stream.model is model  # scored without refitting
        # Settled windows are dropped: what is kept is the tail after the last settled row, not the 96 windows streamed.
        assert follower.stream.retained_windows < 3 * 12, follower.stream.retained_windows
        # Found by the part that ends 3 h into the excess (12:00 data), and said in one line.
        assert first_seen is not None and first_seen <= EXTRA[1], first_seen
        assert any(line.startswith("m2 drew") for line in lines), lines
        streamed = follower.stream.events
        hit = [e for e in streamed if e.machine == MACHINES[1] and e.start < EXTRA[1] and EXTRA[0] < e.end]
        assert len(hit) == 1 and hit[0].excess_kwh == pytest.approx(4 * EXTRA[2], rel=0.35)
        # A batch detection over the same range with the same models finds the same.
        s_ns, e_ns = follower.stream.start, follower.stream.stop
        data = IntervalData.from_store(store, None, s_ns, e_ns, resolution_s=900)
        quality = find_meter_faults(data)
        batch = model.detect(data, model.expected(data), quality.mask if quality.mask is not None else
                             np.zeros((len(MACHINES), data.n_times), bool), list(quality.events))
    key = [(e.machine, e.start, e.end, round(e.excess_kwh, 6)) for e in batch]
    assert [(e.machine, e.start, e.end, round(e.excess_kwh, 6)) for e in streamed] == key


def test_follow_refuses_a_store_whose_series_hold_no_values_yet_with_a_clear_error():
    """A collector registers its series before the first values arrive: following it then is "no data yet", not a
    TypeError from the window arithmetic on a missing last time stamp."""
    from core.storage.base import SeriesInfo
    from wattline.cli_analyze import AnalyzeError

    class JustStarted:
        def series(self, measurement=None):
            tags = {"site": "s1", "line": "l1", "machine": "m1"}
            return [SeriesInfo(SeriesKey.of("electrical", tags, "energy_kwh"), count=0, first_ns=0, last_ns=0)]

    with pytest.raises(AnalyzeError, match="no energy data to follow"):
        Follower(JustStarted(), None, history_days=7.5, run="follow-test")


@pytest.mark.integration  # two worker processes; slow would leave the feature's only test out of the default suite
def test_refit_fanned_out_over_worker_processes_gives_the_serial_models():
    """The follower's refit (``fit_anomalies``) over two joblib worker processes, machines batched by site, gives
    the same baselines, detectors and findings as the serial refit in this process."""
    from analytics.parallel import Fanout, ParallelSettings
    from analytics.tests.synthetic import production_frame
    from wattline.cli_follow import fit_anomalies

    machines = ("north/l1/m1", "north/l2/m2", "south/l1/m3", "south/l1/m4", "south/l2/m5")
    frame = production_frame(days=28, machines=machines, seed=7)
    t = frame["time"]
    sel = (frame["machine"] == "south/l1/m3") & (t >= "2025-01-22 08:00+00:00") & (t < "2025-01-22 14:00+00:00")
    frame.loc[sel, "energy_kwh"] += 1.5  # a finding to agree on
    frame.loc[sel, "power_mean_kw"] += 6.0
    data = IntervalData.from_frame(frame, resolution_s=900)
    quality = find_meter_faults(data)
    assert Fanout(ParallelSettings(jobs=2), work=len(data.frame)).mode == "joblib"
    serial = fit_anomalies(data, quality, parallel=ParallelSettings(jobs=1))
    fanned = fit_anomalies(data, quality, parallel=ParallelSettings(jobs=2))
    assert set(serial.detectors) == set(machines)
    assert fanned.to_dict() == serial.to_dict()
    assert fanned.baseline.to_dict() == serial.baseline.to_dict()
    np.testing.assert_array_equal(fanned.expected(data), serial.expected(data))
    assert [(e.machine, e.start, e.end, e.excess_kwh) for e in fanned.events] == \
        [(e.machine, e.start, e.end, e.excess_kwh) for e in serial.events]
    assert any(e.machine == "south/l1/m3" for e in serial.events)

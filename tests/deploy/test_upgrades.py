"""Every database Wattline writes carries a version: older layouts open and are upgraded, newer ones are refused."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from core.errors import StoreError
from core.model import SeriesKey
from core.storage import open_store
from core.storage.results import results_for
from tests.deploy.legacy_layouts import NS, write_layout_1

T0 = 1_767_225_600 * NS  # 2026-01-01 UTC


def _legacy(tmp_path, rng):
    series = {}
    for machine in ("cnc-01", "comp-1"):
        times = T0 + np.arange(0, 3 * 3600, 10) * NS  # 3 h of 10-s values
        power = rng.uniform(0, 50, len(times))
        power[rng.choice(len(times), 20, replace=False)] = np.nan  # missing values stay missing
        series[("electrical", (("line", "L1"), ("machine", machine), ("site", "north")), "active_power_kw")] = (times, power)
    path = tmp_path / "v1.db"
    write_layout_1(path, series)
    return path, series


def _version(path, key="schema_version"):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
    finally:
        conn.close()


def test_layout_1_store_opens_upgrades_and_answers_the_same(tmp_path):
    path, series = _legacy(tmp_path, np.random.default_rng(7))
    assert _version(path) == "1"
    with open_store(str(path)) as store:
        infos = {(i.key.measurement, i.key.tags, i.key.field): i for i in store.series()}
        assert set(infos) == set(series)
        for key, (times, values) in series.items():
            assert infos[key].count == len(times)
            tags = dict(key[1])
            frame = store.query(key[0], key[2], T0, T0 + 4 * 3600 * NS, tags=tags)
            np.testing.assert_array_equal(frame["value"].to_numpy(dtype=float), values)
            hourly = store.aggregate(key[0], key[2], T0, T0 + 3 * 3600 * NS, every=3600, agg="mean", tags=tags)
            expect = [np.nanmean(values[(times >= T0 + h * 3600 * NS) & (times < T0 + (h + 1) * 3600 * NS)])
                      for h in range(3)]
            np.testing.assert_allclose(hourly["value"].to_numpy(dtype=float), expect, rtol=1e-12)
        # The upgraded store takes new writes (chunks table created) and results tables.
        k = SeriesKey.of("electrical", {"site": "north", "line": "L1", "machine": "cnc-01"}, "energy_kwh")
        store.write_arrays(k, T0 + np.arange(5000) * NS, np.arange(5000.0), bulk=True)
        with results_for(store) as results:
            assert results.runs() == []
    assert _version(path) == "2"
    assert _version(path, "results_version") == "1"
    with open_store(str(path)) as store:  # and opens again as version 2
        assert sum(i.count for i in store.series()) == sum(len(t) for t, _ in series.values()) + 5000


@pytest.mark.parametrize("key, text", [("schema_version", "layout version 9"), ("results_version", "result tables of version 9")])
def test_newer_versions_are_refused_with_a_clear_message(tmp_path, key, text):
    path = tmp_path / "new.db"
    with open_store(str(path)) as store:
        results_for(store).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = '9' WHERE key = ?", (key,))
    conn.close()
    with pytest.raises(StoreError) as err, open_store(str(path)) as store:
        results_for(store).close()
    assert text in str(err.value) and "upgrade Wattline" in str(err.value)
    assert _version(path, key) == "9"  # nothing was downgraded

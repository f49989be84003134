"""InfluxDB specifics the contract cannot see: which rollup answers, the tasks, idempotent setup, URL parsing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.errors import ConfigError, StoreError
from core.model import Point, SeriesKey
from core.storage import open_store
from core.storage.influx import InfluxSettings, InfluxStore, setup_influx
from core.storage.influx_flux import rollup_bucket
from tests.support import wait_for

NS = 1_000_000_000
HOUR = 3600 * NS


@pytest.mark.integration
@pytest.mark.influx
def test_query_picks_the_coarsest_complete_rollup(influx_store):
    store = influx_store
    base = (time.time_ns() // HOUR - 30) * HOUR
    key = SeriesKey.of("electrical", {"site": "s", "line": "l", "machine": "m"}, "active_power_kw")
    times = base + np.arange(0, 6 * 3600, 15, dtype=np.int64) * NS
    values = np.arange(len(times), dtype=float)
    store.write_arrays(key, times, values)
    store.flush()
    cases = [
        (3600, base, base + 6 * HOUR, 3600),
        (7200, base, base + 6 * HOUR, 3600),
        (1800, base, base + 6 * HOUR, 900),
        (300, base, base + 6 * HOUR, 60),
        # range aligned to 15 min only: the 15-min rollup for its first 45 min, the 1-h rollup for the rest
        (3600, base + 900 * NS, base + 6 * HOUR, ["rollup_900s", "rollup_3600s"]),
        # not aligned to any rollup: raw points for the first 30 s only
        (3600, base + 30 * NS, base + 6 * HOUR, ["raw", "rollup_60s", "rollup_900s", "rollup_3600s"]),
        (45, base, base + 6 * HOUR, None),
    ]
    for window_s, start, stop, expected in cases:
        got = store.query("electrical", "active_power_kw", start, stop, window_s=window_s, agg="sum")
        if isinstance(expected, list):
            assert [p.source for p in store.last_query_sources] == expected, (window_s, start - base)
        else:
            assert store.last_rollup == expected, (window_s, start - base, expected)
        sel = (times >= start) & (times < stop)
        assert float(got["value"].sum()) == pytest.approx(float(values[sel].sum()))
    # A range ending now: rollups for the complete buckets, raw points only for the newest minutes.
    now_hour = (time.time_ns() // HOUR + 1) * HOUR
    store.query("electrical", "active_power_kw", now_hour - 2 * HOUR, now_hour, window_s=3600)
    parts = store.last_query_sources
    assert parts[0].res is not None and parts[-1].res is None and parts[-1].stop_ns == now_hour
    assert parts[-1].start_ns > time.time_ns() - 7 * 60 * NS  # only the newest minutes are read raw


@pytest.mark.integration
@pytest.mark.influx
def test_setup_is_idempotent(influx_store):
    settings = influx_store.settings
    again = setup_influx(settings, backfill=False, progress=False)
    assert all("up to date" in line for line in again), again
    assert sum("task" in line for line in again) == 3 and sum("bucket" in line for line in again) == 4


@pytest.mark.integration
@pytest.mark.influx
def test_rollup_task_rolls_up_live_points(influx_store):
    """Points written 'now' are not refreshed by the store: the InfluxDB task must roll them up (<= ~2 min)."""
    store = influx_store
    now = time.time_ns()
    minute = 60 * NS
    start = (now // minute - 3) * minute
    points = [Point("electrical", {"site": "s", "line": "l", "machine": "live"}, {"active_power_kw": 2.0},
                    start + i * 5 * NS) for i in range(36)]  # 3 minutes, all younger than the "late" threshold
    store.write(points)
    store.flush()
    assert not store._dirty
    flux = (f'from(bucket: "{rollup_bucket(store.settings.bucket, 60)}") |> range(start: -1h) '
            '|> filter(fn: (r) => r._field == "active_power_kw__count") |> sum()')

    def rolled_up() -> float:
        frame = store._table(flux)
        return float(frame["_value"].astype(float).sum()) if not frame.empty else 0.0

    wait_for(lambda: rolled_up() >= 36, 200, "the InfluxDB task's rollup of the 36 points", interval=5)
    assert rolled_up() == 36.0  # each point counted once


def test_url_grammar(tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o600)
    s = InfluxSettings.from_url(f"influx://127.0.0.1:8086?org=plant&bucket=energy&token_file={token}&batch_size=2000")
    assert (s.url, s.org, s.bucket, s.batch_size, s.token_file) == ("http://127.0.0.1:8086", "plant", "energy", 2000,
                                                                    token)
    assert s.read_token() == "s3cret"
    assert InfluxSettings.from_url("influxs://db.example:443?gzip=0").url == "https://db.example:443"
    assert InfluxSettings.from_url("influxs://db.example:443?gzip=0").gzip is False
    env = tmp_path / "influx.env"
    env.write_text(f"WATTLINE_INFLUX_URL=http://127.0.0.1:9999\nWATTLINE_INFLUX_ORG=o\nWATTLINE_INFLUX_BUCKET=b\n"
                   f"WATTLINE_INFLUX_TOKEN_FILE={token}\n")
    s = InfluxSettings.from_url(f"influx://?env_file={env}")
    assert (s.url, s.org, s.bucket, s.token_file) == ("http://127.0.0.1:9999", "o", "b", token)
    with pytest.raises(StoreError, match="colour"):
        InfluxSettings.from_url("influx://h:1?colour=red")
    with pytest.raises(StoreError, match="batch_size"):
        InfluxSettings.from_url("influx://h:1?batch_size=-3")
    with pytest.raises(StoreError, match="token"):
        InfluxSettings.from_url("influx://user:tok@h:1")
    monkeypatch.delenv("WATTLINE_INFLUX_TOKEN", raising=False)
    monkeypatch.delenv("WATTLINE_INFLUX_TOKEN_FILE", raising=False)
    with pytest.raises(ConfigError, match="WATTLINE_INFLUX_TOKEN"):
        InfluxSettings.from_url("influx://h:1").read_token()
    monkeypatch.setenv("WATTLINE_INFLUX_TOKEN", "from-env")
    assert InfluxSettings.from_url("influx://h:1").read_token() == "from-env"


@pytest.mark.integration
@pytest.mark.influx
def test_open_store_dispatches_influx_urls(influx_env):
    url = (f"influx://{influx_env['WATTLINE_INFLUX_URL'].split('://', 1)[1]}?org={influx_env['WATTLINE_INFLUX_ORG']}"
           f"&bucket={influx_env['WATTLINE_INFLUX_BUCKET']}&token_file={influx_env['WATTLINE_INFLUX_TOKEN_FILE']}")
    store = open_store(url)
    try:
        assert isinstance(store, InfluxStore) and "token" not in store.description
        assert store.series("no-such-measurement") == []
    finally:
        store.close()

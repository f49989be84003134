"""The series and live pages' fast paths (issue 12, "Fast"): cached frames, vectorised rows, views served while
the next one is computed in the background."""

from __future__ import annotations

import datetime as dt
import math
import time

import numpy as np
import pytest
from flask import Flask

from dashboard.cache import EXTENSION, ResultCache
from dashboard.tests.test_dashboard_speed import _store_with_meters


def test_format_ages_matches_format_age_at_every_unit_edge():
    from dashboard.data import format_age, format_ages

    ages = np.array([-3, 0, 0.4, 0.5, 1.5, 89.4, 89.6, 90, 149.9, 5399, 5400, 7000, 129599, 129600, 1e6, np.nan,
                     np.inf])
    assert format_ages(ages) == [format_age(a) for a in ages.tolist()]
    assert format_ages(np.array([30.0, 600.0, 7200.0, 200000.0])) == ["30 s", "10 min", "2.0 h", "2.3 d"]


def test_series_frame_rows_equal_the_row_per_series_rule(tmp_path):
    from core.model import unit_of
    from dashboard.data import NS, series_frame, series_rows_from_frame

    store = _store_with_meters(tmp_path, ("m2",))
    infos = store.series()
    berlin = dt.timezone(dt.timedelta(hours=1))
    frame = series_frame(infos, berlin)
    now = max(i.last_ns for i in infos) + 400 * NS
    rows = series_rows_from_frame(frame, now, 300)
    assert len(rows) == len(infos) == 7  # 4 power + 3 registers
    by_key = {(r["measurement"], r["tags"], r["field"]): r for r in rows}
    assert [(r["measurement"], r["tags"], r["field"]) for r in rows] == sorted(by_key)
    for info in infos:
        row = by_key[(info.key.measurement, " · ".join(f"{k}={v}" for k, v in info.key.tags), info.key.field)]
        age = (now - info.last_ns) / NS
        assert row["count"] == info.count and isinstance(row["count"], int)
        assert row["unit"] == (unit_of(info.key.measurement, info.key.field) or "")
        assert row["last"] == dt.datetime.fromtimestamp(info.last_ns / NS, berlin).strftime("%Y-%m-%d %H:%M:%S")
        assert math.isclose(row["age_s"], round(age, 1)) and row["status"] == ("stale" if age > 300 else "ok")
    assert series_rows_from_frame(frame, now - 200 * NS, 300)[0]["status"] == "ok"  # same frame, a fresh age
    store.close()


def test_stale_ok_serves_the_expired_value_and_recomputes_it_in_the_background(tmp_path):
    for cache in (ResultCache(), ResultCache(tmp_path / "cache")):
        calls: list[int] = []
        compute = _counter(calls)
        assert cache.get_or_compute("k", compute, ttl_s=0.05, stale_ok=True) == 1
        time.sleep(0.06)  # let the entry expire (a lifetime, not synchronisation)
        assert cache.get_or_compute("k", compute, ttl_s=0.05, stale_ok=True) == 1  # served at once, old value
        assert cache.wait_refreshed(10.0)
        assert len(calls) == 2 and cache.get_or_compute("k", compute, ttl_s=60, stale_ok=True) == 2


def _counter(calls: list[int]):
    def compute() -> int:
        calls.append(1)
        return len(calls)

    return compute


def test_stale_ok_keeps_serving_when_the_recomputation_fails(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    cache.get_or_compute("k", lambda: "old", ttl_s=0.01)
    time.sleep(0.02)  # let the entry expire (a lifetime, not synchronisation)

    def broken():
        raise RuntimeError("store gone")

    assert cache.get_or_compute("k", broken, ttl_s=0.01, stale_ok=True) == "old"
    assert cache.wait_refreshed(10.0)
    assert cache.get_or_compute("k", lambda: "new", ttl_s=60, stale_ok=True) == "old"  # still held, refreshed later
    assert cache.wait_refreshed(10.0)
    assert cache.get_or_compute("k", lambda: "newer", ttl_s=60) == "new"


def test_live_outputs_are_shared_per_scope_and_range_and_equal_the_rendered_view(tmp_path):
    import plotly.graph_objects as go

    from dashboard.access import SiteScopedStore
    from dashboard.data import live_view
    from dashboard.errors import DashboardError
    from dashboard.live_refresh import live_outputs
    from dashboard.render import render_live
    from dashboard.settings import DashboardSettings

    store = _store_with_meters(tmp_path, ())
    settings = DashboardSettings(store_url=str(tmp_path / "plant.db"), stale_after_s=3600, refresh_s=60)
    server = Flask("t")
    cache = server.extensions[EXTENSION] = ResultCache(tmp_path / "cache")
    now = time.time_ns()
    direct = render_live(live_view(store, "1h", now, settings.tz, 3600), settings, now)
    with server.app_context():
        first = live_outputs(SiteScopedStore(store, ["north"]), "1h", settings)
        again = live_outputs(SiteScopedStore(store, ["north"]), "1h", settings)
        south = live_outputs(SiteScopedStore(store, ["south"]), "1h", settings)
        with pytest.raises(DashboardError, match="unknown time range"):
            live_outputs(store, "2y", settings)
    assert (cache.misses, cache.hits) == (2, 1)
    assert len(first) == len(direct) == 7 and first[6] == again[6]  # the same read: the same status line
    for got, want in ((first[4], direct[4]), (first[5], direct[5])):  # the figures, as dicts
        assert isinstance(want, go.Figure) and isinstance(got, dict)
        assert [t["name"] for t in got["data"]] == [t.name for t in want.data]
        assert got["layout"]["height"] == want.layout.height  # the same figure, sent as the dict Dash would send
    assert len(first[5]["data"]) >= 4 and south[1] != first[1]  # south has no power series: an empty state
    store.close()

"""Behaviour changed for speed on a year of a large plant (issue 12, docs/benchmarks.md "Dashboard")."""

from __future__ import annotations

from dashboard.settings import DashboardSettings


def _series_frame(n: int, stale_every: int, now_ns: int):
    """A :func:`dashboard.data.series_frame`-shaped list of ``n`` series; every ``stale_every``-th 2 h old."""
    import numpy as np
    import pandas as pd

    from dashboard.data import NS

    ages = np.where(np.arange(n) % stale_every == 0, 7200, 2) * NS
    return pd.DataFrame({"measurement": "material", "tags": [f"machine=m{i:05d}" for i in range(n)], "field": "kwh",
                         "unit": "kWh", "count": np.arange(n, dtype=np.int64), "first": "2026-11-26 09:00:00",
                         "last": "2026-11-26 10:00:00", "last_ns": now_ns - ages})


def test_series_selection_holds_at_most_max_rows_stale_first():
    from dashboard.data import select_series
    from dashboard.render import MAX_SERIES_ROWS, render_series

    now = 1_800_000_000 * 10**9
    frame = _series_frame(MAX_SERIES_ROWS * 3, 7, now)
    selection = select_series(frame, now, 300, None, MAX_SERIES_ROWS)
    rows, summary, _empty, _style = render_series(selection, DashboardSettings("plant.db"))
    stale = (len(frame) + 6) // 7
    assert len(rows) == MAX_SERIES_ROWS and (selection.total, selection.stale) == (len(frame), stale)
    assert [r["status"] for r in rows[:stale]] == ["stale"] * stale
    assert all(r["status"] == "ok" for r in rows[stale:])
    assert [r["count"] for r in rows[:3]] == [0, 7, 14]  # stale ones in their order
    assert summary.startswith(f"{len(frame)} series, {stale} stale") and f"showing {MAX_SERIES_ROWS}" in summary


def test_series_selection_under_the_limit_keeps_every_row_in_order_and_filters_every_word():
    from dashboard.data import select_series
    from dashboard.render import MAX_SERIES_ROWS, render_series

    now = 1_800_000_000 * 10**9
    frame = _series_frame(MAX_SERIES_ROWS, 7, now)
    rows, summary, _empty, _style = render_series(select_series(frame, now, 300, None, MAX_SERIES_ROWS),
                                                  DashboardSettings("plant.db"))
    assert [r["count"] for r in rows] == list(range(MAX_SERIES_ROWS))
    assert "showing" not in summary and "match" not in summary
    picked = select_series(frame, now, 300, "M0001 STALE", MAX_SERIES_ROWS)  # words in tags and status, any case
    assert [r["tags"] for r in picked.rows] == [f"machine=m{i:05d}" for i in range(10, 20) if i % 7 == 0]
    assert picked.matched == len(picked.rows) == 1
    assert select_series(frame, now, 300, "kwh material ok", None).matched == MAX_SERIES_ROWS - (MAX_SERIES_ROWS + 6) // 7


def _store_with_meters(tmp_path, no_register: tuple[str, ...]):
    """north/l1: m1..m4 at 10, 20, 30, 40 kW for 3 days up to now (5-min samples); the machines in ``no_register``
    have power only, the others an energy register too."""
    import time

    import numpy as np

    from core.storage import open_store
    from dashboard.tests.helpers import NS, machine_tags, write_field

    store = open_store(str(tmp_path / "plant.db"))
    now_s = time.time_ns() // NS
    times = np.arange(now_s - 3 * 86400, now_s, 300)
    for i, machine in enumerate(("m1", "m2", "m3", "m4")):
        kw = 10.0 * (i + 1)
        tags = machine_tags("l1", machine)
        write_field(store, "electrical", "active_power_kw", tags, times, np.full(len(times), kw))
        if machine not in no_register:
            write_field(store, "electrical", "energy_kwh", tags, times, 500.0 + kw * (times - times[0]) / 3600.0)
    store.flush()
    return store


def test_energy_by_hour_counts_power_of_machines_without_register(tmp_path):
    """Power is read only for the machines without register readings (one machine, or several), and counted."""
    import time

    import pytest

    from dashboard.overview import SiteInfo, energy_by_hour
    from dashboard.tests.helpers import NS

    stop = (time.time_ns() // (3600 * NS) - 1) * 3600 * NS
    start = stop - 48 * 3600 * NS
    for no_register in ((), ("m3",), ("m2", "m4")):
        store = _store_with_meters(tmp_path / "-".join(no_register or ("all",)), no_register)
        hours = energy_by_hour(store, SiteInfo("north", "North", "UTC"), start, stop)
        per_machine = hours.groupby("machine")["kwh"].sum()
        assert per_machine.to_dict() == pytest.approx({m: 10.0 * (i + 1) * 48 for i, m in
                                                       enumerate(("m1", "m2", "m3", "m4"))}, rel=1e-9), no_register
        assert len(hours) == 4 * 48
        store.close()


def test_machine_energy_by_hour_reads_one_machine_with_the_site_numbers(tmp_path):
    """The machine page reads only its machine (register or power) and gets the same hours as the site-wide read."""
    import time

    import pandas as pd

    from dashboard.overview import SiteInfo, energy_by_hour, machine_energy_by_hour
    from dashboard.tests.helpers import NS

    store = _store_with_meters(tmp_path, ("m3",))
    site = SiteInfo("north", "North", "UTC")
    stop = (time.time_ns() // (3600 * NS) - 1) * 3600 * NS
    start = stop - 48 * 3600 * NS
    every = energy_by_hour(store, site, start, stop)
    for machine in ("m2", "m3"):  # with a register; power only
        got = machine_energy_by_hour(store, site, "l1", machine, start, stop)
        assert set(got["machine"]) == {machine} and len(got) == 48
        want = every[every["machine"] == machine].reset_index(drop=True)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)
    assert machine_energy_by_hour(store, site, "l1", "nope", start, stop).empty
    store.close()


def test_energy_by_hour_in_a_request_caches_closed_days_with_the_same_numbers(tmp_path):
    """Inside a request, closed days come from the shared cache (computed once), today is read fresh, and the result
    equals the uncached one; a store not limited to the site never uses the cache."""
    import time

    import pandas as pd
    from flask import Flask

    from dashboard.access import SiteScopedStore
    from dashboard.cache import EXTENSION, ResultCache
    from dashboard.overview import SiteInfo, energy_by_hour
    from dashboard.tests.helpers import NS

    store = _store_with_meters(tmp_path, ("m3",))
    site = SiteInfo("north", "North", "UTC")
    stop = (time.time_ns() // (3600 * NS) + 1) * 3600 * NS  # today included
    start = stop - 60 * 3600 * NS
    plain = energy_by_hour(store, site, start, stop)
    server = Flask("t")
    cache = server.extensions[EXTENSION] = ResultCache(tmp_path / "cache")
    scoped = SiteScopedStore(store, ["north"])
    with server.app_context():
        first = energy_by_hour(scoped, site, start, stop)
        second = energy_by_hour(scoped, site, start, stop)
        assert (cache.misses, cache.hits) == (1, 1)
        energy_by_hour(store, site, start, stop)  # not site-scoped: no cache
        energy_by_hour(SiteScopedStore(store, ["south"]), site, start, stop)  # site not visible: no cache
        assert (cache.misses, cache.hits) == (1, 1)
    key = ["time", "line", "machine"]
    for got in (first, second):
        assert got["line"].dtype == object and got["machine"].dtype == object
        pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                      plain.sort_values(key).reset_index(drop=True), check_dtype=False)
    assert got["time"].max() >= pd.Timestamp(stop - 2 * 3600 * NS, tz="UTC")  # today's hours are there
    store.close()


def test_quality_rows_in_a_request_count_closed_days_once_with_the_same_rows(tmp_path):
    """The hourly value counts of closed days are shared (one entry per site scope), today's are counted fresh, and
    the quality rows equal the uncached ones."""
    import datetime as dt
    import time

    from flask import Flask

    from dashboard.access import SiteScopedStore
    from dashboard.cache import EXTENSION, ResultCache
    from dashboard.collectors import quality_rows
    from dashboard.tests.helpers import NS

    store = _store_with_meters(tmp_path, ("m3",))
    now = time.time_ns()
    start = now - 3 * 86400 * NS
    scoped = SiteScopedStore(store, ["north"])
    plain = quality_rows(scoped, start, now + 3600 * NS, now, dt.UTC)
    server = Flask("t")
    cache = server.extensions[EXTENSION] = ResultCache(tmp_path / "cache")
    with server.app_context():
        first = quality_rows(scoped, start, now + 3600 * NS, now, dt.UTC)
        second = quality_rows(scoped, start, now + 3600 * NS, now, dt.UTC)
        quality_rows(store, start, now + 3600 * NS, now, dt.UTC)  # not site-scoped: no cache
    assert (cache.misses, cache.hits) == (1, 1)
    assert [k for k in _keys(cache) if k.startswith("closed|energy_counts|north|")]
    assert first == second == plain and len(plain) == 3 and plain[0]["completeness_share"] == 1.0
    store.close()


def test_latest_findings_shared_in_a_request_until_a_run_changes(tmp_path):
    """Inside a request the newest run's findings are read once per range; findings added to the run, or a newer run,
    are read at once (the key changes)."""
    import datetime as dt

    from flask import Flask

    from core.model import Event
    from core.storage.results import results_for
    from dashboard.cache import EXTENSION, ResultCache
    from dashboard.overview import latest_run_findings

    store = _store_with_meters(tmp_path, ())
    t0 = dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC)

    def finding(machine: str, kwh: float) -> Event:
        return Event(f"north/l1/{machine}", "idle_running", t0, t0 + dt.timedelta(hours=2), kwh)

    with results_for(store) as results:
        results.write_findings("run-1", [finding("m1", 5.0)])
    server = Flask("t")
    cache = server.extensions[EXTENSION] = ResultCache(tmp_path / "cache")
    with server.app_context():
        first, again = latest_run_findings(store), latest_run_findings(store)
        assert (cache.misses, cache.hits) == (1, 1) and first == again and len(first) == 1
        with results_for(store) as results:
            results.write_findings("run-1", [finding("m1", 5.0), finding("m2", 7.0)])
        assert sorted(e.excess_kwh for e in latest_run_findings(store)) == [5.0, 7.0]
        with results_for(store) as results:
            results.write_findings("run-2", [finding("m4", 9.0), finding("m3", 1.0)])
        assert sorted(e.excess_kwh for e in latest_run_findings(store)) == [1.0, 9.0]
    assert cache.misses == 3
    store.close()


def test_result_cache_entry_lives_for_its_own_ttl(tmp_path):
    from dashboard.cache import ResultCache

    cache = ResultCache(tmp_path / "c", ttl_s=60)
    calls = []
    assert cache.get_or_compute("k", lambda: calls.append(1) or 1, ttl_s=0.0) == 1
    assert cache.get_or_compute("k", lambda: calls.append(2) or 2, ttl_s=0.0) == 2  # expired at once: recomputed
    assert cache.get_or_compute("j", lambda: calls.append(3) or 3) == 3
    assert cache.get_or_compute("j", lambda: calls.append(4) or 4) == 3  # the cache's 60 s
    assert calls == [1, 2, 3]


def test_figures_get_the_template_with_or_without_the_default(monkeypatch):
    """Pages' figures are in plotly_white whether or not the app made it the process default."""
    import plotly.io as pio

    from dashboard.figures import TEMPLATE, message_figure, use_template
    from dashboard.render_overview import message

    white = pio.templates[TEMPLATE].layout.plot_bgcolor
    monkeypatch.setattr(pio.templates, "default", "plotly")
    assert message("x").layout.template.layout.plot_bgcolor == white
    assert message_figure("x").layout.template.layout.plot_bgcolor == white
    use_template()
    assert pio.templates.default == TEMPLATE
    assert message("x").layout.template.layout.plot_bgcolor == white
    assert message_figure("x").layout.template.layout.plot_bgcolor == white


def test_enterprise_view_shares_site_kpis_through_the_cache(tmp_path):
    """Inside a request each site's KPIs are computed once and then read from the cache, with the same numbers."""
    import datetime as dt
    import time

    import pytest
    from flask import Flask

    from dashboard.cache import EXTENSION, ResultCache
    from dashboard.enterprise import enterprise_view
    from dashboard.users import User

    store = _store_with_meters(tmp_path, ("m3",))
    user = User("anna", "plant_manager", ("north",), "x")
    now = time.time_ns()
    plain, plain_total, _ = enterprise_view(store, user, "north", None, dt.UTC, now, days=7)
    server = Flask("t")
    cache = server.extensions[EXTENSION] = ResultCache(tmp_path / "cache")
    with server.app_context():
        first, total, _ = enterprise_view(store, user, "north", None, dt.UTC, now, days=7)
        second, again, _ = enterprise_view(store, user, "all", None, dt.UTC, now, days=7)
    assert cache.hits >= 1 and any(k.startswith("site_kpis|north|") for k in _keys(cache))
    # The cached path adds closed days and today up separately: equal up to the last bit of a float sum.
    def same(a: dict, b: dict) -> bool:
        return a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-12) if isinstance(b[k], float)
                                            else a[k] == b[k] for k in b)

    for got in (first, second):
        assert len(got) == len(plain) and all(same(g.row(), p.row()) for g, p in zip(got, plain))
    assert plain_total["energy_kwh"] == pytest.approx(100.0 * 24 * 3, rel=0.05)  # 10+20+30+40 kW for ~3 days
    assert total == again and same(total, plain_total)
    store.close()


def _keys(cache) -> list[str]:
    import sqlite3

    with sqlite3.connect(cache.path) as db:
        return [k for (k,) in db.execute("SELECT key FROM cache")]


def test_series_rows_share_the_series_list_in_a_request_with_fresh_ages(tmp_path):
    import datetime as dt
    import time

    from flask import Flask

    from dashboard.access import SiteScopedStore
    from dashboard.cache import EXTENSION, ResultCache
    from dashboard.data import series_rows
    from dashboard.tests.helpers import NS

    store = _store_with_meters(tmp_path, ())
    server = Flask("t")
    cache = server.extensions[EXTENSION] = ResultCache(tmp_path / "cache")
    now = time.time_ns()
    plain = series_rows(SiteScopedStore(store, ["north"]), now, dt.UTC, 300)
    with server.app_context():
        first = series_rows(SiteScopedStore(store, ["north"]), now, dt.UTC, 300)
        later = series_rows(SiteScopedStore(store, ["north"]), now + 600 * NS, dt.UTC, 300)
        other = series_rows(SiteScopedStore(store, ["south"]), now, dt.UTC, 300)
        everything = series_rows(store, now, dt.UTC, 300)  # an all-sites role's unlimited store: its own key
    assert (cache.misses, cache.hits) == (3, 1)  # north once, then from the cache; south and "*" on their own keys
    assert first == plain == everything and len(first) == 8 and other == []
    assert all(abs(b["age_s"] - a["age_s"] - 600) < 0.2 and b["status"] == "stale" for a, b in zip(first, later))
    store.close()


def test_energy_summary_gives_the_hourly_numbers_per_site_hour_and_machine_day_cached_or_not(tmp_path):
    """The overview's and enterprise's coarse energy (site hours, machine days) adds up the per-machine hours exactly
    as before, also when the closed days come from the cache and today's hours are read fresh."""
    import time

    import pandas as pd
    import pytest
    from flask import Flask

    from dashboard.access import SiteScopedStore
    from dashboard.cache import EXTENSION, ResultCache
    from dashboard.overview import SiteInfo, energy_by_hour, energy_summary, local_days
    from dashboard.tests.helpers import NS

    store = _store_with_meters(tmp_path, ("m3",))
    site = SiteInfo("north", "North", "Europe/Berlin")
    stop = (time.time_ns() // (3600 * NS) + 1) * 3600 * NS  # today included
    start = stop - 60 * 3600 * NS
    hours = energy_by_hour(store, site, start, stop)
    want_hours = hours.groupby("time", as_index=False)["kwh"].sum()
    want_days = (hours.assign(day=local_days(hours["time"], site.tz))
                 .groupby(["day", "line", "machine"], as_index=False)["kwh"].sum())
    server = Flask("t")
    server.extensions[EXTENSION] = ResultCache(tmp_path / "cache")
    with server.app_context():
        cached = [energy_summary(SiteScopedStore(store, ["north"]), site, start, stop) for _ in range(2)]
    for got in [energy_summary(store, site, start, stop), *cached]:
        pd.testing.assert_frame_equal(got.hours.reset_index(drop=True), want_hours, check_dtype=False)
        pd.testing.assert_frame_equal(got.days.reset_index(drop=True), want_days, check_dtype=False)
    assert want_days["kwh"].sum() == pytest.approx(hours["kwh"].sum(), rel=1e-12)
    assert want_hours["kwh"].sum() == pytest.approx(hours["kwh"].sum(), rel=1e-12)
    store.close()

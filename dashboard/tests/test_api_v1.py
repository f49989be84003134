"""The read API /api/v1 (series, query, findings, kpis, openapi.json) with a real Flask test client against a real
store with data: the embedded SQLite store, and a fresh bucket on the shared InfluxDB server (integration tier).

Answers are checked against what was written (constant power, known counter slopes, written findings) and against
the Store's own ``aggregate`` (the API must give the Store's semantics, not its own), and per-site scopes are checked
from the outside: a token for one site gets 403 for another and never sees its rows.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import time
import zoneinfo

import numpy as np
import pandas as pd
import pytest

from core.model import Event
from core.orders.api import hash_token, read_api_tokens
from core.plant import parse_plant
from core.storage.results import results_for
from dashboard.api_v1 import ApiLimits, api_v1
from dashboard.api_v1_spec import PARAMETERS, openapi_spec
from dashboard.tests.helpers import NS, machine_tags, write_field
from tests.storage.conftest import influx_env, influx_store  # noqa: F401 - the shared InfluxDB server's fixtures

HOUR = 3600
POWER_KW = {("north", "l1", "m1"): 10.0, ("north", "l1", "m2"): 20.0, ("south", "s1", "p1"): 5.0}
PLANT = {
    "name": "API test plant",
    "sites": [
        {"id": "north", "name": "North works", "timezone": "Europe/Berlin", "currency": "EUR",
         "co2_kg_per_kwh": 0.4, "tariff": {"price_per_kwh": 0.2},
         "lines": [{"id": "l1", "machines": [{"id": "m1", "kind": "cnc", "rated_kw": 30},
                                             {"id": "m2", "kind": "cnc", "rated_kw": 30}]}]},
        {"id": "south", "name": "South works", "timezone": "UTC", "currency": "EUR", "co2_kg_per_kwh": 0.3,
         "tariff": {"price_per_kwh": 0.1},
         "lines": [{"id": "s1", "machines": [{"id": "p1", "kind": "compressor", "rated_kw": 10}]}]},
    ],
}
TOKENS = {  # name -> (token, role, sites)
    "admin": ("tok-admin-" + "a" * 24, "admin", []),
    "north_eng": ("tok-north-" + "n" * 24, "engineer", ["north"]),
    "south_pm": ("tok-south-" + "s" * 24, "plant_manager", ["south"]),
    "cdo_north": ("tok-cdo-n-" + "c" * 24, "cdo", ["north"]),
}


@pytest.fixture(params=["sqlite", pytest.param("influx", marks=[pytest.mark.integration, pytest.mark.influx])])
def store(request, tmp_path):
    """The embedded store, or a fresh bucket with rollups on the shared InfluxDB server (skips locally, fails in CI,
    without it)."""
    if request.param == "influx":
        yield request.getfixturevalue("influx_store")
        return
    from core.storage.sqlite import SQLiteStore

    s = SQLiteStore(tmp_path / "plant.db")
    yield s
    s.close()


@pytest.fixture
def plant():
    return parse_plant(PLANT, "<api test plant>")


@pytest.fixture
def tokens_file(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [{"name": n, "sha256": hash_token(t), "role": r, "sites": s}
                                           for n, (t, r, s) in TOKENS.items()]}))
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def end_s():
    """Data end: the last whole hour (so hourly windows of the data are complete)."""
    return int(time.time()) // HOUR * HOUR


@pytest.fixture
def filled(store, end_s):
    """Three days of three machines in two sites (5-min samples): constant power, energy registers rising at that
    power, running state, a good-parts counter on north/l1/m1 (12 per hour); findings in both sites and one of a
    machine without a site."""
    times = np.arange(end_s - 3 * 86400, end_s + 1, 300, dtype=np.int64)  # up to the hour: complete increases
    for (site, line, machine), kw in POWER_KW.items():
        tags = machine_tags(line, machine, site=site)
        write_field(store, "electrical", "energy_kwh", tags, times, 500.0 + kw * (times - times[0]) / HOUR)
        write_field(store, "electrical", "active_power_kw", tags, times, np.full(len(times), kw))
        write_field(store, "machine_state", "state", tags, times, np.full(len(times), 2))
    write_field(store, "production", "good_count", machine_tags("l1", "m1", site="north"), times,
                (times - times[0]) / 300.0)
    store.flush()
    t0 = dt.datetime.fromtimestamp(end_s - 86400, dt.UTC)
    t1 = t0 + dt.timedelta(hours=2)
    with results_for(store) as results:
        results.write_findings("run-1", [
            Event("north/l1/m1", "idle_running", t0, t1, 12.5, {"cost": 2.5}),
            Event("south/s1/p1", "off_shift_load", t0, t1, 7.0, {"cost": 0.7}),
            Event("bare-meter", "meter_gap", t0, t1, 0.0, {}),
        ])
    return store


@pytest.fixture
def client(filled, tokens_file, plant):
    from flask import Flask

    app = Flask("api-v1-test")
    app.register_blueprint(api_v1(filled, read_api_tokens(tokens_file), plant=plant, tz="UTC"))
    return app.test_client()


def get(client, path: str, token: str | None = "admin", **kwargs):
    headers = dict(kwargs.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {TOKENS[token][0]}"
    return client.get("/api/v1" + path, headers=headers, **kwargs)


def iso(s: float) -> str:
    return dt.datetime.fromtimestamp(s, dt.UTC).isoformat().replace("+00:00", "Z")


# -- authentication and scopes ------------------------------------------------------------------------------------------
def test_tokens_are_required_and_roles_and_sites_enforced(client):
    for token in (None, "unknown"):
        headers = {"Authorization": "Bearer nope"} if token else {}
        r = client.get("/api/v1/series", headers=headers)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer" and "token" in r.json["error"]
    r = get(client, "/series", "south_pm")  # a plant manager reads findings and KPIs, not raw series
    assert r.status_code == 403 and "plant_manager" in r.json["error"]
    r = get(client, "/series?site=south", "north_eng")
    assert r.status_code == 403 and r.json["parameter"] == "site" and "south" in r.json["error"]
    r = get(client, f"/query?measurement=electrical&field=active_power_kw&start={iso(time.time() - 7200)}"
                    "&site=south", "cdo_north")  # a cdo token narrowed to north is held to north
    assert r.status_code == 403


def test_series_lists_only_the_tokens_sites(client):
    everything = get(client, "/series?measurement=electrical").json
    assert {(s["tags"]["site"], s["tags"]["machine"]) for s in everything} == {
        ("north", "m1"), ("north", "m2"), ("south", "p1")}
    assert all(s["count"] == 3 * 288 + 1 for s in everything)
    north = get(client, "/series", "north_eng").json
    assert north and {s["tags"]["site"] for s in north} == {"north"}
    assert {s["measurement"] for s in north} == {"electrical", "machine_state", "production"}
    one = get(client, "/series?field=active_power_kw&machine=m2", "north_eng").json
    assert [(s["field"], s["tags"]["machine"]) for s in one] == [("active_power_kw", "m2")]
    assert get(client, "/series?site=south&measurement=electrical", "admin").json[0]["tags"]["site"] == "south"
    r = get(client, "/series?site=nrth", "admin")  # a typo is an error, not an empty answer
    assert r.status_code == 400 and r.json["parameter"] == "site" and "north, south" in r.json["error"]
    csv = pd.read_csv(io.StringIO(get(client, "/series?format=csv", "north_eng").get_data(as_text=True)))
    assert list(csv.columns[:1]) == ["measurement"] and set(csv["site"]) == {"north"} and len(csv) == len(north)


# -- query ---------------------------------------------------------------------------------------------------------------
def test_query_gives_the_stores_aggregates(client, filled, end_s):
    start, stop = end_s - 86400, end_s
    r = get(client, f"/query?measurement=electrical&field=active_power_kw&agg=mean&every=1h&start={iso(start)}"
                    f"&stop={iso(stop)}")
    assert r.status_code == 200, r.json
    body = r.json
    assert body["query"]["agg"] == "mean" and body["columns"] == ["time", "line", "machine", "site", "value"]
    got = pd.DataFrame(body["data"])
    assert len(got) == 3 * 24
    for (site, _line, machine), kw in POWER_KW.items():
        assert np.allclose(got[(got["site"] == site) & (got["machine"] == machine)]["value"], kw)
    direct = filled.aggregate("electrical", "active_power_kw", start * NS, stop * NS, every="1h", agg="mean")
    assert list(pd.to_datetime(got["time"], utc=True)) == list(direct["time"])
    assert np.allclose(got["value"], direct["value"])
    # the counter increase per hour is the energy at that power, and so is the time integral of power [kW x h]
    inc = get(client, f"/query?measurement=electrical&field=energy_kwh&agg=increase&every=1h&start={iso(start)}"
                      f"&stop={iso(stop)}&machine=m2").json["data"]
    assert len(inc) == 24 and np.allclose([row["value"] for row in inc], 20.0)
    integral = get(client, f"/query?measurement=electrical&field=active_power_kw&agg=integral&every=1h"
                           f"&start={iso(start)}&stop={iso(stop)}&machine=m1").json["data"]
    assert np.allclose([row["value"] for row in integral], 10.0)
    states = get(client, f"/query?measurement=machine_state&field=state&agg=state_seconds&every=1h"
                         f"&start={iso(start)}&stop={iso(stop)}&machine=p1").json["data"]
    assert {row["state"] for row in states} == {"running"} and np.allclose([row["value"] for row in states], HOUR)


def test_query_local_days_and_months(client, end_s):
    start, stop = end_s - 3 * 86400, end_s
    days = get(client, f"/query?measurement=electrical&field=energy_kwh&agg=increase&every=1d&tz=Europe/Berlin"
                       f"&start={iso(start)}&stop={iso(stop)}&machine=m1").json
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    stamps = [dt.datetime.fromisoformat(row["time"].replace("Z", "+00:00")).astimezone(berlin)
              for row in days["data"]]
    assert days["query"]["tz"] == "Europe/Berlin" and stamps
    assert all((t.hour, t.minute) == (0, 0) for t in stamps)  # windows start at local midnight
    assert sum(row["value"] for row in days["data"]) == pytest.approx(10.0 * (stop - start) / HOUR, rel=1e-3)
    # one site asked: its zone (the plant file's) is the default
    north = get(client, f"/query?measurement=electrical&field=energy_kwh&agg=increase&every=1d&site=north"
                        f"&start={iso(start)}&stop={iso(stop)}&machine=m1").json
    assert north["query"]["tz"] == "Europe/Berlin" and north["data"] == days["data"]
    months = get(client, f"/query?measurement=electrical&field=energy_kwh&agg=increase&every=1mo"
                         f"&start={iso(start)}&stop={iso(stop)}&machine=m1").json["data"]
    assert 1 <= len(months) <= 2 and sum(r["value"] for r in months) == pytest.approx(
        sum(row["value"] for row in days["data"]), rel=1e-9)
    local = get(client, "/query?measurement=electrical&field=active_power_kw&every=1d&tz=Europe/Berlin"
                        f"&start={dt.datetime.fromtimestamp(end_s - 86400, berlin).date()}&machine=m1").json
    assert local["query"]["start"].endswith(("+01:00", "+02:00")) is False  # echoed in UTC
    assert dt.datetime.fromisoformat(local["query"]["start"]).astimezone(berlin).hour == 0


def test_query_columns_formats_and_scope(client, end_s):
    start, stop = iso(end_s - 6 * HOUR), iso(end_s)
    q = (f"/query?column=kw:electrical:active_power_kw:mean&column=kwh:electrical:energy_kwh:increase"
         f"&column=st:machine_state:state:state_seconds&every=1h&start={start}&stop={stop}")
    wide = get(client, q).json
    assert wide["columns"][:6] == ["time", "site", "line", "machine", "kw", "kwh"]
    assert "st_running" in wide["columns"]
    frame = pd.DataFrame(wide["data"])
    assert len(frame) == 3 * 6
    m2 = frame[frame["machine"] == "m2"]
    assert np.allclose(m2["kw"], 20.0) and np.allclose(m2["kwh"], 20.0) and np.allclose(m2["st_running"], HOUR)
    # CSV and Parquet carry the same rows (by format parameter or Accept header)
    csv = get(client, q + "&format=csv")
    assert csv.mimetype == "text/csv" and "attachment" in csv.headers["Content-Disposition"]
    from_csv = pd.read_csv(io.StringIO(csv.get_data(as_text=True)))
    assert list(from_csv.columns) == wide["columns"] and np.allclose(from_csv["kwh"], frame["kwh"])
    parquet = get(client, q, headers={"Accept": "application/vnd.apache.parquet"})
    assert parquet.mimetype == "application/vnd.apache.parquet"
    from_parquet = pd.read_parquet(io.BytesIO(parquet.data))
    assert str(from_parquet["time"].dtype).startswith("datetime64") and np.allclose(from_parquet["kw"], frame["kw"])
    assert get(client, q, headers={"Accept": "text/csv"}).mimetype == "text/csv"
    # a north token asking for a south machine gets no rows, not south's
    south = get(client, f"/query?measurement=electrical&field=active_power_kw&start={start}&machine=p1",
                "north_eng").json
    assert south["data"] == []
    mine = get(client, f"/query?measurement=electrical&field=active_power_kw&start={start}", "north_eng").json
    assert {row["site"] for row in mine["data"]} == {"north"}


@pytest.mark.parametrize(("query", "parameter", "words"), [
    ("measurement=electrical&field=active_power_kw", "start", "required"),
    ("measurement=electrical&start=2026-01-01T00:00:00Z", "field", "required"),
    ("measurement=electrical&field=x&agg=median&start=2026-01-01T00:00:00Z", "agg", "twmean"),
    ("measurement=electrical&field=x&every=7s&tz=Europe/Berlin&start=2026-01-01T00:00:00Z", "every", "divide"),
    ("measurement=electrical&field=x&every=fortnight&start=2026-01-01T00:00:00Z", "every", "not understood"),
    ("measurement=electrical&field=x&tz=Mars/Base&start=2026-01-01T00:00:00Z", "tz", "IANA"),
    ("measurement=electrical&field=x&start=yesterday", "start", "ISO 8601"),
    ("measurement=electrical&field=x&start=2026-01-02T00:00:00Z&stop=2026-01-01T00:00:00Z", "stop", "after"),
    ("mesurement=electrical&field=x&start=2026-01-01T00:00:00Z", "mesurement", "valid"),
    ("measurement=electrical&field=x&format=xlsx&start=2026-01-01T00:00:00Z", "format", "parquet"),
    ("column=kwh:electrical:energy_kwh&start=2026-01-01T00:00:00Z", "column", "name:measurement:field:agg"),
    ("measurement=electrical&field=x&tag=line&start=2026-01-01T00:00:00Z", "tag", "key:value"),
    ("measurement=electrical&field=x&max_hold_s=-5&start=2026-01-01T00:00:00Z", "max_hold_s", "positive"),
])
def test_query_errors_name_the_parameter(tmp_path, tokens_file, query, parameter, words):
    from flask import Flask

    from core.storage.sqlite import SQLiteStore

    with SQLiteStore(tmp_path / "plant.db") as st:  # refused before the store is read: any backend answers alike
        write_field(st, "electrical", "x", machine_tags("l1", "m1"), [1_767_225_600], [1.0])
        app = Flask("api-v1-errors")
        app.register_blueprint(api_v1(st, read_api_tokens(tokens_file)))
        r = get(app.test_client(), "/query?" + query)
    assert r.status_code == 400 and r.json["parameter"] == parameter and words in r.json["error"], r.json


def test_query_limits_protect_the_server(filled, tokens_file, plant, end_s):
    from flask import Flask

    app = Flask("api-v1-limits")
    app.register_blueprint(api_v1(filled, read_api_tokens(tokens_file), plant=plant,
                                  limits=ApiLimits(max_raw_series_days=5, max_series_days=50, max_rows=500)))
    client = app.test_client()
    base = f"/query?measurement=electrical&field=energy_kwh&stop={iso(end_s)}"
    r = get(client, base + f"&agg=increase&start={iso(end_s - 2 * 86400)}")  # 3 series x 2 days > 5
    assert r.status_code == 400 and r.json["parameter"] == "start" and "series-days" in r.json["error"]
    ok = get(client, base + f"&agg=increase&start={iso(end_s - 2 * 86400)}&machine=m1")  # 1 x 2 <= 5
    assert ok.status_code == 200 and len(ok.json["data"]) == 48
    r = get(client, base + f"&agg=last&every=60&start={iso(end_s - 2 * 86400)}")  # 3 x 2880 windows > 500
    assert r.status_code == 400 and r.json["parameter"] == "every" and "rows" in r.json["error"]
    assert get(client, base + f"&agg=last&every=1h&start={iso(end_s - 2 * 86400)}").status_code == 200


# -- findings ------------------------------------------------------------------------------------------------------------
def test_findings_of_the_newest_run_per_site(client):
    everything = get(client, "/findings").json
    assert {f["machine"] for f in everything} == {"north/l1/m1", "south/s1/p1", "bare-meter"}
    assert all(f["run"] == "run-1" for f in everything)
    assert [f["machine"] for f in get(client, "/findings", "north_eng").json] == ["north/l1/m1"]
    assert [f["machine"] for f in get(client, "/findings", "south_pm").json] == ["south/s1/p1"]
    assert get(client, "/findings?site=north", "south_pm").status_code == 403
    assert [f["kind"] for f in get(client, "/findings?kind=off_shift_load").json] == ["off_shift_load"]
    r = get(client, "/findings?run=run-9")
    assert r.status_code == 400 and r.json["parameter"] == "run" and "run-1" in r.json["error"]
    assert get(client, "/findings?from=2000-01-01&to=2000-01-02").json == []
    csv = pd.read_csv(io.StringIO(get(client, "/findings?format=csv", "north_eng").get_data(as_text=True)))
    assert list(csv["machine"]) == ["north/l1/m1"] and json.loads(csv["details"][0]) == {"cost": 2.5}


def test_findings_without_results_are_empty(tmp_path, tokens_file):
    from flask import Flask

    from core.storage.sqlite import SQLiteStore

    with SQLiteStore(tmp_path / "empty.db") as empty:
        app = Flask("api-v1-empty")
        app.register_blueprint(api_v1(lambda: empty, read_api_tokens(tokens_file)))
        r = get(app.test_client(), "/findings")
        assert r.status_code == 200 and r.json == []


# -- KPIs ----------------------------------------------------------------------------------------------------------------
def test_kpis_per_site_from_the_enterprise_functions(client, filled, plant, end_s):
    from dashboard.api_v1 import TokenUser
    from dashboard.enterprise import enterprise_view

    body = get(client, "/kpis?days=7&weekly=true").json
    by_site = {k["site_id"]: k for k in body["sites"]}
    assert set(by_site) == {"north", "south"} and body["period"] == {"days": 7}
    for site_id, kws in (("north", (10.0, 20.0)), ("south", (5.0,))):
        k = by_site[site_id]
        assert k["energy_kwh"] == pytest.approx(sum(kws) * 3 * 24, rel=0.02)  # constant power for three days
        assert k["metered"] == k["machines"] == len(kws)
    north = by_site["north"]
    assert north["tz"] == "Europe/Berlin" and north["good_units"] == pytest.approx(3 * 24 * 12, rel=0.02)
    assert north["kwh_per_unit"] == pytest.approx(north["energy_kwh"] / north["good_units"])
    assert north["potential_kwh"] == pytest.approx(12.5) and north["cost"] == pytest.approx(0.2 * north["energy_kwh"])
    assert sum(w["kwh"] for w in north["weekly"]) == pytest.approx(north["energy_kwh"])
    assert by_site["south"]["kwh_per_unit"] is None  # no production counter: no EnPI, not a division by zero
    assert body["total"]["energy_kwh"] == pytest.approx(north["energy_kwh"] + by_site["south"]["energy_kwh"])
    # the same numbers as the dashboard's Enterprise page computes
    kpis, _total, _rows = enterprise_view(filled, TokenUser("t", "admin", ()), "north", plant, dt.UTC,
                                          time.time_ns(), days=7)
    assert kpis[0].energy_kwh == pytest.approx(north["energy_kwh"], rel=1e-9)
    # scopes
    mine = get(client, "/kpis", "south_pm").json
    assert [k["site_id"] for k in mine["sites"]] == ["south"]
    assert get(client, "/kpis?site=north", "south_pm").status_code == 403
    assert [k["site_id"] for k in get(client, "/kpis", "cdo_north").json["sites"]] == ["north"]
    csv = pd.read_csv(io.StringIO(get(client, "/kpis?format=csv&site=north").get_data(as_text=True)))
    assert list(csv["site"]) == ["North works", "All sites"]
    month = dt.datetime.fromtimestamp(end_s - 1, zoneinfo.ZoneInfo("Europe/Berlin")).strftime("%Y-%m")
    assert get(client, f"/kpis?month={month}&site=north").json["sites"][0]["energy_kwh"] > 0
    for bad, parameter in (("month=2026-13", "month"), ("days=0", "days"), ("days=5&month=2026-01", "month")):
        r = get(client, "/kpis?" + bad)
        assert r.status_code == 400 and r.json["parameter"] == parameter


# -- the description -----------------------------------------------------------------------------------------------------
def test_openapi_describes_every_route_and_validates():
    from flask import Flask
    from openapi_spec_validator import validate

    app = Flask("routes")
    app.register_blueprint(api_v1(None, None))  # the description reads neither the store nor the tokens
    r = app.test_client().get("/api/v1/openapi.json")  # documentation: no token needed
    assert r.status_code == 200
    spec = r.json
    validate(spec)
    routes = {rule.rule.removeprefix("/api/v1") for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1")}
    assert routes == set(spec["paths"]) == set(PARAMETERS)
    for path, item in spec["paths"].items():
        assert [p["name"] for p in item["get"].get("parameters", [])] == [p["name"] for p in PARAMETERS[path]]
    assert spec == openapi_spec("/api/v1")


# -- mounted in the dashboard --------------------------------------------------------------------------------------------
def test_mounted_beside_the_dashboard_with_the_orders_api(tmp_path, users_path, tokens_file, plant, end_s):
    from core.storage.sqlite import SQLiteStore
    from dashboard.app import close_store, create_app

    with SQLiteStore(tmp_path / "plant.db") as st:
        times = np.arange(end_s - 2 * HOUR, end_s + 1, 300, dtype=np.int64)
        for (site, line, machine), kw in POWER_KW.items():
            write_field(st, "electrical", "active_power_kw", machine_tags(line, machine, site=site), times,
                        np.full(len(times), kw))
        t0 = dt.datetime.fromtimestamp(end_s - HOUR, dt.UTC)
        with results_for(st) as results:
            results.write_findings("run-1", [Event("north/l1/m1", "idle_running", t0, t0 + dt.timedelta(hours=1), 3.0),
                                             Event("south/s1/p1", "idle_running", t0, t0 + dt.timedelta(hours=1), 2.0)])
    app = create_app(str(tmp_path / "plant.db"), users=users_path, plant=plant, api_tokens=tokens_file,
                     orders_db=f"sqlite:///{tmp_path / 'orders.db'}")
    try:
        client = app.server.test_client()  # no cookie, no Origin: another system
        # /findings is the read API's (registered first), not the orders API's: it knows site= and kind=
        endpoint, _ = app.server.url_map.bind("localhost").match("/api/v1/findings")
        assert endpoint == "wattline_api_v1.findings"
        assert any(r.endpoint.startswith("wattline_orders_api.") for r in app.server.url_map.iter_rules())
        assert [f["machine"] for f in get(client, "/findings", "north_eng").json] == ["north/l1/m1"]
        assert get(client, "/findings?site=south", "north_eng").status_code == 403
        series = get(client, "/series", "north_eng")
        assert series.status_code == 200 and {s["tags"]["site"] for s in series.json} == {"north"}
        r = get(client, f"/query?measurement=electrical&field=active_power_kw&start={iso(end_s - HOUR)}"
                        f"&stop={iso(end_s)}&every=1h", "north_eng")
        assert r.status_code == 200 and sorted(row["value"] for row in r.json["data"]) == [10.0, 20.0]
        assert r.headers["Cache-Control"] == "no-store"
        assert get(client, "/openapi.json").json["openapi"].startswith("3.")
        assert get(client, "/series", None).status_code == 401  # no token: the login gate's 401
        from dashboard.tests.helpers import logged_in

        assert logged_in(app, "admin").get("/api/v1/series").status_code == 401  # a session is not a token
    finally:
        close_store(app)

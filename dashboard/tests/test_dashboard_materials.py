"""Materials page data: the analysis's stored material intensities, added up over sites, the long tail (real SQLite)."""

from __future__ import annotations

import pandas as pd
import pytest

from core.storage.results import results_for
from core.storage.sqlite import SQLiteStore
from dashboard import ids
from dashboard.materials import materials_csv, read_materials, summarise

T = pd.Timestamp("2026-11-01", tz="UTC")


def frame():
    rows = [("north", "MAT-A", 100.0, 500.0), ("north", "MAT-B", 1000.0, 300.0), ("south", "MAT-A", 100.0, 100.0),
            ("south", "MAT-C", 10.0, 50.0)] + [("north", f"MAT-T{i:03d}", 10.0, 1.0) for i in range(50)]
    f = pd.DataFrame(rows, columns=["site", "material", "kg", "kwh"])
    f["kwh_per_kg"] = f["kwh"] / f["kg"]
    f.insert(0, "time", T)
    return f


def test_sites_add_up_and_intensity_is_recomputed_from_sums():
    m = summarise(frame())
    a = next(r for r in m.rows if r["material"] == "MAT-A")
    assert a["kg"] == 200.0 and a["kwh"] == 600.0 and a["kwh_per_kg"] == 3.0  # not the mean of 5.0 and 1.0
    assert [r["material"] for r in m.rows[:2]] == ["MAT-C", "MAT-A"]  # most intensive first
    # 80 % of the 1,000 kWh: MAT-A (600) and MAT-B (300); the other 51 materials carry the remaining 10 %.
    assert m.head_count == 2 and m.tail_count == 51 and abs(m.tail_share - 0.1) < 1e-9
    assert abs(sum(r["share_of_energy"] for r in m.rows) - 1) < 1e-9


def test_read_materials_from_the_newest_run_and_only_for_the_sites_given(tmp_path):
    store = SQLiteStore(tmp_path / "w.db")
    with results_for(store) as results:
        results.write_outputs("old", "materials", frame().assign(kwh=1.0))
        results.write_outputs("new", "materials", frame())
    north = read_materials(store, ["north"])
    assert north.run == "new" and len(north.rows) == 52
    assert {r["material"] for r in north.rows}.isdisjoint({"MAT-C"})  # a south material
    assert next(r for r in north.rows if r["material"] == "MAT-A")["kwh"] == 500.0
    assert read_materials(store, ["east"]).rows == []
    assert read_materials(SQLiteStore(tmp_path / "empty.db"), ["north"]).rows == []
    assert materials_csv(north.rows).splitlines()[0] == "material,kg,units,kwh,kwh_per_kg,kwh_per_unit,share_of_energy"
    assert north.rows[0]["kwh_per_unit"] is None  # a run stored without good units


def test_material_export_is_limited_to_the_users_sites(tmp_path):
    from dashboard.app import create_app
    from dashboard.tests.helpers import logged_in, make_users
    from simulator.plant import DEFAULT_PLANT_FILE

    store = SQLiteStore(tmp_path / "w.db")
    with results_for(store) as results:
        results.write_outputs("new", "materials", frame().assign(time=pd.Timestamp.now(tz="UTC").floor("D")))
    store.close()
    make_users(tmp_path / "users.json")
    app = create_app(str(tmp_path / "w.db"), users=tmp_path / "users.json", plant=DEFAULT_PLANT_FILE)
    anna = logged_in(app, "anna").get("/export/materials.csv").get_data(as_text=True)  # plant manager of north
    assert "MAT-B" in anna and "MAT-C" not in anna
    assert "MAT-C" in logged_in(app, "carla").get("/export/materials.csv").get_data(as_text=True)  # the CDO
    assert logged_in(app, "anna").get("/export/materials.csv?site=south").status_code == 403


def daily_frame(days: int = 60) -> pd.DataFrame:
    """Per site, material and day, the way wattline analyze stores it: MAT-OLD only in the first 30 of ``days`` days
    before today, MAT-NEW only in the last 5, MAT-ALL every day (1 kWh/kg; 2 good units per kg except on the days
    MAT-NEW runs, when it gets 4)."""
    today = pd.Timestamp.now(tz="UTC").floor("D")
    rows = []
    for d in range(days):
        day = today - pd.Timedelta(days=days - 1 - d)
        recent = d >= days - 5
        rows.append((day, "north", "MAT-ALL", 10.0, 40.0 if recent else 20.0, 10.0))
        if d < 30:
            rows.append((day, "north", "MAT-OLD", 5.0, 0.0, 50.0))
        if recent:
            rows.append((day, "north", "MAT-NEW", 2.0, 8.0, 1.0))
    return pd.DataFrame(rows, columns=["time", "site", "material", "kg", "units", "kwh"])


def test_the_period_chooses_the_days_added_up_and_units_give_kwh_per_unit(tmp_path):
    store = SQLiteStore(tmp_path / "w.db")
    with results_for(store) as results:
        results.write_outputs("analyze-1", "materials", daily_frame())
    today = pd.Timestamp.now(tz="UTC").floor("D")
    stop = (today + pd.Timedelta(days=1)).value
    week = read_materials(store, ["north"], (today - pd.Timedelta(days=6)).value, stop)
    rows = {r["material"]: r for r in week.rows}
    assert set(rows) == {"MAT-ALL", "MAT-NEW"}  # MAT-OLD ran only before this week
    assert rows["MAT-ALL"]["kg"] == 70.0 and rows["MAT-ALL"]["kwh"] == 70.0
    assert rows["MAT-ALL"]["units"] == 5 * 40.0 + 2 * 20.0
    assert rows["MAT-ALL"]["kwh_per_unit"] == pytest.approx(70.0 / 240.0)
    assert rows["MAT-NEW"]["kwh_per_kg"] == pytest.approx(0.5) and rows["MAT-NEW"]["kwh_per_unit"] == 5 / 40
    everything = read_materials(store, ["north"])
    old = next(r for r in everything.rows if r["material"] == "MAT-OLD")
    assert old["kwh_per_kg"] == 10.0 and old["kwh_per_unit"] is None  # no good units counted: unknown, not infinite
    assert everything.total_kwh == pytest.approx(60 * 10.0 + 30 * 50.0 + 5 * 1.0)
    assert everything.rows[0]["material"] == "MAT-OLD"  # most intensive first
    # Materials below 1 kg in the period count in the total but are not ranked.
    tiny = summarise(pd.DataFrame({"material": ["A", "B"], "kg": [100.0, 0.2], "kwh": [100.0, 50.0]}))
    assert [r["material"] for r in tiny.rows] == ["A"] and tiny.unranked == 1 and tiny.total_kwh == 150.0
    assert tiny.energies == [100.0, 50.0]


def test_a_cache_shares_one_read_per_run_and_days(tmp_path):
    from dashboard.cache import ResultCache

    store = SQLiteStore(tmp_path / "w.db")
    with results_for(store) as results:
        results.write_outputs("analyze-1", "materials", daily_frame())
    cache = ResultCache()
    first = read_materials(store, ["north"], cache=cache)
    assert read_materials(store, ["north"], cache=cache).rows == first.rows and (cache.hits, cache.misses) == (1, 1)
    with results_for(store) as results:  # a new run is a new key: its numbers show at once
        results.write_outputs("analyze-2", "materials", daily_frame().assign(kwh=1.0))
    assert read_materials(store, ["north"], cache=cache).run == "analyze-2" and cache.misses == 2


def materials_request(period: str) -> dict:
    outputs = [(ids.MAT_GRID, "rowData"), (ids.MAT_STATUS, "children"), (ids.MAT_TOP, "figure"),
               (ids.MAT_TAIL, "figure"), (ids.MAT_EXPORT, "href")]
    return {"output": ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..",
            "outputs": [{"id": i, "property": p} for i, p in outputs],
            "inputs": [{"id": ids.SITE, "property": "value", "value": "all"},
                       {"id": ids.PERIOD, "property": "value", "value": period}],
            "changedPropIds": [f"{ids.PERIOD}.value"], "state": []}


def test_the_period_selector_changes_the_materials_page_and_its_export(tmp_path):
    import json

    from dashboard.app import create_app
    from dashboard.tests.helpers import logged_in, make_users
    from simulator.plant import DEFAULT_PLANT_FILE

    store = SQLiteStore(tmp_path / "w.db")
    with results_for(store) as results:
        results.write_outputs("analyze-1", "materials", daily_frame())
    store.close()
    make_users(tmp_path / "users.json")
    app = create_app(str(tmp_path / "w.db"), users=tmp_path / "users.json", plant=DEFAULT_PLANT_FILE)
    anna = logged_in(app, "anna")

    def page(period):
        answer = anna.post("/_dash-update-component", json=materials_request(period))
        assert answer.status_code == 200, answer.data[:300]
        return json.loads(answer.data)["response"]

    week, quarter = page("7d"), page("90d")
    assert {r["material"] for r in week[ids.MAT_GRID]["rowData"]} == {"MAT-ALL", "MAT-NEW"}
    assert {r["material"] for r in quarter[ids.MAT_GRID]["rowData"]} == {"MAT-ALL", "MAT-NEW", "MAT-OLD"}
    assert week[ids.MAT_STATUS]["children"].startswith("Last 7 days: 2 materials")
    assert "period=7d" in week[ids.MAT_EXPORT]["href"]
    csv = anna.get("/export/materials.csv?period=7d").get_data(as_text=True)
    assert "MAT-NEW" in csv and "MAT-OLD" not in csv
    assert "MAT-OLD" in anna.get("/export/materials.csv?period=90d").get_data(as_text=True)

"""Materials page data: the analysis's stored material intensities, added up over sites, the long tail (real SQLite)."""

from __future__ import annotations

import pandas as pd

from core.storage.results import results_for
from core.storage.sqlite import SQLiteStore
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
    assert materials_csv(north.rows).splitlines()[0] == "material,kg,kwh,kwh_per_kg,share_of_energy"


def test_material_export_is_limited_to_the_users_sites(tmp_path):
    from dashboard.app import create_app
    from dashboard.tests.helpers import logged_in, make_users
    from simulator.plant import DEFAULT_PLANT_FILE

    store = SQLiteStore(tmp_path / "w.db")
    with results_for(store) as results:
        results.write_outputs("new", "materials", frame())
    store.close()
    make_users(tmp_path / "users.json")
    app = create_app(str(tmp_path / "w.db"), users=tmp_path / "users.json", plant=DEFAULT_PLANT_FILE)
    anna = logged_in(app, "anna").get("/export/materials.csv").get_data(as_text=True)  # plant manager of north
    assert "MAT-B" in anna and "MAT-C" not in anna
    assert "MAT-C" in logged_in(app, "carla").get("/export/materials.csv").get_data(as_text=True)  # the CDO
    assert logged_in(app, "anna").get("/export/materials.csv?site=south").status_code == 403

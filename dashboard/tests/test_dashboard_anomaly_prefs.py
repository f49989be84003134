"""Anomaly preferences from the findings page without a browser: mark a finding as normal and undo it, set a machine's
false-alarm budget, the grid's "marked normal" label, and hand-made callback requests from a user of another site or
a read-only role that change nothing in the preferences file ``wattline analyze`` reads."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from analytics.anomaly.preferences import finding_id, preferences_path, read_preferences
from core.model import Event
from core.storage.results import results_for
from core.storage.sqlite import SQLiteStore
from dashboard import anomaly_prefs as view
from dashboard import ids
from dashboard.app import close_store, create_app
from dashboard.overview import finding_rows
from dashboard.tests.helpers import TEST_USERS, logged_in, machine_tags, write_power
from dashboard.users import User

USERS = {name: User(name, role, tuple(sites), "") for name, (role, sites, _pw) in TEST_USERS.items()}
NORTH, SOUTH = "north/L1/l1-m1", "south/S1/s1-press"
SIG = {"residual_kw": 0.9, "temperature": 0.3, "hour_sin": 0.2}


def anomaly(machine: str, start: dt.datetime, kind: str = "anomaly") -> Event:
    details = {"signature": SIG, "explanation": f"{machine} drew 40 kW above its baseline"} if kind == "anomaly" else {}
    return Event(machine, kind, start, start + dt.timedelta(hours=4), 160.0, details)


@pytest.fixture
def plant(tmp_path):
    return make_plant(tmp_path)


def make_plant(folder):
    """A store with power of one north and one south machine and stored findings (two anomalies, one waste) in the
    last days; returns (store path, findings)."""
    now = int(time.time())
    start = dt.datetime.fromtimestamp(now - 2 * 86400, dt.UTC).replace(minute=0, second=0, microsecond=0)
    events = [anomaly(NORTH, start), anomaly(SOUTH, start), anomaly(NORTH, start, kind="idle_running")]
    store = SQLiteStore(folder / "plant.db")
    for site, line, name in (("north", "L1", "l1-m1"), ("south", "S1", "s1-press")):
        write_power(store, machine_tags(line, name, site), range(now - 3 * 86400, now, 600), [10.0] * 432)
    with results_for(store) as results:
        results.write_findings("run-1", events)
    store.close()
    return folder / "plant.db", events


def test_mark_undo_and_budget_are_written_with_who_and_when(plant):
    db, events = plant
    path = preferences_path(str(db))
    anna = USERS["anna"]  # plant manager of north
    fid = finding_id(events[0])
    ok, msg = view.mark_finding(anna, path, events, fid, "  cleaning cycle ")
    assert ok and "next 'wattline analyze'" in msg and "--follow" in msg
    (pattern,) = read_preferences(path).normal_patterns
    assert (pattern.id, pattern.machine, pattern.note, pattern.marked_by) == (fid, NORTH, "cleaning cycle", "anna")
    assert dt.datetime.fromisoformat(pattern.marked_at) > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    assert pattern.signature == SIG
    ok, _ = view.set_machine_budget(anna, path, [NORTH], NORTH, "0.5")
    prefs = read_preferences(path)
    assert ok and prefs.alerts_per_week == {NORTH: 0.5} and prefs.budget_set[NORTH]["by"] == "anna"
    ok, msg = view.set_machine_budget(anna, path, [NORTH], NORTH, "")  # empty: back to the default
    assert ok and "default" in msg and read_preferences(path).alerts_per_week == {}
    ok, _ = view.unmark_finding(USERS["erik"], path, fid)  # an engineer of north may take it back
    assert ok and read_preferences(path).normal_patterns == []


@pytest.mark.parametrize("user", ["sam", "carla"])
def test_another_site_or_a_read_only_role_changes_nothing(plant, user):
    db, events = plant
    path = preferences_path(str(db))
    view.mark_finding(USERS["admin"], path, events, finding_id(events[0]), "admin marked it")
    before = path.read_bytes()
    who = USERS[user]
    for ok, msg in (view.mark_finding(who, path, events, finding_id(events[0]), "forged"),
                    view.unmark_finding(who, path, finding_id(events[0])),
                    view.set_machine_budget(who, path, [NORTH, SOUTH], NORTH, 0.1)):
        assert not ok and msg.startswith("Not changed")
    assert path.read_bytes() == before


def test_bad_requests_give_a_message_and_change_nothing(plant):
    db, events = plant
    path = preferences_path(str(db))
    anna = USERS["anna"]
    assert view.mark_finding(anna, path, events, finding_id(events[2]), "")[0] is False  # not an anomaly
    assert view.mark_finding(anna, path, events, "0123456789", "")[0] is False  # unknown id
    assert view.unmark_finding(anna, path, "0123456789")[0] is False
    ok, msg = view.set_machine_budget(anna, path, [NORTH], NORTH, "lots")
    assert not ok and "'lots'" in msg
    ok, msg = view.set_machine_budget(anna, path, [NORTH], NORTH, -1)
    assert not ok and "above 0" in msg
    assert view.set_machine_budget(anna, path, [NORTH], "north/L1/not-there", 1)[0] is False
    assert not path.exists()
    assert view.mark_finding(anna, None, events, finding_id(events[0]), "")[1].endswith("no anomaly preferences file.")


def test_grid_rows_show_marked_findings_and_the_selection_state(plant):
    db, events = plant
    path = preferences_path(str(db))
    view.mark_finding(USERS["anna"], path, events, finding_id(events[0]), "night cleaning")
    prefs = read_preferences(path)
    rows = view.mark_rows(finding_rows(events, None, dt.UTC), events, prefs, None, dt.UTC)
    north = next(r for r in rows if r["machine"] == NORTH and r["finding_id"])
    assert north["marked_normal"] and north["kind"].endswith("marked normal")
    south = next(r for r in rows if r["machine"] == SOUTH)
    assert south["finding_id"] == finding_id(events[1]) and not south["marked_normal"]
    waste = next(r for r in rows if r["finding_id"] is None)
    assert not waste["marked_normal"] and "marked" not in waste["kind"]
    st = view.selection_state(USERS["anna"], north, prefs, [NORTH, SOUTH])
    assert (st["can_mark"], st["can_undo"], st["can_budget"]) == (False, True, True)
    assert "by anna" in st["text"] and "night cleaning" in st["text"] and st["undo"] == finding_id(events[0])
    assert [o["value"] for o in view.marked_options(USERS["erik"], prefs)] == [finding_id(events[0])]
    assert view.marked_options(USERS["sam"], prefs) == [] and view.marked_options(USERS["carla"], prefs) == []
    assert view.selection_state(USERS["carla"], north, prefs, [NORTH])["can_undo"] is False
    st = view.selection_state(USERS["anna"], south, prefs, [NORTH])  # south is not anna's: nothing to change
    assert not (st["can_mark"] or st["can_undo"] or st["can_budget"])


# -- through the dashboard's server --------------------------------------------------------------------------------------
OUTPUTS = [(ids.ANOMALY_MSG, "children"), (ids.ANOMALY_CHANGED, "data")]


def anomaly_request(button: str, row: dict | None, *, note="", machine=None, budget=None, site="all",
                    marked=None) -> dict:
    """The request the anomaly card's buttons send, made by hand."""
    inputs = [(b, "n_clicks", 1 if b == button else 0) for b in (ids.ANOMALY_MARK, ids.ANOMALY_UNDO,
                                                                  ids.ANOMALY_BUDGET_SET)]
    states = [(ids.FINDINGS_GRID, "selectedRows", [row] if row else []), (ids.ANOMALY_NOTE, "value", note),
              (ids.ANOMALY_MARKED, "value", marked),
              (ids.ANOMALY_MACHINE, "value", machine), (ids.ANOMALY_BUDGET, "value", budget),
              (ids.SITE, "value", site), (ids.PERIOD, "value", "30d"), (ids.ANOMALY_CHANGED, "data", 0)]
    return {
        "output": ".." + "...".join(f"{i}.{p}" for i, p in OUTPUTS) + "..",
        "outputs": [{"id": i, "property": p} for i, p in OUTPUTS],
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "changedPropIds": [f"{button}.n_clicks"],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in states],
    }


@pytest.fixture
def app(plant, users_path):
    app = create_app(str(plant[0]), users=users_path)
    yield app
    close_store(app)


def _message(response) -> str:
    return json.dumps(response.get_json()["response"][ids.ANOMALY_MSG]["children"], ensure_ascii=False)


def test_mark_and_undo_through_the_findings_callbacks(app, plant):
    db, events = plant
    path = preferences_path(str(db))
    row = {"machine": NORTH, "finding_id": finding_id(events[0])}
    anna = logged_in(app, "anna")
    response = anna.post("/_dash-update-component", json=anomaly_request(ids.ANOMALY_MARK, row, note="warm-up"))
    assert response.status_code == 200 and "marked as normal" in _message(response)
    assert response.get_json()["response"][ids.ANOMALY_CHANGED]["data"] == 1
    (pattern,) = read_preferences(path).normal_patterns
    assert (pattern.machine, pattern.note, pattern.marked_by) == (NORTH, "warm-up", "anna")
    response = anna.post("/_dash-update-component",
                         json=anomaly_request(ids.ANOMALY_BUDGET_SET, row, machine=NORTH, budget=0.25))
    assert response.status_code == 200 and read_preferences(path).alerts_per_week == {NORTH: 0.25}
    response = anna.post("/_dash-update-component", json=anomaly_request(ids.ANOMALY_UNDO, None, marked=pattern.id))
    assert "reported again" in _message(response) and read_preferences(path).normal_patterns == []


@pytest.mark.parametrize("user, button, status", [
    ("sam", ids.ANOMALY_MARK, 200),  # plant manager of south: north's finding is not among his
    ("sam", ids.ANOMALY_UNDO, 200),
    ("sam", ids.ANOMALY_BUDGET_SET, 200),
    ("carla", ids.ANOMALY_MARK, 204),  # CDO: refused at the guard (reads only)
    ("carla", ids.ANOMALY_BUDGET_SET, 204),
])
def test_hand_made_requests_change_nothing(app, plant, user, button, status):
    db, events = plant
    path = preferences_path(str(db))
    logged_in(app, "admin").post("/_dash-update-component", json=anomaly_request(
        ids.ANOMALY_MARK, {"machine": NORTH, "finding_id": finding_id(events[0])}, note="by admin"))
    before = path.read_bytes()
    assert b"by admin" in before
    row = {"machine": NORTH, "finding_id": finding_id(events[0])}
    response = logged_in(app, user).post("/_dash-update-component", json=anomaly_request(
        button, row, note="forged", machine=NORTH, budget=0.01, site="north" if user == "carla" else "all",
        marked=finding_id(events[0])))
    assert response.status_code == status
    if status == 200:
        assert "Not changed" in _message(response) and ids.ANOMALY_CHANGED not in response.get_json()["response"]
        assert "l1-m1" not in response.get_data(as_text=True)
    assert path.read_bytes() == before


def _post(client, outputs, inputs, states=(), changed=None) -> dict:
    response = client.post("/_dash-update-component", json={
        "output": ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..",
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "changedPropIds": [changed or f"{inputs[0][0]}.{inputs[0][1]}"],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in states]})
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_json()["response"]


def test_the_grid_labels_marked_findings_and_the_card_follows_the_selection(app, plant):
    db, events = plant
    view.mark_finding(USERS["anna"], preferences_path(str(db)), events, finding_id(events[0]), "warm-up")
    anna = logged_in(app, "anna")
    grid = _post(anna, [(ids.FINDINGS_GRID, "rowData"), (ids.FINDINGS_STATUS, "children"),
                        (ids.FINDINGS_EXPORT, "href"), (ids.FINDINGS_LOOP, "children")],
                 [(ids.SITE, "value", "all"), (ids.PERIOD, "value", "30d"), (ids.FINDINGS_KIND, "value", "all"),
                  (ids.FINDINGS_CHANGED, "data", 0), (ids.ANOMALY_CHANGED, "data", 1)])
    rows = grid[ids.FINDINGS_GRID]["rowData"]
    assert {r["machine"] for r in rows} == {NORTH}  # anna sees north only
    marked = [r for r in rows if r["marked_normal"]]
    assert [r["finding_id"] for r in marked] == [finding_id(events[0])] and "marked normal" in marked[0]["kind"]
    card_outputs = [(ids.ANOMALY_INFO, "children"), (ids.ANOMALY_MARK, "disabled"), (ids.ANOMALY_UNDO, "disabled"),
                    (ids.ANOMALY_BUDGET_SET, "disabled"), (ids.ANOMALY_MACHINE, "options"),
                    (ids.ANOMALY_MACHINE, "value"), (ids.ANOMALY_BUDGET, "value"), (ids.ANOMALY_NOTE, "value"),
                    (ids.ANOMALY_MARKED, "options"), (ids.ANOMALY_MARKED, "value")]
    card = _post(anna, card_outputs, [(ids.FINDINGS_GRID, "selectedRows", [marked[0]]), (ids.ANOMALY_CHANGED, "data", 1)])
    assert card[ids.ANOMALY_UNDO]["disabled"] is False and card[ids.ANOMALY_MARK]["disabled"] is True
    assert "by anna" in card[ids.ANOMALY_INFO]["children"]
    assert card[ids.ANOMALY_MARKED]["value"] == finding_id(events[0])
    assert [o["value"] for o in card[ids.ANOMALY_MARKED]["options"]] == [finding_id(events[0])]
    assert "warm-up" in card[ids.ANOMALY_MARKED]["options"][0]["label"]
    sam = _post(logged_in(app, "sam"), card_outputs, [(ids.FINDINGS_GRID, "selectedRows", []),
                                                        (ids.ANOMALY_CHANGED, "data", 0)])
    assert sam[ids.ANOMALY_MARKED]["options"] == [] and sam[ids.ANOMALY_UNDO]["disabled"] is True  # north's mark
    assert [o["value"] for o in card[ids.ANOMALY_MACHINE]["options"]] == [NORTH]  # south's machine not offered
    carla = _post(logged_in(app, "carla"), card_outputs,
                  [(ids.FINDINGS_GRID, "selectedRows", [marked[0]]), (ids.ANOMALY_CHANGED, "data", 0)])
    assert carla[ids.ANOMALY_UNDO]["disabled"] is True and carla[ids.ANOMALY_BUDGET_SET]["disabled"] is True
    assert "reads only" in carla[ids.ANOMALY_INFO]["children"]

"""Work orders on SQLite and PostgreSQL: opening and routing, status flow, audit log, verification, concurrency."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from core.errors import ConfigError
from core.model import Event
from core.orders import OrderConflict, OrdersError, OrdersUsageError
from core.orders.config import (
    SAMPLE_FILE,
    OrdersConfig,
    parse_config,
    read_orders_config,
)
from core.orders.db import ensure_schema, open_orders_db, schema_head
from core.orders.kpi import kpis
from core.orders.service import SYSTEM, Actor, OrderService

UTC = dt.UTC
D0 = dt.datetime(2026, 1, 5, tzinfo=UTC)
MANAGER = Actor("anna", "plant_manager", ("north", "south"))
ENGINEER_NORTH = Actor("eric", "engineer", ("north",))


def idle(day: int, kwh: float = 30.0, machine: str = "north/l1/cnc-01", kind: str = "idle_running") -> Event:
    start = D0 + dt.timedelta(days=day, hours=18)
    return Event(machine, kind, start, start + dt.timedelta(hours=3), kwh,
                 {"cost": kwh * 0.2, "co2_kg": kwh * 0.4, "severity": 0.3, "explanation": f"{machine} idled on day {day}"})


@pytest.fixture
def svc(db_url, clock):
    engine = open_orders_db(db_url)
    yield OrderService(engine, read_orders_config(SAMPLE_FILE), now=clock)
    engine.dispose()


def audit_rows(svc) -> int:
    with svc.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM order_audit").scalar_one()


def test_sync_opens_routes_and_updates_instead_of_duplicating(svc, clock):
    findings = [idle(d) for d in range(4)] + [
        idle(0, 80.0, "south/l2/imm-01", "excess_specific_energy"),  # no sample rule: dispatch queue
        idle(0, 5.0, "south/l2/imm-02", "excess_specific_energy"),  # below 50 kWh and severity 0.3 < 0.5
        Event("north/utilities/compressor-01", "meter_stuck", D0, D0 + dt.timedelta(hours=5), 0.0, {"severity": 0.8}),
    ]
    result = svc.sync(findings, run="r1")
    assert len(result.opened) == 3 and len(result.queued) == 1 and result.below_threshold == 1
    orders = {o["machine"]: o for o in svc.list()}
    cnc = orders["north/l1/cnc-01"]
    assert cnc["owner"] == "maintenance-north" and cnc["auto_dispatched"]
    assert cnc["excess_kwh"] == pytest.approx(120.0) and cnc["cost"] == pytest.approx(24.0)
    assert cnc["co2_kg"] == pytest.approx(48.0) and cnc["findings"] == 4
    assert cnc["due"] == (clock() + dt.timedelta(hours=120)).isoformat()
    observed_days = (findings[3].end - D0).total_seconds() / 86400  # the findings' span
    assert cnc["expected_savings_kwh"] == pytest.approx(120.0 * 365 / observed_days, rel=1e-3)
    assert cnc["link"].startswith("/machine/north/l1/cnc-01?from=2026-01-05T18%3A00%3A00Z&to=")
    assert orders["north/utilities/compressor-01"]["owner"] == "metering"  # data quality, by severity
    assert orders["south/l2/imm-01"]["owner"] is None and not orders["south/l2/imm-01"]["auto_dispatched"]

    again = svc.sync(findings, run="r1")  # idempotent: every finding is attached already
    assert again.findings_attached == 0 and not again.opened and len(svc.list()) == 3
    more = svc.sync([idle(4), idle(5)], run="r2")  # the pattern continues: the open order grows
    assert more.updated == [cnc["id"]] and not more.opened
    grown = svc.get(cnc["id"])
    assert grown["findings"] == 6 and grown["excess_kwh"] == pytest.approx(180.0)
    assert [a["action"] for a in grown["audit"]] == ["open", "update"]
    assert len(grown["evidence"]) == 6


def test_status_flow_audit_and_bad_transitions_change_nothing(svc, clock):
    svc.sync([idle(d) for d in range(3)])
    oid = svc.list()[0]["id"]
    for action, kwargs in (("start", {}), ("resolve", {}), ("reject", {"reason": ""})):
        before = svc.get(oid)
        with pytest.raises(OrdersUsageError):
            svc.transition(oid, action, MANAGER, **kwargs)
        assert svc.get(oid) == before
    with pytest.raises(OrdersUsageError, match="no order 999"):
        svc.transition(999, "ack", MANAGER)
    clock.advance(hours=2)
    assert svc.transition(oid, "ack", ENGINEER_NORTH, "on it")["status"] == "acknowledged"
    assert svc.transition(oid, "start", ENGINEER_NORTH)["status"] == "in_progress"
    with pytest.raises(OrdersUsageError, match="in the future"):
        svc.transition(oid, "resolve", ENGINEER_NORTH, at=clock() + dt.timedelta(days=1))
    clock.advance(hours=8)
    done = svc.transition(oid, "resolve", ENGINEER_NORTH, "timer fitted", at=D0 + dt.timedelta(days=3))
    assert done["status"] == "resolved" and done["resolved"] == (D0 + dt.timedelta(days=3)).isoformat()
    audit = svc.get(oid)["audit"]
    assert [(a["action"], a["from"], a["to"], a["actor"]) for a in audit] == [
        ("open", None, "open", "wattline"), ("ack", "open", "acknowledged", "eric"),
        ("start", "acknowledged", "in_progress", "eric"), ("resolve", "in_progress", "resolved", "eric")]
    assert audit[1]["comment"] == "on it" and audit[3]["comment"] == "timer fitted"


def test_permissions_role_and_site(svc):
    svc.sync([idle(0, 80.0, "south/l1/cnc-11"), idle(0, 80.0)])
    south = next(o for o in svc.list() if o["site"] == "south")
    rows = audit_rows(svc)
    with pytest.raises(OrdersUsageError, match="may not act on site 'south'"):
        svc.transition(south["id"], "ack", ENGINEER_NORTH)
    with pytest.raises(OrdersUsageError, match="role cdo"):
        svc.transition(south["id"], "ack", Actor("carl", "cdo"))
    with pytest.raises(OrdersUsageError, match="role engineer"):
        svc.assign(south["id"], "utilities", ENGINEER_NORTH)
    with pytest.raises(OrdersUsageError, match="unknown team 'nobody'"):
        svc.assign(south["id"], "nobody", MANAGER)
    assert audit_rows(svc) == rows and svc.get(south["id"])["version"] == south["version"]


def test_reassignment_counts_and_queue_dispatch(svc):
    svc.sync([idle(0, 80.0, "south/l2/imm-01", "excess_specific_energy")])
    oid = svc.list()[0]["id"]
    assert svc.assign(oid, "maintenance-south", MANAGER)["reassignments"] == 0  # dispatched from the queue
    assert svc.assign(oid, "utilities", MANAGER, "air side")["reassignments"] == 1
    final = svc.assign(oid, "maintenance-south", MANAGER, "back")
    assert final["reassignments"] == 2 and final["owner"] == "maintenance-south"
    result = kpis(svc.list())
    assert result["total"]["passed_on_more_than_once"] == 1 and result["total"]["auto_dispatch_rate"] == 0.0


def test_audit_log_cannot_be_edited_in_the_database(svc):
    svc.sync([idle(0, 80.0)])
    for statement in ("UPDATE order_audit SET comment = 'forged'", "DELETE FROM order_audit"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), svc.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert audit_rows(svc) == 1


def test_verification_by_absence_return_and_reopen(svc, clock):
    svc.sync([idle(d) for d in range(10)])  # 10 days of 30 kWh
    oid = svc.list()[0]["id"]
    svc.transition(oid, "ack", MANAGER)
    fix = D0 + dt.timedelta(days=11)
    svc.transition(oid, "resolve", MANAGER, at=fix)
    with pytest.raises(OrdersUsageError, match="needs 14 days"):
        svc.verify(fix + dt.timedelta(days=5), MANAGER, oid)
    # The waste comes back after the fix (4 days of 30 kWh: more than a quarter of the pre-fix waste over 14 days).
    back = svc.sync([idle(d) for d in range(12, 16)])
    assert back.returned == [oid] and svc.get(oid)["status"] == "in_progress"
    assert svc.verify(fix + dt.timedelta(days=30)) == []
    fix2 = D0 + dt.timedelta(days=16)
    svc.transition(oid, "resolve", MANAGER, at=fix2)
    # A small leftover after the fix (a false alarm, 10 kWh) does not send it back; it is subtracted from the savings.
    assert svc.sync([idle(17, 10.0)]).returned == []
    assert svc.get(oid)["status"] == "resolved"
    verified = svc.verify(fix2 + dt.timedelta(days=20))
    assert [o["id"] for o in verified] == [oid]
    o = verified[0]
    rate = 14 * 30.0 / ((fix2 - idle(0).start).total_seconds() / 86400)  # pre-fix kWh per observed day
    assert o["verified_kwh"] == pytest.approx(rate * 20 - 10.0, rel=1e-6) and o["verification_method"] == "absence"
    assert o["verified_uncertainty_kwh"] > 0 and o["verified_cost"] == pytest.approx(o["verified_kwh"] * 0.2)
    # A finding from before the fix changes nothing; one after it reopens the same order with its history.
    assert svc.sync([idle(-1)]).reopened == []
    again = svc.sync([idle(d) for d in range(40, 45)])
    assert again.reopened == [oid] and not again.opened
    reopened = svc.get(oid)
    assert reopened["status"] == "open" and reopened["reopened"] == 1 and len(svc.list()) == 1
    assert [a["action"] for a in reopened["audit"]][-2:] == ["verify", "reopen"]


def test_kpis_from_what_happened(svc, clock):
    svc.sync([idle(0, 80.0, "north/l1/cnc-01"), idle(0, 80.0, "north/l1/cnc-02"),
              idle(0, 80.0, "south/l2/imm-01", "excess_specific_energy")])
    by_machine = {o["machine"]: o["id"] for o in svc.list()}
    clock.advance(hours=2)
    svc.transition(by_machine["north/l1/cnc-01"], "ack", MANAGER)
    clock.advance(hours=4)
    svc.transition(by_machine["north/l1/cnc-02"], "ack", MANAGER)
    svc.transition(by_machine["north/l1/cnc-01"], "resolve", MANAGER, at=D0 + dt.timedelta(days=2))
    clock.advance(hours=200)  # past the 120 h due time
    svc.transition(by_machine["north/l1/cnc-02"], "resolve", MANAGER, at=D0 + dt.timedelta(days=2))
    result = kpis(svc.list(), now=clock())
    total = result["total"]
    assert total["orders"] == 3 and total["auto_dispatch_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert total["ack_hours_mean"] == pytest.approx(4.0) and total["close_hours_mean"] == pytest.approx((6 + 206) / 2)
    assert total["on_time_pct"] == pytest.approx(50.0) and total["in_dispatch_queue"] == 1
    assert total["open_by_age"] == {"<1d": 0, "1-7d": 0, "7-30d": 1, ">30d": 0}
    assert set(result["by_site"]) == {"north", "south"} and result["by_team"]["(queue)"]["orders"] == 1
    assert result["by_site"]["north"]["overdue"] == 0 and result["by_site"]["south"]["overdue"] == 1


def test_concurrent_writers_never_duplicate_or_lose_updates(db_url, clock):
    engines = [open_orders_db(db_url) for _ in range(4)]
    services = [OrderService(e, read_orders_config(SAMPLE_FILE), now=clock) for e in engines]
    findings = [idle(d, machine=f"north/l1/cnc-0{m}") for m in range(1, 6) for d in range(3)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(services))

    def run(fn):
        try:
            barrier.wait(timeout=30)
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(lambda s=s: s.sync(findings),)) for s in services]
    [t.start() for t in threads]
    [t.join(timeout=120) for t in threads]
    assert not errors, errors
    orders = services[0].list()
    assert len(orders) == 5 and all(o["findings"] == 3 for o in orders)
    with engines[0].connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM order_findings").scalar_one() == 15
    # Two dashboard workers and the CLI passing the same order on at once: every change lands, none is lost.
    oid = orders[0]["id"]
    teams = ["utilities", "metering", "maintenance-south", "utilities"]
    threads = [threading.Thread(target=run, args=(lambda s=s, t=t: s.assign(oid, t, MANAGER),))
               for s, t in zip(services, teams)]
    [t.start() for t in threads]
    [t.join(timeout=120) for t in threads]
    landed = [a for a in services[0].get(oid)["audit"] if a["action"] == "assign"]
    refused = [e for e in errors if isinstance(e, OrdersUsageError)]  # "already belongs to" when two in a row match
    assert not [e for e in errors if not isinstance(e, OrdersUsageError)], errors
    assert len(landed) + len(refused) == 4 and services[0].get(oid)["reassignments"] == len(landed)
    # Optimistic check: a caller holding an old version is refused, nothing changes.
    current = services[0].get(oid)
    with pytest.raises(OrderConflict):
        services[1].transition(oid, "ack", MANAGER, expected_version=current["version"] - 1)
    assert services[0].get(oid)["version"] == current["version"]
    for e in engines:
        e.dispose()


def test_schema_version_forward_and_newer_refused(db_url):
    from alembic import command

    from core.orders.db import _alembic, _engine

    engine = _engine(db_url)
    cfg, _ = _alembic()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.exec_driver_sql("SELECT count(*) FROM orders")
    assert ensure_schema(engine) == schema_head() == "0002"  # migrated forward on open
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM order_deliveries").scalar_one() == 0
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0999'")
    engine.dispose()
    with pytest.raises(OrdersError, match=r"newer than this Wattline knows.*downgrades are refused"):
        open_orders_db(db_url)


def test_rules_naming_an_unknown_team_are_refused(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("teams:\n  - id: a\nrules:\n  - match: {site: north}\n    team: b\n")
    with pytest.raises(ConfigError, match=r"rules\.yaml.*rules\[0\]\.team: unknown team 'b'; valid teams: a"):
        read_orders_config(path)
    with pytest.raises(ConfigError, match="unknown kind 'idle'"):
        parse_config(OrdersConfig, {"teams": [{"id": "a"}], "rules": [{"match": {"kind": "idle"}, "team": "a"}]})
    assert SYSTEM.may("verify", "anywhere")


def _sync_in_process(db_url: str, start: object, out: object) -> None:
    """Child process: open the database itself and sync the same findings as its siblings."""
    engine = open_orders_db(db_url)
    svc = OrderService(engine, read_orders_config(SAMPLE_FILE))
    start.wait(60)
    try:
        out.put(svc.sync([idle(d, machine=f"south/l1/cnc-1{m}") for m in range(4) for d in range(3)]).to_dict())
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out.put(repr(exc))
    engine.dispose()


def test_concurrent_processes_open_each_order_once(db_url):
    import multiprocessing

    open_orders_db(db_url).dispose()  # the schema exists before the race (its own migration race is locked too)
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_sync_in_process, args=(db_url, start, out)) for _ in range(3)]
    [p.start() for p in procs]
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    [p.join(timeout=60) for p in procs]
    assert all(isinstance(r, dict) for r in results), results
    assert sum(len(r["opened"]) for r in results) == 4  # each pattern opened by exactly one process
    assert sum(r["findings_attached"] for r in results) == 12
    engine = open_orders_db(db_url)
    svc = OrderService(engine)
    assert len(svc.list()) == 4 and all(o["findings"] == 3 for o in svc.list())
    engine.dispose()

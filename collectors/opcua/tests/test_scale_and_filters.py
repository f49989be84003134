"""10,000 monitored nodes on one server, and deadband / data-change trigger settings, against node-opcua (npm).

Every test runs the real collector into a SQLite store against ``node_server/server.js`` on a free localhost port. The
deadband and trigger tests use the server's ``--filter-vars`` variables, whose values follow a known step pattern
(see server.js), so that the stored values show exactly which changes the server reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import subprocess
import time

import pytest
from asyncua import Client, ua
from asyncua.client.ua_client import UaClient

from collectors.opcua.collector import Collector
from collectors.opcua.tests.conftest import fast_config
from collectors.opcua.tests.plant_server import MACHINE_VARS, NS_URI, free_port, start_plant_server, wait_for
from collectors.opcua.tests.test_node_opcua import run_node_server, stop_node_server
from core.model import status_severity
from core.storage.sqlite import SQLiteStore

pytestmark = pytest.mark.integration

FILTERS = "north/l1/filters"
UNCERTAIN_LAST_USABLE = 0x40900000


def nid(path: str) -> str:
    return f"nsu={NS_URI};s={path}"


def start_server(tmp_path, *args: str) -> tuple[subprocess.Popen, str]:
    """Start server.js with ``args`` on a free port; returns the process and its endpoint."""
    port = free_port()
    proc = run_node_server(port, tmp_path, *args)
    return proc, f"opc.tcp://127.0.0.1:{port}/wattline"


@pytest.fixture
def item_calls(monkeypatch):
    """Every CreateMonitoredItems request the collector sends, with the server's results (or the error)."""
    calls: list[dict] = []
    original = UaClient.create_monitored_items

    async def recording(self, params):
        call = {"params": params, "results": None, "error": None}
        calls.append(call)
        try:
            call["results"] = await original(self, params)
        except Exception as exc:
            call["error"] = exc
            raise
        return call["results"]

    monkeypatch.setattr(UaClient, "create_monitored_items", recording)
    return calls


def collect(cfg, store, until, timeout: float):
    """Run the collector until ``until(collector)`` holds (or ``timeout`` [s], generous: a loaded machine is slow);
    returns the stopped collector. Prints how long the condition took."""

    async def main():
        col = Collector(cfg, store)
        stop = asyncio.Event()
        task = asyncio.create_task(col.run(stop))
        t0 = time.monotonic()
        reached = await wait_for(lambda: until(col), timeout, interval=0.1)
        print(f"collect: condition reached={reached} after {time.monotonic() - t0:.1f} s")
        stop.set()
        await task
        return col, reached

    col, reached = asyncio.run(main())
    assert reached, (col.received, col.sessions[0].last_error, list(col.notices)[-5:])
    return col


# -- 10,000 monitored nodes --------------------------------------------------------------------------------------------
MACHINES, EXTRA = 10, 997  # 3 named + 997 extra variables per machine = 10,000 series (+ 10 MaterialId tag sources)


def ten_thousand_groups() -> list[dict]:
    out = []
    for m in range(MACHINES):
        base = f"north/l1/m{m}"
        nodes = [{"node_id": nid(f"{base}/ActivePower"), "field": "active_power_kw"},
                 {"node_id": nid(f"{base}/ActiveEnergy"), "field": "energy_kwh"},
                 {"node_id": nid(f"{base}/MaterialConsumed"), "measurement": "material", "field": "consumed_kg",
                  "tags_from_nodes": {"material": nid(f"{base}/MaterialId")}}]
        nodes += [{"node_id": nid(f"{base}/Extra{k:04d}"), "measurement": "opcua", "field": f"extra{k:04d}"}
                  for k in range(EXTRA)]
        # Sampling at the server's change period: 10,000 sampling timers at 50 ms would only load the server.
        out.append({"name": base, "measurement": "electrical", "sampling_interval_ms": 500,
                    "publishing_interval_ms": 250, "tags": {"site": "north", "line": "l1", "machine": f"m{m}"},
                    "nodes": nodes})
    return out


async def _too_many_items_refused(endpoint: str, n: int) -> str:
    """Send one CreateMonitoredItems with ``n`` items from a plain asyncua client; the server's answer."""
    client = Client(endpoint, timeout=10)
    await client.connect()
    try:
        params = ua.CreateSubscriptionParameters(RequestedPublishingInterval=1000, RequestedLifetimeCount=100,
                                                 RequestedMaxKeepAliveCount=10, PublishingEnabled=True)
        sub = await client.uaclient.create_subscription(params, lambda _result: None)
        req = ua.CreateMonitoredItemsParameters(SubscriptionId=sub.SubscriptionId,
                                                TimestampsToReturn=ua.TimestampsToReturn.Both)
        ns = (await client.get_namespace_array()).index(NS_URI)
        for i in range(n):
            rv = ua.ReadValueId(NodeId=ua.NodeId(f"north/l1/m{i % MACHINES}/Extra{i // MACHINES:04d}", ns),
                                AttributeId=ua.AttributeIds.Value)
            mp = ua.MonitoringParameters(ClientHandle=i, SamplingInterval=1000, QueueSize=1, DiscardOldest=True)
            req.ItemsToCreate.append(ua.MonitoredItemCreateRequest(ItemToMonitor=rv, RequestedParameters=mp,
                                                                   MonitoringMode=ua.MonitoringMode.Reporting))
        try:
            results = await client.uaclient.create_monitored_items(req)
        except ua.UaStatusCodeError as exc:
            return ua.StatusCode(exc.code).name
        return f"accepted {len(results)} items"
    finally:
        await client.disconnect()


def stored_series(path) -> int:
    """Number of series with at least one stored value in the SQLite file ``path`` (its own short connection)."""
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        return conn.execute("SELECT count(*) FROM series").fetchone()[0]


@pytest.mark.slow  # scale: the splitting itself is in the default suite (test_collector, test_node_opcua)
def test_10000_monitored_nodes_on_one_node_opcua_server(tmp_path, item_calls):
    proc, endpoint = start_server(tmp_path, "--machines", str(MACHINES), "--extra", str(EXTRA), "--period", "1000")
    try:
        cfg = fast_config(endpoint, tmp_path, ten_thousand_groups(), timeouts={})  # the product's timeouts
        store = SQLiteStore(tmp_path / "w.db")
        # 10,000 initial values, then changes (every node changes once a second). Waits until every series is stored:
        # on a loaded machine the last CreateMonitoredItems calls answer late, and a count of values alone was
        # reached while the last 2,000 nodes had sent nothing yet.
        col = collect(cfg, store, lambda c: c.written >= 25_000 and stored_series(tmp_path / "w.db") == 10_000, 600)
        item_calls = list(item_calls)  # the collector's calls only, not the check's below
        refused = asyncio.run(_too_many_items_refused(endpoint, 1001))
    finally:
        stop_node_server(proc)
    s = col.sessions[0]
    # The server's limit is real: one call with 1,001 items is refused as a whole...
    assert refused == "BadTooManyOperations"
    # ...so the collector read it and split its 10,010 items (10,000 series + 10 tag sources) to fit.
    assert s.limits["MaxMonitoredItemsPerCall"] == 1000
    assert col.status()["servers"][0]["operation_limits"]["MaxMonitoredItemsPerCall"] == 1000
    sizes = [len(c["params"].ItemsToCreate) for c in item_calls]
    assert all(c["error"] is None for c in item_calls), [c["error"] for c in item_calls]
    assert sum(sizes) == 10_010 and max(sizes) <= 1000 and len(sizes) == s.monitored_item_calls == 11
    assert all(r.StatusCode.is_good() for c in item_calls for r in c["results"])
    assert not s.bad_nodes and s.reconnects == 0 and s.connect_attempts == 1
    # Every one of the 10,000 series has stored values; nothing received was lost.
    series = store.series()
    assert len(series) == 10_000 and min(x.count for x in series) >= 1
    assert sum(x.count for x in series) == col.written == col.received
    assert {x.key.tag_dict.get("material") for x in series if x.key.measurement == "material"} == {"steel-s235"}
    # Extra values are the server's running sequence numbers: the ten machines' last values are all different.
    last = store.last_values("opcua", "extra0996")
    assert len(last) == MACHINES and last["value"].nunique() == MACHINES


@pytest.mark.slow  # scale, as above
def test_10000_monitored_nodes_on_one_asyncua_server_with_500_per_call(tmp_path, item_calls):
    """100 machines x 100 numeric variables on the asyncua test plant, which says MaxMonitoredItemsPerCall = 500."""
    machines = [f"m{i:03d}" for i in range(100)]
    numeric = [name for name, vtype, _v, _u in MACHINE_VARS if vtype != ua.VariantType.String] + ["MachineState"]
    extra = 100 - len(numeric)

    def group(m: str) -> dict:
        base = f"north/l1/{m}"
        nodes = [{"node_id": nid(f"{base}/{name}"), "measurement": "opcua", "field": f"v_{name.lower()}"}
                 for name in numeric]
        nodes[0]["tags_from_nodes"] = {"material": nid(f"{base}/MaterialId")}
        nodes += [{"node_id": nid(f"{base}/Extra{k:04d}"), "measurement": "opcua", "field": f"extra{k:04d}"}
                  for k in range(extra)]
        return {"name": m, "tags": {"machine": m}, "nodes": nodes}

    async def main():
        srv = await start_plant_server(layout={"north": {"l1": machines}}, extra_vars_per_machine=extra)
        try:
            await srv.server.get_node(ua.NodeId(11714, 0)).write_value(ua.Variant(500, ua.VariantType.UInt32))
            cfg = fast_config(srv.endpoint, tmp_path, [group(m) for m in machines], timeouts={})
            store = SQLiteStore(tmp_path / "w.db")
            col = Collector(cfg, store)
            stop = asyncio.Event()
            task = asyncio.create_task(col.run(stop))
            reached = await wait_for(lambda: col.written >= 10_000, 600, interval=0.1)
            # One more value for one node in every 10th machine, after the subscription stands.
            for m in machines[::10]:
                await srv.write(f"north/l1/{m}/Extra0000", 42.0)
            reached = reached and await wait_for(lambda: col.written >= 10_010, 120, interval=0.1)
            stop.set()
            await task
            return col, store, reached
        finally:
            await srv.stop()

    col, store, reached = asyncio.run(main())
    s = col.sessions[0]
    assert reached, (col.written, s.last_error)
    assert s.limits["MaxMonitoredItemsPerCall"] == 500
    sizes = [len(c["params"].ItemsToCreate) for c in item_calls]
    # 10,000 series + 100 MaterialId tag sources, in calls of at most 500.
    assert sum(sizes) == 10_100 and max(sizes) == 500 and len(sizes) == s.monitored_item_calls == 21
    assert all(r.StatusCode.is_good() for c in item_calls for r in c["results"])
    assert not s.bad_nodes and s.reconnects == 0
    series = store.series()
    assert len(series) == 10_000 and min(x.count for x in series) >= 1
    assert sum(x.count for x in series) == col.written == col.received == 10_010
    tagged = [x.key.tag_dict.get("material") for x in series if x.key.field == f"v_{numeric[0].lower()}"]
    assert len(tagged) == 100 and set(tagged) == {"steel-s235"}
    assert sorted(store.last_values("opcua", "extra0000")["value"]).count(42.0) == 10


# -- deadband and trigger ----------------------------------------------------------------------------------------------
def filter_group(name: str, nodes: list[dict], **settings) -> dict:
    """A group of filter-test nodes; ``tags: {case: name}`` keeps each group's series apart."""
    # Queue of 100 samples (10 s of changes): the tests count every change, and on a loaded CI machine a publish can
    # stall for over a second, which the default queue of 10 (1 s of changes here) would drop at the server.
    return {"name": name, "measurement": "opcua", "tags": {"case": name}, "sampling_interval_ms": 50,
            "publishing_interval_ms": 100, "queue_size": 100, "nodes": nodes, **settings}


def stored(store, field: str, case: str):
    frame = store.query("opcua", field, 0, 2**62, tags={"case": case})
    return list(frame["value"]), [int(s) for s in frame["status"]], list(frame["time"])


def steps(values: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(values)]


def sent_filters(col, item_calls) -> dict:
    """(group, field) -> the filter of each created item from the recorded requests (None: no filter sent)."""
    nodes = col.sessions[0].nodes
    out = {}
    for call in item_calls:
        for item in call["params"].ItemsToCreate:
            node = nodes[item.RequestedParameters.ClientHandle]
            flt = item.RequestedParameters.Filter
            if isinstance(flt, ua.ExtensionObject) and flt.Body is None:  # asyncua's encoding of "no filter"
                flt = None
            out[(node.group.name, node.state.field)] = flt
    return out


def test_deadband_absolute_and_percent(tmp_path, item_calls):
    """Step and StepAnalog (EURange 0..200) rise by 1 every 100 ms; State (an enumeration) cycles 0..3."""
    proc, endpoint = start_server(tmp_path, "--machines", "1", "--period", "100", "--filter-vars")
    step, analog, state = nid(f"{FILTERS}/Step"), nid(f"{FILTERS}/StepAnalog"), nid(f"{FILTERS}/State")
    groups = [
        filter_group("none", [{"node_id": step, "field": "step"}, {"node_id": analog, "field": "analog"}]),
        filter_group("absolute", [{"node_id": step, "field": "step"},
                                  # A node's own deadband replaces the group's: none here.
                                  {"node_id": analog, "field": "analog", "deadband": {"type": "none"}},
                                  # An enumeration (state code) gets no deadband: every change of state counts.
                                  {"node_id": state, "field": "state"}],
                     deadband={"type": "absolute", "value": 2.5}),
        filter_group("percent", [{"node_id": analog, "field": "analog"}], deadband={"type": "percent", "value": 2.5}),
    ]
    try:
        cfg = fast_config(endpoint, tmp_path, groups)
        store = SQLiteStore(tmp_path / "w.db")
        col = collect(cfg, store, lambda c: c.written >= 120, 120)
    finally:
        stop_node_server(proc)
    s = col.sessions[0]
    assert not s.bad_nodes and col.written == col.received

    # The filter reaches the server: the CreateMonitoredItems request carries it...
    filters = sent_filters(col, item_calls)
    assert filters[("none", "step")] is None and filters[("none", "analog")] is None
    assert filters[("absolute", "analog")] is None  # overridden by the node's deadband: none
    assert filters[("absolute", "state")] is None  # an enumeration: the group's deadband is not sent
    absolute, percent = filters[("absolute", "step")], filters[("percent", "analog")]
    assert isinstance(absolute, ua.DataChangeFilter) and isinstance(percent, ua.DataChangeFilter)
    assert (absolute.DeadbandType, absolute.DeadbandValue) == (ua.DeadbandType.Absolute, 2.5)
    assert (percent.DeadbandType, percent.DeadbandValue) == (ua.DeadbandType.Percent, 2.5)
    assert absolute.Trigger == percent.Trigger == ua.DataChangeTrigger.StatusValue

    # ...and the server applied it; the stored values show it.
    every, _, _ = stored(store, "step", "none")
    assert len(every) >= 20 and set(steps(every)) == {1.0}  # no deadband: every change is stored
    assert set(steps(stored(store, "analog", "none")[0])) == {1.0}
    assert set(steps(stored(store, "analog", "absolute")[0])) == {1.0}
    states = stored(store, "state", "absolute")[0]
    assert len(states) >= 20 and set(steps(states)) == {1.0, -3.0}, states  # 0, 1, 2, 3, 0, ...: every change
    # Absolute 2.5: a change is reported when it exceeds 2.5 from the last reported value, i.e. every 3rd step.
    db_abs, _, _ = stored(store, "step", "absolute")
    assert len(db_abs) >= 6 and set(steps(db_abs)) == {3.0}, db_abs
    # Percent 2.5 of the EURange 0..200 is 5: every 6th step (an absolute 2.5 would give every 3rd).
    db_pct, _, _ = stored(store, "analog", "percent")
    assert len(db_pct) >= 3 and set(steps(db_pct)) == {6.0}, db_pct
    span = every[-1] - every[0]
    assert len(db_abs) <= span / 3 + 2 and len(db_pct) <= span / 6 + 2


def test_data_change_trigger_status_value_timestamp(tmp_path, item_calls):
    """Trigger: value floor(t/2), status flips Good/Uncertain every 4 ticks, new source timestamp every tick."""
    proc, endpoint = start_server(tmp_path, "--machines", "1", "--period", "100", "--filter-vars")
    trig = [{"node_id": nid(f"{FILTERS}/Trigger"), "field": "trigger"}]
    groups = [filter_group("status", trig, trigger="status"),
              filter_group("status_value", trig),  # the default: no filter sent
              filter_group("status_value_timestamp", trig, trigger="status_value_timestamp")]
    try:
        cfg = fast_config(endpoint, tmp_path, groups)
        store = SQLiteStore(tmp_path / "w.db")
        col = collect(cfg, store, lambda c: c.written >= 100, 120)
    finally:
        stop_node_server(proc)
    assert not col.sessions[0].bad_nodes and col.written == col.received

    filters = sent_filters(col, item_calls)
    assert filters[("status_value", "trigger")] is None
    for case, trigger in (("status", ua.DataChangeTrigger.Status),
                          ("status_value_timestamp", ua.DataChangeTrigger.StatusValueTimestamp)):
        flt = filters[(case, "trigger")]
        assert isinstance(flt, ua.DataChangeFilter) and flt.Trigger == trigger and flt.DeadbandType == 0

    _, st_s, st_t = stored(store, "trigger", "status")
    sv_v, sv_s, sv_t = stored(store, "trigger", "status_value")
    ts_v, _, ts_t = stored(store, "trigger", "status_value_timestamp")
    assert {status_severity(x) for x in sv_s} == {"good", "uncertain"}
    assert set(sv_s) == {0, UNCERTAIN_LAST_USABLE}
    # Status: only status changes are reported, so consecutive rows alternate Good / Uncertain.
    assert len(st_s) >= 4 and all(a != b for a, b in itertools.pairwise(st_s)), st_s
    # StatusValue: every value change once (the value rises by 1 every 2 ticks), no row for a timestamp alone.
    assert len(sv_v) >= 8 and set(steps(sv_v)) == {1.0}, sv_v
    # StatusValueTimestamp: also the ticks where only the source timestamp changed: each value is stored twice.
    assert set(steps(ts_v)) == {0.0, 1.0} and len(set(ts_t)) == len(ts_t)

    # In the time span all three cover: about 1 : 2 : 4 rows.
    lo, hi = max(st_t[0], sv_t[0], ts_t[0]), min(st_t[-1], sv_t[-1], ts_t[-1])
    n_st, n_sv, n_ts = (sum(lo <= t <= hi for t in ts) for ts in (st_t, sv_t, ts_t))
    assert n_st >= 3 and 1.5 * n_st < n_sv and 1.5 * n_sv < n_ts, (n_st, n_sv, n_ts)


def test_filter_refused_by_the_server_is_a_reported_bad_node(tmp_path, item_calls):
    """Percent deadband on MaterialConsumed (no EURange) is refused; the node is reported, the others flow."""
    proc, endpoint = start_server(tmp_path, "--machines", "1", "--period", "100", "--filter-vars")
    refused = nid("north/l1/m0/MaterialConsumed")
    groups = [
        filter_group("percent", [{"node_id": nid("north/l1/m0/ActivePower"), "field": "power"},  # EURange 0..1000
                                 {"node_id": refused, "field": "consumed"},
                                 {"node_id": nid(f"{FILTERS}/StepAnalog"), "field": "analog"}],
                     deadband={"type": "percent", "value": 1.0}),
        filter_group("plain", [{"node_id": nid(f"{FILTERS}/Step"), "field": "step"}]),
    ]
    try:
        cfg = fast_config(endpoint, tmp_path, groups)
        store = SQLiteStore(tmp_path / "w.db")
        col = collect(cfg, store, lambda c: c.written >= 40, 120)
    finally:
        stop_node_server(proc)
    s = col.sessions[0]
    # The server's answer for that one item, from the recorded response.
    results = {s.nodes[i.RequestedParameters.ClientHandle].address: r.StatusCode
               for c in item_calls for i, r in zip(c["params"].ItemsToCreate, c["results"])}
    assert results[refused].name == "BadMonitoredItemFilterUnsupported"
    assert all(code.is_good() for addr, code in results.items() if addr != refused)
    assert list(s.bad_nodes) == [refused] and "BadMonitoredItemFilterUnsupported" in s.bad_nodes[refused]
    notices = [n for n in col.notices if n.details.get("node") == refused]
    assert len(notices) == 1
    notice = notices[0]
    assert notice.name == "collector.node.filter_refused"
    assert refused in notice.message and "deadband percent 1.0" in notice.message, notice.message
    assert notice.details["filter"] == {"deadband": "percent", "value": 1.0, "trigger": "status_value"}
    assert notice.details["group"] == "percent"
    assert col.status()["servers"][0]["bad_nodes"] == [{"node": refused, "reason": s.bad_nodes[refused]}]
    # The other nodes keep flowing, the refused one stored nothing.
    assert len(stored(store, "step", "plain")[0]) >= 10
    assert len(stored(store, "analog", "percent")[0]) >= 2 and len(stored(store, "power", "percent")[0]) >= 1
    assert not any(x.key.field == "consumed" for x in store.series())
    assert col.written == col.received and s.reconnects == 0

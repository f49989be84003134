"""Supervision, backoff and the one spool: an injected failure is reported and loses nothing (exact counts)."""

from __future__ import annotations

import asyncio
import threading

from collectors.buffer import BatchWriter
from collectors.tests.test_buffer import FlakyStore, rows, stored_count
from core.backoff import Backoff
from core.spool import RowSpool
from core.storage.influx_spool import Spool
from core.storage.sqlite import SQLiteStore
from core.supervise import Supervisor
from tests.support import wait_for


def fail_once(monkeypatch, cls, name, exc=None):
    """Make ``cls.name`` raise ``exc`` on its first call only; return the list of calls that raised."""
    exc = exc if exc is not None else RuntimeError("injected failure (test)")
    original = getattr(cls, name)
    raised: list[int] = []
    lock = threading.Lock()

    def wrapper(self, *args, **kwargs):
        with lock:
            first = not raised
            if first:
                raised.append(1)
        if first:
            raise exc
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, wrapper)
    return raised


def test_backoff_grows_caps_jitters_and_resets():
    b = Backoff(0.5, 3.0, jitter=(1.0, 1.0))
    assert [b.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next_delay() == 0.5
    j = Backoff(1.0, 1.0, jitter=(0.5, 1.0))
    delays = [j.next_delay() for _ in range(200)]
    assert all(0.5 <= d <= 1.0 for d in delays) and len(set(delays)) > 100  # really random


def test_writer_crash_is_reported_restarted_and_loses_nothing(tmp_path, monkeypatch):
    raised = fail_once(monkeypatch, BatchWriter, "_write")
    notices = []
    sup = Supervisor(notices.append, prefix="collector", restart_min_s=0.05)
    store = SQLiteStore(tmp_path / "a.db")
    w = BatchWriter(store, RowSpool(tmp_path / "sp"), batch_size=500, flush_interval_s=0.05, supervisor=sup).start()
    for k in range(10):
        w.add_rows(rows(k * 500, 500))
    wait_for(lambda: w.written == 5000, 30, "all 5,000 values written after the writer restarted")
    w.close()
    assert raised == [1]
    assert stored_count(store) == 5000 and w.received == 5000 and w.backlog == 0 and w.spooled == 0
    assert sup.failures["writer"] == 1 and sup.restarts["writer"] == 1 and sup.fatal is None
    failed = [n for n in notices if n.name == "collector.task.failed"]
    assert len(failed) == 1 and failed[0].details["task"] == "writer" and failed[0].level == "error"
    assert "injected failure" in failed[0].details["error"] and failed[0].details["restarting"] is True
    assert w.stats()["task_failures"] == 1


def test_spool_crash_during_outage_gives_the_batch_back(tmp_path, monkeypatch):
    # The first spool write raises (not an OSError, which the writer handles itself): whichever thread held the
    # batch (writer or spill) crashes, the supervisor restarts it, and the batch is still counted once.
    raised = fail_once(monkeypatch, RowSpool, "append")
    notices = []
    sup = Supervisor(notices.append, prefix="collector", restart_min_s=0.05)
    store = FlakyStore(tmp_path / "a.db")
    store.down.set()
    spool = RowSpool(tmp_path / "sp")
    w = BatchWriter(store, spool, batch_size=300, flush_interval_s=0.05, retry_interval_s=0.1, max_memory_values=600,
                    supervisor=sup).start()
    for k in range(10):
        w.add_rows(rows(k * 300, 300))
    wait_for(lambda: raised and spool.count_values() >= 1500, 30, "the outage to reach the spool after the crash")
    store.down.clear()
    wait_for(lambda: w.written == 3000, 30, "every value stored after the store came back")
    w.close()
    assert stored_count(store) == 3000 and len(spool) == 0 and w.dropped == 0
    assert sum(sup.failures.values()) == 1 and [n.name for n in notices].count("collector.task.failed") == 1


def test_supervisor_gives_up_a_job_that_must_not_restart():
    notices, fatal = [], []
    sup = Supervisor(notices.append, prefix="x", on_fatal=lambda name, exc: fatal.append((name, str(exc))))

    def job():
        raise ValueError("broken for good")

    sup.thread("once", job, restart=False).join(10)
    assert fatal == [("once", "broken for good")] and sup.fatal[0] == "once"
    assert [n.name for n in notices] == ["x.task.failed", "x.task.gave_up"]
    assert sup.failures["once"] == 1 and sup.restarts["once"] == 0


def test_supervised_task_restarts_until_it_succeeds_and_gives_up_after_max_restarts():
    async def main():
        notices = []
        sup = Supervisor(notices.append, prefix="t", restart_min_s=0.01, restart_max_s=0.05, max_restarts=2)
        calls = {"flaky": 0, "broken": 0}

        async def flaky():
            calls["flaky"] += 1
            if calls["flaky"] < 3:
                raise RuntimeError(f"attempt {calls['flaky']}")
            return "done"

        async def broken():
            calls["broken"] += 1
            raise RuntimeError("always")

        ok = await asyncio.wait_for(sup.task("flaky", flaky), 10)
        gave_up = await asyncio.wait_for(sup.task("broken", broken), 10)
        return sup, notices, calls, ok, gave_up

    sup, notices, calls, ok, gave_up = asyncio.run(main())
    assert ok == "done" and calls["flaky"] == 3 and sup.restarts["flaky"] == 2
    assert gave_up is None and calls["broken"] == 3 and sup.fatal[0] == "broken"
    assert [n.details["task"] for n in notices if n.name == "t.task.gave_up"] == ["broken"]


def test_one_spool_implementation_counts_drops_for_rows_and_line_protocol(tmp_path):
    seen = []
    row_spool = RowSpool(tmp_path / "rows", max_bytes=20_000)
    row_spool.on_drop = lambda n, reason: seen.append(("rows", n))
    for k in range(10):
        row_spool.append(rows(k * 100, 100))
    assert row_spool.full and row_spool.dropped_values == sum(n for _, n in seen) > 0
    assert row_spool.count_values() + row_spool.dropped_values == 1000
    lp_spool = Spool(tmp_path / "lp", max_bytes=1000)
    lp_spool.on_drop = lambda n, reason: seen.append(("lines", n))
    for k in range(10):
        lp_spool.append("\n".join(f"m,machine=a v={i} {k * 100 + i}" for i in range(10)).encode())
    lines = sum(lp_spool.count_items(d) for _, d in lp_spool.oldest_batch(10_000, 1 << 30))
    assert lp_spool.dropped_lines == sum(n for kind, n in seen if kind == "lines") > 0
    assert lines + lp_spool.dropped_lines == 100 and lp_spool.bytes <= 1000
    assert type(lp_spool).__mro__[1] is type(row_spool).__mro__[1]  # one implementation underneath


def test_checkpoint_thread_of_the_writer_store_is_supervised(tmp_path, monkeypatch):
    raised = fail_once(monkeypatch, SQLiteStore, "_checkpoint_loop")
    store = SQLiteStore(tmp_path / "a.db")
    store.checkpoint_in_background(interval_s=0.05)
    wait_for(lambda: store.supervisor.restarts["sqlite-checkpoint"] == 1, 30, "the checkpointer restarted")
    store.write_batch(BatchWriter(store)._batch(rows(0, 500)))
    wait_for(lambda: store._checkpointer.is_alive(), 10, "the restarted checkpoint loop running")
    store.close()
    assert raised == [1] and store.supervisor.failures["sqlite-checkpoint"] == 1
    assert stored_count(SQLiteStore(tmp_path / "a.db")) == 500

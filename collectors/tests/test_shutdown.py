"""Shutdown always completes: a wedged writer process is killed with its rows spooled; the child honours SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from collectors.buffer import BatchWriter
from collectors.tests.test_buffer import rows, stored_count
from core.spool import RowSpool
from core.storage.process import ProcessStore
from core.storage.sqlite import SQLiteStore
from tests.support import wait_for

pytestmark = pytest.mark.integration  # the store's writer child process


def test_wedged_writer_process_is_killed_at_close_and_its_rows_spooled(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = ProcessStore(url)
    spool = RowSpool(tmp_path / "sp")
    w = BatchWriter(store, spool, batch_size=500, flush_interval_s=0.05, abort_grace_s=1.0).start()
    child = store.pid
    try:
        w.add_rows(rows(0, 2000))
        wait_for(lambda: w.written == 2000, 30, "the first 2,000 values stored")
        os.kill(child, signal.SIGSTOP)  # the injected hang: the child stops answering mid-stream
        w.add_rows(rows(2000, 3000))
        wait_for(lambda: w.stats()["backlog"] == 3000 and w._in_flight > 0, 30, "a write stuck in the child")
        t0 = time.monotonic()
        w.close(timeout_s=1.0)
        took = time.monotonic() - t0
    finally:
        with contextlib.suppress(ProcessLookupError):  # normally dead already (aborted)
            os.kill(child, signal.SIGKILL)
        store.close(timeout_s=5)
    print(f"close() with a wedged writer process took {took:.2f} s (timeout 1 s + grace 2 x 1 s)")
    assert took < 1.0 + 2 * 1.0 + 10.0  # generous: the bound is the timeout plus two grace periods plus spooling
    assert store.aborts == 1
    assert w.written == 2000 and w.spooled == 3000 and spool.count_values() == 3000 and w.backlog == 0
    # Next start: the spool is replayed, every value stored exactly once.
    store2 = SQLiteStore(tmp_path / "a.db")
    w2 = BatchWriter(store2, RowSpool(tmp_path / "sp"), flush_interval_s=0.05).start()
    wait_for(lambda: w2.replayed == 3000, 30, "the spool replayed")
    w2.close()
    assert stored_count(store2) == 5000


def test_call_without_answer_times_out_and_the_next_call_starts_a_new_child(tmp_path):
    store = ProcessStore(f"sqlite:///{tmp_path / 'a.db'}", call_timeout_s=1.0)
    spool = RowSpool(tmp_path / "sp")
    w = BatchWriter(store, spool, batch_size=100, flush_interval_s=0.05, retry_interval_s=0.1).start()
    try:
        first = store.pid
        os.kill(first, signal.SIGSTOP)
        w.add_rows(rows(0, 1000))
        wait_for(lambda: w.written == 1000, 60, "every value stored through a new writer process")
        assert store.pid not in (None, first) and w.write_errors >= 1
    finally:
        w.close()
        store.close(timeout_s=5)
        with contextlib.suppress(ProcessLookupError):
            os.kill(first, signal.SIGKILL)
    assert stored_count(SQLiteStore(tmp_path / "a.db")) == 1000


def test_writer_process_honours_sigterm_after_its_grace_period(tmp_path):
    store = ProcessStore(f"sqlite:///{tmp_path / 'a.db'}", term_grace_s=0.5)
    w = BatchWriter(store, RowSpool(tmp_path / "sp"), batch_size=100, flush_interval_s=0.05,
                    retry_interval_s=0.1).start()
    try:
        w.add_rows(rows(0, 300))
        wait_for(lambda: w.written == 300, 30, "300 values stored")
        proc = store._proc
        os.kill(proc.pid, signal.SIGTERM)
        wait_for(lambda: not proc.is_alive(), 30, "the writer process to end after SIGTERM")
        assert proc.exitcode == 0  # it closed the store and ended cleanly, not killed
        w.add_rows(rows(300, 700))
        wait_for(lambda: w.written == 1000, 30, "the next writes through a new writer process")
    finally:
        w.close()
        store.close(timeout_s=5)
    assert stored_count(SQLiteStore(tmp_path / "a.db")) == 1000

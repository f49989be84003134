"""BatchWriter and RowSpool: batching, outage spooling, replay, shutdown, bound — counted exactly."""

from __future__ import annotations

import threading
import time

import pytest

from collectors.buffer import BatchWriter
from core.errors import StoreUnavailable
from core.spool import RowSpool
from core.storage.sqlite import SQLiteStore
from tests.support import wait_for


class FlakyStore(SQLiteStore):
    """A real SQLite store whose writes fail while ``down`` is set."""

    def __init__(self, path):
        super().__init__(path)
        self.down = threading.Event()

    def write_batch(self, batch):
        if self.down.is_set():
            raise StoreUnavailable("store is down (test)")
        return super().write_batch(batch)


def rows(start, n, series=10):
    return [("electrical", (("machine", f"m{i % series}"),), "active_power_kw", 1_000_000_000 * (start + i), float(i), 0)
            for i in range(n)]


def stored_count(store):
    return sum(s.count for s in store.series())


def test_batches_written_and_counted(tmp_path):
    store = SQLiteStore(tmp_path / "a.db")
    w = BatchWriter(store, RowSpool(tmp_path / "sp"), batch_size=100, flush_interval_s=0.05).start()
    w.add_rows(rows(0, 1234))
    assert wait_for(lambda: w.written == 1234)
    w.close()
    assert stored_count(store) == 1234 and w.backlog == 0


def test_outage_spools_then_replays_exactly(tmp_path):
    store = FlakyStore(tmp_path / "a.db")
    spool = RowSpool(tmp_path / "sp")
    w = BatchWriter(store, spool, batch_size=500, flush_interval_s=0.05, retry_interval_s=0.1,
                    max_memory_values=1000).start()
    w.add_rows(rows(0, 1000))
    assert wait_for(lambda: w.written == 1000)
    store.down.set()
    for k in range(20):
        w.add_rows(rows(1000 + k * 500, 500))
        time.sleep(0.01)  # pacing: the rows arrive as a stream during the outage, not synchronisation
    assert wait_for(lambda: w.spooled >= 5000)
    assert spool.bytes > 0 and w.write_errors >= 1 and w.store_down
    store.down.clear()
    assert wait_for(lambda: w.written == 11000, 20)
    w.close()
    assert stored_count(store) == 11000 and len(spool) == 0 and w.replayed >= 5000


def test_shutdown_while_down_spools_everything_and_restart_replays(tmp_path):
    store = FlakyStore(tmp_path / "a.db")
    store.down.set()
    w = BatchWriter(store, RowSpool(tmp_path / "sp"), batch_size=300, flush_interval_s=0.05, retry_interval_s=0.1).start()
    w.add_rows(rows(0, 2500))
    w.close(timeout_s=0.5)
    assert w.written == 0 and w.spooled == 2500 and stored_count(store) == 0
    # a new process: the spool is replayed once the store works
    store.down.clear()
    spool2 = RowSpool(tmp_path / "sp")
    assert spool2.count_values() == 2500
    w2 = BatchWriter(store, spool2, flush_interval_s=0.05).start()
    assert wait_for(lambda: w2.replayed == 2500)
    w2.close()
    assert stored_count(store) == 2500 and len(spool2) == 0


def test_close_flushes_partial_batch(tmp_path):
    store = SQLiteStore(tmp_path / "a.db")
    w = BatchWriter(store, RowSpool(tmp_path / "sp"), batch_size=10_000, flush_interval_s=60).start()
    w.add_rows(rows(0, 17))
    w.close()
    assert stored_count(store) == 17


def test_writer_process_killed_mid_stream_loses_nothing(tmp_path):
    # The collector writes SQLite through a ProcessStore; if that process dies, the batch in flight is spooled, a new
    # process starts with the next write, and every value is stored exactly once.
    import os
    import signal

    from core.storage.process import ProcessStore

    store = ProcessStore(f"sqlite:///{tmp_path / 'a.db'}")
    w = BatchWriter(store, RowSpool(tmp_path / "sp"), batch_size=500, flush_interval_s=0.05,
                    retry_interval_s=0.1).start()
    try:
        w.add_rows(rows(0, 3000))
        assert wait_for(lambda: w.written == 3000)
        first = store.pid
        os.kill(first, signal.SIGKILL)
        for k in range(10):
            w.add_rows(rows(3000 + k * 700, 700))
            time.sleep(0.02)  # pacing: the rows keep arriving while the writer process is restarted
        assert wait_for(lambda: w.written == 10_000, 20)
        assert store.pid not in (None, first) and w.write_errors >= 1
    finally:
        w.close()
        store.close()
    check = SQLiteStore(tmp_path / "a.db")
    assert stored_count(check) == 10_000
    check.close()


def test_spool_bound_drops_oldest_and_raises_alarm(tmp_path):
    spool = RowSpool(tmp_path / "sp", max_bytes=20_000)
    for k in range(10):
        spool.append(rows(k * 100, 100))
    assert spool.full and spool.dropped_values > 0
    assert spool.bytes <= 20_000
    assert spool.count_values() + spool.dropped_values == 1000
    _path, first = spool.peek()
    assert first[0][3] > 0  # the oldest batches were the ones dropped


def test_corrupt_segment_set_aside(tmp_path):
    spool = RowSpool(tmp_path / "sp")
    spool.append(rows(0, 5))
    seg = next((tmp_path / "sp").glob("seg-*.json"))
    seg.write_text("{not json")
    spool2 = RowSpool(tmp_path / "sp")
    assert spool2.peek() is None
    assert list((tmp_path / "sp").glob("*.bad"))


@pytest.mark.integration
@pytest.mark.slow
def test_no_loss_across_60s_outage_at_10k_values_per_s(tmp_path):
    """Feed 10,000 values/s for 75 s with the store down from tick 50 to tick 650 (t=5 s to t=65 s at full pace);
    every value is stored, counted exactly.

    The outage is defined by ticks, not by the clock: on a loaded machine that feeds slower, it still covers 600,000
    values that must go through the disk spool. The replay afterwards is awaited on its condition with a generous
    bound, and the time it took is printed (a figure, not an assertion).
    """
    store = FlakyStore(tmp_path / "a.db")
    spool = RowSpool(tmp_path / "sp")
    w = BatchWriter(store, spool, batch_size=5000, flush_interval_s=0.5, retry_interval_s=1.0,
                    max_memory_values=50_000).start()
    n_series, per_tick, total = 1000, 1000, 0
    t0 = time.monotonic()
    pace = threading.Event()  # never set: its wait paces the feed (10 ticks/s), it synchronises nothing
    for tick in range(750):
        if 50 <= tick < 650:
            store.down.set()
        else:
            store.down.clear()
        w.add_rows(rows(tick * per_tick, per_tick, n_series))
        total += per_tick
        pace.wait(max(0.0, t0 + (tick + 1) * 0.1 - time.monotonic()))
    store.down.clear()
    fed = time.monotonic()
    wait_for(lambda: w.written == total, 900, what=f"all {total} values written after the outage")
    print(f"fed 750 ticks in {fed - t0:.1f} s; spool replayed and written {time.monotonic() - fed:.1f} s later")
    w.close()
    assert w.spooled > 500_000  # the outage really went through the disk spool
    assert stored_count(store) == total and w.received == total and len(spool) == 0 and w.dropped == 0

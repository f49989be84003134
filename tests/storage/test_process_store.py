"""ProcessStore: the store in a child process, as the collectors use it (the contract suite also runs through it)."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from core.errors import StoreError, StoreUnavailable
from core.model import SeriesKey
from core.storage.base import SeriesBatch
from core.storage.process import ProcessStore
from core.storage.sqlite import SQLiteStore

pytestmark = pytest.mark.integration  # the store's writer child process

NS = 1_000_000_000
T0 = 1_767_225_600 * NS
KEYS = tuple(SeriesKey.of("electrical", {"machine": f"m{i}"}, "active_power_kw") for i in range(3))


def _batch(keys, start: int, n: int) -> SeriesBatch:
    series = np.arange(n, dtype=np.int64) % len(keys)
    times = T0 + (start + np.arange(n, dtype=np.int64)) * NS
    return SeriesBatch(keys, series, times, np.arange(start, start + n, dtype=float), np.zeros(n, dtype=np.int64))


def test_keys_sent_once_and_new_keys_added_later(tmp_path):
    path = tmp_path / "p.db"
    store = ProcessStore(f"sqlite:///{path}")
    try:
        assert store.write_batch(_batch(KEYS[:2], 0, 10)) == 10
        assert store.write_batch(_batch(KEYS[:2], 10, 10)) == 10  # same tuple: no keys travel
        assert store.write_batch(_batch(KEYS, 20, 9)) == 9  # a new tuple with one new key
    finally:
        store.close()
    check = SQLiteStore(path)
    got = check.query("electrical", "active_power_kw", T0, T0 + 100 * NS)
    check.close()
    assert sorted(got["value"].tolist()) == [float(v) for v in range(29)]
    assert got.groupby("machine").size().to_dict() == {"m0": 13, "m1": 13, "m2": 3}


def test_child_death_raises_unavailable_then_a_new_child_takes_over(tmp_path):
    path = tmp_path / "p.db"
    store = ProcessStore(f"sqlite:///{path}")
    try:
        store.write_batch(_batch(KEYS, 0, 30))
        first = store.pid
        os.kill(first, signal.SIGKILL)
        with pytest.raises(StoreUnavailable, match="ended"):
            store.write_batch(_batch(KEYS, 30, 30))
        # The next call starts a new child; keys are sent again (the new child knows none).
        assert store.write_batch(_batch(KEYS, 30, 30)) == 30
        assert store.pid not in (None, first)
        assert len(store.query("electrical", "active_power_kw", T0, T0 + 100 * NS)) == 60
    finally:
        store.close()


def test_errors_come_back_with_their_type_and_text(tmp_path):
    store = ProcessStore(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with pytest.raises(StoreError, match="unknown aggregation 'median'"):
            store.query("electrical", "active_power_kw", T0, T0 + NS, window_s=60, agg="median")
        assert store.write_batch(_batch(KEYS, 0, 3)) == 3  # still serving after an error
    finally:
        store.close()
    with pytest.raises(StoreError, match="closed"):
        store.write_batch(_batch(KEYS, 3, 3))


def test_a_store_that_cannot_open_fails_at_construction(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match=str(blocker / "x.db")):
        ProcessStore(f"sqlite:///{blocker / 'x.db'}")


def test_background_checkpoint_keeps_the_log_bounded_and_data_whole(tmp_path):
    # The same writes into a store that never checkpoints (its log holds every commit, so it gives each commit's
    # size) and into one checkpointing in the background with a 1 MiB bound (its log must rewind).
    keys = tuple(SeriesKey.of("electrical", {"machine": f"m{i}"}, "active_power_kw") for i in range(2000))
    control = SQLiteStore(tmp_path / "control.db")
    control._conn().execute("PRAGMA wal_autocheckpoint=0")
    path = tmp_path / "c.db"
    store = SQLiteStore(path)
    store.checkpoint_in_background(interval_s=0.05, max_wal_mb=1)
    commit_sizes = []
    for b in range(15):  # each commit touches 2,000 series
        before = os.path.getsize(f"{tmp_path / 'control.db'}-wal") if b else 0
        control.write_batch(_batch(keys, b * 4000, 4000))
        commit_sizes.append(os.path.getsize(f"{tmp_path / 'control.db'}-wal") - before)
        store.write_batch(_batch(keys, b * 4000, 4000))
    control.close()
    log_size = os.path.getsize(f"{path}-wal")
    assert log_size <= (1 << 20) + 2 * max(commit_sizes) < sum(commit_sizes)
    thread = store._checkpointer
    store.close()
    assert thread is not None and not thread.is_alive()
    check = SQLiteStore(path)
    got = check.query("electrical", "active_power_kw", T0, T0 + 100_000 * NS)
    check.close()
    assert len(got) == 60_000 and sorted(got["value"].tolist()) == [float(v) for v in range(60_000)]

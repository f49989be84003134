"""The results cache: shared through one file by several processes, expiring, refusing an unsafe folder."""

from __future__ import annotations

import multiprocessing
import os

import pandas as pd
import pytest

from dashboard.cache import ResultCache
from dashboard.errors import DashboardError


def _compute_in_child(folder, queue):
    cache = ResultCache(folder, ttl_s=60)
    queue.put(cache.get_or_compute("k", lambda: "computed in the child"))


def test_a_value_computed_by_one_process_is_read_by_another(tmp_path):
    first = ResultCache(tmp_path / "cache", ttl_s=60)
    frame = pd.DataFrame({"kwh": [1.5, 2.5]})
    assert first.get_or_compute("k", lambda: frame).equals(frame)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_compute_in_child, args=(tmp_path / "cache", queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(60)
    assert isinstance(got, pd.DataFrame) and got.equals(frame)  # the child found the parent's entry
    assert oct(os.stat(tmp_path / "cache").st_mode & 0o777) == "0o700"


def test_entries_expire(tmp_path):
    for folder in (tmp_path / "cache", None):
        cache = ResultCache(folder, ttl_s=0)  # expired at once: every call computes
        calls = []
        for _ in range(3):
            cache.get_or_compute("k", lambda calls=calls: calls.append(1) or len(calls))
        assert len(calls) == 3 and cache.misses == 3
        kept = ResultCache(folder, ttl_s=60)
        assert [kept.get_or_compute("j", lambda: object.__new__(object).__class__.__name__) for _ in range(2)] == ["object"] * 2
        assert kept.hits == 1


def test_a_folder_others_may_write_is_refused(tmp_path):
    folder = tmp_path / "open"
    folder.mkdir()
    os.chmod(folder, 0o777)
    with pytest.raises(DashboardError, match="chmod 700"):
        ResultCache(folder)

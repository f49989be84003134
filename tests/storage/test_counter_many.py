"""core.storage.intervals.counter_increase_many: many counters at once, equal bit for bit to the one-series arithmetic.

The reference below is the one-series implementation as it was before the vectorised one replaced it (np.cumsum of
the counter rule's deltas, np.interp at the window edges); every random case compares all series' windows exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import StoreError
from core.storage.intervals import (
    SEMANTICS_CHANGED,
    _series,
    counter_deltas,
    counter_increase,
    counter_increase_many,
)

NS = 1_000_000_000
H = 3600 * NS


def reference_increase(times_ns, values, edges, register_max=None, prev=None, status=None):
    """The one-series counter increase of commit c56c3ed (per series: sort, dedupe, cumsum, np.interp)."""
    edges = np.asarray(edges, dtype=np.int64)
    out = np.full(max(len(edges) - 1, 0), np.nan)
    t, v, s = _series(times_ns, values, prev, status)
    ok = np.isfinite(v)
    t, v = t[ok], v[ok]
    s = None if s is None else s[ok]
    if len(t) < 2 or len(out) == 0:
        return out
    total = np.concatenate([[0.0], np.cumsum(counter_deltas(v, register_max, s))])
    x = (t - t[0]).astype(float)
    at = np.interp((edges - t[0]).astype(float), x, total)
    covered = (edges[1:] > t[0]) & (edges[:-1] < t[-1])
    out[covered] = np.diff(at)[covered]
    return out


def random_series(rng, edges, register_max):
    """One counter: random length (0 to 300 readings), gaps, rollovers, resets, repeated and unsorted times, NaN
    readings, SemanticsChanged flags, readings before, inside and after the windows, whole or odd nanoseconds."""
    n = int(rng.choice([0, 1, 2, 3, 10, 50, 300]))
    lo, hi = int(edges[0]) - 30 * H, int(edges[-1]) + 30 * H
    kind = rng.integers(4)
    if kind == 0:  # regular readings with a gap
        t = np.sort(rng.integers(lo, hi, n))
        t = (t // (60 * NS)) * 60 * NS
    elif kind == 1:  # sub-second stamps
        t = np.sort(rng.integers(lo, hi, n))
    elif kind == 2:  # bunched inside a short stretch, with repeats
        t = np.sort(rng.integers(int(edges[1]), int(edges[1]) + 2 * H, n) // NS * NS)
    else:  # unsorted
        t = rng.integers(lo, hi, n) // 1000 * 1000
    step = rng.exponential(rng.choice([0.0, 0.5, 50.0]), n) * (rng.random(n) < rng.random())
    v = np.cumsum(step) + rng.random() * (register_max or 1000.0)
    if register_max:
        v = np.mod(v, register_max)  # rollovers
    reset = rng.random(n) < 0.03
    v[reset] = rng.random(int(reset.sum())) * 5  # resets
    v[rng.random(n) < 0.05] = np.nan
    s = np.where(rng.random(n) < 0.03, SEMANTICS_CHANGED, 0).astype(np.int64)
    return t.astype(np.int64), v, s


@pytest.mark.parametrize("seed", range(40))
def test_many_equals_the_one_series_arithmetic_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    start = 1_750_000_000 * NS + int(rng.integers(0, 3600)) * NS
    step = int(rng.choice([60, 900, 3600])) * NS
    edges = start + np.arange(int(rng.integers(1, 200))) * step
    register_max = [None, 1e6, 99_999.9][seed % 3]
    series = [random_series(rng, edges, register_max) for _ in range(int(rng.integers(1, 60)))]
    t = np.concatenate([x[0] for x in series])
    v = np.concatenate([x[1] for x in series])
    s = np.concatenate([x[2] for x in series])
    offsets = np.concatenate([[0], np.cumsum([len(x[0]) for x in series])])
    got = counter_increase_many(t, v, offsets, edges, register_max, status=s)
    assert got.shape == (len(series), len(edges) - 1)
    for i, (ti, vi, si) in enumerate(series):
        want = reference_increase(ti, vi, edges, register_max, status=si)
        assert np.array_equal(got[i], want, equal_nan=True), (i, got[i], want)
        # the one-series entry point is the same arithmetic
        assert np.array_equal(counter_increase(ti, vi, edges, register_max, status=si), want, equal_nan=True)
    # sparse: exactly the non-zero windows of the dense answer (zeros elsewhere inside each span)
    rows, windows, inc = counter_increase_many(t, v, offsets, edges, register_max, status=s, sparse=True)
    dense = np.where(np.isnan(got), 0.0, got)
    assert np.array_equal(dense[rows, windows], inc)
    dense[rows, windows] = 0.0
    assert not dense.any()


def test_prev_reading_and_huge_spans_with_subsecond_stamps():
    # A span of a year at nanosecond stamps: float times lose the last bits (2**53 ns is 104 days); both count the
    # readings as np.interp does on those floats.
    rng = np.random.default_rng(7)
    edges = np.arange(0, 366) * 86400 * NS + 1_700_000_000 * NS
    t = np.sort(rng.integers(int(edges[0]), int(edges[-1]), 5000))
    t = np.concatenate([t, t[-10:] + 1, edges[100:110] - 1, edges[200:210] + 3])
    v = np.arange(len(t), dtype=float)
    prev = (int(edges[0]) - 86400 * NS, -5.0)
    want = reference_increase(t, v, edges, prev=prev)
    assert np.array_equal(counter_increase(t, v, edges, prev=prev), want, equal_nan=True)
    assert np.isfinite(want).all()


def test_counter_increase_many_checks_its_arguments():
    with pytest.raises(StoreError, match="offsets"):
        counter_increase_many(np.array([1, 2]), np.array([1.0, 2.0]), np.array([0, 3]), np.array([0, 10]))
    with pytest.raises(StoreError, match="differ in length"):
        counter_increase_many(np.array([1, 2]), np.array([1.0]), np.array([0, 2]), np.array([0, 10]))
    empty = counter_increase_many(np.zeros(0, np.int64), np.zeros(0), np.array([0, 0, 0]), np.array([0, 10, 20]))
    assert empty.shape == (2, 2) and np.isnan(empty).all()

"""Line protocol: the columnar encoder (collectors' write_batch) writes exactly the lines of the point encoder."""

from __future__ import annotations

import math

import numpy as np

from core.model import SeriesKey
from core.storage.base import SeriesBatch
from core.storage.influx_lp import LineEncoder


def test_batch_lines_equal_point_lines_with_escapes_missing_and_status():
    keys = (
        SeriesKey.of("electrical", {"machine": "a b", "site": "n,1"}, "active_power_kw"),
        SeriesKey.of("gas", {"machine": "x=y", "line": "Übergabe"}, "flow m3"),
        SeriesKey.of("electrical", {"machine": "unused"}, "active_power_kw"),
    )
    values = np.array([1.5, math.nan, math.inf, -2.0, 0.1 + 0.2, -math.inf, 1e300])
    batch = SeriesBatch(keys, np.array([0, 1, 0, 1, 0, 1, 1]), np.arange(1, 8, dtype=np.int64) * 10**18,
                        values, np.array([0, 0x80310000, 0, 5, 0x40000000, 0, 0], dtype=np.int64))
    encoder = LineEncoder()
    columns = encoder.encode_batch(batch.keys, batch.series, batch.times_ns, batch.values, batch.status)
    points, n = LineEncoder().encode_points(list(batch.points()))
    assert columns == points and n == 7
    assert "machine=a\\ b,site=n\\,1" in columns[0] and "wattline_missing" in columns[1]
    # The same keys tuple again reuses the cached heads; another tuple with other keys at the same index does not.
    assert encoder.encode_batch(batch.keys, batch.series[:1], batch.times_ns[:1], values[:1], batch.status[:1]) == [
        columns[0]]
    other = (keys[1],)
    again = encoder.encode_batch(other, np.array([0]), np.array([5]), np.array([2.0]), np.array([0]))
    assert again == [LineEncoder().encode_points(list(SeriesBatch(other, np.array([0]), np.array([5]), np.array([2.0]),
                                                                   np.array([0])).points()))[0][0]]

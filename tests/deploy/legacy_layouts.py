"""Write embedded stores in the layouts of earlier releases, to test that this release opens and upgrades them.

Layout 1 (``meta.schema_version = '1'``, before commit d352d1b): tables series, points, rollup and meta, no chunks
table, and every rollup row kept eagerly at 1 min, 15 min and 1 h. The SQL below is that release's writer's
(``_update_rollups``), so the file is what it wrote, not what this release would write.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

NS = 1_000_000_000

LAYOUT_1 = """
CREATE TABLE series (id INTEGER PRIMARY KEY, measurement TEXT NOT NULL, tags TEXT NOT NULL, field TEXT NOT NULL,
                     UNIQUE (measurement, tags, field));
CREATE TABLE points (series_id INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL, status INTEGER NOT NULL DEFAULT 0,
                     PRIMARY KEY (series_id, ts)) WITHOUT ROWID;
CREATE TABLE rollup (res INTEGER NOT NULL, series_id INTEGER NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL,
                     nrows INTEGER NOT NULL, total REAL, vmin REAL, vmax REAL, last_ts INTEGER, vlast REAL,
                     PRIMARY KEY (res, series_id, bucket)) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def write_layout_1(path: Path, series: dict[tuple[str, tuple[tuple[str, str], ...], str], tuple[np.ndarray, np.ndarray]]) -> None:
    """Write ``series`` {(measurement, sorted tags, field): (times [ns], values)} as a layout-1 store."""
    conn = sqlite3.connect(path)
    with conn:
        conn.executescript(LAYOUT_1)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        for sid, ((measurement, tags, field), (times, values)) in enumerate(series.items(), start=1):
            conn.execute("INSERT INTO series VALUES (?, ?, ?, ?)",
                         (sid, measurement, json.dumps([list(kv) for kv in tags], separators=(",", ":")), field))
            conn.executemany("INSERT INTO points VALUES (?, ?, ?, 0)",
                             [(sid, int(t), None if np.isnan(v) else float(v)) for t, v in zip(times, values)])
        finer = None
        for res in (60, 900, 3600):
            res_ns = res * NS
            if finer is None:
                conn.execute(f"""INSERT INTO rollup SELECT {res}, series_id, (ts / {res_ns}) * {res_ns} AS b,
                    count(value), count(*), sum(value), min(value), max(value),
                    max(CASE WHEN value IS NOT NULL THEN ts END), NULL FROM points GROUP BY series_id, b""")
                conn.execute(f"""UPDATE rollup SET vlast = (SELECT p.value FROM points p
                    WHERE p.series_id = rollup.series_id AND p.ts = rollup.last_ts) WHERE res = {res}""")
            else:
                conn.execute(f"""INSERT INTO rollup SELECT {res}, series_id, (bucket / {res_ns}) * {res_ns} AS b,
                    sum(n), sum(nrows), sum(total), min(vmin), max(vmax), max(last_ts), NULL
                    FROM rollup WHERE res = {finer} GROUP BY series_id, b""")
                conn.execute(f"""UPDATE rollup SET vlast = (SELECT f.vlast FROM rollup f WHERE f.res = {finer}
                    AND f.series_id = rollup.series_id AND f.last_ts = rollup.last_ts) WHERE res = {res}""")
            finer = res
    conn.close()

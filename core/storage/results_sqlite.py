"""Results in the embedded store's SQLite file: tables ``result_runs``, ``result_outputs`` and ``findings``.

The tables are created on first use with ``CREATE TABLE IF NOT EXISTS``, so a file written by an older Wattline gains
them when a result store opens it; the series layout and its version (``meta.schema_version``) are left alone. The
result tables have their own version, ``meta.results_version``. Model outputs are ordinary series of the store
(measurement ``wattline_<name>``, tag ``run``), so every query, rollup and page works on them.

Findings are written through a connection of this module's own: SQLite in WAL mode lets it commit beside the store's
writer (another process, for a collector's writer process) without either waiting long.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core.errors import StoreError
from core.model import Event, from_ns
from core.storage.results import (
    FINDING_NUMBERS,
    FINDING_TEXTS,
    OUTPUT_PREFIX,
    ResultStore,
    RunInfo,
    as_event,
    check_kinds,
    check_name,
    check_run,
    finding_event,
    finding_row,
    machine_matches,
    range_ns,
    sort_events,
    write_output_series,
)

if TYPE_CHECKING:
    import pandas as pd

    from core.storage.sqlite import SQLiteStore

#: Version of the result tables in ``meta.results_version``.
RESULTS_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS result_runs (
    run TEXT PRIMARY KEY,
    created_ns INTEGER NOT NULL,
    kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS result_outputs (
    run TEXT NOT NULL,
    name TEXT NOT NULL,
    fields TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (run, name)
);
CREATE TABLE IF NOT EXISTS findings (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL,
    kind TEXT NOT NULL,
    site TEXT NOT NULL,
    line TEXT NOT NULL,
    machine TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    excess_kwh REAL NOT NULL,
    cost REAL,
    co2_kg REAL,
    severity REAL,
    explanation TEXT,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS findings_run ON findings (run);
CREATE INDEX IF NOT EXISTS findings_start ON findings (start_ns);
"""

_COLUMNS = ("kind", "site", "line", "machine", "start_ns", "end_ns", "excess_kwh", *FINDING_NUMBERS, *FINDING_TEXTS,
            "details")


class SQLiteResultStore(ResultStore):
    """Results in the file of a :class:`~core.storage.sqlite.SQLiteStore`.

    Parameters
    ----------
    store : SQLiteStore
        The store whose file holds the results; outputs are written through it.
    """

    def __init__(self, store: SQLiteStore) -> None:
        self.series_store = store
        self.path = store.path
        self.description = f"results in {store.description}"
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._owned = None
        try:
            # Outside a transaction: executescript commits whatever is open. Each statement is idempotent.
            self._conn().executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot create the result tables in {self.path}: {exc}") from exc
        with self._transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('results_version', ?)", (RESULTS_VERSION,))
            (version,) = conn.execute("SELECT value FROM meta WHERE key = 'results_version'").fetchone()
            if not version.isdigit() or int(version) > int(RESULTS_VERSION):
                raise StoreError(f"store {self.path} has result tables of version {version}, newer than this Wattline "
                                 f"understands ({RESULTS_VERSION}); upgrade Wattline to read them")

    # -- connection ----------------------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA busy_timeout=30000")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the result tables of {self.path}: {exc}") from exc
            self._db = conn
        return self._db

    class _Tx:
        def __init__(self, owner: SQLiteResultStore, write: bool) -> None:
            self.owner, self.write = owner, write

        def __enter__(self) -> sqlite3.Connection:
            self.owner._lock.acquire()
            try:
                conn = self.owner._conn()
                conn.execute("BEGIN IMMEDIATE" if self.write else "BEGIN")
            except BaseException as exc:
                self.owner._lock.release()
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"cannot use the result tables of {self.owner.path}: {exc}") from exc
                raise
            return conn

        def __exit__(self, exc_type, exc, tb) -> None:
            conn = self.owner._db
            try:
                if conn is not None and conn.in_transaction:
                    conn.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.owner._lock.release()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"result tables of {self.owner.path}: {exc}") from exc

    def _transaction(self, write: bool = True) -> SQLiteResultStore._Tx:
        return self._Tx(self, write)

    def close(self) -> None:
        """Close this module's connection (and a store opened for a ProcessStore); the given store stays open."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    # -- runs ----------------------------------------------------------------------------------------------------------
    @staticmethod
    def _touch_run(conn: sqlite3.Connection, run: str, run_kind: str) -> None:
        conn.execute("INSERT OR IGNORE INTO result_runs (run, created_ns, kind) VALUES (?, ?, ?)",
                     (run, time.time_ns(), run_kind))

    def runs(self) -> list[RunInfo]:
        with self._transaction(write=False) as conn:
            runs = conn.execute("SELECT run, created_ns, kind, (SELECT count(*) FROM findings f WHERE f.run = r.run)"
                                " FROM result_runs r ORDER BY created_ns DESC, run").fetchall()
            outputs: dict[str, dict[str, int]] = {}
            for run, name, n in conn.execute("SELECT run, name, n FROM result_outputs ORDER BY run, name"):
                outputs.setdefault(run, {})[name] = int(n)
        return [RunInfo(run, from_ns(created), kind, int(n), outputs.get(run, {})) for run, created, kind, n in runs]

    def delete_run(self, run: str) -> int:
        check_run(run)
        with self._transaction() as conn:
            names = [n for (n,) in conn.execute("SELECT name FROM result_outputs WHERE run = ?", (run,))]
            for name in names:
                self._delete_output(conn, run, name)
            removed = conn.execute("DELETE FROM findings WHERE run = ?", (run,)).rowcount
            conn.execute("DELETE FROM result_runs WHERE run = ?", (run,))
        return int(removed)

    # -- findings ------------------------------------------------------------------------------------------------------
    def write_findings(self, run: str, events: Iterable[Event | Mapping[str, Any]], replace: bool = True, *,
                       run_kind: str = "analysis") -> int:
        check_run(run)
        check_name(run_kind, "run kind")
        rows = []
        for i, item in enumerate(events):
            row = finding_row(as_event(item, i), i)  # everything is checked before anything is written
            rows.append((run, row.kind, row.site, row.line, row.machine_tag, row.start_ns, row.end_ns, row.excess_kwh,
                         *(row.numbers.get(k) for k in FINDING_NUMBERS), *(row.texts.get(k) for k in FINDING_TEXTS),
                         row.details_json))
        with self._transaction() as conn:
            self._touch_run(conn, run, run_kind)
            if replace:
                conn.execute("DELETE FROM findings WHERE run = ?", (run,))
            conn.executemany(f"INSERT INTO findings (run, {', '.join(_COLUMNS)}) VALUES "
                             f"({', '.join('?' * (len(_COLUMNS) + 1))})", rows)
        return len(rows)

    def query_findings(self, start: Any = None, stop: Any = None, kinds: Sequence[str] | None = None,
                       machines: Sequence[str] | None = None, run: str | None = None) -> list[Event]:
        lo, hi = range_ns(start, stop)
        kinds = check_kinds(kinds)
        where: list[str] = ["start_ns < ?", "end_ns > ?"]
        params: list[int | str] = [hi, lo]
        if run is not None:
            where.append("run = ?")
            params.append(check_run(run))
        if kinds is not None:
            where.append("kind IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(kinds))
        with self._transaction(write=False) as conn:
            rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM findings WHERE {' AND '.join(where)}",
                                params).fetchall()
        events = []
        n_num = len(FINDING_NUMBERS)
        for row in rows:
            kind, site, line, machine, start_ns, end_ns, excess = row[:7]
            numbers = dict(zip(FINDING_NUMBERS, row[7:7 + n_num]))
            texts = dict(zip(FINDING_TEXTS, row[7 + n_num:-1]))
            event = finding_event(kind, site, line, machine, start_ns, end_ns, excess, numbers, texts, row[-1])
            if machine_matches(event, machines):
                events.append(event)
        return sort_events(events)

    # -- outputs -------------------------------------------------------------------------------------------------------
    def _delete_output(self, conn: sqlite3.Connection, run: str, name: str) -> None:
        """Remove the values of ``run``'s output ``name`` (inside a write transaction of this module's connection).

        The series rows stay: their ids may be cached by other connections and processes, and a series without
        values is not listed. The store's connections see the change through ``PRAGMA data_version`` (their tail
        caches are dropped).
        """
        ids = [sid for sid, tags in conn.execute("SELECT id, tags FROM series WHERE measurement = ?",
                                                 (OUTPUT_PREFIX + name,))
               if ["run", run] in json.loads(tags)]
        if ids:
            arg = json.dumps(ids)
            for table in ("points", "rollup", "chunks"):
                conn.execute(f"DELETE FROM {table} WHERE series_id IN (SELECT value FROM json_each(?))", (arg,))
        conn.execute("DELETE FROM result_outputs WHERE run = ? AND name = ?", (run, name))

    def write_outputs(self, run: str, name: str, frame: pd.DataFrame, replace: bool = True, *,
                      run_kind: str = "analysis") -> int:
        check_run(run)
        check_name(name)
        check_name(run_kind, "run kind")
        with self._transaction() as conn:
            self._touch_run(conn, run, run_kind)
            if replace:
                self._delete_output(conn, run, name)
        n, fields = write_output_series(self.series_store, run, name, frame)
        with self._transaction() as conn:
            old = conn.execute("SELECT fields, n FROM result_outputs WHERE run = ? AND name = ?", (run, name)).fetchone()
            if old is not None:
                fields = sorted(set(json.loads(old[0])) | set(fields))
                n += int(old[1])
            conn.execute("INSERT OR REPLACE INTO result_outputs (run, name, fields, n) VALUES (?, ?, ?, ?)",
                         (run, name, json.dumps(sorted(fields)), n))
        return n - (int(old[1]) if old is not None else 0)

    def _output_fields(self, run: str, name: str) -> list[str]:
        with self._transaction(write=False) as conn:
            row = conn.execute("SELECT fields FROM result_outputs WHERE run = ? AND name = ?", (run, name)).fetchone()
        return json.loads(row[0]) if row else []

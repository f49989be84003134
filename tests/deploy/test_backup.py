"""``wattline backup`` / ``restore``: a consistent snapshot of a live store, checked and compared after the round trip."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest

from core.model import Event, SeriesKey
from core.storage import open_store
from core.storage.results import results_for
from wattline.cli_backup import BackupError, make_backup, restore_backup

NS = 1_000_000_000
T0 = 1_767_225_600 * NS
H = 3600 * NS


def _fill(path):
    """A store with series (rows and day chunks), missing values, status codes and findings."""
    import datetime as dt

    rng = np.random.default_rng(3)
    with open_store(str(path)) as store:
        for m in range(3):
            key = SeriesKey.of("electrical", {"site": "north", "line": "L1", "machine": f"m{m}"}, "active_power_kw")
            t = T0 + np.arange(0, 2 * 86400, 60) * NS
            v = rng.uniform(0, 40, len(t))
            v[::97] = np.nan
            store.write_arrays(key, t, v, np.where(np.arange(len(t)) % 50 == 0, 0x80000000, 0), bulk=m != 0)
        start = dt.datetime(2026, 1, 1, 6, tzinfo=dt.UTC)
        events = [Event("north/L1/m0", "idle_running", start, start + dt.timedelta(hours=2), 12.5, {"cost": 3.0}),
                  Event("north/L1/m1", "off_shift_load", start, start + dt.timedelta(hours=8), 40.0, {})]
        with results_for(store) as results:
            results.write_findings("run-a", events)


def _contents(path):
    """Everything a user sees: series with counts and extents, every value with its status, findings, runs."""
    with open_store(str(path)) as store:
        infos = sorted((i.key.measurement, i.key.tags, i.key.field, i.count, i.first_ns, i.last_ns) for i in store.series())
        values = {}
        for m, tags, f, *_ in infos:
            frame = store.query(m, f, T0 - H, T0 + 100 * H, tags=dict(tags))
            # NaN (a stored missing value) compared as None: NaN != NaN would fail equal contents
            values[(m, tags, f)] = frame.astype(object).where(frame.notna(), None).to_dict("list")
        with results_for(store) as results:
            findings = [e.to_dict() for e in results.query_findings()]
            runs = sorted(r.run for r in results.runs())
    return infos, values, findings, runs


def _dump(path):
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_round_trip_store_results_and_orders(tmp_path):
    from core.orders.db import open_orders_db, orders_url

    src = tmp_path / "plant.db"
    _fill(src)
    engine = open_orders_db(orders_url(str(src)))
    engine.dispose()
    before = _contents(src)
    assert sum(i[3] for i in before[0]) == 3 * 2 * 1440 and len(before[2]) == 2

    tar_path, manifest = make_backup(str(src), tmp_path / "backups")
    assert {f["kind"] for f in manifest["files"]} == {"store", "orders"}
    store_entry = next(f for f in manifest["files"] if f["kind"] == "store")
    assert store_entry["schema_version"] == "2" and store_entry["results_version"] == "1" and store_entry["series"] == 3
    assert next(f for f in manifest["files"] if f["kind"] == "orders")["alembic_revision"]

    out = tmp_path / "restored" / "plant.db"
    restore_backup(tar_path, str(out))
    assert _contents(out) == before
    assert _dump(f"{out}.orders.db") == _dump(f"{src}.orders.db")

    with pytest.raises(Exception, match="--force"):
        restore_backup(tar_path, str(out))
    restore_backup(tar_path, str(out), force=True)
    assert _contents(out) == before


def test_snapshot_while_a_writer_runs_is_consistent(tmp_path):
    src = tmp_path / "live.db"
    _fill(src)
    key = SeriesKey.of("electrical", {"site": "north", "line": "L2", "machine": "live"}, "energy_kwh")
    stop = threading.Event()
    written = []

    def writer():
        with open_store(str(src)) as store:
            i = 0
            while not stop.is_set():
                t = T0 + (np.arange(100) + i * 100) * NS
                store.write_arrays(key, t, np.arange(100.0) + i * 100)
                i += 1
                written.append(i * 100)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        from tests.support import wait_for

        wait_for(lambda: len(written) >= 5, 30, "the writer to commit a few batches")
        tar_path, _ = make_backup(str(src), tmp_path / "b.tar")
        wait_for(lambda: len(written) >= 10, 30, "more batches after the snapshot")
    finally:
        stop.set()
        thread.join()
    out = tmp_path / "r.db"
    restore_backup(tar_path, str(out))
    conn = sqlite3.connect(out)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with open_store(str(out)) as store:
        live = [i for i in store.series("electrical") if i.key.field == "energy_kwh"]
        count = live[0].count if live else 0
        # Whole batches only (one transaction each), and a strict prefix of what the writer committed in the end.
        assert count % 100 == 0 and 500 <= count < written[-1]
        values = store.query("electrical", "energy_kwh", T0, T0 + 10**7 * NS, tags=dict(key.tags))["value"].to_numpy()
        np.testing.assert_array_equal(values, np.arange(float(count)))


def test_damaged_backup_is_refused_and_nothing_replaced(tmp_path):
    src = tmp_path / "plant.db"
    _fill(src)
    tar_path, _ = make_backup(str(src), tmp_path / "b.tar")
    damaged = tmp_path / "damaged.tar"
    with tarfile.open(tar_path) as tin, tarfile.open(damaged, "w") as tout:
        for member in tin.getmembers():
            data = bytearray(tin.extractfile(member).read())
            if member.name == "store.db":
                data[len(data) // 2] ^= 0xFF
            member.size = len(data)
            import io

            tout.addfile(member, io.BytesIO(bytes(data)))
    target = tmp_path / "target.db"
    target.write_bytes(b"keep me")
    with pytest.raises(BackupError, match=r"store\.db is damaged"):
        restore_backup(damaged, str(target), force=True)
    assert target.read_bytes() == b"keep me"


@pytest.mark.integration  # the wattline CLI in a child process
def test_cli_backup_and_restore(tmp_path):
    src = tmp_path / "plant.db"
    _fill(src)
    run = [sys.executable, "-m", "wattline"]
    out = subprocess.run([*run, "backup", str(tmp_path / "bk"), "--store", str(src)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    tar_path = next((tmp_path / "bk").glob("wattline-backup-*.tar"))
    assert oct(tar_path.stat().st_mode & 0o777) == "0o600"
    out = subprocess.run([*run, "restore", str(tar_path), "--store", str(tmp_path / "again.db")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert _contents(tmp_path / "again.db") == _contents(src)
    out = subprocess.run([*run, "backup", str(tmp_path / "bk"), "--store", "influx://127.0.0.1:1?org=o&bucket=b"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "influx backup" in out.stderr

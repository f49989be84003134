"""Fault tests against a real influxd: an outage during a write stream, and a batch the server rejects.

The outage test starts its OWN server (start.sh with a private run dir, so the shared test server is untouched),
streams points, stops influxd for 30 s with stop.sh (data kept), restarts it with start.sh on the same data dir and
port, and checks that every point arrived exactly once: count and checksum over the whole stream.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from core.model import Point
from core.storage.influx import InfluxSettings, InfluxStore, setup_influx
from tests.storage.conftest import influx_sh
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.influx]

NS = 1_000_000_000
#: How long influxd stays down [s]: the outage under test (far beyond the client's 3-s retry time, so the stream
#: reaches the spool).
OUTAGE_S = 30



def _count_and_sum(store: InfluxStore, start: int, stop: int, machine: str = "stream") -> tuple[int, float]:
    cnt = store.query("electrical", "active_power_kw", start, stop, tags={"machine": machine}, window_s=3600,
                      agg="count")
    tot = store.query("electrical", "active_power_kw", start, stop, tags={"machine": machine}, window_s=3600,
                      agg="sum")
    return int(cnt["value"].sum()), float(tot["value"].sum())


def test_outage_of_30s_loses_and_duplicates_nothing(private_influxd, tmp_path):
    run_dir, env = private_influxd
    settings = InfluxSettings(
        url=env["WATTLINE_INFLUX_URL"], org=env["WATTLINE_INFLUX_ORG"], bucket=env["WATTLINE_INFLUX_BUCKET"],
        token_file=env["WATTLINE_INFLUX_TOKEN_FILE"], spool_dir=tmp_path / "spool", flush_interval_ms=200,
        batch_size=500, retry_interval_ms=500, max_retry_time_ms=3000, max_retry_delay_ms=2000,
    )
    setup_influx(settings, backfill=False, progress=False)
    store = InfluxStore(settings)
    tags = {"site": "s", "line": "l", "machine": "stream"}
    base = (time.time_ns() // (3600 * NS) - 48) * 3600 * NS  # two days ago: one timestamp per 10 ms of stream
    sent = []
    stop_flag = threading.Event()
    max_write_s = [0.0]
    spool_seen = [0]

    def produce() -> None:
        i = 0
        while not stop_flag.is_set():
            batch = []
            for _ in range(20):
                value = float((i * 7919) % 1000) / 10.0
                batch.append(Point("electrical", tags, {"active_power_kw": value}, base + i * 10_000_000))
                sent.append(value)
                i += 1
            t0 = time.perf_counter()
            store.write(batch)
            max_write_s[0] = max(max_write_s[0], time.perf_counter() - t0)
            spool_seen[0] = max(spool_seen[0], len(store.spool))
            time.sleep(0.02)

    def stored_until() -> int:
        """Time stamp of the newest value of the stream on the server [ns] (0 before the first)."""
        last = store.last_values("electrical", "active_power_kw", {"machine": "stream"})
        return 0 if last.empty else int(last["time"].max().value)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        wait_for(stored_until, 60, "the stream's first values on the server before the outage")
        influx_sh("stop.sh", str(run_dir))  # keeps the data dir
        time.sleep(OUTAGE_S)  # the outage under test, not synchronisation
        sent_before_restart = len(sent)
        influx_sh("start.sh", str(run_dir))  # same data dir, same port
        # The stream goes on while the spool is replayed: wait until values sent after the restart are on the server
        # and the outage's spool is drained (writes and replay running at the same time is part of the test).
        wait_for(lambda: (stored_until() >= base + sent_before_restart * 10_000_000 and not store.health()["down"]
                          and store.health()["spool_segments"] == 0), 180,
                 "values sent after the restart on the server and the spool replayed", interval=0.5)
    finally:
        stop_flag.set()
        producer.join()
    store.flush(timeout_s=120)
    assert len(store.spool) == 0, "the spool was not drained after the server came back"
    assert spool_seen[0] > 0, "the outage never reached the spool (retry settings too generous for the test?)"
    assert max_write_s[0] < 1.0, f"write() blocked the caller for {max_write_s[0]:.2f} s during the outage"
    count, total = _count_and_sum(store, base, base + len(sent) * 10_000_000 + NS)
    store.close()
    assert count == len(sent), f"{len(sent)} points sent, {count} stored"
    assert total == pytest.approx(float(np.sum(sent)), rel=1e-12)
    assert store.quarantine.count == 0


def test_rejected_batch_is_quarantined_with_the_offending_line(influx_settings_for, influx_drop, caplog):
    settings = influx_settings_for(f"q_{uuid.uuid4().hex[:10]}")
    setup_influx(settings, backfill=False, progress=False)
    store = InfluxStore(settings)
    try:
        t = time.time_ns() - 3600 * NS
        good = [f"electrical,machine=ok active_power_kw={i}.5,wattline_status=0i {t + i}" for i in range(5)]
        bad = "electrical,machine=bad active_power_kw=notanumber 1"
        with caplog.at_level("ERROR", logger="core.storage.influx_spool"):
            store.write_line_protocol([*good[:2], bad, *good[2:]])
            store.flush()
        assert store.quarantine.count == 1
        text = Path(store.quarantine.path).read_text()
        assert bad in text and "rejected" in text
        assert any(bad in rec.getMessage() for rec in caplog.records), "the offending line was not logged"
        assert len(store.spool) == 0  # not retried forever
        # A second flush does not resend it.
        store.flush()
        assert store.quarantine.count == 1
    finally:
        store.close()
        influx_drop(settings)


def test_token_never_appears_in_description_or_logs(influx_env, influx_settings_for, caplog):
    settings = influx_settings_for("unused")
    token = settings.read_token()
    with caplog.at_level("DEBUG"):
        store = InfluxStore(settings)
        store.close()
    assert token not in repr(store) and token not in store.description
    assert all(token not in rec.getMessage() for rec in caplog.records)
    assert oct(os.stat(influx_env["WATTLINE_INFLUX_TOKEN_FILE"]).st_mode & 0o777) == "0o600"


def test_backlog_beyond_the_bound_spills_to_disk_and_arrives(influx_settings_for, influx_drop):
    """A bulk load faster than the server: memory stays bounded (spill to the spool), nothing is lost."""
    settings = influx_settings_for(f"b_{uuid.uuid4().hex[:10]}", max_backlog_lines=2000)
    setup_influx(settings, backfill=False, progress=False)
    store = InfluxStore(settings)
    try:
        base = (time.time_ns() // (3600 * NS) - 72) * 3600 * NS
        tags = {"site": "s", "line": "l", "machine": "bulk"}
        n = 60_000
        spilled = 0
        for i in range(0, n, 1000):
            store.write([Point("electrical", tags, {"active_power_kw": float(j % 97)}, base + j * NS)
                         for j in range(i, i + 1000)])
            spilled = max(spilled, len(store.spool))
            with store._done:
                assert store._submitted - store._finished <= 2000
        assert spilled > 0
        store.flush()
        assert len(store.spool) == 0
        count, total = _count_and_sum(store, base, base + n * NS, machine="bulk")
        assert count == n and total == pytest.approx(float(sum(j % 97 for j in range(n))))
    finally:
        store.close()
        influx_drop(settings)

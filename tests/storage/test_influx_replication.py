"""Edge -> central replication (InfluxDB 2.x replication streams) across a 60 s outage of the central server.

The edge is the shared test server (a private bucket with its rollup buckets and tasks); the central is a second
influxd from the same binary that this test starts in its own run dir on a free port (start.sh), stops for 60 s of
writes (stop.sh keeps its data) and restarts on the same port. `wattline influx replicate` sets the streams up. At the
end the central holds exactly what the edge holds -- raw points (count and sum) and the three rollup buckets -- so
nothing was lost and nothing doubled. The replication lag and the catch-up time after the outage are printed (the
figures in docs/operations.md), never asserted.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import threading
import time
import uuid

import pytest

from core.model import Point
from core.storage.base import ROLLUP_RESOLUTIONS_S
from core.storage.influx import InfluxSettings, InfluxStore, remove_influx, setup_influx
from core.storage.influx_flux import rollup_bucket
from core.storage.influx_replication import get_replication_status, remove_replication
from tests.storage.conftest import influx_sh
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.influx, pytest.mark.slow]  # two servers, a 60-s outage

NS = 1_000_000_000
OUTAGE_S = 60.0
TAGS = {"site": "edge", "line": "l1", "machine": "stream"}


def _url(settings: InfluxSettings) -> str:
    return (f"influx://{settings.url.split('://', 1)[1]}?org={settings.org}&bucket={settings.bucket}"
            f"&token_file={settings.token_file}")


def _wattline(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "wattline", *args], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"wattline {' '.join(args[:2])} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res.stdout


def _bucket_total(store: InfluxStore, bucket: str, machine: str | None = None) -> tuple[int, float]:
    """Number of power values in a bucket (rollup fields included), and their sum; straight Flux, no rollup logic."""
    where = f' and r.machine == "{machine}"' if machine else ""
    flux = (f'from(bucket: "{bucket}") |> range(start: 1970-01-01T00:00:00Z) '
            f'|> filter(fn: (r) => r._field =~ /^active_power_kw/{where}) |> group() ')
    query = store._client.query_api()
    count = sum(int(rec.get_value()) for t in query.query(flux + "|> count()") for rec in t.records)
    total = sum(float(rec.get_value()) for t in query.query(flux + "|> toFloat() |> sum()") for rec in t.records)
    return count, total


def _totals(store: InfluxStore) -> dict[str, tuple[int, float]]:
    """Count and sum per bucket: raw, 1m, 15m, 1h."""
    raw = store.settings.bucket
    out = {"raw": _bucket_total(store, raw)}
    out.update({rollup_bucket(raw, r)[len(raw) + 1:]: _bucket_total(store, rollup_bucket(raw, r))
                for r in ROLLUP_RESOLUTIONS_S})
    return out


def _stream_count(store: InfluxStore) -> int:
    return _bucket_total(store, store.settings.bucket, "stream")[0]


def test_edge_replicates_to_central_across_a_60s_outage(influx_env, private_influxd, tmp_path):
    run_dir, cenv = private_influxd  # the central server
    bucket = f"r_{uuid.uuid4().hex[:10]}"
    edge = InfluxSettings(url=influx_env["WATTLINE_INFLUX_URL"], org=influx_env["WATTLINE_INFLUX_ORG"], bucket=bucket,
                          token_file=influx_env["WATTLINE_INFLUX_TOKEN_FILE"], spool_dir=tmp_path / "spool",
                          flush_interval_ms=200, batch_size=500)
    center = InfluxSettings(url=cenv["WATTLINE_INFLUX_URL"], org=cenv["WATTLINE_INFLUX_ORG"], bucket=bucket,
                            token_file=cenv["WATTLINE_INFLUX_TOKEN_FILE"], spool_dir=tmp_path / "spool-central")
    setup_influx(edge, backfill=False, progress=False)
    store = reader = None
    try:
        out = _wattline("influx", "replicate", "--store", _url(edge), "--to", _url(center))
        assert out.count("created stream") == 4 and "created central bucket" in out, out
        again = _wattline("influx", "replicate", "--store", _url(edge), "--to", _url(center))
        assert again.count("up to date") == 5 and "created" not in again, again  # idempotent
        store, reader = InfluxStore(edge), InfluxStore(center)

        # Late points (two days old, one per 10 ms of stream time), so that the store also refreshes their rollups
        # at the edge: those rollups must reach the central through the rollup streams.
        base = (time.time_ns() // (3600 * NS) - 48) * 3600 * NS
        sent: list[float] = []
        stop_flag = threading.Event()
        lock = threading.Lock()

        def produce() -> None:
            i = 0
            while not stop_flag.is_set():
                batch = []
                for _ in range(25):
                    value = float((i * 7919) % 1000) / 10.0
                    batch.append(Point("electrical", TAGS, {"active_power_kw": value}, base + i * 10_000_000))
                    i += 1
                    with lock:
                        sent.append(value)
                store.write(batch)
                time.sleep(0.05)  # pacing of the load (about 500 values/s), not synchronisation

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        try:
            # Replication lag: a marker point flushed to the edge until the central returns it.
            lags = []
            for k in range(5):
                t_marker = base - (k + 1) * NS
                store.write([Point("electrical", {**TAGS, "machine": "marker"}, {"active_power_kw": 1.0}, t_marker)])
                store.flush(refresh_rollups=False)
                t0 = time.monotonic()
                wait_for(lambda t=t_marker: len(reader.query("electrical", "active_power_kw", t, t + 1,
                                                             tags={"machine": "marker"})) == 1,
                         120, f"marker {k} on the central", interval=0.05)
                lags.append(time.monotonic() - t0)

            port = (run_dir / "port").read_text().strip()
            influx_sh("stop.sh", str(run_dir))  # the central goes away; its data stays
            t_down = time.monotonic()
            raw_stream = f"wattline-central:{bucket}"

            def reported_down() -> str | None:
                """`wattline influx replications` shows the raw stream's unsent bytes and the failed attempt."""
                out = _wattline("influx", "replications", "--store", _url(edge))
                line = next((x for x in out.splitlines() if x.startswith(raw_stream + ":")), "")
                return line if re.search(r": [1-9]\d* B to send", line) and "error:" in line else None

            shown = wait_for(reported_down, 60, "the edge to report unsent data and the failed attempt", interval=1)
            print(f"\nduring the outage: {shown}")
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t_down)))  # the outage under test
            status = next(s for s in get_replication_status(edge) if s["name"] == raw_stream)
            with lock:
                sent_before_restart = len(sent)
            queued_bytes, queue_file_bytes = status["remaining_bytes"], status["queue_bytes"]
            influx_sh("start.sh", str(run_dir))  # same data dir; start.sh returns once /health passes
            t_up = time.monotonic()
            assert (run_dir / "port").read_text().strip() == port, "the central came back on another port"
            wait_for(lambda: _stream_count(reader) >= sent_before_restart, 900,
                     "the central to catch up with everything written before its restart", interval=0.2)
            catch_up_s = time.monotonic() - t_up
        finally:
            stop_flag.set()
            producer.join()
        store.flush()  # the last batch, and the rollups of the late hours (written at the edge, replicated)
        edge_totals = _totals(store)
        assert edge_totals["raw"][0] == len(sent) + len(lags), (edge_totals, len(sent))
        assert all(edge_totals[k][0] > 0 for k in edge_totals), f"a rollup bucket is empty at the edge: {edge_totals}"
        t0 = time.monotonic()
        counts = {k: v[0] for k, v in edge_totals.items()}
        wait_for(lambda: {k: v[0] for k, v in _totals(reader).items()} == counts, 600,
                 "central counts equal to the edge's (raw and the three rollups)", interval=0.5, fail=False)
        drain_s = time.monotonic() - t0
        final = _totals(reader)
        # Exactly what was sent: no point lost, none doubled, every value intact, rollups identical.
        assert {k: v[0] for k, v in final.items()} == counts, f"central {final} != edge {edge_totals}"
        assert _stream_count(reader) == len(sent)
        assert final["raw"][1] == pytest.approx(sum(sent) + len(lags), rel=1e-12)
        for key, (_, total) in edge_totals.items():
            assert final[key][1] == pytest.approx(total, rel=1e-9), key
        print(f"\nreplication: {len(sent)} points at ~{len(sent) / (time.monotonic() - t_down):.0f}/s; lag median "
              f"{statistics.median(lags) * 1000:.0f} ms (max {max(lags) * 1000:.0f} ms); outage {OUTAGE_S:.0f} s queued "
              f"{queued_bytes} B unsent ({queue_file_bytes} B on disk) for {sent_before_restart} points so far; caught up {catch_up_s:.1f} s after the "
              f"central's /health passed; final drain incl. rollups {drain_s:.1f} s")
    finally:
        for s in (store, reader):
            if s is not None:
                s.close()
        try:
            remove_replication(edge)  # the edge is the shared server: leave no remote pointing at a dead central
        finally:
            remove_influx(edge)

"""``wattline export`` (CSV, Parquet, line protocol) and ``wattline import lp``: contents compared value by value,
and the line protocol written into the real InfluxDB test server and read back."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import urllib.request
import uuid

import numpy as np
import pandas as pd
import pytest

from core.export import (
    check_line_protocol,
    export_series,
    import_line_protocol,
    parse_line_protocol,
    parse_time_ns,
)
from core.importer import DataFileError
from core.model import SeriesKey
from core.storage import open_store

NS = 1_000_000_000
T0 = 1_767_225_600 * NS  # 2026-01-01 UTC
RUN = [sys.executable, "-m", "wattline"]

KEYS = [
    SeriesKey.of("electrical", {"site": "north hall", "line": "L1,a", "machine": "cnc=1"}, "active_power_kw"),
    SeriesKey.of("electrical", {"site": "north hall", "line": "L1,a", "machine": "cnc=1"}, "energy_kwh"),
    SeriesKey.of("electrical", {"site": "south", "line": "L2", "machine": "comp-1"}, "active_power_kw"),
]


def _data(i: int):
    rng = np.random.default_rng(i)
    t = T0 + np.arange(0, 3 * 86400, 30) * NS + i * NS
    v = rng.uniform(0, 100, len(t)).round(6)
    v[rng.choice(len(t), 25, replace=False)] = np.nan
    s = np.where(rng.uniform(size=len(t)) < 0.01, 0x80000000, 0).astype(np.int64)
    return t, v, s


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "src.db"
    with open_store(str(path)) as store:
        for i, key in enumerate(KEYS):
            store.write_arrays(key, *_data(i), bulk=i == 1)
        store.write_arrays(SeriesKey.of("weather", {"site": "south"}, "outdoor_temp_c"), np.array([T0]), np.array([3.0]))
    return path


def _contents(path, measurement="electrical"):
    """Per series: times, values (NaN kept), status, from the store."""
    out = {}
    with open_store(str(path)) as store:
        for info in store.series(measurement):
            frame = store.query(measurement, info.key.field, T0 - NS, T0 + 10 * 86400 * NS, tags=info.key.tag_dict)
            out[info.key] = (frame["time"].dt.as_unit("ns").astype("int64").to_numpy(), frame["value"].to_numpy(float),
                             frame["status"].to_numpy(np.int64))
    return out


def _assert_same(a: dict, b: dict):
    assert set(a) == set(b)
    for key in a:
        for x, y in zip(a[key], b[key]):
            np.testing.assert_array_equal(x, y, err_msg=str(key))


@pytest.mark.integration  # the wattline CLI in a child process
def test_lp_round_trip_through_import(source, tmp_path):
    lp = tmp_path / "e.lp"
    out = subprocess.run([*RUN, "export", "--store", str(source), "--format", "lp", "--measurement", "electrical",
                          "--out", str(lp)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    expected = _contents(source)
    n = sum(len(v[0]) for v in expected.values())
    assert f"exported {n} values" in out.stderr and sum(1 for _ in lp.open()) == n
    # Chunks of 4000 lines: every series is split over several chunks and written by several bulk writes.
    out = subprocess.run([*RUN, "import", "lp", str(lp), "--store", str(tmp_path / "back.db"), "--chunk-lines", "4000",
                          "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["values"] == summary["written"] == summary["lines"] == n and summary["series"] == len(expected)
    _assert_same(_contents(tmp_path / "back.db"), expected)
    # The same file gzipped (found by its magic bytes, not its name) imports the same values.
    packed = tmp_path / "e.lp.data"
    packed.write_bytes(gzip.compress(lp.read_bytes()))
    out = subprocess.run([*RUN, "import", "lp", str(packed), "--store", str(tmp_path / "gz.db"), "--chunk-lines",
                          "3000"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"imported {n} values of {len(expected)} series from {n} lines" in out.stdout
    _assert_same(_contents(tmp_path / "gz.db"), expected)


def _generated_lp(path, n_lines: int, bad_at: int | None = None) -> None:
    """Interleaved series, repeated timestamps (also across chunks), comments, integer and boolean fields."""
    rng = np.random.default_rng(7)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("# generated\n")
        number = 1
        for i in range(n_lines):
            number += 1
            if number == bad_at:
                fh.write(f"m,site=s{i % 7} v=oops {T0 + i * NS}\n")
                continue
            t = T0 + (i if i % 97 or i < 1470 else i - 1470) * NS  # repeats its series 1470 lines back
            fields = f"v={rng.uniform(0, 100):.6f},c={i}i" + (",on=true" if i % 3 == 0 else "")
            status = ",wattline_status=2147483648i" if i % 50 == 0 else ""
            fh.write(f"m,site=s{i % 7},line=l{i % 2} {fields}{status} {t}\n")


def test_streamed_import_in_chunks_equals_the_whole_file_in_memory(tmp_path):
    lp = tmp_path / "g.lp"
    _generated_lp(lp, 12_000)
    whole = parse_line_protocol(lp)
    check = check_line_protocol(lp)
    assert (check.lines, check.values, check.series, check.error_count) == (whole.lines, whole.values,
                                                                           len(whole.series), 0)
    with open_store(str(tmp_path / "whole.db")) as store:
        from core.export import write_parsed_lines

        write_parsed_lines(whole, store)
    with open_store(str(tmp_path / "chunked.db")) as store:
        written = import_line_protocol(lp, store, chunk_lines=1000)  # 12 chunks
    assert written > sum(len(t) for _, t, _, _ in whole.arrays())  # repeats across chunks were written twice ...
    a, b = _contents(tmp_path / "whole.db", "m"), _contents(tmp_path / "chunked.db", "m")
    _assert_same(a, b)  # ... and the later line replaced the earlier one, as within a chunk
    assert sum(len(v[0]) for v in b.values()) == sum(len(t) for _, t, _, _ in whole.arrays())


@pytest.mark.integration  # the wattline CLI in a child process
def test_a_bad_line_deep_in_a_large_file_writes_nothing(tmp_path):
    lp = tmp_path / "deep.lp"
    _generated_lp(lp, 30_000, bad_at=29_000)
    db = tmp_path / "deep.db"
    out = subprocess.run([*RUN, "import", "lp", str(lp), "--store", str(db), "--chunk-lines", "1000"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "1 of 30000 lines are bad; nothing was written" in out.stderr
    assert f"{lp}:29000: field 'v' value 'oops' is not a number" in out.stderr
    assert not db.exists()


@pytest.mark.integration  # the wattline CLI in a child process
def test_csv_and_parquet_hold_every_value(source, tmp_path):
    import pyarrow.parquet as pq

    expected = _contents(source)
    lo, hi = "2026-01-02", "2026-01-03T12:00:00+00:00"
    out = subprocess.run([*RUN, "export", "--store", str(source), "-f", "csv", "-m", "electrical", "--field",
                          "active_power_kw", "--from", lo, "--to", hi], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    from io import StringIO

    csv = pd.read_csv(StringIO(out.stdout), keep_default_na=False, na_values={"value": [""]}, dtype={"line": str})
    assert list(csv.columns) == ["time", "measurement", "line", "machine", "site", "field", "value", "status"]
    pq_path = tmp_path / "e.parquet"
    with open_store(str(source)) as store:
        summary = export_series(store, pq_path, "parquet", "electrical")
    table = pq.read_table(pq_path).to_pandas()
    assert summary.values == len(table) == sum(len(v[0]) for v in expected.values())
    a, b = parse_time_ns(lo, "from"), parse_time_ns(hi, "to")
    for key, (t, v, s) in expected.items():
        tags = key.tag_dict
        for frame, ranged in ((csv, True), (table, False)):
            if ranged and key.field != "active_power_kw":
                assert not ((frame["machine"] == tags["machine"]) & (frame["field"] == key.field)).any()
                continue
            sel = frame[(frame["site"] == tags["site"]) & (frame["line"] == tags["line"])
                        & (frame["machine"] == tags["machine"]) & (frame["field"] == key.field)]
            keep = (t >= a) & (t < b) if ranged else np.ones(len(t), bool)
            times = pd.to_datetime(sel["time"], utc=True).dt.as_unit("ns").astype("int64").to_numpy()
            np.testing.assert_array_equal(times, t[keep])
            np.testing.assert_array_equal(sel["value"].to_numpy(float), v[keep])
            np.testing.assert_array_equal(sel["status"].to_numpy(np.int64), s[keep])


@pytest.mark.integration  # the wattline CLI in a child process
def test_bad_lines_are_listed_and_nothing_written(tmp_path):
    lp = tmp_path / "bad.lp"
    lp.write_text("# comment\n"
                  "m,site=a v=1.5 1767225600000000000\n"
                  "m,site=a v=\"text\" 1767225601000000000\n"
                  "m,site=a v=1.5\n"
                  "m,site=a v=abc 1767225602000000000\n"
                  "m,site=a v=2i,w=true 1767225603000000000\n")
    parsed = parse_line_protocol(lp)
    assert parsed.error_count == 3 and parsed.lines == 5
    assert [e.split(": ", 1)[0] for e in parsed.errors] == [f"{lp}:3", f"{lp}:4", f"{lp}:5"]
    out = subprocess.run([*RUN, "import", "lp", str(lp), "--store", str(tmp_path / "x.db")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "3 of 5 lines are bad; nothing was written" in out.stderr and ":4: no timestamp" in out.stderr
    assert not (tmp_path / "x.db").exists()
    assert DataFileError.exit_code == 2


def test_export_errors_name_the_problem(source, monkeypatch, capsys):
    from wattline.cli import main

    cases = [
        (["-f", "xml", "-m", "electrical"], "valid options: csv, parquet, lp"),
        (["-f", "csv", "-m", "electric"], "stored measurements: electrical, weather"),
        (["-f", "csv", "-m", "electrical", "--field", "kw"], "its fields: active_power_kw, energy_kwh"),
        (["-f", "parquet", "-m", "electrical"], "--out FILE.parquet"),
        (["-f", "csv", "-m", "electrical", "--from", "yesterday"], "--from 'yesterday'"),
    ]
    for args, text in cases:  # in-process through the real entry point (one line, exit code 2)
        monkeypatch.setattr(sys, "argv", ["wattline", "export", "--store", str(source), *args])
        with pytest.raises(SystemExit) as exited:
            main()
        err = capsys.readouterr().err
        assert exited.value.code == 2 and err.startswith("wattline: error: ") and text in err, (args, err)


@pytest.mark.integration
@pytest.mark.influx
def test_lp_export_is_accepted_by_influxdb_and_reads_back(source, tmp_path):
    from core.config import read_secret_file
    from core.storage.influx import InfluxStore, read_env_file, setup_influx
    from tests.storage.conftest import (
        _server_problem,
        drop_bucket,
        influx_env_file,
        influx_settings,
    )

    env_file = influx_env_file()
    env = read_env_file(env_file) if env_file.exists() else {}
    problem = _server_problem(env) if env else f"no InfluxDB env file at {env_file}"
    if problem:
        from tests.support import unavailable

        unavailable(problem)
    lp = tmp_path / "e.lp"
    with open_store(str(source)) as store, open(lp, "w") as fh:
        export_series(store, fh, "lp", "electrical")
    settings = influx_settings(env, f"t_{uuid.uuid4().hex[:10]}", tmp_path)
    setup_influx(settings, backfill=False, progress=False)
    try:
        token = read_secret_file(env["WATTLINE_INFLUX_TOKEN_FILE"], "token")
        request = urllib.request.Request(
            f"{env['WATTLINE_INFLUX_URL']}/api/v2/write?org={env['WATTLINE_INFLUX_ORG']}&bucket={settings.bucket}"
            "&precision=ns", data=lp.read_bytes(), method="POST",
            headers={"Authorization": f"Token {token}", "Content-Type": "text/plain; charset=utf-8"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 204  # InfluxDB accepted every line
        store = InfluxStore(settings)
        try:
            got = {}
            for key in KEYS:
                frame = store.query(key.measurement, key.field, T0 - NS, T0 + 10 * 86400 * NS, tags=key.tag_dict)
                got[key] = (frame["time"].dt.as_unit("ns").astype("int64").to_numpy(), frame["value"].to_numpy(float),
                            frame["status"].to_numpy(np.int64))
        finally:
            store.close()
        _assert_same(got, _contents(source))
    finally:
        drop_bucket(settings)

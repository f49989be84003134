"""``core.importer`` against a real InfluxDB: interval ends, the energy register and its continuation."""

from __future__ import annotations

import pytest

from core.importer import ImportMapping, import_csv
from core.model import to_ns

pytestmark = [pytest.mark.integration, pytest.mark.influx]

MAPPING = ImportMapping.model_validate({
    "time": {"column": "ts", "format": "%Y-%m-%d %H:%M", "zone": "Europe/Berlin", "stamps": "start", "interval_s": 900},
    "tags": {"site": "s1", "line": "l1", "machine": "m1"},
    "columns": [
        {"column": "kwh", "to": "electrical.energy_kwh", "kind": "interval"},
        {"column": "kw", "to": "electrical.active_power_kw", "unit": "W"},
    ],
})


def test_import_into_influxdb_continues_the_register(influx_store, tmp_path):
    first = tmp_path / "a.csv"
    first.write_text("ts,kwh,kw\n2024-10-27 01:45,1.25,5000\n2024-10-27 02:00,2.5,10000\n2024-10-27 02:00,0.5,2000\n")
    second = tmp_path / "b.csv"
    second.write_text("ts,kwh,kw\n2024-10-27 03:00,4,16000\n")  # 03:00 CET: 45 min after the first file ends
    import_csv(first, MAPPING, influx_store)
    summary = import_csv(second, MAPPING, influx_store)
    assert summary.warnings == [] and summary.values == 2
    energy = influx_store.query("electrical", "energy_kwh", "2024-10-26T00:00:00Z", "2024-10-28T00:00:00Z")
    # Interval starts 01:45 CEST, 02:00 CEST, 02:00 CET (clocks went back) and 03:00 CET end 15 min later, in UTC;
    # the register opens at 0 at 23:45 UTC, and the second file continues it without an opening reading of its own.
    ends = ["2024-10-26T23:45", "2024-10-27T00:00", "2024-10-27T00:15", "2024-10-27T01:15", "2024-10-27T02:15"]
    assert [t.value for t in energy["time"]] == [to_ns(f"{e}:00+00:00") for e in ends]
    assert energy["value"].tolist() == pytest.approx([0.0, 1.25, 3.75, 4.25, 8.25])
    power = influx_store.query("electrical", "active_power_kw", "2024-10-26T00:00:00Z", "2024-10-28T00:00:00Z")
    assert power["value"].tolist() == pytest.approx([5.0, 10.0, 2.0, 16.0])

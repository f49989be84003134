"""CSV import into a real SQLite store: units, interval ends, registers, bad rows, DST rules, all-or-nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError
from core.importer import (
    DataFileError,
    ImportMapping,
    check_csv,
    import_csv,
    read_mapping,
    unit_factor,
)
from core.model import to_ns
from core.storage.sqlite import SQLiteStore

TAGS = {"site": "s1", "line": "l1", "machine": "m1"}


def mapping(**time) -> ImportMapping:
    """A mapping for the small files below: Wh per interval, power in W, a state code."""
    return ImportMapping.model_validate({
        "time": {"column": "ts", "format": "%Y-%m-%d %H:%M", "zone": "Europe/Berlin", **time},
        "tags": TAGS,
        "columns": [
            {"column": "energy_Wh", "to": "electrical.energy_kwh", "unit": "Wh", "kind": "interval"},
            {"column": "power_W", "to": "electrical.active_power_kw", "unit": "W"},
            {"column": "mode", "to": "machine_state.state", "kind": "code", "codes": {"off": 0, "run": 2}},
        ],
    })


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("ts,energy_Wh,power_W,mode\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def berlin(text: str) -> int:
    """A Berlin wall-clock time that is not ambiguous [ns, UTC]."""
    from zoneinfo import ZoneInfo

    return to_ns(dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Europe/Berlin")))


def stored(store: SQLiteStore, measurement: str, field: str):
    frame = store.query(measurement, field, 0, 2**62)
    return frame["time"].map(lambda t: t.value).to_numpy(), frame["value"].to_numpy()


@pytest.fixture
def store(tmp_path):
    with SQLiteStore(tmp_path / "import.db") as opened:
        yield opened


GOOD = ["2024-06-03 08:15,1500,6000,run", "2024-06-03 08:30,2500,10000,run", "2024-06-03 08:45,250,1000,off"]


def test_good_rows_are_stored_as_interval_ends_in_catalogue_units(tmp_path, store):
    summary = import_csv(write_csv(tmp_path / "a.csv", GOOD), mapping(), store)
    times, register = stored(store, "electrical", "energy_kwh")
    ends = [berlin("2024-06-03T08:15"), berlin("2024-06-03T08:30"), berlin("2024-06-03T08:45")]
    # The register opens at 0 at the start of the first interval and adds each interval's energy (Wh -> kWh).
    assert times.tolist() == [ends[0] - 900 * 10**9, *ends]
    assert register.tolist() == pytest.approx([0.0, 1.5, 4.0, 4.25])
    times, power = stored(store, "electrical", "active_power_kw")
    assert times.tolist() == ends and power.tolist() == pytest.approx([6.0, 10.0, 1.0])
    assert stored(store, "machine_state", "state")[1].tolist() == [2, 2, 0]
    assert {info.key.tag_dict == TAGS for info in store.series()} == {True}
    assert summary.rows == 3 and summary.interval_s == 900 and summary.values == 4 + 3 + 3
    assert summary.totals == {"electrical.energy_kwh": pytest.approx(4.25)}
    assert summary.first_ns == ends[0] and summary.last_ns == ends[-1]
    assert "3 rows" in summary.line() and "08:15+02:00" in summary.line()


def test_interval_start_stamps_are_moved_to_the_interval_end(tmp_path, tmp_path_factory):
    starts = ["2024-06-03 08:00,1500,6000,run", "2024-06-03 08:15,2500,10000,run", "2024-06-03 08:30,250,1000,off"]
    with SQLiteStore(tmp_path / "start.db") as by_start, SQLiteStore(tmp_path / "end.db") as by_end:
        import_csv(write_csv(tmp_path / "s.csv", starts), mapping(stamps="start"), by_start)
        import_csv(write_csv(tmp_path / "e.csv", GOOD), mapping(stamps="end"), by_end)
        for measurement, name in (("electrical", "energy_kwh"), ("electrical", "active_power_kw")):
            a, b = stored(by_start, measurement, name), stored(by_end, measurement, name)
            assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_written(tmp_path, store):
    rows = [
        "2024-06-03 08:15,1500,6000,run",  # line 2, good
        "2024-06-03 08:30,15x0,6000,run",  # 3: not a number
        "03.06.2024 08:45,100,6000,run",  # 4: wrong time format
        "2024-06-03 09:00,,6000,run",  # 5: empty required cell
        "2024-06-03 09:15,100,6000,walk",  # 6: unknown code
        "",  # 7: blank lines are not rows
        "2024-06-03 09:30,100,6000",  # 8: a field missing
        "2024-06-03 08:15,100,6000,run",  # 9: same instant as line 2
        "2024-06-03 09:45,-5,6000,run",  # 10: negative interval energy
        "2024-06-03 10:00,100,6000,run",  # 11, good
    ]
    with pytest.raises(DataFileError) as caught:
        import_csv(write_csv(tmp_path / "bad.csv", rows), mapping(), store)
    text = str(caught.value)
    lines = text.splitlines()
    assert "7 of 9 rows are bad; nothing was written" in lines[0]
    reported = {int(line.split(":")[1]): line for line in lines[1:]}
    assert sorted(reported) == [3, 4, 5, 6, 8, 9, 10]
    assert "'15x0' is not a number" in reported[3]
    assert "does not match format '%Y-%m-%d %H:%M'" in reported[4]
    assert "'energy_Wh' is empty" in reported[5] and "required: false" in reported[5]
    assert "'walk' is not one of the codes 'off', 'run'" in reported[6]
    assert "3 fields where the header has 4" in reported[8]
    assert "same instant as line 2" in reported[9]
    assert "negative" in reported[10] and "kind: counter" in reported[10]
    assert store.series() == []


def test_the_report_is_limited_and_says_how_many_more(tmp_path):
    rows = [f"2024-06-03 {h:02d}:00,oops,1,run" for h in range(20)]
    with pytest.raises(DataFileError) as caught:
        check_csv(write_csv(tmp_path / "many.csv", rows), mapping(), max_errors=5)
    lines = str(caught.value).splitlines()
    assert len(lines) == 1 + 5 + 1 and lines[-1].startswith("... and 15 more bad rows")
    assert [int(line.split(":")[1]) for line in lines[1:6]] == [2, 3, 4, 5, 6]


def fall_back_rows() -> list[str]:
    """Berlin, 27 October 2024: clocks go back at 03:00 CEST to 02:00 CET, so 02:00-02:45 occur twice."""
    stamps = ["01:45", "02:00", "02:15", "02:30", "02:45", "02:00", "02:15", "02:30", "02:45", "03:00"]
    return [f"2024-10-27 {s},100,400,run" for s in stamps]


def test_times_that_occur_twice_follow_the_file_order_by_default(tmp_path, store):
    import_csv(write_csv(tmp_path / "dst.csv", fall_back_rows()), mapping(), store)
    times, register = stored(store, "electrical", "energy_kwh")
    # 01:45 CEST is 23:45 UTC; every following row is 15 min later, the repeated hour included.
    first = to_ns("2024-10-26T23:45:00+00:00")
    assert times.tolist() == [first - 900 * 10**9] + [first + i * 900 * 10**9 for i in range(10)]
    assert register[-1] == pytest.approx(1.0)


def test_a_newest_first_file_takes_the_repeated_hour_in_its_order(tmp_path):
    parsed = check_csv(write_csv(tmp_path / "desc.csv", fall_back_rows()[::-1]), mapping())
    first = to_ns("2024-10-26T23:45:00+00:00")
    assert parsed.times_ns.tolist() == [first + i * 900 * 10**9 for i in range(10)][::-1]


def test_the_shipped_steel_mapping_is_valid():
    m = read_mapping(Path(__file__).resolve().parents[2] / "docs" / "examples" / "steel-industry.yaml")
    assert m.time.zone == "Asia/Seoul" and m.time.stamps == "end" and m.time.midnight_previous_date
    energy = next(c for c in m.columns if c.column == "Usage_kWh")
    assert energy.to == "electrical.energy_kwh" and energy.kind == "interval"


def test_times_that_occur_twice_can_be_refused_or_pinned(tmp_path, store):
    path = write_csv(tmp_path / "dst.csv", fall_back_rows())
    with pytest.raises(DataFileError) as caught:
        check_csv(path, mapping(ambiguous="error"))
    lines = str(caught.value).splitlines()[1:]
    assert [int(line.split(":")[1]) for line in lines] == [3, 4, 5, 6, 7, 8, 9, 10]
    assert "occurs twice in Europe/Berlin" in lines[0] and "time.ambiguous" in lines[0]
    # 'earlier' maps both copies to the same instant, which the duplicate check then reports.
    with pytest.raises(DataFileError, match="same instant as line 3"):
        check_csv(path, mapping(ambiguous="earlier"))
    assert store.series() == []


def test_skipped_local_times_are_reported_or_shifted(tmp_path, store):
    rows = ["2024-03-31 01:45,100,400,run", "2024-03-31 02:15,100,400,run", "2024-03-31 03:15,100,400,run"]
    path = write_csv(tmp_path / "spring.csv", rows)
    with pytest.raises(DataFileError, match=r"spring.csv:3: local time 2024-03-31 02:15:00 does not exist"):
        check_csv(path, mapping(interval_s=900))
    parsed = check_csv(path, mapping(nonexistent="shift_forward", interval_s=900))
    assert parsed.times_ns.tolist() == [to_ns("2024-03-31T00:45:00+00:00"), to_ns("2024-03-31T01:00:00+00:00"),
                                        to_ns("2024-03-31T01:15:00+00:00")]


def test_midnight_rows_stamped_with_the_previous_date(tmp_path):
    rows = ["1/6/2024 23:45,1,1,run", "1/6/2024 0:00,2,1,run", "2/6/2024 0:15,3,1,run"]
    m = mapping(format="%d/%m/%Y %H:%M", zone="UTC", midnight_previous_date=True)
    parsed = check_csv(write_csv(tmp_path / "mid.csv", rows), m)
    assert parsed.times_ns.tolist() == [to_ns("2024-06-01T23:45:00+00:00"), to_ns("2024-06-02T00:00:00+00:00"),
                                        to_ns("2024-06-02T00:15:00+00:00")]
    with pytest.raises(DataFileError, match="same instant"):  # without the option, 1/6 0:00 is a day early
        check_csv(write_csv(tmp_path / "mid2.csv", [*rows, "1/6/2024 23:45,1,1,run"]), m)


def test_stamps_with_their_own_offset_ignore_the_zone(tmp_path):
    rows = ["2024-06-03T08:15:00+02:00,1,1,run", "2024-06-03T06:30:00Z,1,1,run", "2024-06-03 08:45,1,1,run"]
    parsed = check_csv(write_csv(tmp_path / "iso.csv", rows), mapping(format="ISO8601"))
    assert parsed.times_ns.tolist() == [berlin("2024-06-03T08:15"), berlin("2024-06-03T08:30"), berlin("2024-06-03T08:45")]


def test_a_file_that_continues_a_stored_register_continues_it(tmp_path, store):
    later = ["2024-06-03 09:00,1000,1,run", "2024-06-03 09:15,500,1,run"]
    import_csv(write_csv(tmp_path / "a.csv", GOOD), mapping(), store)
    summary = import_csv(write_csv(tmp_path / "b.csv", later), mapping(), store)
    _, register = stored(store, "electrical", "energy_kwh")
    assert register[-1] - register[0] == pytest.approx(4.25 + 1.5)
    assert np.all(np.diff(register) >= 0) and summary.warnings == [] and summary.values == 2 + 2 + 2
    # Importing the first file again writes the same values: the register is unchanged.
    import_csv(write_csv(tmp_path / "a.csv", GOOD), mapping(), store)
    assert stored(store, "electrical", "energy_kwh")[1].tolist() == register.tolist()


def test_optional_empty_cells_are_stored_as_missing(tmp_path, store):
    m = mapping().model_copy(update={"columns": [
        c.model_copy(update={"required": False}) if c.column == "power_W" else c for c in mapping().columns]})
    import_csv(write_csv(tmp_path / "gap.csv", ["2024-06-03 08:15,1,1000,run", "2024-06-03 08:30,1,,run"]), m, store)
    frame = store.query("electrical", "active_power_kw", 0, 2**62)
    assert frame["value"].iloc[0] == 1.0 and np.isnan(frame["value"].iloc[1]) and frame["status"].iloc[1] != 0


def test_mapping_errors_name_file_line_key_and_options(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("time:\n  column: ts\n  stamps: middle\ncolumns:\n  - column: e\n    to: electrical.energy_kwh\n")
    with pytest.raises(ConfigError) as caught:
        read_mapping(path)
    text = str(caught.value)
    assert f"{path}:3: time.stamps: 'middle' is not valid; valid options: 'end' or 'start'" in text
    assert f"{path}:5: columns[0]" in text and "set kind: interval" in text
    path.write_text("time: {column: ts, zone: Mars/Base}\ncolumns: [{column: p, to: electrical.active_power_kw, unit: kWh}]\n")
    with pytest.raises(ConfigError) as caught:
        read_mapping(path)
    text = str(caught.value)
    assert "'Mars/Base' is not a known time zone" in text and "cannot convert 'kWh' to 'kW'; power units: kW, W, MW" in text


def test_a_mapped_column_missing_from_the_header_lists_the_columns(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("ts;energy_Wh;power_W;mode\n2024-06-03 08:15;1;1;run\n")
    with pytest.raises(DataFileError, match=r"no column 'ts', 'energy_Wh'.*columns here: 'ts;energy_Wh;power_W;mode'.*csv.delimiter"):
        check_csv(path, mapping())


def test_unit_factors():
    assert unit_factor("MWh", "kWh") == 1000 and unit_factor("Wh", "kWh") == 1e-3 and unit_factor("%", "1") == 0.01
    assert unit_factor("W", "MW") == pytest.approx(1e-6) and unit_factor("kvarh", "kVarh") == 1
    with pytest.raises(ValueError, match="energy units"):
        unit_factor("kW", "kWh")

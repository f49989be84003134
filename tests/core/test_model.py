import datetime as dt
import math

import pytest

from core.model import EVENT_KINDS, MEASUREMENTS, Event, Point, SeriesKey, from_ns, status_severity, to_ns, unit_of


def test_to_ns_round_trips_aware_datetimes():
    when = dt.datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert from_ns(to_ns(when)) == when
    assert to_ns("2026-01-01T00:00:00Z") == 1767225600 * 10**9
    assert to_ns(1.5) == 1_500_000_000


def test_to_ns_refuses_naive_datetimes_with_a_fix():
    with pytest.raises(ValueError, match="no time zone"):
        to_ns(dt.datetime(2026, 1, 1))


def test_series_key_is_independent_of_tag_order():
    a = SeriesKey.of("electrical", {"site": "n", "machine": "m1"}, "active_power_kw")
    b = SeriesKey.of("electrical", {"machine": "m1", "site": "n"}, "active_power_kw")
    assert a == b and hash(a) == hash(b)
    assert a.tag_dict == {"machine": "m1", "site": "n"}


def test_point_turns_non_finite_values_into_missing():
    point = Point("electrical", {"machine": "m"}, {"a": math.nan, "b": math.inf, "c": 1}, 0)
    values = {key.field: value for key, value in point.series_values()}
    assert values == {"a": None, "b": None, "c": 1.0}


@pytest.mark.parametrize("code,severity", [(0, "good"), (0x40000000, "uncertain"), (0x80340000, "bad"), (0xC0000000, "bad")])
def test_status_severity_reads_the_top_bits(code, severity):
    assert status_severity(code) == severity


def test_catalogue_units():
    assert unit_of("electrical", "active_power_kw") == "kW"
    assert unit_of("electrical", "energy_kwh") == "kWh"
    assert unit_of("nope", "x") is None
    assert MEASUREMENTS["material"].tags[-1] == "material"


def test_event_round_trip_and_vocabulary():
    tz = dt.UTC
    event = Event("north/l1/cnc-01", "idle_running", dt.datetime(2026, 1, 1, tzinfo=tz), dt.datetime(2026, 1, 1, 1, tzinfo=tz), 3.25, {"x": 1})
    assert Event.from_dict(event.to_dict()) == event
    assert "meter_gap" in EVENT_KINDS
    with pytest.raises(ValueError, match="valid kinds"):
        Event("m", "leak", event.start, event.end, 0.0)

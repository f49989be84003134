import datetime as dt
import math

from asyncua import ua

from collectors.opcua.values import (
    BAD_OUT_OF_RANGE,
    BAD_TYPE_MISMATCH,
    SEMANTICS_CHANGED,
    NodeState,
    datetime_to_ns,
    to_row,
)
from core.model import status_severity

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
T0_NS = datetime_to_ns(T0)


def state(**kw):
    base = dict(key="n", measurement="electrical", field="energy_kwh", base_tags={"machine": "m"},
                tags=(("machine", "m"),), timestamp_source="source")
    base.update(kw)
    return NodeState(**base)


def dv(value, status=0, source=T0, server=None, vtype=None):
    return ua.DataValue(ua.Variant(value, vtype) if vtype else ua.Variant(value), StatusCode=ua.StatusCode(status),
                        SourceTimestamp=source, ServerTimestamp=server)


def test_good_number_with_source_timestamp():
    row = to_row(state(), dv(12.5), now_ns=1)
    assert row == ("electrical", (("machine", "m"),), "energy_kwh", T0_NS, 12.5, 0)


def test_bad_value_is_never_a_number():
    code = ua.StatusCodes.BadSensorFailure
    row = to_row(state(), dv(99.0, status=code), now_ns=1)
    assert row[4] is None and row[5] == code


def test_uncertain_keeps_value_and_code():
    code = ua.StatusCodes.UncertainLastUsableValue
    row = to_row(state(), dv(3.0, status=code), now_ns=1)
    assert row[4] == 3.0 and status_severity(row[5]) == "uncertain"


def test_nan_and_inf_are_missing_and_not_good():
    for v in (math.nan, math.inf, -math.inf):
        row = to_row(state(), dv(v), now_ns=1)
        assert row[4] is None and row[5] == BAD_OUT_OF_RANGE


def test_string_is_type_mismatch():
    row = to_row(state(), dv("abc"), now_ns=1)
    assert row[4] is None and row[5] == BAD_TYPE_MISMATCH


def test_bool_and_int_become_float():
    assert to_row(state(), dv(True), now_ns=1)[4] == 1.0
    assert to_row(state(), dv(7, vtype=ua.VariantType.UInt32), now_ns=1)[4] == 7.0


def test_timestamp_sources():
    server = T0 + dt.timedelta(seconds=5)
    assert to_row(state(timestamp_source="server"), dv(1.0, server=server), now_ns=1)[3] == T0_NS + 5_000_000_000
    assert to_row(state(timestamp_source="collector"), dv(1.0, server=server), now_ns=42)[3] == 42
    # a missing source timestamp falls back to the server's, then the collector's
    assert to_row(state(), dv(1.0, source=None, server=server), now_ns=1)[3] == T0_NS + 5_000_000_000
    assert to_row(state(), dv(1.0, source=None), now_ns=77)[3] == 77


def test_counter_reset_and_rollover_are_flagged():
    notices = []
    s = state(counter=True, counter_max=1000.0)
    assert to_row(s, dv(990.0), 1, notices)[5] == 0
    roll = to_row(s, dv(3.0), 1, notices)
    assert roll[5] & SEMANTICS_CHANGED and roll[4] == 3.0 and status_severity(roll[5]) == "good"
    assert to_row(s, dv(10.0), 1, notices)[5] == 0
    reset = to_row(s, dv(0.0), 1, notices)
    assert reset[5] & SEMANTICS_CHANGED
    assert [n.name for n in notices] == ["collector.counter.rollover", "collector.counter.reset"]


def test_non_counter_decrease_not_flagged():
    s = state(counter=False)
    to_row(s, dv(5.0), 1)
    assert to_row(s, dv(1.0), 1)[5] == 0

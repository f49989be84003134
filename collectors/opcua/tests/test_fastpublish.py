"""The bulk PublishResponse decoder gives the same values, codes and times as asyncua's own decoder."""

import datetime as dt

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from collectors.opcua.fastpublish import FastDataChange, decode_publish_response
from collectors.opcua.values import NodeState, datetime_to_ns, to_row, to_row_raw

NOW = dt.datetime(2026, 11, 27, 8, 30, 1, 123456, tzinfo=dt.UTC)
VARIANTS = [
    ua.Variant(1.5, ua.VariantType.Double),
    ua.Variant(True, ua.VariantType.Boolean),
    ua.Variant(-7, ua.VariantType.Int32),
    ua.Variant(2**40, ua.VariantType.UInt64),
    ua.Variant(2.5, ua.VariantType.Float),
    ua.Variant(200, ua.VariantType.Byte),
    ua.Variant("steel", ua.VariantType.String),
    ua.Variant([1.0, 2.0], ua.VariantType.Double),
    ua.Variant(float("nan"), ua.VariantType.Double),
    None,
]
CODES = [0, 0x80340000, 0x40000000, 0]


def response(items, extra=()):
    resp = ua.PublishResponse()
    resp.Parameters.SubscriptionId = 7
    resp.Parameters.AvailableSequenceNumbers = [3, 4]
    resp.Parameters.MoreNotifications = True
    resp.Parameters.Results = [ua.StatusCode(0), ua.StatusCode(0x80000000)]
    resp.Parameters.NotificationMessage.SequenceNumber = 42
    resp.Parameters.NotificationMessage.NotificationData = [ua.DataChangeNotification(MonitoredItems=items), *extra]
    return struct_to_binary(resp)


def items(n=60, **dv_kwargs):
    out = []
    for i in range(n):
        dv = ua.DataValue(VARIANTS[i % len(VARIANTS)], ua.StatusCode(CODES[i % len(CODES)]),
                          SourceTimestamp=NOW if i % 5 else None, ServerTimestamp=NOW if i % 7 else None,
                          **dv_kwargs)
        out.append(ua.MonitoredItemNotification(ClientHandle=1000 + i, Value=dv))
    return out


def test_bulk_decode_matches_asyncua():
    data = response(items(), [ua.StatusChangeNotification(Status=ua.StatusCode(0x80AB0000))])
    ref = struct_from_binary(ua.PublishResponse, Buffer(data))
    fast = decode_publish_response(Buffer(data))
    p = fast.Parameters
    assert (p.SubscriptionId, p.AvailableSequenceNumbers, p.MoreNotifications) == (7, [3, 4], True)
    assert p.NotificationMessage.SequenceNumber == 42
    assert [c.value for c in p.Results] == [0, 0x80000000]
    dc, status = p.NotificationMessage.NotificationData
    assert isinstance(dc, FastDataChange)
    assert isinstance(status, ua.StatusChangeNotification) and status.Status.value == 0x80AB0000
    ref_items = ref.Parameters.NotificationMessage.NotificationData[0].MonitoredItems
    assert len(dc.items) == len(ref_items) == 60
    for (handle, value, code, src, srv), it in zip(dc.items, ref_items):
        dv = it.Value
        assert handle == it.ClientHandle
        expected = dv.Value.Value if dv.Value is not None else None
        if isinstance(expected, float) and expected != expected:
            assert value != value
        else:
            assert value == expected and type(value) is type(expected)
        assert code == dv.StatusCode.value
        assert src == datetime_to_ns(dv.SourceTimestamp)
        assert srv == datetime_to_ns(dv.ServerTimestamp)
        # and the stored row is the same whichever path decoded it
        for source in ("source", "server", "collector"):
            a = NodeState("n", "m", "f", {}, (), source)
            b = NodeState("n", "m", "f", {}, (), source)
            assert to_row_raw(a, value, code, src, srv, 123) == to_row(b, dv, 123) or value != value


def test_picoseconds_fall_back_to_asyncua():
    data = response(items(10, SourcePicoseconds=5))
    fast = decode_publish_response(Buffer(data))
    ref = struct_from_binary(ua.PublishResponse, Buffer(data))
    dc = fast.Parameters.NotificationMessage.NotificationData[0]
    assert isinstance(dc, ua.DataChangeNotification)
    assert repr(dc) == repr(ref.Parameters.NotificationMessage.NotificationData[0])  # repr: NaN != NaN


def test_truncated_response_is_an_error_not_garbage():
    data = response(items(10))
    with pytest.raises(ua.UaError):  # asyncua's NotEnoughData
        decode_publish_response(Buffer(data[:-30]))


def _same_items(fast_items, ref_items):
    assert len(fast_items) == len(ref_items)
    for (handle, value, code, src, srv), it in zip(fast_items, ref_items):
        dv = it.Value
        expected = dv.Value.Value
        assert handle == it.ClientHandle and code == dv.StatusCode.value
        assert (value == expected or (value != value and expected != expected)) and type(value) is type(expected)
        assert src == datetime_to_ns(dv.SourceTimestamp) and srv == datetime_to_ns(dv.ServerTimestamp)


UNIFORM = [(ua.VariantType.Double, lambda i: i * 0.25 - 3.0), (ua.VariantType.Float, lambda i: i * 0.5),
           (ua.VariantType.Int32, lambda i: -i), (ua.VariantType.UInt64, lambda i: 2**63 + i),
           (ua.VariantType.Boolean, lambda i: i % 3 == 0), (ua.VariantType.Byte, lambda i: i % 256),
           (ua.VariantType.Int16, lambda i: -i), (ua.VariantType.UInt32, lambda i: 4_000_000_000 + i)]


@pytest.mark.parametrize("vtype,make", UNIFORM, ids=[v.name for v, _ in UNIFORM])
@pytest.mark.parametrize("layout", ["value+source+server", "value+status+source", "value only", "value+server"])
def test_uniform_messages_decoded_in_one_pass_match_asyncua(vtype, make, layout):
    # A subscription to many numbers: every item has the same layout, which the decoder reads with numpy in one pass.
    later = NOW + dt.timedelta(milliseconds=1)
    its = [ua.MonitoredItemNotification(ClientHandle=7 + 3 * i, Value=ua.DataValue(
        ua.Variant(make(i), vtype), ua.StatusCode(0x40000000 + i if "status" in layout else 0),
        SourceTimestamp=NOW + dt.timedelta(microseconds=i) if "source" in layout else None,
        ServerTimestamp=later if "server" in layout else None)) for i in range(300)]
    data = response(its)
    dc = decode_publish_response(Buffer(data)).Parameters.NotificationMessage.NotificationData[0]
    ref = struct_from_binary(ua.PublishResponse, Buffer(data)).Parameters.NotificationMessage.NotificationData[0]
    assert isinstance(dc, FastDataChange)
    _same_items(dc.items, ref.MonitoredItems)


@pytest.mark.parametrize("odd", ["type", "null time", "status", "string", "before 1970"])
def test_one_odd_item_among_uniform_ones_still_decodes_exactly(odd):
    its = [ua.MonitoredItemNotification(ClientHandle=i, Value=ua.DataValue(
        ua.Variant(float(i), ua.VariantType.Double), SourceTimestamp=NOW, ServerTimestamp=NOW)) for i in range(100)]
    dv = its[57].Value
    if odd == "type":
        dv.Value = ua.Variant(5, ua.VariantType.Int64)
    elif odd == "null time":
        dv.SourceTimestamp = None
    elif odd == "status":
        dv.StatusCode = ua.StatusCode(0x80340000)
    elif odd == "string":
        dv.Value = ua.Variant("x", ua.VariantType.String)
    else:
        dv.SourceTimestamp = dt.datetime(1960, 1, 1, tzinfo=dt.UTC)
    data = response(its)
    dc = decode_publish_response(Buffer(data)).Parameters.NotificationMessage.NotificationData[0]
    ref = struct_from_binary(ua.PublishResponse, Buffer(data)).Parameters.NotificationMessage.NotificationData[0]
    assert isinstance(dc, FastDataChange)
    _same_items(dc.items, ref.MonitoredItems)

"""The bulk PublishResponse decoder gives the same values, codes and times as asyncua's own decoder."""

import datetime as dt

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from collectors.opcua.fastpublish import FastDataChange, decode_publish_response
from collectors.opcua.values import NodeState, datetime_to_ns, to_row, to_row_raw

NOW = dt.datetime(2026, 11, 27, 8, 30, 1, 123456, tzinfo=dt.timezone.utc)
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
    with pytest.raises(Exception):
        decode_publish_response(Buffer(data[:-30]))

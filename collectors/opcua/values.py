"""Turning OPC UA DataValues into stored rows: quality, numbers, timestamps and counter registers.

Rules (documented in the README):

- The StatusCode is stored with every value. A Bad value is stored as missing (None), never as a number.
- A value that is not a number (string, structure, array) is stored as missing with ``BadTypeMismatch``.
- NaN and +/-Inf from the server are stored as missing; when the server said Good the stored status is
  ``BadOutOfRange`` so that no Good row is ever without a number.
- Counter registers (``counter: true``): a value lower than the previous one is a *rollover* when the previous value
  was above half of ``counter_max``, else a *reset*. The row is flagged with the StatusCode info bit
  ``SemanticsChanged`` (0x4000) and a Notice is raised.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field  # (NodeState has a field named 'field')

from core.notices import Notice
from core.storage.intervals import SEMANTICS_CHANGED, classify_drop

BAD_TYPE_MISMATCH = 0x80740000
BAD_OUT_OF_RANGE = 0x803C0000
# SEMANTICS_CHANGED (0x4000), the StatusCode info bit set on the first value after a counter rollover or reset, and
# the rollover/reset rule live in core.storage.intervals, which the stores' increase() shares.

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_US = dt.timedelta(microseconds=1)


def datetime_to_ns(value: dt.datetime | None) -> int | None:
    """Aware or naive-UTC datetime (asyncua's) to ns since the epoch; None for missing or the OPC UA null time."""
    if value is None:
        return None
    delta = value - _EPOCH_NAIVE if value.tzinfo is None else value - _EPOCH
    if delta.days < 0:  # 1601 (null DateTime) or garbage: treat as missing
        return None
    return (delta // _US) * 1000


@dataclass
class NodeState:
    """Run-time state of one collected node (the handle indexes a list of these).

    Attributes
    ----------
    measurement, field : str
        Where the values go.
    tags : tuple
        Sorted (key, value) pairs, replaced when a tag source node changes.
    """

    key: str
    measurement: str
    field: str
    base_tags: dict
    tags: tuple
    timestamp_source: str
    counter: bool = False
    counter_max: float | None = None
    dynamic_tags: dict = dataclass_field(default_factory=dict)
    last_value: float | None = None
    values: int = 0
    last_ns: int | None = None

    def set_tag(self, name: str, value: str) -> None:
        """Update a tag taken from another node's value."""
        self.dynamic_tags[name] = value
        merged = dict(self.base_tags)
        merged.update(self.dynamic_tags)
        self.tags = tuple(sorted(merged.items()))


def to_row(node: NodeState, dv, now_ns: int, notices: list | None = None) -> tuple:
    """Convert one DataValue into a row ``(measurement, tags, field, time_ns, value, status)``."""
    sc = dv.StatusCode
    variant = dv.Value
    src = node.timestamp_source
    return to_row_raw(
        node,
        variant.Value if variant is not None else None,
        sc.value if sc is not None else 0,
        None if src != "source" else datetime_to_ns(dv.SourceTimestamp),
        None if src == "collector" else datetime_to_ns(dv.ServerTimestamp),
        now_ns,
        notices,
    )


def to_row_raw(node: NodeState, raw, status: int, source_ns: int | None, server_ns: int | None, now_ns: int,
               notices: list | None = None) -> tuple:
    """Row from already decoded parts: Python value, StatusCode [int], source/server time [ns] or None.

    The bulk publish path (:mod:`collectors.opcua.fastpublish`) calls this directly; :func:`to_row` for DataValues.
    """
    value: float | None
    if status & 0x80000000:  # Bad: never a number
        value = None
    elif raw.__class__ is float:  # the common case first
        value = raw
        if value - value != 0.0:  # NaN or +-Inf
            value = None
            if status < 0x40000000:
                status = BAD_OUT_OF_RANGE
    elif isinstance(raw, bool):
        value = 1.0 if raw else 0.0
    elif isinstance(raw, (int, float)):
        value = float(raw)
        if not math.isfinite(value):
            value = None
            if status < 0x40000000:
                status = BAD_OUT_OF_RANGE
    else:
        value = None
        status = BAD_TYPE_MISMATCH if raw is not None or status < 0x40000000 else status
    src = node.timestamp_source
    if src == "collector":
        t = now_ns
    elif src == "server":
        t = server_ns or now_ns
    else:
        t = source_ns or server_ns or now_ns
    if node.counter and value is not None:
        last = node.last_value
        if last is not None and value < last:
            kind = classify_drop(last, value, node.counter_max)
            status |= SEMANTICS_CHANGED
            if notices is not None:
                notices.append(
                    Notice(
                        f"collector.counter.{kind}",
                        f"counter {node.key} went from {last} to {value} ({kind}); the row is flagged with "
                        "StatusCode bit 0x4000",
                        {"node": node.key, "previous": last, "value": value, "kind": kind,
                         "measurement": node.measurement, "field": node.field},
                    )
                )
        node.last_value = value
    node.values += 1
    node.last_ns = now_ns
    return (node.measurement, node.tags, node.field, t, value, status)


def now_ns() -> int:
    """Current time [ns since the epoch]."""
    return time.time_ns()

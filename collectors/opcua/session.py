"""One OPC UA server: connect, resolve nodes, subscribe (or poll), watch the session and reconnect.

Why our own loop instead of asyncua's ``auto_reconnect``: after a server *restart* the old subscription and often the
namespace indices are gone, so every reconnect resolves ``nsu=`` NodeIds and browse paths again and creates fresh
subscriptions. Exactly one connect attempt runs at a time, with exponential backoff and jitter; while the server's
port refuses connections a cheap TCP probe every ``probe_interval_s`` shortens the wait, so the collector is back
within seconds of the server without opening a flood of sessions.

A subscription the server drops is re-created in the same session: the server answers a Publish with
BadNoSubscription, or the session falls silent (no PublishResponse, not even a keep-alive, for
``SILENT_KEEPALIVES`` keep-alive periods) and our subscriptions turn out to be gone. A session that is silent while
its subscriptions still exist is treated as lost and reconnected.

Notifications are handled a whole ``DataChangeNotification`` at a time in the publish callback (no task per value);
the rows go to the :class:`~collectors.buffer.BatchWriter` without waiting on the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from asyncua import Client, ua

from collectors.opcua.compat_asyncua import node_id, status_of
from collectors.opcua.config import Deadband, GroupConfig, NodeConfig, ServerConfig
from collectors.opcua.fastpublish import (
    CollectorClient,
    FastDataChange,
    install_fast_publish,
)
from collectors.opcua.values import NodeState, now_ns, to_row, to_row_raw
from core.backoff import Backoff
from core.model import unit_of
from core.notices import Notice

log = logging.getLogger(__name__)

_LIMIT_IDS = {
    "MaxNodesPerRead": 11705,
    "MaxNodesPerBrowse": 11710,
    "MaxNodesPerTranslateBrowsePathsToNodeIds": 11712,
    "MaxMonitoredItemsPerCall": 11714,
}
_TRIGGERS = {
    "status": ua.DataChangeTrigger.Status,
    "status_value": ua.DataChangeTrigger.StatusValue,
    "status_value_timestamp": ua.DataChangeTrigger.StatusValueTimestamp,
}
_DEADBAND = {"none": 0, "absolute": 1, "percent": 2}
#: CreateMonitoredItems results that mean "this filter, not this node": reported with the filter's settings.
_FILTER_REFUSED = {
    ua.StatusCodes.BadFilterNotAllowed,
    ua.StatusCodes.BadMonitoredItemFilterInvalid,
    ua.StatusCodes.BadMonitoredItemFilterUnsupported,
    ua.StatusCodes.BadDeadbandFilterInvalid,
}
_NUMERIC_TYPES = set(range(1, 12)) | {26, 27, 28}


@dataclass
class PlannedNode:
    """A configured node merged with its group's defaults."""

    handle: int
    group: GroupConfig
    config: NodeConfig
    address: str  # node id text or browse path
    state: NodeState
    is_tag_source: bool = False
    dependents: list = field(default_factory=list)  # (handle, tag name) of nodes whose tag this node feeds
    nodeid: ua.NodeId | None = None
    bad: str | None = None
    kind: str = "number"  # the data type's kind from resolve(): number or enum


def plan_nodes(server: ServerConfig) -> list[PlannedNode]:
    """Merge group defaults into nodes and add the tag-source nodes; handles are list indices."""
    planned: list[PlannedNode] = []
    sources: dict[str, PlannedNode] = {}
    for group in server.groups:
        for node in group.nodes:
            measurement = node.measurement or group.measurement
            field_name = node.field or _default_field(node)
            tags = dict(group.tags)
            tags.update(node.tags)
            for t in node.drop_tags:
                tags.pop(t, None)
            state = NodeState(
                key=node.node_id or node.browse_path or "",
                measurement=measurement,
                field=field_name,
                base_tags=tags,
                tags=tuple(sorted(tags.items())),
                timestamp_source=group.timestamp_source or server.timestamp_source,
                counter=node.counter if node.counter is not None else _is_counter(measurement, field_name),
                counter_max=node.counter_max,
            )
            p = PlannedNode(len(planned), group, node, node.node_id or node.browse_path or "", state)
            planned.append(p)
            tag_nodes = dict(group.tags_from_nodes)
            tag_nodes.update(node.tags_from_nodes)
            for tag, src in tag_nodes.items():
                state.set_tag(tag, "unknown")
                sp = sources.get(src)
                if sp is None:
                    sst = NodeState(src, "", "", {}, (), "source")
                    sp = PlannedNode(-1, group, NodeConfig(node_id=src), src, sst, is_tag_source=True)
                    sources[src] = sp
                sp.dependents.append((p.handle, tag))
    for sp in sources.values():
        sp.handle = len(planned)
        planned.append(sp)
    return planned


def _default_field(node: NodeConfig) -> str:
    from collectors.opcua.mapping import snake_case

    text = node.browse_path or node.node_id or "value"
    return snake_case(text.rsplit("/", 1)[-1].split(";", 1)[-1].split("=", 1)[-1])


def _is_counter(measurement: str, field_name: str) -> bool:
    from core.model import MEASUREMENTS

    spec = MEASUREMENTS.get(measurement)
    if spec is None:
        return False
    try:
        return spec.field(field_name).kind == "counter"
    except KeyError:
        return False


_NO_DEADBAND = Deadband()


def _filter_settings(node: PlannedNode) -> dict | None:
    """The node's data-change filter as ``{deadband, value, trigger}``; None when the server's default applies.

    Enumerations (state codes) get no deadband: every change of state counts, and servers refuse a deadband on a
    non-number (BadFilterNotAllowed), which would lose a machine's state to its group's power deadband.
    """
    deadband = node.config.deadband or node.group.deadband
    if node.kind == "enum":
        deadband = _NO_DEADBAND
    if node.is_tag_source or (deadband.type == "none" and node.group.trigger == "status_value"):
        return None
    return {"deadband": deadband.type, "value": deadband.value, "trigger": node.group.trigger}


def parse_node_id(text: str, namespaces: list[str]) -> ua.NodeId:
    """Parse ``ns=``/``nsu=`` NodeId text against the server's current namespace array."""
    if text.startswith("nsu="):
        uri, rest = text[4:].split(";", 1)
        if uri not in namespaces:
            raise ValueError(f"namespace {uri!r} is not on the server (it has: {', '.join(namespaces)})")
        text = f"ns={namespaces.index(uri)};{rest}"
    return ua.NodeId.from_string(text)


def parse_browse_path(path: str, default_ns: int) -> list[ua.QualifiedName]:
    """``/Plant/2:north/l1`` -> qualified names (relative to Objects); unprefixed names use ``default_ns``."""
    names: list[ua.QualifiedName] = []
    for part in [p for p in path.strip("/").split("/") if p]:
        if part == "Objects" and not names:
            continue
        if ":" in part and part.split(":", 1)[0].isdigit():
            ns, name = part.split(":", 1)
            names.append(ua.QualifiedName(name, int(ns)))
        else:
            names.append(ua.QualifiedName(part, default_ns))
    return names


def freeze_long_lived() -> None:
    """Hide every object alive now (modules, config, node plan, the connected session) from the cyclic garbage
    collector, after collecting what is garbage already.

    Why: at 50,000 values/s the receive path allocates well over 100,000 short-lived tuples per second, so the
    collector's full pass over the oldest generation runs several times a second, each walking every long-lived
    object (asyncua's type tables, the node states): measured 0.6 us of 1.9 us per value decoded, turned into rows
    and batched (80,000 long-lived objects; a running collector has more). Frozen objects are skipped; later garbage
    is collected as before. Called after each (re)connect: unfreezing first lets the collection reclaim the previous
    session's client, so reconnects leak nothing.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ServerSession:
    """Collects from one server until ``stop`` is set, reconnecting as needed.

    Parameters
    ----------
    config : ServerConfig
        The server's config.
    sink : callable
        Receives lists of rows (the batch writer's ``add_rows``).
    notify : callable
        Receives :class:`~core.notices.Notice` objects.
    """

    probe_interval_s = 0.25
    #: A session that receives no PublishResponse (data or keep-alive) for this many keep-alive periods of its
    #: subscriptions is checked: dropped subscriptions are re-created, otherwise the session counts as lost.
    SILENT_KEEPALIVES = 3
    #: PublishRequests kept outstanding; servers cap each NotificationMessage (node-opcua: 1,000 values), so one
    #: request at a time limits the rate to one message per round trip.
    publish_requests = 4

    def __init__(self, config: ServerConfig, sink: Callable[[list], None], notify: Callable[[Notice], None]) -> None:
        self.config = config
        self.sink = sink
        self.notify = notify
        self.nodes = plan_nodes(config)
        # Per handle: the common case (plain value, source timestamps, no counter) builds its row inline.
        self._plain = [not n.is_tag_source and not n.state.counter and n.state.timestamp_source == "source"
                       for n in self.nodes]
        self._states = [n.state for n in self.nodes]
        self.client: Client | None = None
        self.connected = False
        self.reconnects = 0
        self.connect_attempts = 0
        self.values_received = 0
        self.last_value_monotonic: float | None = None
        self.limits: dict[str, int] = {}
        self.monitored_item_calls = 0
        self.bad_nodes: dict[str, str] = {}
        self.last_error: str | None = None
        self.connected_since: float | None = None
        self._lost = asyncio.Event()
        self._resubscribe = asyncio.Event()
        self._resubscribe_reason = ""
        self._subscription_ids: list[int] = []
        self._keepalive_period_s = 0.0  # longest revised keep-alive period of our subscriptions [s]
        self._subscribed_at = 0.0
        #: Subscriptions re-created after the server dropped them (without a reconnect).
        self.resubscriptions = 0
        self._rate_window: list[tuple[float, int]] = [(time.monotonic(), 0)]
        self._reported_refusal: str | None = None
        self.stopped = False

    # -- status --------------------------------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``connected``, ``connecting`` or ``disconnected``."""
        if self.connected:
            return "connected"
        return "connecting" if self.connect_attempts and not self.stopped else "disconnected"

    def sample_rate(self, now: float | None = None) -> None:
        """Record the received count for :meth:`values_per_second`; the collector calls it every second on its own
        clock, so that the rate does not depend on how often someone reads it."""
        now = time.monotonic() if now is None else now
        window = self._rate_window
        window.append((now, self.values_received))
        while len(window) > 2 and now - window[1][0] >= 10:
            window.pop(0)

    def values_per_second(self) -> float:
        """Mean receive rate over the last ~10 s (since the start when younger) [values/s]; reading it changes
        nothing."""
        now = time.monotonic()
        t0, v0 = self._rate_window[0]
        return (self.values_received - v0) / (now - t0) if now > t0 else 0.0

    # -- the loop ------------------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Connect, collect, and reconnect with backoff until ``stop`` is set."""
        timeouts = self.config.timeouts
        backoff = Backoff(timeouts.reconnect_min_s, max(timeouts.reconnect_min_s, timeouts.reconnect_max_s))
        while not stop.is_set():
            self.connect_attempts += 1
            refused = False
            try:
                await self._connect_and_subscribe()
                backoff.reset()
                self.last_error = None  # connected and subscribed: the previous error is history
                if self.reconnects or self.connect_attempts > 1:
                    log.info("server %s: connected again", self.config.name)
                await self._collect_until_lost(stop)
            except asyncio.CancelledError:
                await self._disconnect()
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of one server: report, back off, retry
                refused = isinstance(exc, (ConnectionRefusedError, OSError, asyncio.TimeoutError)) and not isinstance(
                    exc, ua.UaError
                )
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("server %s: %s", self.config.name, self.last_error)
                self._report_refusal(exc)
            was_connected = self.connected
            self.connected = False
            await self._disconnect()
            if stop.is_set():
                break
            if was_connected:
                self.reconnects += 1
                self.notify(Notice("collector.server.connection_lost", f"lost the session to {self.config.name}; "
                                   "reconnecting", {"server": self.config.name, "error": self.last_error}))
            # Jitter (Backoff's default 0.5-1.0): collectors restarted together do not reconnect in step.
            await self._wait_before_retry(stop, backoff.next_delay(), probe=refused or was_connected)
        self.stopped = True

    def _report_refusal(self, exc: Exception) -> None:
        """A refused certificate or login needs the operator: one notice per distinct refusal, not one per retry."""
        from collectors.opcua.certs import SecurityRefused

        if isinstance(exc, SecurityRefused) and str(exc) != self._reported_refusal:
            self._reported_refusal = str(exc)
            self.notify(Notice(exc.notice, str(exc), {"server": self.config.name}, level="error"))

    async def _wait_before_retry(self, stop: asyncio.Event, delay: float, probe: bool) -> None:
        """Sleep ``delay`` [s]; while the port refused us, return early as soon as it accepts TCP again."""
        end = time.monotonic() + delay
        port_was_closed = False
        while not stop.is_set() and time.monotonic() < end:
            await asyncio.sleep(min(self.probe_interval_s, max(0.0, end - time.monotonic())))
            if probe:
                is_open = await self._port_open()
                if not is_open:
                    port_was_closed = True
                elif port_was_closed:
                    return  # the server is back: one attempt now

    async def _port_open(self) -> bool:
        url = urlparse(self.config.endpoint)
        try:
            _r, w = await asyncio.wait_for(asyncio.open_connection(url.hostname, url.port or 4840), 1.0)
        except (TimeoutError, OSError):
            return False
        w.close()
        return True

    async def _disconnect(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            await asyncio.wait_for(client.disconnect(), 2.0)
        except Exception:  # noqa: BLE001 - the server is gone or the session already closed
            try:
                client.disconnect_socket()
            except Exception as exc:  # noqa: BLE001 - nothing left to close
                log.debug("server %s: closing the socket: %s", self.config.name, exc)

    def _on_connection_lost(self, exc: Exception) -> None:
        self.last_error = f"keep-alive failed: {type(exc).__name__}: {exc}"
        self._lost.set()

    async def make_client(self) -> Client:
        """Create a client with this server's security, login and timeouts (not connected)."""
        from collectors.opcua.certs import apply_security

        cfg = self.config
        client = CollectorClient(cfg.endpoint, timeout=cfg.timeouts.request_s,
                                 watchdog_intervall=cfg.timeouts.keepalive_s)
        client.session_timeout = int(cfg.timeouts.session_s * 1000)
        client.name = client.description = "Wattline collector"
        client.application_uri = cfg.security.application_uri
        await apply_security(client, cfg, self.notify)
        # Our publish loop for this client only: several PublishRequests in flight, bulk decoding (fastpublish.py).
        session = install_fast_publish(client, self.publish_requests)
        session.on_no_subscription = self._on_no_subscription
        return client

    def _on_no_subscription(self, status: str) -> None:
        """The server answered a Publish with BadNoSubscription: re-create our subscriptions (in the loop)."""
        if self._subscription_ids and not self._resubscribe.is_set():
            self._resubscribe_reason = f"the server answered Publish with {status}"
            self._resubscribe.set()

    async def _connect_and_subscribe(self) -> None:
        cfg = self.config
        self._lost = asyncio.Event()
        self._resubscribe = asyncio.Event()
        client = await self.make_client()
        self.client = client

        async def lost(exc: Exception) -> None:
            self._on_connection_lost(exc)

        client.connection_lost_callback = lost
        from collectors.opcua.certs import connect_client

        await connect_client(client, cfg)
        self.connected = True
        self._reported_refusal = None
        self.connected_since = time.time()
        await self._read_limits(client)
        await self.resolve(client)
        await self._read_tag_sources(client)
        if cfg.mode == "subscription":
            await self._subscribe(client)
        freeze_long_lived()

    async def _read_limits(self, client: Client) -> None:
        ids = [node_id(i) for i in _LIMIT_IDS.values()]
        try:
            values = await client.uaclient.read_attributes(ids, ua.AttributeIds.Value)
        except ua.UaError:
            values = []
        self.limits = {}
        for name, dv in zip(_LIMIT_IDS, values):
            v = dv.Value.Value if dv.Value is not None and status_of(dv).is_good() else None
            if isinstance(v, int) and v > 0:
                self.limits[name] = v

    def chunk(self, limit_name: str) -> int:
        """Items per request: the server's limit (if any) capped by ``max_items_per_call``."""
        return max(1, min(self.limits.get(limit_name, 1 << 30), self.config.max_items_per_call))

    def _mark_bad(self, node: PlannedNode, reason: str, name: str = "collector.node.bad",
                  details: dict | None = None) -> None:
        node.bad = reason
        node.nodeid = None
        self.bad_nodes[node.address] = reason
        self.notify(Notice(name, f"{self.config.name}: node {node.address} skipped: {reason}",
                           {"server": self.config.name, "node": node.address, "reason": reason, **(details or {})}))

    async def resolve(self, client: Client) -> None:
        """Resolve NodeIds (``nsu=``) and browse paths against the server as it is now; check data types."""
        namespaces = await client.get_namespace_array()
        self.bad_nodes = {}
        paths = []
        for node in self.nodes:
            node.bad = None
            node.nodeid = None
            try:
                if node.config.node_id:
                    node.nodeid = parse_node_id(node.config.node_id, namespaces)
                else:
                    assert node.config.browse_path, node.address  # NodeConfig requires node_id or browse_path
                    ns_uri = node.group.namespace
                    default_ns = namespaces.index(ns_uri) if ns_uri in namespaces else min(1, len(namespaces) - 1)
                    paths.append((node, parse_browse_path(node.config.browse_path, default_ns)))
            except ValueError as exc:
                self._mark_bad(node, str(exc))
        step = self.chunk("MaxNodesPerTranslateBrowsePathsToNodeIds")
        for start in range(0, len(paths), step):
            chunk = paths[start : start + step]
            bps = []
            for _node, names in chunk:
                rp = ua.RelativePath()
                for qn in names:
                    el = ua.RelativePathElement()
                    el.ReferenceTypeId = node_id(ua.ObjectIds.HierarchicalReferences)
                    # (asyncua annotates its Boolean fields with a marker class no bool can be an instance of)
                    el.IsInverse = False  # type: ignore[assignment]  # the default is True (parent direction)
                    el.IncludeSubtypes = True  # type: ignore[assignment]
                    el.TargetName = qn
                    rp.Elements.append(el)
                bp = ua.BrowsePath()
                bp.StartingNode = node_id(ua.ObjectIds.ObjectsFolder)
                bp.RelativePath = rp
                bps.append(bp)
            results = await client.uaclient.translate_browsepaths_to_nodeids(bps)
            for (node, _names), res in zip(chunk, results):
                if res.StatusCode.is_good() and res.Targets:
                    target = res.Targets[0].TargetId
                    node.nodeid = ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType)
                else:
                    self._mark_bad(node, f"browse path not found ({res.StatusCode.name})")
        # Data types: unknown ids show up here as BadNodeIdUnknown; strings are only allowed as tag sources.
        live = [(n, n.nodeid) for n in self.nodes if n.nodeid is not None]
        step = self.chunk("MaxNodesPerRead")
        cache: dict = {}
        for start in range(0, len(live), step):
            part = live[start : start + step]
            dvs = await client.uaclient.read_attributes([nid for _, nid in part], ua.AttributeIds.DataType)
            for (node, _nid), dv in zip(part, dvs):
                status = status_of(dv)
                if not status.is_good():
                    self._mark_bad(node, status.name)
                    continue
                if node.is_tag_source:
                    continue
                assert dv.Value is not None  # a Good read of the DataType attribute carries the type's NodeId
                kind = node.kind = await self._type_kind(client, dv.Value.Value, cache)
                if kind not in ("number", "enum"):
                    self._mark_bad(node, f"data type is {kind}, not a number", "collector.node.wrong_type")
        for node in self.nodes:
            if node.is_tag_source or node.bad:
                continue
            unit = node.config.unit
            expected = unit_of(node.state.measurement, node.state.field)
            if unit and expected and unit != expected:
                self.notify(Notice("collector.node.unit_mismatch",
                                   f"{node.address}: unit {unit!r} differs from the catalogue's {expected!r}",
                                   {"node": node.address, "unit": unit, "expected": expected}, level="info"))

    async def _type_kind(self, client: Client, dtype: ua.NodeId, cache: dict) -> str:
        from collectors.opcua.discover import _type_kind

        if dtype.NamespaceIndex == 0 and dtype.Identifier in _NUMERIC_TYPES:
            return "number"
        return await _type_kind(client, dtype, cache)

    async def _read_tag_sources(self, client: Client) -> None:
        sources = [(n, n.nodeid) for n in self.nodes if n.is_tag_source and n.nodeid is not None]
        if not sources:
            return
        dvs = await client.uaclient.read_attributes([nid for _, nid in sources], ua.AttributeIds.Value)
        for (node, _nid), dv in zip(sources, dvs):
            self._apply_tag(node, dv)

    def _apply_tag(self, node: PlannedNode, dv) -> None:
        self._apply_tag_raw(node, dv.Value.Value if dv.Value is not None else None,
                            dv.StatusCode.value if dv.StatusCode is not None else 0)

    def _apply_tag_raw(self, node: PlannedNode, value, status: int) -> None:
        if value is None or status & 0xC0000000:  # only Good values name a tag
            return
        text = str(value)
        for handle, tag in node.dependents:
            self.nodes[handle].state.set_tag(tag, text)

    async def _subscribe(self, client: Client) -> None:
        """Create one subscription per publishing interval and its monitored items, in chunks of the server limit."""
        by_interval: dict[float, list[PlannedNode]] = {}
        for node in self.nodes:
            if node.nodeid is not None:
                by_interval.setdefault(node.group.publishing_interval_ms, []).append(node)
        self._subscription_ids = []
        self._keepalive_period_s = 0.0
        self._subscribed_at = time.monotonic()
        step = self.chunk("MaxMonitoredItemsPerCall")
        for interval, nodes in by_interval.items():
            params = ua.CreateSubscriptionParameters()
            params.RequestedPublishingInterval = interval
            params.RequestedLifetimeCount = 10000
            params.RequestedMaxKeepAliveCount = max(3, int(self.config.timeouts.keepalive_s * 1000 / interval) + 1)
            params.MaxNotificationsPerPublish = 0
            params.PublishingEnabled = True
            params.Priority = 0
            result = await client.uaclient.create_subscription(params, self._on_publish)
            sid = result.SubscriptionId
            self._subscription_ids.append(sid)
            period = result.RevisedPublishingInterval * max(1, result.RevisedMaxKeepAliveCount) / 1000
            self._keepalive_period_s = max(self._keepalive_period_s, period)
            for start in range(0, len(nodes), step):
                chunk = nodes[start : start + step]
                req = ua.CreateMonitoredItemsParameters()
                req.SubscriptionId = sid
                req.TimestampsToReturn = ua.TimestampsToReturn.Both
                req.ItemsToCreate = [self._item_request(n) for n in chunk]
                self.monitored_item_calls += 1
                results = await client.uaclient.create_monitored_items(req)
                for node, res in zip(chunk, results):
                    if not res.StatusCode.is_good():
                        self._mark_item_refused(node, res.StatusCode)

    def _mark_item_refused(self, node: PlannedNode, code: ua.StatusCode) -> None:
        """Report a monitored item the server refused; a refused filter is named, so that the config can be fixed."""
        flt = _filter_settings(node)
        if flt is None or code.value not in _FILTER_REFUSED:
            self._mark_bad(node, code.name)
            return
        reason = (f"the server refused the data-change filter of group {node.group.name!r} (deadband {flt['deadband']} "
                  f"{flt['value']}, trigger {flt['trigger']}): {code.name}; set another deadband or trigger for this "
                  "node (a percent deadband needs a variable with an EURange)")
        self._mark_bad(node, reason, "collector.node.filter_refused",
                       {"group": node.group.name, "filter": flt, "status": code.name})

    def _item_request(self, node: PlannedNode) -> ua.MonitoredItemCreateRequest:
        group, cfg = node.group, node.config
        rv = ua.ReadValueId()
        rv.NodeId = node.nodeid
        rv.AttributeId = ua.AttributeIds.Value
        mp = ua.MonitoringParameters()
        mp.ClientHandle = node.handle
        mp.SamplingInterval = cfg.sampling_interval_ms if cfg.sampling_interval_ms is not None else group.sampling_interval_ms
        mp.QueueSize = cfg.queue_size or group.queue_size
        mp.DiscardOldest = True
        settings = _filter_settings(node)
        if settings is not None:
            flt = ua.DataChangeFilter()
            flt.Trigger = _TRIGGERS[settings["trigger"]]
            flt.DeadbandType = _DEADBAND[settings["deadband"]]
            flt.DeadbandValue = settings["value"]
            mp.Filter = flt
        mir = ua.MonitoredItemCreateRequest()
        mir.ItemToMonitor = rv
        mir.MonitoringMode = ua.MonitoringMode.Reporting
        mir.RequestedParameters = mp
        return mir

    def _on_publish(self, result: ua.PublishResult) -> None:
        """Publish callback: handle every DataChangeNotification of the message as one batch."""
        data = result.NotificationMessage.NotificationData
        if not data:
            return
        rows: list = []
        notices: list = []
        nodes = self.nodes
        t_now = now_ns()
        for notif in data:
            if notif.__class__ is FastDataChange:  # bulk-decoded: (handle, value, status, source_ns, server_ns)
                n_nodes = len(nodes)
                append = rows.append
                plain = self._plain
                states = self._states
                for h, raw, status, src_ns, srv_ns in notif.items:
                    if h >= n_nodes:
                        continue
                    # Good finite float, source time: the row to_row_raw would build, without the call (it skips
                    # only NodeState.values/last_ns, which nothing reads).
                    if status == 0 and plain[h] and raw.__class__ is float and raw - raw == 0.0:
                        st = states[h]
                        append((st.measurement, st.tags, st.field, src_ns or srv_ns or t_now, raw, 0))
                        continue
                    node = nodes[h]
                    if node.is_tag_source:
                        self._apply_tag_raw(node, raw, status)
                        continue
                    append(to_row_raw(node.state, raw, status, src_ns, srv_ns, t_now, notices))
            elif isinstance(notif, ua.DataChangeNotification):
                for item in notif.MonitoredItems:
                    h = item.ClientHandle
                    if h >= len(nodes):
                        continue
                    node = nodes[h]
                    if node.is_tag_source:
                        self._apply_tag(node, item.Value)
                        continue
                    rows.append(to_row(node.state, item.Value, t_now, notices))
            elif isinstance(notif, ua.StatusChangeNotification):
                code = notif.Status
                if not code.is_good():
                    self.last_error = f"subscription status {code.name}"
                    self._lost.set()
        self._deliver(rows, notices)

    def _deliver(self, rows: list, notices: list) -> None:
        """Hand received rows to the writer and report what went wrong with single values."""
        if rows:
            self.values_received += len(rows)
            self.last_value_monotonic = time.monotonic()
            self.sink(rows)
        for n in notices:
            self.notify(n)

    async def _collect_until_lost(self, stop: asyncio.Event) -> None:
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._lost.wait())]
        poller = asyncio.ensure_future(self._poll_loop()) if self.config.mode == "polling" else None
        if poller:
            waiters.append(poller)
        else:
            waiters.append(asyncio.ensure_future(self._watch_subscriptions()))
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                failure = task.exception() if task is not waiters[0] and task is not waiters[1] else None
                if failure is not None:
                    raise failure
            if self._lost.is_set() and not stop.is_set():
                raise ConnectionError(self.last_error or "session lost")
        finally:
            for w in waiters:
                w.cancel()

    def silence_s(self) -> float:
        """How long a subscribed session may receive nothing before it is checked [s]."""
        period = self._keepalive_period_s or self.config.timeouts.keepalive_s
        return max(1.0, self.SILENT_KEEPALIVES * period)

    async def _watch_subscriptions(self) -> None:
        """Re-create subscriptions the server dropped; raise ConnectionError when the session is silent."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resubscribe.wait(), min(0.5, self.silence_s() / 4))
            client = self.client
            if client is None or not self._subscription_ids:
                continue
            if self._resubscribe.is_set():
                await self._recreate_subscriptions(client, self._resubscribe_reason)
                continue
            seen = max(getattr(client.uaclient.session, "last_response_monotonic", 0.0), self._subscribed_at)
            silent = time.monotonic() - seen
            if silent <= self.silence_s():
                continue
            # Silent: are our subscriptions still there? SetPublishingMode answers per subscription.
            params = ua.SetPublishingModeParameters()
            params.PublishingEnabled = True
            params.SubscriptionIds = list(self._subscription_ids)
            try:
                results = await asyncio.wait_for(client.uaclient.set_publishing_mode(params),
                                                 self.config.timeouts.request_s)
            except ua.UaStatusCodeError as exc:  # e.g. BadNoSubscription for the whole request
                results = [ua.StatusCode(exc.code)] * len(self._subscription_ids)
            except (TimeoutError, ConnectionError, OSError) as exc:
                raise ConnectionError(f"no PublishResponse for {silent:.1f} s and the server does not answer "
                                      f"({type(exc).__name__})") from exc
            gone = [sid for sid, code in zip(self._subscription_ids, results) if not code.is_good()]
            if gone:
                names = sorted({code.name for code in results if not code.is_good()})
                await self._recreate_subscriptions(
                    client, f"no PublishResponse for {silent:.1f} s and the server no longer knows subscription(s) "
                    f"{gone} ({', '.join(names)})")
                continue
            raise ConnectionError(f"no PublishResponse (not even a keep-alive) for {silent:.1f} s, "
                                  f"{self.SILENT_KEEPALIVES} keep-alive periods; reconnecting")

    async def _recreate_subscriptions(self, client: Client, reason: str) -> None:
        """Delete what is left of our subscriptions and subscribe every node again (same session)."""
        old = list(self._subscription_ids)
        try:
            await asyncio.wait_for(client.uaclient.delete_subscriptions(old), self.config.timeouts.request_s)
        except Exception as exc:  # noqa: BLE001 - they are gone already, which is why we are here
            log.debug("server %s: deleting subscriptions %s: %s", self.config.name, old, exc)
        await self._subscribe(client)
        self._resubscribe.clear()
        self.resubscriptions += 1
        self.notify(Notice("collector.server.subscription_recreated",
                           f"{self.config.name}: {reason}; the subscriptions were created again",
                           {"server": self.config.name, "old": old, "new": list(self._subscription_ids),
                            "reason": reason}))

    async def _poll_loop(self) -> None:
        """Polling mode: read every node each ``poll_interval_ms``, in chunks of the server's read limit."""
        interval = self.config.poll_interval_ms / 1000
        step = self.chunk("MaxNodesPerRead")
        next_t = time.monotonic()
        while True:
            live = [n for n in self.nodes if n.nodeid is not None]
            rows: list = []
            notices: list = []
            for start in range(0, len(live), step):
                chunk = live[start : start + step]
                params = ua.ReadParameters()
                params.TimestampsToReturn = ua.TimestampsToReturn.Both
                for n in chunk:
                    rv = ua.ReadValueId()
                    rv.NodeId = n.nodeid
                    rv.AttributeId = ua.AttributeIds.Value
                    params.NodesToRead.append(rv)
                client = self.client
                assert client is not None  # polling runs only inside a connected session (_collect_until_lost)
                dvs = await client.uaclient.read(params)
                t_now = now_ns()
                for n, dv in zip(chunk, dvs):
                    if n.is_tag_source:
                        self._apply_tag(n, dv)
                    else:
                        rows.append(to_row(n.state, dv, t_now, notices))
            self._deliver(rows, notices)
            next_t += interval
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))
            if time.monotonic() - next_t > interval:
                next_t = time.monotonic()  # fell behind: do not burst to catch up

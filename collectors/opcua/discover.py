"""``wattline discover``: browse a server's address space and write a starter collector config.

One group per object that holds collectable variables (a machine), tags from the folder hierarchy
(``Plant/<site>/<line>/<machine>``), measurement and field from the well-known name table
(:mod:`collectors.opcua.mapping`), units from the variables' ``EngineeringUnits`` property and data types checked
(only numbers, booleans and enumerations are collected; strings can only feed tags).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any

import yaml
from asyncua import Client, ua

from collectors import CollectorError
from collectors.opcua.compat_asyncua import node_id
from collectors.opcua.mapping import (
    GENERIC_MEASUREMENT,
    TAG_LEVELS,
    WELL_KNOWN,
    normalise_unit,
    snake_case,
)
from core.model import unit_of

log = logging.getLogger(__name__)

#: Built-in numeric data types (Boolean .. Double) and their abstract parents (Number, Integer, UInteger).
_NUMERIC_TYPES = set(range(1, 12)) | {26, 27, 28}
_ENUMERATION = 29
_STRING = 12
_MAX_DEPTH = 10


def node_id_text(nodeid: ua.NodeId, namespaces: list[str]) -> str:
    """Write a NodeId as ``nsu=<uri>;...`` so that it survives a change of namespace index (ns=0 stays plain)."""
    text = nodeid.to_string()
    if nodeid.NamespaceIndex == 0:
        return text
    ident = text.split(";", 1)[1] if ";" in text else text
    return f"nsu={namespaces[nodeid.NamespaceIndex]};{ident}"


async def _browse_children(client: Client, nodeids: list[ua.NodeId], limit: int) -> list[list[ua.ReferenceDescription]]:
    """Hierarchical forward references of each node, batched to ``limit`` nodes per Browse call."""
    out: list[list[ua.ReferenceDescription]] = []
    for start in range(0, len(nodeids), limit):
        chunk = nodeids[start : start + limit]
        nodes = [client.get_node(n) for n in chunk]
        results = await client.browse_nodes(nodes)
        for _node, result in results:
            refs = list(result.References or [])
            cont = result.ContinuationPoint
            while cont:
                params = ua.BrowseNextParameters()
                params.ContinuationPoints = [cont]
                more = await client.uaclient.browse_next(params)
                refs.extend(more[0].References or [])
                cont = more[0].ContinuationPoint
            out.append(
                [
                    r
                    for r in refs
                    if r.IsForward
                    and r.ReferenceTypeId.NamespaceIndex == 0
                    and r.ReferenceTypeId.Identifier in (35, 47, 46, 33)  # Organizes, HasComponent, HasProperty, Hierarchical
                ]
            )
    return out


async def _type_kind(client: Client, dtype: ua.NodeId, cache: dict) -> str:
    """Classify a DataType as ``number``, ``enum``, ``string`` or ``other`` (walking up HasSubtype)."""
    key = dtype.to_string()
    if key in cache:
        return cache[key]
    kind = "other"
    current = dtype
    for _ in range(6):
        if current.NamespaceIndex == 0 and isinstance(current.Identifier, int):
            if current.Identifier in _NUMERIC_TYPES:
                kind = "number"
                break
            if current.Identifier == _ENUMERATION:
                kind = "enum"
                break
            if current.Identifier == _STRING:
                kind = "string"
                break
            if current.Identifier in (24, 22, 0):  # BaseDataType, Structure
                break
        parents = await client.get_node(current).get_references(
            refs=ua.ObjectIds.HasSubtype, direction=ua.BrowseDirection.Inverse
        )
        if not parents:
            break
        current = parents[0].NodeId
    cache[key] = kind
    return kind


async def _read_eu(client: Client, prop_ids: list[ua.NodeId]) -> list[str | None]:
    units: list[str | None] = []
    if not prop_ids:
        return units
    values = await client.uaclient.read_attributes(prop_ids, ua.AttributeIds.Value)
    for dv in values:
        eu = dv.Value.Value if dv.Value is not None else None
        text = getattr(getattr(eu, "DisplayName", None), "Text", None)
        units.append(text)
    return units


async def get_starter_config(
    endpoint: str,
    *,
    mapping: dict[str, dict[str, Any]] | None = None,
    server_name: str | None = None,
    timeout_s: float = 10.0,
    max_nodes_per_call: int = 500,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Browse a server (anonymous, security None) and return a starter collector config as a dict.

    This is a coroutine: ``asyncio.run(get_starter_config("opc.tcp://host:4840"))``.

    Parameters
    ----------
    endpoint : str
        ``opc.tcp://host:port[/path]``.
    mapping : dict, optional
        BrowseName -> measurement/field table; defaults to :data:`collectors.opcua.mapping.WELL_KNOWN`.
    server_name : str, optional
        Name of the server in the config; defaults to a slug of the host name.
    timeout_s : float
        Request timeout [s].
    max_nodes_per_call : int
        Upper bound of nodes per Browse/Read request (the server's own limit is respected too).

    Returns
    -------
    dict
        Config accepted by :func:`collectors.opcua.config.parse_collector_config`.
    notes : list, optional
        Filled with remarks for the YAML header (unit mismatches, skipped variables).

    Raises
    ------
    CollectorError
        When the server cannot be reached.
    """
    table = WELL_KNOWN if mapping is None else mapping
    client = Client(endpoint, timeout=timeout_s)
    try:
        await asyncio.wait_for(client.connect(), timeout_s)
    except (TimeoutError, OSError, ua.UaError) as exc:
        raise CollectorError(f"cannot connect to {endpoint}: {exc or type(exc).__name__}; is the server running?") from None
    try:
        return await _discover(client, endpoint, table, server_name, max_nodes_per_call, notes if notes is not None else [])
    finally:
        with contextlib.suppress(Exception):  # the discovery is over; a server already gone changes nothing
            await client.disconnect()


async def _discover(
    client: Client, endpoint: str, table: dict, server_name: str | None, limit: int, notes: list[str]
) -> dict[str, Any]:
    namespaces = await client.get_namespace_array()
    try:
        server_limit = await client.get_node(node_id(11710)).read_value()  # MaxNodesPerBrowse
        if server_limit:
            limit = min(limit, int(server_limit))
    except ua.UaError:
        pass
    # Breadth-first walk from Objects, skipping namespace 0 (the Server object and the like).
    objects = node_id(ua.ObjectIds.ObjectsFolder)
    level: list[tuple[ua.NodeId, tuple[str, ...]]] = [(objects, ())]
    machines: list[tuple[tuple[str, ...], list[ua.ReferenceDescription]]] = []
    depth = 0
    while level and depth < _MAX_DEPTH:
        children = await _browse_children(client, [n for n, _ in level], limit)
        next_level = []
        for (_nodeid, path), refs in zip(level, children):
            variables = []
            for ref in refs:
                if ref.NodeId.NamespaceIndex == 0:
                    continue
                name = ref.BrowseName.Name
                if ref.NodeClass == ua.NodeClass.Variable:
                    variables.append(ref)
                elif ref.NodeClass == ua.NodeClass.Object:
                    next_level.append((ref.NodeId, (*path, name)))
            if variables and path:
                machines.append((path, variables))
        level = next_level
        depth += 1

    # Data types and EngineeringUnits of all candidate variables.
    all_vars = [v for _, vs in machines for v in vs]
    dtypes = []
    for start in range(0, len(all_vars), limit):
        chunk = [v.NodeId for v in all_vars[start : start + limit]]
        dtypes.extend(await client.uaclient.read_attributes(chunk, ua.AttributeIds.DataType))
    props = await _browse_children(client, [v.NodeId for v in all_vars], limit)
    eu_ids = {}
    for var, refs in zip(all_vars, props):
        for ref in refs:
            if ref.BrowseName.Name == "EngineeringUnits":
                eu_ids[var.NodeId.to_string()] = ref.NodeId
    keys = list(eu_ids)
    eu_values: list[str | None] = []
    for start in range(0, len(keys), limit):
        eu_values.extend(await _read_eu(client, [eu_ids[k] for k in keys[start : start + limit]]))
    units = dict(zip(keys, eu_values))
    kind_cache: dict = {}
    kinds = {}
    for var, dv in zip(all_vars, dtypes):
        dtype = dv.Value.Value if dv.Value is not None else None
        kinds[var.NodeId.to_string()] = await _type_kind(client, dtype, kind_cache) if dtype is not None else "other"

    groups = []
    for path, variables in machines:
        tags = _tags_from_path(path)
        by_name = {v.BrowseName.Name: v for v in variables}
        nodes = []
        for var in variables:
            name = var.BrowseName.Name
            key = var.NodeId.to_string()
            kind = kinds.get(key, "other")
            where = "/".join((*path, name))
            if kind not in ("number", "enum"):
                if kind == "string" and any(
                    name in (spec.get("tags_from_siblings") or {}).values() for spec in table.values()
                ):
                    continue  # used as a tag source below
                notes.append(f"{where}: skipped, data type is {kind} (only numbers, booleans and enumerations are stored)")
                continue
            spec = table.get(name)
            unit = normalise_unit(units.get(key))
            node: dict[str, Any] = {"node_id": node_id_text(var.NodeId, namespaces)}
            if spec:
                node["measurement"] = spec["measurement"]
                node["field"] = spec["field"]
                expected = unit_of(spec["measurement"], spec["field"]) or spec.get("unit")
                if unit and expected and unit != expected:
                    notes.append(f"{where}: server unit {unit!r} differs from the catalogue's {expected!r}; check scaling")
                if spec.get("counter"):
                    node["counter"] = True
                if spec.get("keep_tags") is not None:
                    node["tags"] = {k: v for k, v in tags.items() if k in spec["keep_tags"]}
                    dropped = [k for k in tags if k not in spec["keep_tags"]]
                    if dropped:
                        node["drop_tags"] = dropped
                tag_nodes = {}
                for tag, sibling in (spec.get("tags_from_siblings") or {}).items():
                    if sibling in by_name:
                        tag_nodes[tag] = node_id_text(by_name[sibling].NodeId, namespaces)
                    else:
                        notes.append(f"{where}: sibling {sibling!r} for tag {tag!r} not found")
                if tag_nodes:
                    node["tags_from_nodes"] = tag_nodes
            else:
                node["measurement"] = GENERIC_MEASUREMENT
                node["field"] = snake_case(name)
            if unit:
                node["unit"] = unit
            nodes.append(node)
        if not nodes:
            continue
        measurement = Counter(n["measurement"] for n in nodes).most_common(1)[0][0]
        group_tags = dict(tags)
        # A node that keeps fewer tags (weather keeps only site) must not inherit the group's others.
        for n in nodes:
            drop = n.pop("drop_tags", None)
            if drop and len(nodes) == 1:
                group_tags = {k: v for k, v in group_tags.items() if k not in drop}
                n.pop("tags", None)
            elif drop:
                n["drop_tags"] = drop
            if n.get("measurement") == measurement:
                n.pop("measurement")
            if n.get("tags") == {k: v for k, v in group_tags.items() if k in n.get("tags", {})} and "drop_tags" not in n:
                n.pop("tags", None)  # same as the group's: say it once
        groups.append({"name": "/".join(path[1:]) if len(path) > 1 else path[0], "measurement": measurement, "tags": group_tags, "nodes": nodes})
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":")[0]
    return {
        "name": "opcua",
        "store": "wattline.db",
        "servers": [{"name": server_name or _server_slug(host), "endpoint": endpoint, "groups": groups}],
    }


def _server_slug(host: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in host.lower()).strip("-")
    return slug if slug[:1].isalpha() else f"server-{slug}"


def _tags_from_path(path: tuple[str, ...]) -> dict[str, str]:
    """Tags from the folder path below Objects: the top folder (``Plant``) is skipped, then site, line, machine."""
    if len(path) == 1:
        return {"machine": path[0]}
    levels = list(path[1:])
    if len(levels) > len(TAG_LEVELS):
        levels = [levels[0], levels[-2], levels[-1]]
    return dict(zip(TAG_LEVELS, levels))


def render_starter_yaml(config: dict[str, Any], notes: list[str] | None = None) -> str:
    """Write a starter config as commented YAML (what ``wattline discover --out FILE`` saves)."""
    head = [
        "# Starter config written by `wattline discover`. Edit it, then check it with `wattline check --config FILE`",
        "# and run it with `wattline collect --config FILE`. Every key is documented in collectors/opcua/sample.yaml.",
        "# Groups are machines; measurement and field names follow Wattline's catalogue (core/model.py).",
    ]
    if notes:
        head.append("#")
        head.append("# Notes from discovery:")
        head.extend(f"#   - {n}" for n in notes)
    body = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=120)
    return "\n".join(head) + "\n" + body

"""Several collector processes, one plant: sharding a collector file's servers, and finding overlapping configs.

A plant-wide collector file lists every OPC UA server; each collector process is started with its own shard
(``wattline collect --config plant.yaml --shard 1/3`` or ``shard: {index: 1, count: 3}`` in the file) and owns the
servers of that shard only. A server's shard is its ``shard:`` key when set (to balance by hand), otherwise
``crc32(name) % count``: stable (adding a server never moves the others) and the same in every process, so the
shards partition the servers -- each is collected by exactly one process, none by two.

Processes that share one file would also share its spool folder, status file, metrics port and the InfluxDB
store's spool; :func:`select_shard` gives each shard its own (``-shard<i>`` suffixes, metrics port + index).

Separate files per collector are the other way: :func:`find_overlaps` lists the (endpoint, node) pairs that two of
them collect into the same store (``wattline check --config a.yaml --config b.yaml`` refuses them), since both would
write every value of such a node.
"""

from __future__ import annotations

import urllib.parse
import zlib
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError

if TYPE_CHECKING:
    from collectors.opcua.config import CollectorConfig


def shard_of(server_name: str, count: int, pinned: int | None = None) -> int:
    """The shard (0 .. count - 1) that owns a server: ``pinned`` when given, else ``crc32(name) % count``."""
    if pinned is not None:
        return pinned
    return zlib.crc32(server_name.encode("utf-8")) % count


def _suffixed(path: str | None, index: int) -> str | None:
    """``/x/wattline-status.json`` -> ``/x/wattline-status-shard1.json``; a folder gets ``-shard1`` appended."""
    if path is None:
        return None
    p = Path(path)
    return str(p.with_name(f"{p.stem}-shard{index}{p.suffix}"))


def _with_spool_dir(store: str, spool_dir: str) -> str:
    """An ``influx://`` store URL with ``spool_dir`` set unless it names one already; other stores unchanged."""
    if not store.startswith(("influx://", "influxs://")):
        return store
    parts = urllib.parse.urlsplit(store)
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    if "spool_dir" in query:
        return store
    extra = urllib.parse.urlencode({"spool_dir": spool_dir})
    return urllib.parse.urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def select_shard(config: CollectorConfig, source: str = "<config>") -> CollectorConfig:
    """Keep the servers owned by ``config.shard`` and give the shard its own name, spool, status file and port.

    Parameters
    ----------
    config : CollectorConfig
        A config whose paths are already absolute (:func:`~collectors.opcua.config.resolve_paths`).
    source : str
        The file, for error messages.

    Returns
    -------
    CollectorConfig
        ``config`` itself without a shard (or with count 1); otherwise a copy with the shard's servers, name
        ``<name>-shard<i>``, spool ``<path>-shard<i>``, status file ``<stem>-shard<i>.<ext>``, metrics port + i
        (port 0 stays 0) and, for an InfluxDB store without ``spool_dir``, the store spool ``<spool>-influx``.

    Raises
    ------
    ConfigError
        When a server's ``shard`` is outside 0 .. count - 1, or the shard owns no server.
    """
    shard = config.shard
    if shard is None:
        return config
    for server in config.servers:
        if server.shard is not None and server.shard >= shard.count:
            raise ConfigError(f"{source}: servers[{server.name}].shard is {server.shard} but shard.count is "
                              f"{shard.count}; use 0 .. {shard.count - 1} or raise the count")
    if shard.count == 1:
        return config
    owned = [s for s in config.servers if shard_of(s.name, shard.count, s.shard) == shard.index]
    if not owned:
        spread = {s.name: shard_of(s.name, shard.count, s.shard) for s in config.servers}
        raise ConfigError(f"{source}: shard {shard.index}/{shard.count} owns none of the servers (server -> shard: "
                          f"{spread}); pin servers with `shard: {shard.index}` or use fewer collectors")
    spool = f"{config.spool.path}-shard{shard.index}"
    listen = config.metrics.listen
    if listen is not None:
        host, _, port = listen.rpartition(":")
        if int(port):
            listen = f"{host}:{int(port) + shard.index}"
    return config.model_copy(update={
        "servers": owned,
        "name": f"{config.name}-shard{shard.index}",
        "spool": config.spool.model_copy(update={"path": spool}),
        "status_file": _suffixed(config.status_file, shard.index),
        "metrics": config.metrics.model_copy(update={"listen": listen}),
        "store": _with_spool_dir(config.store, f"{spool}-influx"),
    })


def _store_key(store: str) -> tuple:
    """What makes two store URLs the same destination (server, org, bucket; a file path), spool settings aside."""
    if store.startswith(("influx://", "influxs://")):
        parts = urllib.parse.urlsplit(store)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        return ("influx", parts.netloc.lower(), query.get("org"), query.get("bucket"), query.get("env_file"))
    path = store[len("sqlite:///"):] if store.startswith("sqlite:///") else store
    return ("file", str(Path(path).resolve()))


def _collected(config: CollectorConfig) -> set[tuple[str, str]]:
    """(endpoint, node address) of every node a config collects."""
    out = set()
    for server in config.servers:
        endpoint = server.endpoint.rstrip("/").lower()
        for group in server.groups:
            for node in group.nodes:
                out.add((endpoint, node.node_id or f"path:{node.browse_path}"))
    return out


def find_overlaps(configs: dict[str, CollectorConfig]) -> list[str]:
    """Name every node that two collector configs both collect into the same store.

    Parameters
    ----------
    configs : dict
        Label (usually the file) -> config, shards already selected.

    Returns
    -------
    list of str
        One line per pair of configs that overlap, with up to five of the shared nodes; empty when none do.
    """
    problems = []
    for (name_a, a), (name_b, b) in combinations(configs.items(), 2):
        if _store_key(a.store) != _store_key(b.store):
            continue
        shared = sorted(_collected(a) & _collected(b))
        if shared:
            sample = ", ".join(f"{node} at {endpoint}" for endpoint, node in shared[:5])
            more = f" and {len(shared) - 5} more" if len(shared) > 5 else ""
            problems.append(f"{name_a} and {name_b} both collect {len(shared)} node(s) into the same store "
                            f"({sample}{more}): every value would be written twice; give each server to one "
                            "collector (or use one file with `shard:` per process)")
    return problems

"""A collector's own health as series in the store (the way Telegraf writes its internal metrics).

The dashboard's Collectors page reads these series and imports no collector code, so it works when the collector runs
on another host. One point per server every ``every_s`` seconds:

measurement ``wattline_collector``, tags ``collector``, ``server`` and ``site`` (one point per site the server's groups
and nodes are tagged with, so the dashboard shows a user bound to a site only the collectors of that site; none when
they carry no site tag); fields ``connected`` (1 or 0), ``values_per_s``
[values/s], ``last_value_age_s`` [s] (left out before the first value), ``backlog`` [values], ``spool_bytes`` [B],
``bad_nodes`` [nodes], ``reconnects`` [count since start]. ``backlog`` and ``spool_bytes`` belong to the collector
and are repeated on each of its servers' points.

They are written straight to the store, beside the batch writer, so the writer's counts stay those of plant values;
a health point that cannot be written is dropped (the next one follows ``every_s`` later), never spooled.
"""

from __future__ import annotations

from core.model import Point

MEASUREMENT = "wattline_collector"
FIELDS = ("connected", "values_per_s", "last_value_age_s", "backlog", "spool_bytes", "bad_nodes", "reconnects")


def server_sites(config) -> dict[str, list[str]]:
    """Sites each server of a collector config collects for (server name -> site ids from group and node tags)."""
    out = {}
    for server in config.servers:
        sites = set()
        for group in server.groups:
            sites.add(group.tags.get("site"))
            sites.update(node.tags.get("site") for node in group.nodes)
        out[server.name] = sorted(s for s in sites if s)
    return out


def health_points(status: dict, time_ns: int, sites: dict[str, list[str]] | None = None) -> list[Point]:
    """Health points from a collector's status document (:meth:`collectors.opcua.collector.Collector.status`).

    Parameters
    ----------
    status : dict
        The status document (schema 1): ``collector``, ``backlog``, ``spool.bytes``, ``servers``.
    time_ns : int
        Timestamp of the points [ns since the epoch, UTC].
    sites : dict, optional
        Server name -> sites (:func:`server_sites`); a point per site, or one without a site tag.
    """
    points = []
    for server in status.get("servers", ()):
        age = server.get("last_value_age_s")
        fields = {
            "connected": 1.0 if server.get("connected") else 0.0,
            "values_per_s": float(server.get("values_per_second") or 0.0),
            "backlog": float(status.get("backlog") or 0),
            "spool_bytes": float((status.get("spool") or {}).get("bytes") or 0),
            "bad_nodes": float(len(server.get("bad_nodes") or ())),
            "reconnects": float(server.get("reconnects") or 0),
        }
        if age is not None:
            fields["last_value_age_s"] = float(age)
        name = str(server.get("name") or "server")
        tags = {"collector": str(status.get("collector") or "collector"), "server": name}
        site_names: list[str | None] = [*((sites or {}).get(name) or [])] or [None]  # None: a server without sites
        for site in site_names:
            points.append(Point(MEASUREMENT, {**tags, "site": site} if site else tags, fields, int(time_ns)))
    return points

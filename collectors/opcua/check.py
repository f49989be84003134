"""``wattline check``: validate connectivity, security and every node of a config without collecting."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from asyncua import ua

from collectors.opcua.certs import SecurityRefused, connect_client
from collectors.opcua.compat_asyncua import status_of
from collectors.opcua.config import CollectorConfig
from collectors.opcua.session import ServerSession
from core.notices import Notice

#: Value-read results that mean the node itself cannot be read (a failure). Any other Bad code is the device's
#: current state (sensor failure, no data yet, ...): a readable, correctly typed node with a Bad value right now is a
#: warning, so that the check's verdict does not depend on the moment it runs.
_UNREADABLE = {
    ua.StatusCodes.BadNodeIdUnknown, ua.StatusCodes.BadNodeIdInvalid, ua.StatusCodes.BadNotReadable,
    ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadAttributeIdInvalid, ua.StatusCodes.BadSecurityModeInsufficient,
    ua.StatusCodes.BadIndexRangeInvalid, ua.StatusCodes.BadDataEncodingInvalid,
    ua.StatusCodes.BadDataEncodingUnsupported,
}


@dataclass
class ServerCheck:
    """Result of checking one server."""

    name: str
    endpoint: str
    security: str
    login: str
    ok: bool = False
    error: str | None = None
    nodes: int = 0
    readable: int = 0
    bad: dict[str, str] = field(default_factory=dict)
    #: Readable, correctly typed nodes whose value is Bad at the moment of the check: node -> status name.
    warnings: dict[str, str] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)


async def get_check_report(config: CollectorConfig) -> list[ServerCheck]:
    """Connect to every server, resolve and read every node once; never raises for a server's failure."""
    return list(await asyncio.gather(*(_check_one(config, i) for i in range(len(config.servers)))))


async def _check_one(config: CollectorConfig, index: int) -> ServerCheck:
    server = config.servers[index]
    result = ServerCheck(server.name, server.endpoint, f"{server.security.policy}/{server.security.mode}",
                         server.login.mode)
    session = ServerSession(server, lambda rows: None, result.notices.append)
    result.nodes = sum(1 for n in session.nodes if not n.is_tag_source)
    client = None
    try:
        client = await session.make_client()
        await connect_client(client, server)
        await session._read_limits(client)
        result.limits = dict(session.limits)
        await session.resolve(client)
        live = [(n, n.nodeid) for n in session.nodes if n.nodeid is not None]
        step = session.chunk("MaxNodesPerRead")
        for start in range(0, len(live), step):
            part = live[start : start + step]
            dvs = await client.uaclient.read_attributes([nid for _, nid in part], ua.AttributeIds.Value)
            for (node, _nid), dv in zip(part, dvs):
                status = status_of(dv)
                if status.is_bad() and status.value in _UNREADABLE:
                    session.bad_nodes[node.address] = status.name
                    continue
                if status.is_bad():
                    result.warnings[node.address] = status.name
                if not node.is_tag_source:
                    result.readable += 1
        result.bad = dict(session.bad_nodes)
        result.ok = not result.bad
    except Exception as exc:  # noqa: BLE001 - report every failure as a row; check never stops at the first server
        # A refusal already names the config key and the fix; anything else keeps its type for context.
        result.error = (str(exc) if isinstance(exc, SecurityRefused) else
                        f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):  # the check is over; a failing goodbye changes nothing
                await asyncio.wait_for(client.disconnect(), 2.0)
    return result


def format_check_table(results: list[ServerCheck]) -> str:
    """Plain-text table: one line per server, then one line per bad node."""
    head = ("server", "endpoint", "security", "login", "nodes", "readable", "bad", "result")
    rows = []
    for r in results:
        verdict = "OK" if r.ok else (f"FAILED: {r.error}" if r.error else "BAD NODES")
        rows.append((r.name, r.endpoint, r.security, r.login, str(r.nodes), str(r.readable), str(len(r.bad)), verdict))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    for r in results:
        for node, reason in sorted(r.bad.items()):
            lines.append(f"  {r.name}: bad node {node}: {reason}")
        for node, status in sorted(r.warnings.items()):
            lines.append(f"  {r.name}: warning: node {node} is readable but its value is {status} right now")
    return "\n".join(lines)

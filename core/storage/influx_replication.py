"""Edge-to-central replication with InfluxDB 2.x's own edge data replication (remotes and replication streams).

A site runs its own InfluxDB (the collectors write to it, the local dashboard reads it) and the edge server forwards
every write of the replicated buckets to a central InfluxDB. The forwarding is InfluxDB's: each replication stream
has a durable on-disk queue on the edge (``<engine-path>/replicationq``), so a link or central outage only grows that
queue, and it drains in write order when the central answers again (``/api/v2/remotes``, ``/api/v2/replications``;
the same objects ``influx remote create`` and ``influx replication create`` make). Wattline only sets them up:

- one *remote* on the edge (the central's URL, org and an API token for it);
- one *replication stream* per bucket: the raw bucket and, by default, its three rollup buckets. Rollups are
  computed at the edge (tasks, and the store's refresh of late points, both write through the edge's points writer,
  which feeds the replication queues), so the central receives finished rollups and must not run rollup tasks of its
  own for these buckets: a central task running during a catch-up would aggregate an incomplete raw window and
  overwrite the edge's complete rollup.

:func:`setup_replication` is idempotent (``wattline influx replicate``); :func:`get_replication_status` reports the
queues (``wattline influx replications``); :func:`remove_replication` deletes the streams and the remote.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from core.errors import ConfigError, StoreError, StoreUnavailable
from core.storage.base import ROLLUP_RESOLUTIONS_S
from core.storage.influx_flux import rollup_bucket, task_name
from core.storage.influx_settings import InfluxSettings, _coerce_settings

#: Bound of each stream's queue [MiB]. The queue holds gzip-compressed line protocol: 7.1-7.5 B per value measured for
#: one dense series (tests/storage/test_influx_replication.py); a plant's many series compress less. InfluxDB's own
#: default, 64 MiB, is too small to ride out a link outage of hours at a few thousand values/s.
DEFAULT_QUEUE_MB = 1024
#: Queued data older than this is dropped by the edge (InfluxDB's default, one week) [days].
DEFAULT_MAX_AGE_DAYS = 7


class _Api:
    """Minimal JSON client of one InfluxDB server's HTTP API (the token stays in the header, never in a message)."""

    def __init__(self, settings: InfluxSettings, role: str) -> None:
        self.url = settings.url.rstrip("/")
        self.org = settings.org
        self.role = role
        self._token = settings.read_token()
        self.timeout = settings.timeout_ms / 1000

    def call(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        q = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        req = urllib.request.Request(
            f"{self.url}{path}{'?' + q if q else ''}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Token {self._token}", "Content-Type": "application/json",
                     "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")[:400]
            with contextlib.suppress(ValueError, AttributeError):  # not JSON: keep the text
                text = json.loads(text).get("message", text)
            hint = {401: "the token is not valid for this server", 403: "the token lacks the permission",
                    404: "not found"}.get(exc.code, "")
            raise StoreError(f"{self.role} InfluxDB {self.url}: {method} {path} -> HTTP {exc.code}: {text}"
                             f"{' (' + hint + ')' if hint else ''}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StoreUnavailable(f"{self.role} InfluxDB {self.url} is unreachable: {reason}") from None
        return json.loads(raw) if raw else None

    def org_id(self) -> str:
        orgs = self.call("GET", "/api/v2/orgs", org=self.org).get("orgs") or []
        if not orgs:
            raise ConfigError(f"{self.role} InfluxDB {self.url}: organisation {self.org!r} does not exist (or the "
                              "token cannot read it); give the org the bucket lives in")
        return orgs[0]["id"]

    def bucket(self, org_id: str, name: str) -> dict | None:
        try:
            found = self.call("GET", "/api/v2/buckets", orgID=org_id, name=name).get("buckets") or []
        except StoreError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise
        return next((b for b in found if b.get("name") == name), None)


def _retention_s(bucket: dict) -> int:
    rules = bucket.get("retentionRules") or []
    return int(rules[0].get("everySeconds") or 0) if rules else 0


def _pairs(edge: InfluxSettings, central: InfluxSettings, rollups: bool) -> list[tuple[str, str]]:
    pairs = [(edge.bucket, central.bucket)]
    if rollups:
        pairs += [(rollup_bucket(edge.bucket, r), rollup_bucket(central.bucket, r)) for r in ROLLUP_RESOLUTIONS_S]
    return pairs


def setup_replication(edge: Any, central: Any, *, name: str = "wattline-central", rollups: bool = True,
                      max_queue_mb: int = DEFAULT_QUEUE_MB, max_age_days: float = DEFAULT_MAX_AGE_DAYS,
                      drop_non_retryable: bool = False) -> list[str]:
    """Make the edge server replicate its bucket (and rollup buckets) to the central server; safe to run again.

    Parameters
    ----------
    edge, central : InfluxSettings, str or mapping
        The two servers (``influx://`` URLs or settings), each with org, bucket and a token. The edge token needs to
        manage remotes and replications and read the buckets; the central token is stored in the edge server (as
        InfluxDB's remote) and needs write access to the central buckets (and bucket creation, if they are missing).
    name : str
        Name of the remote on the edge; the streams are ``<name>:<bucket>``.
    rollups : bool
        Replicate the rollup buckets too (needs ``wattline influx setup`` on the edge; the central then runs no rollup
        tasks for these buckets).
    max_queue_mb : int
        Bound of each stream's queue on the edge's disk [MiB]; what does not fit is not replicated (it stays in the
        edge), so size it for the longest link outage to ride out.
    max_age_days : float
        Queued data older than this is dropped from the queue [days]; 0 keeps it until sent.
    drop_non_retryable : bool
        Drop a batch the central rejects as bad (HTTP 400) instead of retrying it forever (InfluxDB's option).

    Returns
    -------
    list of str
        One line per action, for the CLI.

    Raises
    ------
    ConfigError
        A missing org or edge bucket, or the same bucket on one server.
    StoreUnavailable, StoreError
        A server does not answer, or refuses a request (the message names the server, the request and the reason).
    """
    e, c = _coerce_settings(edge), _coerce_settings(central)
    if e.url.rstrip("/") == c.url.rstrip("/") and e.bucket == c.bucket:
        raise ConfigError(f"edge and central are the same bucket {e.bucket!r} at {e.url}: replicate to another server")
    edge_api, central_api = _Api(e, "edge"), _Api(c, "central")
    edge_org, central_org = edge_api.org_id(), central_api.org_id()
    actions: list[str] = []
    pairs = []
    for local_name, remote_name in _pairs(e, c, rollups):
        local = edge_api.bucket(edge_org, local_name)
        if local is None:
            if local_name == e.bucket:
                raise ConfigError(f"edge InfluxDB {e.url}: bucket {local_name!r} does not exist; run `wattline influx "
                                  "setup` against the edge first")
            raise ConfigError(f"edge InfluxDB {e.url}: rollup bucket {local_name!r} is missing; run `wattline influx "
                              "setup` against the edge, or replicate the raw bucket only (--no-rollups)")
        remote = central_api.bucket(central_org, remote_name)
        if remote is None:
            body = {"orgID": central_org, "name": remote_name, "retentionRules": (
                [{"type": "expire", "everySeconds": _retention_s(local)}] if _retention_s(local) else []),
                "description": f"Wattline: replicated from {e.bucket} at the edge"}
            remote = central_api.call("POST", "/api/v2/buckets", body)
            actions.append(f"created central bucket {remote_name}")
        pairs.append((local, remote))
    if rollups:
        central_tasks = central_api.call("GET", "/api/v2/tasks", orgID=central_org, limit=500).get("tasks") or []
        names = {task_name(c.bucket, r) for r in ROLLUP_RESOLUTIONS_S}
        for task in central_tasks:
            if task.get("name") in names and task.get("status") == "active":
                actions.append(f"WARNING: the central runs rollup task {task['name']}; the edge's rollups are "
                               "replicated, so disable it (a run during a catch-up overwrites complete rollups)")

    remote_body = {"name": name, "remoteURL": c.url, "remoteAPIToken": central_api._token,
                   "remoteOrgID": central_org, "allowInsecureTLS": False}
    remotes = edge_api.call("GET", "/api/v2/remotes", orgID=edge_org, name=name).get("remotes") or []
    remote_conn = next((r for r in remotes if r.get("name") == name), None)
    if remote_conn is None:
        remote_conn = edge_api.call("POST", "/api/v2/remotes", {"orgID": edge_org, **remote_body})
        actions.append(f"created remote {name} -> {c.url} (org {c.org})")
    else:
        # The token cannot be read back, so it is always written again (a rotated token is picked up this way).
        remote_conn = edge_api.call("PATCH", f"/api/v2/remotes/{remote_conn['id']}", remote_body)
        actions.append(f"remote {name} -> {c.url} (org {c.org}) up to date")

    existing = edge_api.call("GET", "/api/v2/replications", orgID=edge_org).get("replications") or []
    settings = {"maxQueueSizeBytes": int(max_queue_mb) * 1024 * 1024, "maxAgeSeconds": int(max_age_days * 86400),
                "dropNonRetryableData": bool(drop_non_retryable)}
    for local, remote in pairs:
        stream = f"{name}:{local['name']}"
        found = next((r for r in existing if r.get("name") == stream), None)
        wanted = {"remoteID": remote_conn["id"], "remoteBucketID": remote["id"], **settings}
        if found is not None and found.get("localBucketID") != local["id"]:
            edge_api.call("DELETE", f"/api/v2/replications/{found['id']}")  # the bucket was re-created
            actions.append(f"deleted stream {stream} of a former bucket {local['name']}")
            found = None
        if found is None:
            body = {"orgID": edge_org, "name": stream, "localBucketID": local["id"], **wanted}
            # validate=true only checks (the edge reaches the central, the token writes the bucket) and creates nothing.
            edge_api.call("POST", "/api/v2/replications", body, validate="true")
            edge_api.call("POST", "/api/v2/replications", body)
            actions.append(f"created stream {stream} -> central bucket {remote['name']} (queue {max_queue_mb} MiB, "
                           f"max age {max_age_days:g} d)")
        elif any(found.get(k) != v for k, v in wanted.items()):
            edge_api.call("PATCH", f"/api/v2/replications/{found['id']}", wanted)
            actions.append(f"updated stream {stream}")
        else:
            actions.append(f"stream {stream} up to date")
    return actions


def get_replication_status(edge: Any) -> list[dict[str, Any]]:
    """The edge's replication streams and their queues.

    Returns
    -------
    list of dict
        Per stream: ``name``, ``local_bucket_id``, ``remote_bucket`` (id or name), ``queue_bytes`` [B] (on disk),
        ``remaining_bytes`` [B] (not yet sent), ``max_queue_bytes`` [B], ``latest_status`` (the central's last HTTP
        status, None before the first send) and ``latest_error``.
    """
    e = _coerce_settings(edge)
    api = _Api(e, "edge")
    streams = api.call("GET", "/api/v2/replications", orgID=api.org_id()).get("replications") or []
    return [{"name": r.get("name"), "local_bucket_id": r.get("localBucketID"),
             "remote_bucket": r.get("remoteBucketID") or r.get("RemoteBucketName"),
             "queue_bytes": int(r.get("currentQueueSizeBytes") or 0),
             "remaining_bytes": int(r.get("remainingBytesToBeSynced") or 0),
             "max_queue_bytes": int(r.get("maxQueueSizeBytes") or 0),
             "latest_status": r.get("latestResponseCode"), "latest_error": r.get("latestErrorMessage") or None}
            for r in streams]


def remove_replication(edge: Any, name: str = "wattline-central") -> list[str]:
    """Delete the streams ``<name>:*`` and the remote ``name`` from the edge (queued, unsent data is discarded)."""
    e = _coerce_settings(edge)
    api = _Api(e, "edge")
    org = api.org_id()
    actions = []
    for r in api.call("GET", "/api/v2/replications", orgID=org).get("replications") or []:
        if str(r.get("name", "")).startswith(f"{name}:"):
            api.call("DELETE", f"/api/v2/replications/{r['id']}")
            actions.append(f"deleted stream {r['name']}")
    for r in api.call("GET", "/api/v2/remotes", orgID=org, name=name).get("remotes") or []:
        if r.get("name") == name:
            api.call("DELETE", f"/api/v2/remotes/{r['id']}")
            actions.append(f"deleted remote {name}")
    return actions

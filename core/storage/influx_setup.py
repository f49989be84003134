"""Server-side setup of the InfluxDB backend: buckets, retention and rollup tasks (``wattline influx setup``)."""

from __future__ import annotations

import time
from typing import Any

from core.errors import ConfigError, StoreError, StoreUnavailable
from core.storage.base import ROLLUP_RESOLUTIONS_S
from core.storage.influx_flux import rollup_bucket, task_flux, task_name
from core.storage.influx_settings import _coerce_settings

HOUR_NS = 3600 * 1_000_000_000


def _error_text(exc: BaseException) -> str:
    from core.storage.influx import _error_text as text

    return text(exc)


def setup_influx(config: Any, *, backfill: bool = True, progress: bool = True) -> list[str]:
    """Create (idempotently) the buckets and the rollup tasks Wattline needs, and backfill rollups.

    Parameters
    ----------
    config : InfluxSettings, str or mapping
        Settings, an ``influx://`` URL, a mapping of settings, or an app config with an ``influx`` section.
    backfill : bool
        Compute rollups for raw points already in the bucket (a first setup on existing data).
    progress : bool
        Show a tqdm bar while backfilling.

    Returns
    -------
    list of str
        One line per action (``created bucket ...``, ``task ... up to date``), for the CLI to print.
    """
    from influxdb_client import BucketRetentionRules, InfluxDBClient, TaskCreateRequest, TaskUpdateRequest

    s = _coerce_settings(config)
    actions: list[str] = []
    client = InfluxDBClient(url=s.url, token=s.read_token(), org=s.org, timeout=s.timeout_ms)
    try:
        try:
            orgs = client.organizations_api().find_organizations(org=s.org)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                orgs = []
            elif getattr(exc, "status", None) is None:
                raise StoreUnavailable(f"InfluxDB at {s.url} is unreachable: {exc}") from exc
            else:
                raise StoreError(f"InfluxDB at {s.url}: {_error_text(exc)[:300]}") from exc
        if not orgs:
            raise ConfigError(f"InfluxDB organisation {s.org!r} does not exist at {s.url}; set org to an existing one")
        org_id = orgs[0].id
        buckets_api = client.buckets_api()
        wanted = [(s.bucket, s.retention_days)] + [(rollup_bucket(s.bucket, r), s.rollup_retention_days)
                                                   for r in ROLLUP_RESOLUTIONS_S]
        for name, days in wanted:
            rules = [BucketRetentionRules(type="expire", every_seconds=days * 86400)] if days else []
            found = buckets_api.find_bucket_by_name(name)
            if found is None:
                buckets_api.create_bucket(bucket_name=name, org=s.org, retention_rules=rules,
                                          description="Wattline raw points" if name == s.bucket else "Wattline rollup")
                actions.append(f"created bucket {name} (retention {f'{days} d' if days else 'forever'})")
            else:
                current = (found.retention_rules[0].every_seconds if found.retention_rules else 0) or 0
                if current != days * 86400:
                    found.retention_rules = rules
                    buckets_api.update_bucket(found)
                    actions.append(f"updated retention of bucket {name} to {f'{days} d' if days else 'forever'}")
                else:
                    actions.append(f"bucket {name} up to date")
        tasks_api = client.tasks_api()
        for res in ROLLUP_RESOLUTIONS_S:
            name = task_name(s.bucket, res)
            flux = task_flux(s.bucket, s.org, res)
            existing = [t for t in tasks_api.find_tasks(name=name) if t.name == name and t.org_id == org_id]
            if not existing:
                tasks_api.create_task(task_create_request=TaskCreateRequest(
                    flux=flux, org_id=org_id, status="active", description="Wattline rollup (setup_influx)"))
                actions.append(f"created task {name}")
                continue
            for extra in existing[1:]:  # an interrupted earlier setup may have left a duplicate
                tasks_api.delete_task(extra.id)
                actions.append(f"deleted duplicate task {name} ({extra.id})")
            task = existing[0]
            if task.flux.strip() != flux.strip() or task.status != "active":
                tasks_api.update_task_request(task.id, TaskUpdateRequest(flux=flux, status="active"))
                actions.append(f"updated task {name}")
            else:
                actions.append(f"task {name} up to date")
    finally:
        client.close()
    if backfill:
        from core.storage.influx import InfluxStore

        store = InfluxStore(s)
        try:
            store._rollups_ok = (True, time.monotonic())
            extent = [(i.first_ns, i.last_ns) for i in store.series()]
            if extent:
                lo, hi = min(e[0] for e in extent), max(e[1] for e in extent) + 1
                store.refresh_rollups(lo, hi, progress=progress)
                actions.append(f"backfilled rollups for {(hi - lo) / HOUR_NS:.0f} h of raw points")
        finally:
            store.close()
    return actions


def remove_influx(config: Any) -> list[str]:
    """Delete the bucket, its rollup buckets and its rollup tasks (test and benchmark clean-up; irreversible)."""
    from influxdb_client import InfluxDBClient

    s = _coerce_settings(config)
    actions = []
    with InfluxDBClient(url=s.url, token=s.read_token(), org=s.org, timeout=s.timeout_ms) as client:
        tasks = client.tasks_api()
        for res in ROLLUP_RESOLUTIONS_S:
            for task in tasks.find_tasks(name=task_name(s.bucket, res)):
                if task.name == task_name(s.bucket, res):
                    tasks.delete_task(task.id)
                    actions.append(f"deleted task {task.name}")
        buckets = client.buckets_api()
        for name in [s.bucket] + [rollup_bucket(s.bucket, r) for r in ROLLUP_RESOLUTIONS_S]:
            found = buckets.find_bucket_by_name(name)
            if found is not None:
                buckets.delete_bucket(found)
                actions.append(f"deleted bucket {name}")
    return actions

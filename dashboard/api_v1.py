"""The versioned read API, ``/api/v1``: stored series, aggregated values, findings and KPIs for other systems.

So that a plant's data never becomes an island: a BI tool, a spreadsheet or another plant system reads what Wattline
stores with the Store's own semantics, as JSON, CSV or Parquet (docs/api.md; the OpenAPI description is served at
``/api/v1/openapi.json`` and written in :mod:`dashboard.api_v1_spec`).

==========================  ===========================================================================================
``GET /api/v1/series``      stored series with their extent (roles engineer, cdo, admin)
``GET /api/v1/query``       :meth:`core.storage.base.Store.aggregate` / ``read_frame`` over HTTP (engineer, cdo, admin)
``GET /api/v1/findings``    findings of an analysis run, from the results beside the store (every role)
``GET /api/v1/kpis``        the Enterprise page's KPIs per site and in total (:mod:`dashboard.enterprise`; every role)
==========================  ===========================================================================================

Authentication: ``Authorization: Bearer <token>``, tokens from the one tokens file of the JSON APIs
(:func:`core.orders.api.read_api_tokens`). A token has a role and sites: every read goes through the store as the
token may see it (:class:`dashboard.access.SiteScopedStore`), asking for another site is a 403, and findings of other
sites are left out, all here in the server. Queries are limited in series x days and in rows
(:class:`dashboard.api_limits.ApiLimits`) so that one request cannot occupy a worker for minutes; the 400 names the
parameter to narrow. Requests per token are limited where the API is mounted (:func:`dashboard.api_mount.mount_api`).
Errors are JSON ``{"error": "...", "parameter": "..."}``.

Mounting: ``server.register_blueprint(api_v1(store, read_api_tokens(path), plant=plant, tz=tz))``
(:func:`dashboard.api_mount.mount_api` does it for the dashboard).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pandas as pd

from core.errors import StoreError, StoreUnavailable, WattlineError
from core.model import MACHINE_STATES, from_ns, to_ns
from core.storage.base import AGGREGATIONS, ENERGY_AGGREGATIONS, Column, match_tags
from dashboard.access import PAGE_ROLES
from dashboard.api_limits import ApiLimits
from dashboard.api_v1_spec import FORMATS, MEDIA_TYPES, PARAMETERS, openapi_spec
from dashboard.users import ALL_SITES_ROLES, ROLES

NS = 1_000_000_000
DAY_NS = 86400 * NS
#: Roles that read raw and aggregated series: those of the dashboard's Series page.
DATA_ROLES = PAGE_ROLES["dashboard.pages.series"]
ALL_ROLES = ROLES


class ApiError(Exception):
    """An answer other than 200: HTTP status, message and the query parameter it is about."""

    def __init__(self, status: int, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.parameter = status, message, parameter


@dataclass(frozen=True)
class TokenUser:
    """The user a token acts as, in the shape the dashboard's access functions take (:mod:`dashboard.access`).

    A cdo or admin token without sites sees every site; with sites, only those (a token can be narrower than its
    role).
    """

    name: str
    role: str
    sites: tuple[str, ...]

    @property
    def all_sites(self) -> bool:
        return not self.sites and self.role in ALL_SITES_ROLES

    def may_see(self, site: str | None) -> bool:
        return self.all_sites or (site is not None and site in self.sites)


class _Args:
    """The query parameters of one endpoint: unknown names are refused (the spec declares the known ones)."""

    def __init__(self, path: str, args) -> None:
        self.args = args
        known = {p["name"] for p in PARAMETERS[path]}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ApiError(400, f"unknown parameter {unknown[0]!r} for {path}; valid: {', '.join(sorted(known))}",
                           unknown[0])

    def get(self, name: str) -> str | None:
        values = [v for v in self.args.getlist(name) if v != ""]
        if len(values) > 1:
            raise ApiError(400, f"parameter {name} given {len(values)} times; give it once", name)
        return values[0] if values else None

    def list(self, name: str) -> list[str]:
        return [v for v in self.args.getlist(name) if v != ""]

    def number(self, name: str) -> float | None:
        text = self.get(name)
        if text is None:
            return None
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise ApiError(400, f"{name} {text!r} must be a positive number", name)
        return value

    def time(self, name: str, tz: str) -> int | None:
        """ISO 8601 time [ns]; without an offset (or a bare date: its midnight) in zone ``tz``."""
        import zoneinfo

        text = self.get(name)
        if text is None:
            return None
        try:
            t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(400, f"{name} {text!r} is not an ISO 8601 time; use e.g. 2026-11-02T06:00:00+01:00, "
                                f"...Z, or 2026-11-02 (midnight in {tz})", name) from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=zoneinfo.ZoneInfo(tz))
        return to_ns(t)

    def output_format(self, accept) -> str:
        """``format`` if given, else what ``Accept`` prefers among the formats, else JSON."""
        fmt = self.get("format")
        if fmt is not None:
            if fmt not in FORMATS:
                raise ApiError(400, f"format {fmt!r}; valid: {', '.join(FORMATS)}", "format")
            return fmt
        by_type = {m: f for f, m in MEDIA_TYPES.items()} | {"application/x-parquet": "parquet"}
        best = accept.best_match(list(by_type), default="application/json")
        return by_type.get(best, "json")


def _tag_filter(a: _Args) -> dict[str, list[str]]:
    """``line``, ``machine`` and ``tag=key:value`` parameters as a store tag filter (sites are scoped apart)."""
    tags: dict[str, list[str]] = {}
    for name in ("line", "machine"):
        if a.list(name):
            tags[name] = a.list(name)
    for item in a.list("tag"):
        key, sep, value = item.partition(":")
        if not sep or not key or not value:
            raise ApiError(400, f"tag {item!r} is not key:value (e.g. tag=line:L1)", "tag")
        if key == "site":
            raise ApiError(400, "filter sites with site=..., not tag=site:...", "tag")
        tags.setdefault(key, []).append(value)
    return tags


def _windows(every: int | str, start_ns: int, stop_ns: int) -> float:
    """About how many windows of ``every`` cover the range (for the row limit)."""
    from core.storage.intervals import parse_every

    kind, n = parse_every(every)
    days = (stop_ns - start_ns) / DAY_NS
    if kind == "s":
        return (stop_ns - start_ns) / NS / n + 1
    if kind == "mo":
        return days / 28 / n + 1
    return days / n + 1


def _count_series(store, measurement: str, field: str, tags: dict, start_ns: int, stop_ns: int) -> int:
    """Stored series of ``measurement.field`` matching ``tags`` with values near ``[start, stop)``."""
    from core.storage.query import LOOKBACK_S

    reach = LOOKBACK_S * NS
    return sum(1 for info in store.series(measurement)
               if info.key.field == field and info.count and match_tags(info.key.tag_dict, tags)
               and info.first_ns < stop_ns + reach and info.last_ns >= start_ns - reach)


def _parse_column(text: str) -> Column:
    parts = text.split(":")
    if len(parts) != 4 or not all(parts):
        raise ApiError(400, f"column {text!r} is not name:measurement:field:agg (e.g. "
                            "kwh:electrical:energy_kwh:increase)", "column")
    name, measurement, field, agg = parts
    if agg not in AGGREGATIONS + ENERGY_AGGREGATIONS:
        raise ApiError(400, f"column {text!r}: unknown aggregation {agg!r}; valid: "
                            f"{', '.join(AGGREGATIONS + ENERGY_AGGREGATIONS)}", "column")
    return Column(name, measurement, field, agg)


def _frame_response(frame: pd.DataFrame, fmt: str, name: str, head: dict | None = None):
    """A table as JSON (``{**head, "columns", "data"}``, or the plain list of rows without ``head``), CSV or
    Parquet."""
    from flask import Response

    from dashboard.exports import table_body

    if fmt == "json":
        records = frame.to_json(orient="records", date_format="iso", date_unit="s") if len(frame) else "[]"
        if head is None:
            return Response(records, mimetype="application/json")
        text = json.dumps({**head, "columns": list(frame.columns)})[:-1] + ', "data": ' + records + "}"
        return Response(text, mimetype="application/json")
    body, mimetype = table_body(frame, fmt)
    return Response(body, mimetype=mimetype,
                    headers={"Content-Disposition": f"attachment; filename=wattline-{name}.{fmt}"})


def api_v1(store, tokens, *, plant=None, tz: str | dt.tzinfo = "UTC", limits: ApiLimits = ApiLimits(),
           clock: Callable[[], int] = time.time_ns):
    """The ``/api/v1`` read blueprint (Flask).

    Parameters
    ----------
    store : core.storage.Store or callable
        The store, or a function returning it (the dashboard's lazily opened store).
    tokens : core.orders.api.ApiTokens
        From :func:`core.orders.api.read_api_tokens`.
    plant : core.plant.Plant, optional
        Sites' names, time zones, currencies, tariffs, CO2 factors (KPIs; default zone of single-site queries).
    tz : str or tzinfo
        Zone of windows and times without offset when no site's zone applies.
    limits : ApiLimits
        Query size limits (its ``requests_per_minute`` is applied by :func:`dashboard.api_mount.mount_api`).
    clock : callable
        Now [ns] (default the system clock; tests fix it).
    """
    from flask import Blueprint, request

    from dashboard.access import AccessDenied, SiteScopedStore, scoped_store

    default_tz = getattr(tz, "key", None) or (tz if isinstance(tz, str) else "UTC")
    bp = Blueprint("wattline_api_v1", __name__, url_prefix="/api/v1")

    @bp.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        from flask import jsonify

        body = {"error": exc.message, **({"parameter": exc.parameter} if exc.parameter else {})}
        response = jsonify(body)
        response.status_code = exc.status
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @bp.errorhandler(AccessDenied)
    def _denied(exc):
        return _api_error(ApiError(403, str(exc), "site"))

    @bp.errorhandler(WattlineError)
    def _unavailable(exc):
        return _api_error(ApiError(503, f"the store cannot be read: {exc}"))

    @bp.after_request
    def _no_store(response):
        response.headers["Cache-Control"] = "no-store"  # per-token data: never kept by shared caches
        return response

    def auth(roles: Sequence[str]) -> TokenUser:
        actor = tokens.actor(request.headers.get("Authorization"))
        if actor is None:
            raise ApiError(401, "missing or unknown token: send Authorization: Bearer <token>")
        if actor.role not in roles:
            raise ApiError(403, f"token {actor.name} (role {actor.role}) may not read {request.path}; roles "
                                f"allowed: {', '.join(roles)}")
        return TokenUser(actor.name, actor.role, tuple(actor.sites))

    def raw_store():
        return store() if callable(store) and not hasattr(store, "query") else store

    def check_sites(user: TokenUser, sites: list[str]) -> None:
        for site in sites:
            if not user.may_see(site):
                raise ApiError(403, f"token {user.name} may not read site {site!r}; its sites: "
                                    f"{', '.join(user.sites) or 'all'}", "site")
        unknown = [s for s in sites if s not in user.sites]  # a token's own sites are valid even before any data
        if unknown:
            if plant is not None:
                known = {spec.id for spec in plant.sites}
            else:
                known = {i.key.tag_dict["site"] for i in raw_store().series() if "site" in i.key.tag_dict}
            if set(unknown) - known:
                shown = sorted(k for k in known if user.may_see(k))
                raise ApiError(400, f"unknown site {sorted(set(unknown) - known)[0]!r}; known sites: "
                                    f"{', '.join(shown) or 'none yet'}", "site")

    def begin(path: str, roles: Sequence[str]) -> tuple[TokenUser, _Args, str, list[str]]:
        """Every endpoint's start: the token's user (401/403), its parameters, output format and checked sites."""
        user = auth(roles)
        a = _Args(path, request.args)
        sites = a.list("site")
        check_sites(user, sites)
        return user, a, a.output_format(request.accept_mimetypes), sites

    def scoped(user: TokenUser, sites: list[str]):
        """The store as ``user`` may see it, limited to ``sites`` (already checked) when given."""
        # TokenUser has the attributes of a dashboard User that scoped_store reads (all_sites, sites)
        return SiteScopedStore(raw_store(), sites) if sites else scoped_store(raw_store(), cast(Any, user))

    def zone_for(a: _Args, sites: list[str]) -> str:
        from core.storage.intervals import zone

        name = a.get("tz")
        if name is None:
            if len(sites) == 1 and plant is not None:
                from dashboard.overview import site_info

                return site_info(sites[0], plant, dt.UTC).tz
            return default_tz
        try:
            zone(name)
        except StoreError as exc:
            raise ApiError(400, str(exc), "tz") from None
        return name

    @bp.get("/openapi.json")
    def openapi():
        from flask import jsonify

        return jsonify(openapi_spec(request.script_root + bp.url_prefix))

    @bp.get("/series")
    def series():
        user, a, fmt, sites = begin("/series", DATA_ROLES)
        st = scoped(user, sites)
        field, tags = a.get("field"), _tag_filter(a)
        infos = [i for i in st.series(a.get("measurement"))
                 if (field is None or i.key.field == field) and match_tags(i.key.tag_dict, tags)]
        rows = [i.to_dict() for i in infos]
        if fmt == "json":
            return _frame_response(pd.DataFrame(rows), fmt, "series")
        keys = sorted({k for r in rows for k in r["tags"]})
        flat = pd.DataFrame([{"measurement": r["measurement"], **{k: r["tags"].get(k) for k in keys},
                              "field": r["field"], "count": r["count"], "first": r["first"], "last": r["last"]}
                             for r in rows], columns=["measurement", *keys, "field", "count", "first", "last"])
        return _frame_response(flat, fmt, "series")

    @bp.get("/query")
    def query():
        user, a, fmt, sites = begin("/query", DATA_ROLES)
        st = scoped(user, sites)
        tz_name = zone_for(a, sites)
        start = a.time("start", tz_name)
        if start is None:
            raise ApiError(400, "start is required (ISO 8601, e.g. 2026-11-01T00:00:00Z)", "start")
        stop = a.time("stop", tz_name) or int(clock())
        if stop <= start:
            raise ApiError(400, f"stop ({from_ns(stop).isoformat()}) must be after start "
                                f"({from_ns(start).isoformat()})", "stop")
        every_text = a.get("every") or "1h"
        every: int | str = int(every_text) if every_text.isdigit() else every_text
        try:
            from core.storage.intervals import window_edges

            window_edges(start, min(stop, start + 62 * DAY_NS), every, tz_name)
        except StoreError as exc:
            raise ApiError(400, str(exc), "every") from None
        tags = _tag_filter(a)
        columns = [_parse_column(c) for c in a.list("column")]
        if columns:
            if a.get("measurement") or a.get("field") or a.get("agg"):
                raise ApiError(400, "give either column=... or measurement, field and agg, not both", "column")
            names = [c.name for c in columns]
            if len(set(names)) != len(names):
                raise ApiError(400, f"column names must differ: {', '.join(names)}", "column")
        else:
            measurement, field = a.get("measurement"), a.get("field")
            if not measurement or not field:
                missing = "measurement" if not measurement else "field"
                raise ApiError(400, f"{missing} is required (or give column=name:measurement:field:agg)", missing)
            agg = a.get("agg") or "mean"
            if agg not in AGGREGATIONS + ENERGY_AGGREGATIONS:
                raise ApiError(400, f"unknown agg {agg!r}; valid: {', '.join(AGGREGATIONS + ENERGY_AGGREGATIONS)}",
                               "agg")
            columns = [Column("value", measurement, field, agg, a.number("register_max"), a.number("max_hold_s"))]
        if a.list("column") and (a.get("register_max") or a.get("max_hold_s")):
            raise ApiError(400, "register_max and max_hold_s apply to a measurement/field query only",
                           "register_max" if a.get("register_max") else "max_hold_s")
        by = [b.strip() for b in (a.get("by") or "site,line,machine").split(",") if b.strip()]
        if a.get("by") and not a.list("column"):
            raise ApiError(400, "by applies to column=... queries only", "by")
        check_limits(st, columns, tags, start, stop, every)
        head = {"query": {"start": from_ns(start).isoformat(), "stop": from_ns(stop).isoformat(),
                          "every": every_text, "tz": tz_name, "sites": sites or "all", "tags": tags}}
        try:
            if a.list("column"):
                parts = list(st.read_frame(columns, start, stop, every=every, tz=tz_name, tags=tags, by=by))
                frame = pd.concat([p for p in parts if not p.empty] or parts[:1], ignore_index=True)
                head["query"].update(columns=a.list("column"), by=by)
            else:
                col = columns[0]
                frame = st.aggregate(col.measurement, col.field, start, stop, every=every, agg=col.agg, tags=tags,
                                     tz=tz_name, register_max=col.register_max, max_hold_s=col.max_hold_s)
                if "state" in frame:
                    frame["state"] = [MACHINE_STATES.get(int(c), str(c)) for c in frame["state"]]
                head["query"].update(measurement=col.measurement, field=col.field, agg=col.agg)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise ApiError(400, f"query refused: {exc}") from None
        return _frame_response(frame, fmt, "query", head)

    def check_limits(st, columns: list[Column], tags: dict, start: int, stop: int, every) -> None:
        days = (stop - start) / DAY_NS
        counted: dict[tuple[str, str], int] = {}
        raw = windowed = rows = 0.0
        for col in columns:
            key = (col.measurement, col.field)
            if key not in counted:
                counted[key] = _count_series(st, col.measurement, col.field, tags, start, stop)
            n = counted[key]
            if col.agg in ENERGY_AGGREGATIONS:
                raw += n * days
            else:
                windowed += n * days
            rows += n * _windows(every, start, stop) * (len(MACHINE_STATES) if col.agg == "state_seconds" else 1)
        narrow = "shorten start/stop or filter by site, line, machine or tag"
        if raw > limits.max_raw_series_days:
            raise ApiError(400, f"the query reads raw points of {raw:,.0f} series-days (series x days of range); "
                                f"the limit is {limits.max_raw_series_days:,.0f}: {narrow}", "start")
        if windowed > limits.max_series_days:
            raise ApiError(400, f"the query covers {windowed:,.0f} series-days; the limit is "
                                f"{limits.max_series_days:,.0f}: {narrow}", "start")
        if rows > limits.max_rows:
            raise ApiError(400, f"the answer would have about {rows:,.0f} rows (windows x series); the limit is "
                                f"{limits.max_rows:,}: use a longer window (every) or {narrow}", "every")

    @bp.get("/findings")
    def findings():
        from dashboard.overview import visible

        user, a, fmt, sites = begin("/findings", ALL_ROLES)
        tz_name = zone_for(a, sites)
        start, stop = a.time("from", tz_name), a.time("to", tz_name)
        run, events = read_findings(a.get("run"), start, stop, a.list("kind"), a.list("machine"))
        shown = visible(events, user, sites or sorted({str(e.machine).split("/")[0] for e in events}))
        rows = [{**e.to_dict(), "run": run} for e in shown]
        if fmt == "json":
            return _frame_response(pd.DataFrame(rows), fmt, "findings")
        frame = pd.DataFrame(rows, columns=["machine", "kind", "start", "end", "excess_kwh", "details", "run"])
        frame["details"] = [json.dumps(d, sort_keys=True) for d in frame["details"]]
        return _frame_response(frame, fmt, "findings")

    def read_findings(run: str | None, start, stop, kinds: list[str], machines: list[str]):
        """(run, findings) of ``run`` (default the newest that stored findings); no results yet: (None, [])."""
        from core.storage.results import results_for

        try:
            results = results_for(raw_store())
        except StoreUnavailable:
            raise
        except StoreError:
            return None, []
        with results:
            runs = results.runs()
            if run is None:
                run = next((r.run for r in runs if r.findings), None)
                if run is None:
                    return None, []
            elif run not in {r.run for r in runs}:
                newest = ", ".join(r.run for r in runs[:5]) or "none stored"
                raise ApiError(400, f"run {run!r} is not stored; newest runs: {newest}", "run")
            return run, results.query_findings(start, stop, kinds=kinds or None, machines=machines or None, run=run)

    @bp.get("/kpis")
    def kpis():
        import zoneinfo

        from dashboard.enterprise import CSV_COLUMNS, enterprise_view, month_range, totals
        from dashboard.periods import day_range

        user, a, fmt, sites = begin("/kpis", ALL_ROLES)
        month, days_text = a.get("month"), a.get("days")
        if month and days_text:
            raise ApiError(400, "give days or month, not both", "month")
        days = None
        if days_text is not None:
            if not days_text.isdigit() or not 1 <= int(days_text) <= 3660:
                raise ApiError(400, f"days {days_text!r} must be a whole number from 1 to 3660", "days")
            days = int(days_text)
        elif not month:
            days = 30
        weekly = (a.get("weekly") or "false").lower()
        if weekly not in ("true", "false", "1", "0"):
            raise ApiError(400, f"weekly {a.get('weekly')!r} must be true or false", "weekly")
        now = int(clock())
        found = []
        try:
            for site in sites or [None]:
                found += enterprise_view(raw_store(), user, site, plant, zoneinfo.ZoneInfo(default_tz), now,
                                         days=days, month=month)[0]
        except ValueError as exc:
            raise ApiError(400, str(exc), "month") from None
        total = totals(found)
        out = []
        for k in found:
            start, stop = month_range(month, k.site.tz) if month else day_range(days, now, zoneinfo.ZoneInfo(k.site.tz))
            row = {"site_id": k.site.id, **k.row(), "tz": k.site.tz, "start": from_ns(start).isoformat(),
                   "stop": from_ns(stop).isoformat()}
            if weekly in ("true", "1"):
                w = k.weekly
                row["weekly"] = [] if w.empty else json.loads(w.assign(week=w["week"].dt.strftime("%Y-%m-%d"))
                                                              .to_json(orient="records"))
            out.append(row)
        if fmt != "json":
            return _frame_response(pd.DataFrame([*out, total], columns=["site_id", *CSV_COLUMNS]), fmt, "kpis")
        from flask import jsonify

        return jsonify(_json_safe({"period": {"month": month} if month else {"days": days}, "sites": out,
                                   "total": total}))

    return bp


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinite floats as None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

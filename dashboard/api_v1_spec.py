"""The OpenAPI 3 description of the read API (:mod:`dashboard.api_v1`), served at ``/api/v1/openapi.json``.

Written by hand, and the single list of each endpoint's query parameters: the API refuses a parameter its path does
not declare here (a misspelt ``mesurement`` is a 400 naming it, not a silently ignored filter), so the description
cannot drift from what the server accepts. A test validates it with openapi-spec-validator and checks that every
route of the blueprint is described.
"""

from __future__ import annotations

from typing import Any

from core.model import MACHINE_STATES
from core.storage.base import AGGREGATIONS, ENERGY_AGGREGATIONS

VERSION = "1.0.0"
FORMATS = ("json", "csv", "parquet")
#: Media types of the formats (``Accept`` picks one when ``format`` is not given).
MEDIA_TYPES = {"json": "application/json", "csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def _p(name: str, description: str, schema: dict | None = None, *, required: bool = False,
       repeat: bool = False) -> dict:
    schema = schema or {"type": "string"}
    if repeat:
        schema = {"type": "array", "items": schema}
    out = {"name": name, "in": "query", "required": required, "description": description, "schema": schema}
    if repeat:
        out.update(style="form", explode=True)
    return out


_SITE = _p("site", "Site id; repeat for several. Default: every site the token may see. A site outside the token's "
                   "scope is a 403.", repeat=True)
_LINE = _p("line", "Line tag; repeat for several.", repeat=True)
_MACHINE = _p("machine", "Machine tag (the machine's own id, not the site/line/machine path); repeat for several.",
              repeat=True)
_TAG = _p("tag", "Any tag filter as `key:value`; repeat (the same key twice means either value).", repeat=True)
_FORMAT = _p("format", "Output format; overrides the `Accept` header (`text/csv`, `application/vnd.apache.parquet`).",
             {"type": "string", "enum": list(FORMATS), "default": "json"})
_TIME = "ISO 8601 time with offset (`2026-11-02T00:00:00+01:00`, `...Z`); a date or a time without offset is " \
        "taken in `tz`."

PARAMETERS: dict[str, list[dict]] = {
    "/series": [
        _p("measurement", "Only series of this measurement (e.g. `electrical`)."),
        _p("field", "Only series of this field (e.g. `active_power_kw`)."),
        _SITE, _LINE, _MACHINE, _TAG, _FORMAT,
    ],
    "/query": [
        _p("measurement", "Measurement of the field to aggregate (with `field`; or give `column`)."),
        _p("field", "Field to aggregate (e.g. `active_power_kw`, `energy_kwh`, `state`)."),
        _p("agg", "Aggregation per window: windowed ones answered from the store's rollups (mean, sum, min, max, "
                  "last, count), or computed from raw points: `increase` (counter increase with rollover and reset "
                  "handling), `twmean` (time-weighted mean), `integral` (time integral [unit x h]: kW gives kWh), `state_seconds` "
                  "(seconds in each machine state).",
           {"type": "string", "enum": [*AGGREGATIONS, *ENERGY_AGGREGATIONS], "default": "mean"}),
        _p("column", "Several fields side by side, one per `name:measurement:field:agg` (e.g. "
                     "`kwh:electrical:energy_kwh:increase`); rows are then one per `by` tags and window.",
           repeat=True),
        _p("by", "Tags that make one row of a `column` query, comma separated.",
           {"type": "string", "default": "site,line,machine"}),
        _p("every", "Window: whole seconds, or `15min`, `1h`, `1d` (local days in `tz`), `1w` (weeks from Monday), "
                    "`1mo` (calendar months), `1y`.", {"type": "string", "default": "1h"}),
        _p("start", "Range start (inclusive). " + _TIME, required=True),
        _p("stop", "Range end (exclusive); default now. " + _TIME),
        _p("tz", "IANA time zone of the windows and of times without offset; default the site's zone when one site "
                 "is asked for (plant file), else the server's."),
        _p("register_max", "Counter register maximum for `increase` (rollover detection) [counter unit].",
           {"type": "number", "minimum": 0, "exclusiveMinimum": True}),
        _p("max_hold_s", "Longest time a value holds for `twmean`, `integral`, `state_seconds` [s].",
           {"type": "number", "minimum": 0, "exclusiveMinimum": True}),
        _SITE, _LINE, _MACHINE, _TAG, _FORMAT,
    ],
    "/findings": [
        _p("run", "Analysis run id; default the newest run that stored findings."),
        _p("from", "Findings ending after this time. " + _TIME),
        _p("to", "Findings starting before this time. " + _TIME),
        _p("kind", "Finding kind (e.g. `idle_running`, `meter_stuck`); repeat for several.", repeat=True),
        _SITE, _MACHINE, _FORMAT,
    ],
    "/kpis": [
        _p("days", "The last N local days up to now (default 30).", {"type": "integer", "minimum": 1,
                                                                    "maximum": 3660}),
        _p("month", "A local calendar month `YYYY-MM` instead of `days`.", {"type": "string",
                                                                             "pattern": r"^\d{4}-\d{2}$"}),
        _p("weekly", "Add each site's weekly EnPI (energy per good unit) rows.", {"type": "boolean",
                                                                                  "default": False}),
        _SITE, _FORMAT,
    ],
    "/openapi.json": [],
}


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


_ERRORS = {"400": _error("Bad parameter: `error` says what and how to fix it, `parameter` names it."),
           "401": _error("No or unknown token (`WWW-Authenticate: Bearer`)."),
           "403": _error("The token's role or sites do not allow this (e.g. another site)."),
           "503": _error("The store cannot be read right now.")}


def _table(description: str, schema: str) -> dict:
    return {"description": description, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}},
        "text/csv": {"schema": {"type": "string"}},
        "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}}}


_NUM = {"type": "number", "nullable": True}
_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string"}, "parameter": {"type": "string"}}},
    "Series": {"type": "object", "required": ["measurement", "tags", "field", "count", "first", "last"],
               "properties": {
                   "measurement": {"type": "string"},
                   "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                   "field": {"type": "string"},
                   "count": {"type": "integer", "description": "Stored values (missing ones included)."},
                   "first": {"type": "string", "format": "date-time"},
                   "last": {"type": "string", "format": "date-time"}}},
    "SeriesList": {"type": "array", "items": {"$ref": "#/components/schemas/Series"}},
    "QueryResult": {"type": "object", "required": ["query", "columns", "data"], "properties": {
        "query": {"type": "object", "description": "The query as the server understood it (defaults filled in).",
                  "additionalProperties": True},
        "columns": {"type": "array", "items": {"type": "string"}},
        "data": {"type": "array", "description": "One object per row: `time` (window start, UTC), the tags, then "
                                                 "`value` (with `state`, one of "
                                                 f"{', '.join(MACHINE_STATES.values())}, for `state_seconds`) or "
                                                 "one member per column (`<name>_<state>` for state_seconds).",
                 "items": {"type": "object", "additionalProperties": True}}}},
    "Finding": {"type": "object", "required": ["machine", "kind", "start", "end", "excess_kwh", "run"], "properties": {
        "machine": {"type": "string", "description": "site/line/machine"},
        "kind": {"type": "string"},
        "start": {"type": "string", "format": "date-time"},
        "end": {"type": "string", "format": "date-time"},
        "excess_kwh": {"type": "number", "description": "Avoidable energy [kWh]."},
        "details": {"type": "object", "additionalProperties": True},
        "run": {"type": "string"}}},
    "FindingList": {"type": "array", "items": {"$ref": "#/components/schemas/Finding"}},
    "SiteKpis": {"type": "object", "required": ["site", "energy_kwh"], "properties": {
        "site_id": {"type": "string"}, "site": {"type": "string", "description": "Site name."},
        "tz": {"type": "string"}, "start": {"type": "string", "format": "date-time"},
        "stop": {"type": "string", "format": "date-time"},
        "energy_kwh": {"type": "number", "description": "Metered energy [kWh]."},
        "cost": {**_NUM, "description": "Energy cost at the site's tariff [currency]."},
        "currency": {"type": "string", "nullable": True},
        "co2_kg": {**_NUM, "description": "CO2 [kg] at the site's factor."},
        "good_units": {"type": "number", "description": "Increase of the production/good_count counters."},
        "kwh_per_unit": {**_NUM, "description": "EnPI: energy per good unit [kWh/unit]."},
        "potential_kwh": {"type": "number", "description": "Avoidable energy of the newest analysis's waste "
                                                           "findings, pro rata to the period [kWh]."},
        "potential_share": {**_NUM, "description": "potential_kwh / energy_kwh."},
        "machines": {"type": "integer"}, "metered": {"type": "integer"},
        "completeness": {**_NUM, "description": "Mean data completeness of the site's machines (0-1)."},
        "weekly": {"type": "array", "items": {"type": "object", "properties": {
            "week": {"type": "string", "format": "date"}, "kwh": {"type": "number"}, "good": {"type": "number"},
            "kwh_per_unit": _NUM}}}}},
    "Kpis": {"type": "object", "required": ["sites", "total"], "properties": {
        "period": {"type": "object", "additionalProperties": True},
        "sites": {"type": "array", "items": {"$ref": "#/components/schemas/SiteKpis"}},
        "total": {"$ref": "#/components/schemas/SiteKpis"}}},
}

_OPERATIONS = {
    "/series": ("listSeries", "Stored series", "Every stored series the token may see, with its value count and "
                "first/last time. Roles: engineer, cdo, admin.", "SeriesList"),
    "/query": ("query", "Aggregate stored values", "The store's window and aggregation semantics "
               "(`Store.aggregate`, or `Store.read_frame` with `column`): local-time windows, counter increases, "
               "time-weighted means and integrals, seconds per machine state. Limited in series x days and rows "
               "(400 naming the parameter to narrow). Roles: engineer, cdo, admin.", "QueryResult"),
    "/findings": ("listFindings", "Analysis findings", "Findings (waste, meter faults) of one analysis run, of the "
                  "token's sites. Every role.", "FindingList"),
    "/kpis": ("kpis", "Enterprise KPIs per site", "Energy, cost, CO2, EnPI (kWh per good unit), reduction "
              "potential and data coverage per site and in total, as on the dashboard's Enterprise page. Every "
              "role, for its sites.", "Kpis"),
}


def openapi_spec(server_url: str = "/api/v1") -> dict[str, Any]:
    """The OpenAPI 3.0 document of the read API (a fresh dict)."""
    paths: dict[str, Any] = {}
    for path, (op_id, summary, description, schema) in _OPERATIONS.items():
        paths[path] = {"get": {"operationId": op_id, "summary": summary, "description": description,
                               "parameters": [dict(p) for p in PARAMETERS[path]],
                               "responses": {"200": _table("The rows.", schema), **_ERRORS}}}
    paths["/openapi.json"] = {"get": {
        "operationId": "openapi", "summary": "This description", "security": [],
        "responses": {"200": {"description": "OpenAPI 3 document",
                              "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Wattline read API", "version": VERSION,
                 "description": "Stored series, aggregated values, findings and KPIs of a Wattline plant, for BI "
                                "tools, scripts and other systems (docs/api.md). Authenticate with "
                                "`Authorization: Bearer <token>`; a token sees only its sites."},
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": _SCHEMAS},
    }

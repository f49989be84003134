"""The work-order JSON HTTP API, ``/api/v1``: a Flask blueprint the dashboard (or any WSGI server) mounts.

So that a CMMS (Odoo, Atlas, Maximo, SAP PM) can pull orders and push their status back:

==========================================  ======================================================================
``GET  /api/v1/orders``                     orders the token may see (``?status=&site=&team=``)
``GET  /api/v1/orders/<id>``                one order with its evidence and audit log
``POST /api/v1/orders/<id>/status``         ``{"action": "ack|start|resolve|reject", "comment", "reason", "at",
                                            "version"}``; idempotent: an order already in the action's status is
                                            returned unchanged (``"changed": false``, no audit entry)
``POST /api/v1/orders/<id>/assign``         ``{"team", "comment"}``; idempotent the same way
``GET  /api/v1/findings``                   stored findings (``?run=&from=&to=&machine=``) of the sites allowed
``GET  /api/v1/kpi``                        the KPIs (:func:`core.orders.kpi.kpis`) of the orders allowed
==========================================  ======================================================================

Authentication: ``Authorization: Bearer <token>``. Tokens are kept hashed (SHA-256) in a JSON file that only its
owner may read (``{"tokens": [{"name", "sha256", "role", "sites"}]}``, see :func:`hash_token`); each token acts as a
user with a dashboard role and sites, and every change it makes is audited under ``api:<name>``. Errors are JSON
``{"error": "..."}`` with 400 (bad input), 401 (no or unknown token), 403 (role or site), 404 (unknown order) or
409 (illegal transition, changed since ``version``).

Mounting: ``app.register_blueprint(orders_api(service, read_api_tokens(path), findings=findings_from_store(url)))``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.config import read_secret_file
from core.errors import ConfigError
from core.orders import (
    IllegalTransition,
    NotAllowed,
    OrderConflict,
    OrderNotFound,
    OrdersUsageError,
)
from core.orders.service import TRANSITIONS, Actor, OrderService

ROLES = ("plant_manager", "engineer", "cdo", "admin")


def hash_token(token: str) -> str:
    """The SHA-256 hex digest kept in the tokens file instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiTokens:
    """Token hash -> actor."""

    by_hash: dict[str, Actor]

    def actor(self, header: str | None) -> Actor | None:
        if not header or not header.startswith("Bearer "):
            return None
        digest = hash_token(header[len("Bearer "):].strip())
        for known, actor in self.by_hash.items():
            if hmac.compare_digest(known, digest):
                return actor
        return None


def read_api_tokens(path: str | os.PathLike) -> ApiTokens:
    """Read the tokens file (mode 600).

    Raises
    ------
    ConfigError
        Naming the file and the entry: not JSON, a missing key, an unknown role, a site list missing.
    """
    text = read_secret_file(path, "API tokens")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"API tokens file {path}: not valid JSON at line {exc.lineno}: {exc.msg}") from None
    entries = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f'API tokens file {path}: expected {{"tokens": [{{"name", "sha256", "role", "sites"}}]}}')
    out: dict[str, Actor] = {}
    for i, e in enumerate(entries):
        where = f"API tokens file {path}, tokens[{i}]"
        if not isinstance(e, dict) or not {"name", "sha256", "role"} <= set(e):
            raise ConfigError(f"{where}: needs name, sha256 (wattline's hash_token of the token) and role")
        if e["role"] not in ROLES:
            raise ConfigError(f"{where}: unknown role {e['role']!r}; valid roles: {', '.join(ROLES)}")
        sites = tuple(e.get("sites") or ())
        if e["role"] not in ("cdo", "admin") and not sites:
            raise ConfigError(f"{where}: role {e['role']} needs sites: [...]")
        out[str(e["sha256"]).lower()] = Actor(f"api:{e['name']}", e["role"], sites)
    return ApiTokens(out)


def findings_from_store(store_url: str) -> Callable[[dict[str, str]], list[dict[str, Any]]]:
    """A findings reader for :func:`orders_api` over a store's results (``?run=&from=&to=&machine=``)."""

    def read(args: dict[str, str]) -> list[dict[str, Any]]:
        from core.storage import open_store
        from core.storage.results import results_for

        with open_store(store_url) as st, results_for(st) as results:
            run = args.get("run")
            if run is None:
                runs = results.runs()
                run = runs[0].run if runs else None
            if run is None:
                return []
            events = results.query_findings(args.get("from"), args.get("to"), run=run,
                                            machines=[args["machine"]] if args.get("machine") else None)
        return [{**e.to_dict(), "run": run} for e in events]

    return read


def orders_api(service: OrderService, tokens: ApiTokens,
               findings: Callable[[dict[str, str]], list[dict[str, Any]]] | None = None):
    """The ``/api/v1`` blueprint (Flask)."""
    from flask import Blueprint, jsonify, request

    bp = Blueprint("wattline_orders_api", __name__, url_prefix="/api/v1")

    def error(status: int, message: str):
        response = jsonify({"error": message})
        response.status_code = status
        return response

    def actor() -> Actor:
        who = tokens.actor(request.headers.get("Authorization"))
        if who is None:
            raise _Unauthorized()
        return who

    @bp.errorhandler(_Unauthorized)
    def _unauth(_exc):
        response = error(401, "missing or unknown token: send Authorization: Bearer <token>")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @bp.errorhandler(OrdersUsageError)
    def _usage(exc):
        if isinstance(exc, OrderNotFound):
            return error(404, str(exc))
        if isinstance(exc, NotAllowed):
            return error(403, str(exc))
        return error(409 if isinstance(exc, IllegalTransition) else 400, str(exc))

    @bp.errorhandler(OrderConflict)
    def _conflict(exc):
        return error(409, str(exc))

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise OrdersUsageError("send a JSON object body (Content-Type: application/json)")
        return data

    @bp.get("/orders")
    def list_orders():
        who = actor()
        return jsonify(service.list(status=request.args.getlist("status") or None, site=request.args.get("site"),
                                    team=request.args.get("team"), actor=who))

    @bp.get("/orders/<int:order_id>")
    def get_order(order_id: int):
        return jsonify(service.get(order_id, actor=actor()))

    @bp.post("/orders/<int:order_id>/status")
    def set_status(order_id: int):
        who = actor()
        data = body()
        action = data.get("action")
        if action not in TRANSITIONS or action == "verify":
            raise OrdersUsageError(f"action {action!r}: valid actions: ack, start, resolve, reject")
        current = service.get(order_id, actor=who)
        if current["status"] == TRANSITIONS[action][1]:
            who.check(action, current["site"])
            return jsonify({"changed": False, "order": current})
        at = data.get("at")
        if at is not None:
            try:
                at = dt.datetime.fromisoformat(str(at).replace("Z", "+00:00"))
            except ValueError:
                raise OrdersUsageError(f"at {data.get('at')!r} is not an ISO 8601 time") from None
        order = service.transition(order_id, action, who, str(data.get("comment") or ""), reason=data.get("reason"),
                                   at=at, expected_version=data.get("version"))
        return jsonify({"changed": True, "order": order})

    @bp.post("/orders/<int:order_id>/assign")
    def assign(order_id: int):
        who = actor()
        data = body()
        team = data.get("team")
        current = service.get(order_id, actor=who)
        if current["team"] == team:
            who.check("assign", current["site"])
            return jsonify({"changed": False, "order": current})
        order = service.assign(order_id, str(team), who, str(data.get("comment") or ""),
                               expected_version=data.get("version"))
        return jsonify({"changed": True, "order": order})

    @bp.get("/findings")
    def list_findings():
        who = actor()
        if findings is None:
            return error(404, "this server has no findings source")
        rows = findings(dict(request.args))
        if who.sites:
            rows = [r for r in rows if r["machine"].split("/", 1)[0] in who.sites]
        return jsonify(rows)

    @bp.get("/kpi")
    def kpi():
        from core.orders.kpi import kpis

        return jsonify(kpis(service.list(actor=actor())))

    return bp


class _Unauthorized(Exception):
    """No or unknown token."""

"""The work-order loop as the dashboard pages show it: pure functions over orders, findings and the logged-in user.

Orders come from :class:`core.orders.service.OrderService` (``list`` dicts); KPIs from :func:`core.orders.kpi.kpis`
(all arithmetic stays there). This module decides what a user sees and may do:

- :func:`visible_orders`: the orders of the sites the user may see (one site when chosen; AccessDenied for another);
- :func:`finding_order_rows`: the findings grid rows with each finding's order (id, status, owner, due);
- :func:`allowed_actions` and :func:`apply_action`: the status changes the user's role and site allow, taken through
  the service (which checks role and site again, and audits under the dashboard user's name); bad requests give a
  message and change nothing;
- :func:`loop_table_rows` and :func:`closure_summary`: the closure KPIs per site and in total.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Mapping
from typing import Any

from dashboard.access import AccessDenied
from dashboard.overview import finding_rows, fmt_energy, site_info

#: Statuses people read.
STATUS_LABELS = {"open": "Open", "acknowledged": "Acknowledged", "in_progress": "In progress", "resolved": "Resolved",
                 "verified": "Verified", "rejected": "Rejected"}
#: Actions the findings page offers, with their labels (``assign`` is "reassign to a team").
ACTION_LABELS = {"ack": "Acknowledge", "start": "Start work", "resolve": "Resolve", "reject": "Reject",
                 "assign": "Assign to a team"}
WORKING = ("open", "acknowledged", "in_progress")


def actor_for(user):
    """The :class:`core.orders.service.Actor` of a dashboard user: same name (the audit log's), role and sites."""
    from core.orders.service import Actor

    return Actor(user.name, user.role, () if user.all_sites else tuple(user.sites))


def visible_orders(orders: Iterable[Mapping[str, Any]], user, site: str | None = None) -> list[dict]:
    """The orders of the sites ``user`` may see, or of ``site`` alone.

    Raises
    ------
    AccessDenied
        When ``site`` is one the user may not see.
    """
    if site not in (None, "", "all"):
        if not user.may_see(site):
            raise AccessDenied(f"user {user.name} may not see site {site!r}")
        return [dict(o) for o in orders if o["site"] == site]
    return [dict(o) for o in orders if user.may_see(o["site"])]


def site_orders(user, sites: Iterable[str]) -> tuple[list[dict] | None, str]:
    """Orders of ``sites`` the user may see, from the current app's database (None without one or when it cannot be
    read), and what to say when there are none. Never raises for the database: the findings show without orders."""
    from core.errors import WattlineError
    from dashboard.orders import current_orders

    wanted = set(sites)
    try:
        service = current_orders()
        if service is None:
            return None, ("no work-order database yet: 'wattline orders sync' opens orders from the findings "
                          "(or start the dashboard with --orders-db).")
        orders = [o for o in service.list(actor=actor_for(user)) if o["site"] in wanted and user.may_see(o["site"])]
    except WattlineError as exc:
        return None, f"cannot read the work orders: {exc}"
    return orders, "no orders for these sites yet."


def newest_by_pattern(orders: Iterable[Mapping[str, Any]]) -> dict[str, dict]:
    """Pattern (``site/line/machine:kind``) -> its newest order: the one a finding of that pattern belongs to (a
    recurring pattern reopens its order, so there is one per pattern unless it was closed and opened anew)."""
    out: dict[str, dict] = {}
    for o in sorted(orders, key=lambda o: int(o["id"])):
        out[f"{o['machine']}:{o['kind']}"] = dict(o)
    return out


def local_time(value: str | None, tz: str) -> str:
    """An order's UTC ISO time as plant-local ``YYYY-MM-DD HH:MM`` ('—' when missing)."""
    if not value:
        return "—"
    t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return t.astimezone(zoneinfo.ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def order_cells(order: Mapping[str, Any] | None, tz: str, now: dt.datetime) -> dict[str, Any]:
    """The order columns of a grid row: id, status label, owner, plant-local due time, overdue flag."""
    if order is None:
        return {"order_id": None, "order_status": "No order", "status_key": None, "order_owner": "—",
                "order_due": "—", "overdue": False}
    due = dt.datetime.fromisoformat(order["due"])
    return {"order_id": order["id"], "order_status": STATUS_LABELS.get(order["status"], order["status"]),
            "status_key": order["status"], "order_owner": order.get("owner") or "dispatch queue",
            "order_due": local_time(order["due"], tz),
            "overdue": order["status"] in WORKING and due < now}


def finding_order_rows(findings: list, orders: Iterable[Mapping[str, Any]], plant, default_tz: dt.tzinfo,
                       now: dt.datetime) -> list[dict]:
    """Findings grid rows (:func:`dashboard.overview.finding_rows`) with each finding's order.

    A finding below the opening threshold has no order ("No order"). Rows are sorted by avoidable kWh, largest first.
    """
    by_pattern = newest_by_pattern(orders)
    rows = []
    for ev in findings:
        row = finding_rows([ev], plant, default_tz)[0]
        tz = site_info(row["site"], plant, default_tz).tz
        rows.append({**row, "excess_kwh": float(ev.excess_kwh),
                     **order_cells(by_pattern.get(f"{ev.machine}:{ev.kind}"), tz, now)})
    rows.sort(key=lambda r: -(r["kwh"] or 0))
    return rows


def allowed_actions(user, order: Mapping[str, Any], teams: Iterable[str]) -> list[str]:
    """Actions ``user`` may take on ``order`` now: their role and site allow them and the status permits them.

    An order in the dispatch queue must be assigned before it is acknowledged, started or resolved; ``assign`` needs a
    team other than the current one.
    """
    from core.orders.service import TRANSITIONS

    actor = actor_for(user)
    out = []
    for action, (sources, _target) in TRANSITIONS.items():
        if action == "verify" or order["status"] not in sources or not actor.may(action, order["site"]):
            continue
        if action in ("ack", "start", "resolve") and not order.get("team"):
            continue
        out.append(action)
    if (order["status"] in WORKING and actor.may("assign", order["site"])
            and any(t != order.get("team") for t in teams)):
        out.append("assign")
    return out


def apply_action(service, user, order_id: Any, action: str | None, *, reason: str | None = None,
                 team: str | None = None, comment: str | None = None, version: Any = None) -> tuple[bool, str]:
    """Take ``action`` on an order as the logged-in ``user``; returns (changed, message for the page).

    Everything the browser sent is checked here, at the server: the order must be one of the user's sites (another
    site's order is "no order N", as if it did not exist), the role must allow the action (the service checks role
    and site once more inside the transaction and writes the audit entry under the user's name), the transition must
    be legal, a rejection needs a reason, a reassignment a known team. Any refusal changes nothing.
    """
    from core.errors import WattlineError

    if service is None:
        return False, "No work-order database is connected to this dashboard."
    try:
        oid = int(order_id)
    except (TypeError, ValueError):
        return False, "Choose a finding with a work order first."
    if action not in ACTION_LABELS:
        return False, f"Choose an action: {', '.join(ACTION_LABELS.values())}."
    actor = actor_for(user)
    text = (comment or "").strip()[:2000]
    expected = int(version) if isinstance(version, (int, str)) and str(version).isdigit() else None
    try:
        before = service.get(oid, actor=actor)  # another site's order: OrderNotFound, nothing said about it
        if action == "assign":
            chosen = (team or "").strip()
            if not chosen:
                return False, "Choose the team to assign the order to."
            order = service.assign(oid, chosen, actor, text, expected_version=expected)
        else:
            order = service.transition(oid, action, actor, text, reason=(reason or "").strip() or None,
                                       expected_version=expected)
    except WattlineError as exc:  # unknown order, role, site, transition, conflict, database: nothing changed
        return False, f"Not changed: {exc}"
    done = (f"assigned to {order['owner']}" if action == "assign"
            else f"{STATUS_LABELS[before['status']].lower()} → {STATUS_LABELS[order['status']].lower()}")
    return True, f"Order {order['id']}: {done} (recorded as {user.name})."


def _hours(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 60:.0f} min"
    return f"{value:,.1f} h" if value < 48 else f"{value / 24:,.1f} d"


def _pct(value: float | None, scale: float = 1.0) -> str:
    return "—" if value is None else f"{value * scale:.0f} %"


def loop_cells(name: str, k: Mapping[str, Any]) -> dict[str, str]:
    """One row of the closure-KPI table (``k`` is one group of :func:`core.orders.kpi.kpis`)."""
    ages = k["open_by_age"]
    verified = fmt_energy(k["verified_savings_kwh"]) if k["verified_orders"] else "none yet"
    if k["verified_orders"] and k.get("verified_uncertainty_kwh"):
        verified += f" ± {fmt_energy(k['verified_uncertainty_kwh'])}"
    return {
        "site": name,
        "orders": f"{k['orders']:,}",
        "auto": _pct(k["auto_dispatch_rate"], 100.0) + (f" ({k['in_dispatch_queue']} queued)"
                                                        if k["in_dispatch_queue"] else ""),
        "ack": f"{_hours(k['ack_hours_mean'])} / {_hours(k['ack_hours_p90'])}",
        "close": f"{_hours(k['close_hours_mean'])} / {_hours(k['close_hours_p90'])}",
        "on_time": _pct(k["on_time_pct"]) + (f" of {k['closed']}" if k["closed"] else ""),
        "passed": f"{k['passed_on_more_than_once']} ({k['reassignments']} passes)",
        "age": " · ".join(f"{name} {n}" for name, n in ages.items()),
        "savings": f"{verified} of {fmt_energy(k['expected_savings_kwh'])}/yr expected",
    }


def loop_table_rows(result: Mapping[str, Any], group: str = "by_site") -> list[dict[str, str]]:
    """Per site (or per team with ``group="by_team"``, the dispatch queue as "(queue)"), then the total when there is
    more than one (``result`` from :func:`core.orders.kpi.kpis`)."""
    rows = [loop_cells(name, k) for name, k in result[group].items()]
    if len(result[group]) > 1:
        rows.append(loop_cells("Total", result["total"]))
    return rows


def closure_summary(total: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The findings page's closure KPIs as (label, value) pairs (``total`` is one group of the KPIs)."""
    working = sum(total["by_status"][s] for s in WORKING)
    return [
        ("Open orders", f"{working:,} ({total['overdue']} overdue)"),
        ("Auto-dispatched", _pct(total["auto_dispatch_rate"], 100.0) + " (reference 86 %)"),
        ("Time to acknowledge", f"mean {_hours(total['ack_hours_mean'])}, p90 {_hours(total['ack_hours_p90'])}"),
        ("Time to close", f"mean {_hours(total['close_hours_mean'])}, p90 {_hours(total['close_hours_p90'])}"),
        ("Closed on time", _pct(total["on_time_pct"]) + " (reference > 98 %)"),
        ("Passed on more than once", f"{total['passed_on_more_than_once']}"),
        ("Verified savings", (fmt_energy(total["verified_savings_kwh"]) if total["verified_orders"] else "none yet")
         + f" of {fmt_energy(total['expected_savings_kwh'])}/yr expected"),
    ]


def machine_open_orders(orders: Iterable[Mapping[str, Any]], machine: str, tz: str, now: dt.datetime) -> list[dict]:
    """The machine's working orders (open, acknowledged, in progress), oldest due first, as table rows."""
    from dashboard.overview import KIND_LABELS

    mine = sorted((o for o in orders if o["machine"] == machine and o["status"] in WORKING), key=lambda o: o["due"])
    return [{"id": o["id"], "kind": KIND_LABELS.get(o["kind"], o["kind"]), "kwh": fmt_energy(o["excess_kwh"]),
             "expected": f"{fmt_energy(o['expected_savings_kwh'])}/yr",
             **order_cells(o, tz, now)} for o in mine]

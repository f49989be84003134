"""The KPIs of the work-order loop, per site, per team and in total: pure functions over order dicts.

Input is what :meth:`core.orders.service.OrderService.list` returns (the dashboard and the JSON API pass it as it is);
output is plain JSON-able dicts. Times in hours [h], energy in [kWh], money in the orders' currency.

- ``auto_dispatch_rate``: share of orders a routing rule gave to a team when they opened; orders that waited in the
  dispatch queue count in the denominator (so the rate is honest about what no rule covers).
- ``ack_hours_mean`` / ``ack_hours_p90``: opening to acknowledgement; ``close_hours_*``: opening to resolution or
  rejection.
- ``on_time_pct``: closed orders closed by their due time [%].
- ``passed_on_more_than_once``: orders reassigned more than once ("zero buck-passing" wants 0); ``reassignments``
  all passes.
- ``open_by_age``: open, acknowledged and in-progress orders by age since opening.
- ``expected_savings_kwh`` (per year, orders not rejected) against ``verified_savings_kwh`` to date.

:data:`REFERENCE` holds the seed's figures (86 % auto-dispatched, -80 % handling time, > 98 % on time) that the
dashboard draws as the reference line.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

#: The reference line: the city work-order system this loop is modelled on.
REFERENCE = {"auto_dispatch_rate": 0.86, "handling_time_reduction": 0.80, "on_time_pct": 98.0,
             "passed_on_more_than_once": 0}
AGE_BUCKETS = (("<1d", 1.0), ("1-7d", 7.0), ("7-30d", 30.0), (">30d", math.inf))
WORKING = ("open", "acknowledged", "in_progress")


def _t(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _at(value: Any) -> dt.datetime:
    """A time the order has: ``opened`` and ``due`` always, ``closed`` where it was checked to be set."""
    t = _t(value)
    assert t is not None, "order dict without a time it always has"
    return t


def _hours(a: Any, b: Any) -> float | None:
    ta, tb = _t(a), _t(b)
    return None if ta is None or tb is None else (tb - ta).total_seconds() / 3600.0


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    arr = np.asarray(values, dtype=float)
    return round(float(arr.mean()), 3), round(float(np.percentile(arr, 90)), 3)


def order_kpis(orders: Iterable[Mapping[str, Any]], now: dt.datetime) -> dict[str, Any]:
    """KPIs of one group of orders (see the module docstring for the keys).

    Parameters
    ----------
    orders : iterable of dict
        Order dicts (``id``, ``status``, ``team``, ``opened``, ``acknowledged``, ``closed``, ``due``, ...).
    now : datetime
        Aware; ages of open orders are measured to it.
    """
    orders = list(orders)
    n = len(orders)
    ack = [h for o in orders if (h := _hours(o["opened"], o.get("acknowledged"))) is not None]
    closed = [o for o in orders if o.get("closed") is not None]
    close = [h for o in closed if (h := _hours(o["opened"], o["closed"])) is not None]
    on_time = [o for o in closed if _at(o["closed"]) <= _at(o["due"])]
    ages = {name: 0 for name, _ in AGE_BUCKETS}
    for o in orders:
        if o["status"] in WORKING:
            age = (now - _at(o["opened"])).total_seconds() / 86400.0
            ages[next(name for name, limit in AGE_BUCKETS if age < limit)] += 1
    ack_mean, ack_p90 = _stats(ack)
    close_mean, close_p90 = _stats(close)
    expected = sum(float(o.get("expected_savings_kwh") or 0.0) for o in orders if o["status"] != "rejected")
    expected_cost = [float(o["expected_savings_cost"]) for o in orders
                     if o["status"] != "rejected" and o.get("expected_savings_cost") is not None]
    verified = [o for o in orders if o["status"] == "verified"]
    verified_cost = [float(o["verified_cost"]) for o in verified if o.get("verified_cost") is not None]
    return {
        "orders": n,
        "by_status": {s: sum(1 for o in orders if o["status"] == s) for s in
                      ("open", "acknowledged", "in_progress", "resolved", "verified", "rejected")},
        "auto_dispatched": sum(1 for o in orders if o.get("auto_dispatched")),
        "auto_dispatch_rate": round(sum(1 for o in orders if o.get("auto_dispatched")) / n, 4) if n else None,
        "in_dispatch_queue": sum(1 for o in orders if o.get("team") is None and o["status"] in WORKING),
        "ack_hours_mean": ack_mean, "ack_hours_p90": ack_p90,
        "close_hours_mean": close_mean, "close_hours_p90": close_p90,
        "closed": len(closed),
        "on_time_pct": round(100.0 * len(on_time) / len(closed), 2) if closed else None,
        "overdue": sum(1 for o in orders if o["status"] in WORKING and _at(o["due"]) < now),
        "reassignments": sum(int(o.get("reassignments") or 0) for o in orders),
        "passed_on_more_than_once": sum(1 for o in orders if int(o.get("reassignments") or 0) > 1),
        "open_by_age": ages,
        "expected_savings_kwh": round(expected, 1),
        "expected_savings_cost": round(sum(expected_cost), 2) if expected_cost else None,
        "verified_orders": len(verified),
        "verified_savings_kwh": round(sum(float(o.get("verified_kwh") or 0.0) for o in verified), 1),
        "verified_uncertainty_kwh": round(math.sqrt(sum(float(o.get("verified_uncertainty_kwh") or 0.0) ** 2
                                                        for o in verified)), 1),
        "verified_savings_cost": round(sum(verified_cost), 2) if verified_cost else None,
    }


def kpis(orders: Iterable[Mapping[str, Any]], now: dt.datetime | None = None) -> dict[str, Any]:
    """KPIs in total, per site and per team (orders in the dispatch queue under team ``"(queue)"``).

    Returns
    -------
    dict
        ``{"total": {...}, "by_site": {site: {...}}, "by_team": {team: {...}}, "reference": REFERENCE, "now": ISO}``.
    """
    now = now or dt.datetime.now(dt.UTC)
    orders = list(orders)
    sites: dict[str, list] = defaultdict(list)
    teams: dict[str, list] = defaultdict(list)
    for o in orders:
        sites[o["site"]].append(o)
        teams[o.get("team") or "(queue)"].append(o)
    return {"now": now.isoformat(), "total": order_kpis(orders, now),
            "by_site": {k: order_kpis(v, now) for k, v in sorted(sites.items())},
            "by_team": {k: order_kpis(v, now) for k, v in sorted(teams.items())},
            "reference": dict(REFERENCE)}

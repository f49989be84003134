"""Opening, routing, status flow and verification of work orders.

A finding *pattern* is one machine and one finding kind (``site/line/machine:kind``). :meth:`OrderService.sync`
turns stored findings into orders: findings of a pattern with an active order update it (evidence grows, nothing
new is opened); a pattern without one opens an order when its findings reach a threshold (kWh, money or severity),
routed by the first matching rule, or left in the dispatch queue when none matches; a verified or rejected order
whose pattern comes back after it was closed is reopened with its history; a resolved order whose waste comes back
after the resolution date goes back to ``in_progress``.

Concurrency: every change runs in one transaction that locks the order first (``SELECT ... FOR UPDATE`` on
PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite), the ``version`` column is checked on every update (optimistic: a caller
that passes the version it read gets :class:`~core.orders.OrderConflict` when someone changed the order since), a
unique column (``open_pattern``) makes a second active order for one pattern impossible, and a finding is attached
once per (pattern, start). The audit log is only ever inserted into.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import math
import statistics
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.model import Event
from core.orders import (
    IllegalTransition,
    NotAllowed,
    OrderConflict,
    OrderNotFound,
    OrdersError,
    OrdersUsageError,
)
from core.orders.config import OrdersConfig, category_of
from core.orders.schema import (
    ACTIVE_STATUSES,
    STATUSES,
    AuditEntry,
    Order,
    OrderFinding,
)

UTC = dt.UTC
DAY = dt.timedelta(days=1)

#: action -> (statuses it may start from, status it leads to).
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "ack": (("open",), "acknowledged"),
    "start": (("acknowledged",), "in_progress"),
    "resolve": (("acknowledged", "in_progress"), "resolved"),
    "reject": (("open", "acknowledged", "in_progress"), "rejected"),
    "verify": (("resolved",), "verified"),
}
#: Roles (those of the dashboard's users file) allowed to take each action; "system" is the analytics service.
ACTION_ROLES: dict[str, tuple[str, ...]] = {
    "ack": ("engineer", "plant_manager", "admin"),
    "start": ("engineer", "plant_manager", "admin"),
    "resolve": ("engineer", "plant_manager", "admin"),
    "reject": ("plant_manager", "admin"),
    "assign": ("plant_manager", "admin"),
    "verify": ("plant_manager", "admin"),
    "sync": ("admin",),
}
ALL_SITES_ROLES = ("cdo", "admin", "system")


@dataclass(frozen=True)
class Actor:
    """Who changes an order: a user name, a role (dashboard roles, or ``"system"``) and the sites they may act on.

    An empty ``sites`` means every site for the roles that see all sites (cdo, admin, system), none otherwise.
    """

    name: str
    role: str
    sites: tuple[str, ...] = ()

    def may(self, action: str, site: str) -> bool:
        """True when the role may take ``action`` on an order of ``site``."""
        if self.role != "system" and self.role not in ACTION_ROLES.get(action, ()):
            return False
        return (self.role in ALL_SITES_ROLES and not self.sites) or site in self.sites

    def check(self, action: str, site: str) -> None:
        """Raise OrdersUsageError naming the user, role and site when :meth:`may` is False."""
        if self.role != "system" and self.role not in ACTION_ROLES.get(action, ()):
            raise NotAllowed(f"user {self.name!r} (role {self.role}) may not {action} orders; roles allowed: "
                                   f"{', '.join(ACTION_ROLES.get(action, ()))}")
        if not self.may(action, site):
            raise NotAllowed(f"user {self.name!r} (role {self.role}) may not act on site {site!r}; their sites: "
                                   f"{', '.join(self.sites) or '(none)'}")


SYSTEM = Actor("wattline", "system")


@dataclass
class SyncResult:
    """What one :meth:`OrderService.sync` did (counts of patterns, and the order ids touched)."""

    opened: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    reopened: list[int] = field(default_factory=list)
    returned: list[int] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    below_threshold: int = 0
    findings_attached: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"opened": self.opened, "updated": self.updated, "reopened": self.reopened, "returned": self.returned,
                "queued": self.queued, "below_threshold": self.below_threshold,
                "findings_attached": self.findings_attached}


def pattern_of(machine: str, kind: str) -> str:
    """The pattern key of a finding: ``site/line/machine:kind``."""
    return f"{machine}:{kind}"


def machine_link(machine: str, start: dt.datetime, end: dt.datetime) -> str:
    """Link to the dashboard's machine page at a time window (UTC ISO times in the query)."""
    parts = machine.split("/")
    path = "/machine/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)
    q = urllib.parse.urlencode({"from": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                "to": end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
    return f"{path}?{q}"


def _num(details: dict, key: str) -> float | None:
    raw = details.get(key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _sum(values: Iterable[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return float(sum(got)) if got else None


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def order_dict(o: Order) -> dict[str, Any]:
    """An order as a JSON-able dict (the shape of ``wattline orders list --json`` and the HTTP API)."""
    return {
        "id": o.id, "status": o.status, "owner": o.team, "team": o.team, "site": o.site, "line": o.line,
        "machine": o.machine, "kind": o.kind, "category": o.category, "severity": o.severity,
        "opened": _iso(o.opened_at), "due": _iso(o.due_at), "acknowledged": _iso(o.acknowledged_at),
        "resolved": _iso(o.resolved_at), "closed": _iso(o.closed_at), "verified": _iso(o.verified_at),
        "updated": _iso(o.updated_at), "window_start": _iso(o.window_start), "window_end": _iso(o.window_end),
        "excess_kwh": round(o.excess_kwh, 3), "cost": None if o.cost is None else round(o.cost, 2),
        "currency": o.currency, "co2_kg": None if o.co2_kg is None else round(o.co2_kg, 3),
        "explanation": o.explanation, "link": machine_link(o.machine, o.window_start, o.window_end),
        "expected_savings_kwh": round(o.expected_savings_kwh, 1),
        "expected_savings_cost": None if o.expected_savings_cost is None else round(o.expected_savings_cost, 2),
        "findings": o.findings_count, "auto_dispatched": o.auto_dispatched, "rule": o.rule,
        "reassignments": o.reassignments, "reopened": o.reopen_count, "reject_reason": o.reject_reason,
        "verified_kwh": o.verified_kwh, "verified_cost": o.verified_cost, "verified_co2_kg": o.verified_co2_kg,
        "verified_uncertainty_kwh": o.verified_uncertainty_kwh, "verification_method": o.verification_method,
        "version": o.version,
    }


class OrderService:
    """Work orders in one database.

    Parameters
    ----------
    engine : Engine
        From :func:`core.orders.db.open_orders_db`.
    config : OrdersConfig
        Thresholds, teams, rules, verification.
    now : callable, optional
        Returns the current aware datetime (tests pass a fixed clock).
    """

    def __init__(self, engine: Engine, config: OrdersConfig | None = None,
                 now: Callable[[], dt.datetime] | None = None) -> None:
        self.engine = engine
        self.config = config or OrdersConfig()
        self.now = now or (lambda: dt.datetime.now(UTC))
        self._pg = engine.dialect.name == "postgresql"

    # -- reading -----------------------------------------------------------------------------------------------------
    def list(self, status: str | Sequence[str] | None = None, site: str | None = None, team: str | None = None,
             actor: Actor | None = None) -> builtins.list[dict[str, Any]]:
        """Orders as dicts, newest first; ``actor`` limits them to the sites the actor may see."""
        q = sa.select(Order).order_by(Order.id.desc())
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            for st in wanted:
                if st not in STATUSES:
                    raise OrdersUsageError(f"unknown status {st!r}; valid: {', '.join(STATUSES)}")
            q = q.where(Order.status.in_(wanted))
        if site is not None:
            q = q.where(Order.site == site)
        if team is not None:
            q = q.where(Order.team == team) if team != "-" else q.where(Order.team.is_(None))
        if actor is not None and actor.sites:
            q = q.where(Order.site.in_(actor.sites))
        with Session(self.engine) as s:
            return [order_dict(o) for o in s.scalars(q)]

    def get(self, order_id: int, actor: Actor | None = None) -> dict[str, Any]:
        """One order with its audit log and findings; OrdersUsageError for an unknown id."""
        with Session(self.engine) as s:
            o = s.get(Order, int(order_id))
            if o is None or (actor is not None and actor.sites and o.site not in actor.sites):
                raise OrderNotFound(f"no order {order_id}; 'wattline orders list' shows the orders")
            d = order_dict(o)
            d["audit"] = [{"at": _iso(a.at), "actor": a.actor, "action": a.action, "from": a.from_status,
                           "to": a.to_status, "team": a.team, "comment": a.comment,
                           "data": json.loads(a.data) if a.data else None}
                          for a in s.scalars(sa.select(AuditEntry).where(AuditEntry.order_id == o.id)
                                             .order_by(AuditEntry.id))]
            d["evidence"] = [{"start": _iso(f.start_at), "end": _iso(f.end_at), "excess_kwh": f.excess_kwh,
                              "cost": f.cost, "co2_kg": f.co2_kg, "severity": f.severity,
                              "explanation": f.explanation, "run": f.run}
                             for f in s.scalars(sa.select(OrderFinding).where(OrderFinding.order_id == o.id)
                                                .order_by(OrderFinding.start_at))]
            return d

    def teams(self) -> builtins.list[str]:
        return [t.id for t in self.config.teams]

    # -- changes -----------------------------------------------------------------------------------------------------
    def _lock(self, s: Session, order_id: int) -> Order:
        q = sa.select(Order).where(Order.id == int(order_id))
        if self._pg:
            q = q.with_for_update()
        o = s.scalars(q).first()
        if o is None:
            raise OrderNotFound(f"no order {order_id}; 'wattline orders list' shows the orders")
        return o

    @staticmethod
    def _audit(s: Session, o: Order, at: dt.datetime, actor: Actor, action: str, from_status: str | None,
               comment: str = "", data: dict | None = None) -> None:
        s.add(AuditEntry(order_id=o.id, at=at, actor=actor.name, action=action, from_status=from_status,
                         to_status=o.status, team=o.team, comment=comment or "",
                         data=json.dumps(data, sort_keys=True, default=str) if data else None))

    def _change(self, order_id: int, actor: Actor, action: str, expected_version: int | None,
                apply: Callable[[Session, Order, dt.datetime], dict | None], comment: str) -> dict[str, Any]:
        now = self.now()
        try:
            with Session(self.engine) as s, s.begin():
                o = self._lock(s, order_id)
                actor.check(action, o.site)
                if expected_version is not None and o.version != int(expected_version):
                    raise OrderConflict(f"order {o.id} changed since version {expected_version} (now version "
                                        f"{o.version}, {o.status}); read it again and retry")
                before = o.status
                data = apply(s, o, now)
                o.updated_at = now
                s.flush()
                self._audit(s, o, now, actor, action, before, comment, data)
                result = order_dict(o)
        except sa.orm.exc.StaleDataError:
            raise OrderConflict(f"order {order_id} was changed by someone else at the same time; read it again and "
                                "retry") from None
        return result

    def transition(self, order_id: int, action: str, actor: Actor, comment: str = "", *, reason: str | None = None,
                   at: dt.datetime | None = None, expected_version: int | None = None) -> dict[str, Any]:
        """Take ``action`` (ack, start, resolve, reject) on an order; returns the order.

        Parameters
        ----------
        reason : str
            Required for ``reject``.
        at : datetime, optional
            ``resolve`` only: when the fix took effect (default now; verification measures from it).
        expected_version : int, optional
            The version the caller read; OrderConflict when the order changed since (idempotent API updates).

        Raises
        ------
        OrdersUsageError
            Unknown order or action, an illegal transition (naming the allowed ones), a missing reject reason, a user
            without the role or the site. Nothing is changed then.
        """
        if action not in TRANSITIONS or action == "verify":
            raise OrdersUsageError(f"unknown action {action!r}; valid: ack, start, resolve, reject (and assign, verify)")
        if action == "reject" and not (reason or "").strip():
            raise OrdersUsageError("reject needs a reason (--reason TEXT): say why this is not work to do")
        sources, target = TRANSITIONS[action]

        def apply(s: Session, o: Order, now: dt.datetime) -> dict | None:
            if o.status not in sources:
                allowed = [a for a, (src, _) in TRANSITIONS.items() if o.status in src and a != "verify"]
                raise IllegalTransition(f"order {o.id} is {o.status}: cannot {action} it (allowed from {o.status}: "
                                       f"{', '.join(allowed) or 'none'}; {action} needs {' or '.join(sources)})")
            if o.team is None and action in ("ack", "start", "resolve"):
                raise IllegalTransition(f"order {o.id} waits in the dispatch queue: assign it to a team first "
                                       f"(wattline orders assign {o.id} TEAM)")
            o.status = target
            if action == "ack":
                o.acknowledged_at = now
            elif action == "resolve":
                when = at or now
                if when.tzinfo is None:
                    raise OrdersUsageError("the resolution time needs a time zone")
                if when > now:
                    raise OrdersUsageError(f"resolution time {when.isoformat()} is in the future")
                if when < o.window_start:
                    raise OrdersUsageError(f"resolution time {when.isoformat()} is before the order's first finding "
                                           f"({o.window_start.isoformat()}); give the date the fix took effect")
                o.resolved_at = when
                o.closed_at = now
                if o.acknowledged_at is None:
                    o.acknowledged_at = now
                return {"resolved_at": when.isoformat()}
            elif action == "reject":
                assert reason is not None  # checked above: reject needs a reason
                o.reject_reason = reason.strip()
                o.closed_at = now
                o.open_pattern = None
                return {"reason": o.reject_reason}
            return None

        return self._change(order_id, actor, action, expected_version, apply, comment or (reason or ""))

    def assign(self, order_id: int, team: str, actor: Actor, comment: str = "", *,
               expected_version: int | None = None) -> dict[str, Any]:
        """Give an order to ``team`` (from the queue, or passed on from another team: counted as a reassignment)."""
        if team not in self.teams():
            raise OrdersUsageError(f"unknown team {team!r}; valid teams: "
                                   f"{', '.join(self.teams()) or '(none: add teams to the orders config)'}")

        def apply(s: Session, o: Order, now: dt.datetime) -> dict | None:
            if o.status not in ACTIVE_STATUSES or o.status == "resolved":
                raise IllegalTransition(f"order {o.id} is {o.status}: only open, acknowledged or in-progress orders "
                                       "can be assigned")
            if o.team == team:
                raise IllegalTransition(f"order {o.id} already belongs to {team}")
            previous = o.team
            if previous is not None:
                o.reassignments += 1
                o.acknowledged_at = None if o.status == "open" else o.acknowledged_at
            else:
                o.dispatched_at = now
            o.team = team
            return {"from_team": previous, "to_team": team, "reassignments": o.reassignments}

        return self._change(order_id, actor, "assign", expected_version, apply, comment)

    # -- findings -> orders ----------------------------------------------------------------------------------------------
    def sync(self, findings: Iterable[Event], run: str | None = None, actor: Actor = SYSTEM) -> SyncResult:
        """Open, update, reopen or send back orders from findings (idempotent: a finding is attached once).

        The period the findings cover (first start to last end, at least a day) is what the expected savings per
        year are scaled from: ``excess_kwh * 365 d / observed days``.
        """
        events = list(findings)
        result = SyncResult()
        if not events:
            return result
        observed = (min(e.start for e in events), max(e.end for e in events))
        groups: dict[str, list[Event]] = defaultdict(list)
        for e in events:
            groups[pattern_of(e.machine, e.kind)].append(e)
        for pattern in sorted(groups):
            for attempt in range(5):
                try:
                    self._sync_pattern(pattern, groups[pattern], observed, run, actor, result)
                    break
                except sa.exc.IntegrityError:
                    # Another writer opened the order or attached the finding first: read again, then update.
                    if attempt == 4:
                        raise OrdersError(f"pattern {pattern}: could not open or update its order after 5 tries "
                                          "(other writers keep changing it)") from None
                except sa.orm.exc.StaleDataError:
                    if attempt == 4:
                        raise OrderConflict(f"pattern {pattern}: its order kept changing during the sync") from None
        return result

    def _sync_pattern(self, pattern: str, events: builtins.list[Event], observed: tuple[dt.datetime, dt.datetime],
                      run: str | None, actor: Actor, result: SyncResult) -> None:
        now = self.now()
        cfg = self.config
        with Session(self.engine) as s, s.begin():
            q = sa.select(Order).where(Order.open_pattern == pattern)
            if self._pg:
                q = q.with_for_update()
            order = s.scalars(q).first()
            seen = set(s.scalars(sa.select(OrderFinding.start_at).where(OrderFinding.pattern == pattern)))
            fresh = [e for e in events if e.start not in seen]  # aware datetimes compare in UTC
            if not fresh:
                return
            action = "update"
            if order is None:
                last = s.scalars(sa.select(Order).where(Order.pattern == pattern).order_by(Order.id.desc())).first()
                if last is not None:
                    # A verified order counts from its fix, a rejected one from its rejection.
                    ref = last.resolved_at if last.status == "verified" else last.closed_at
                    fresh = [e for e in fresh if e.end > ref] if ref is not None else fresh
                    if not fresh:
                        return  # findings from before it was closed: already handled
                if not self._significant(fresh):
                    result.below_threshold += 1
                    return  # a recurrence must be as large as a new order to reopen one
                if last is not None:
                    order, action = last, "reopen"
                else:
                    action = "open"
            first = fresh[0]
            machine, kind = first.machine, first.kind
            parts = machine.split("/")
            site, line = (parts[0], parts[1]) if len(parts) == 3 else ("", "")
            latest = max(fresh, key=lambda e: e.end)
            sev = max((_num(e.details, "severity") or 0.0) for e in fresh) if any(
                _num(e.details, "severity") is not None for e in fresh) else None
            if order is None:  # action "open": the pattern's first order
                routed = cfg.route(machine, kind, sev)
                rule_index, rule = routed if routed else (None, None)
                order = Order(pattern=pattern, open_pattern=pattern, site=site, line=line, machine=machine, kind=kind,
                              category=category_of(kind), severity=sev, status="open",
                              team=rule.team if rule else None, rule=rule_index, auto_dispatched=rule is not None,
                              opened_at=now, due_at=now + dt.timedelta(hours=cfg.due_hours(rule)),
                              dispatched_at=now if rule else None, updated_at=now,
                              window_start=min(e.start for e in fresh), window_end=latest.end,
                              observed_start=observed[0], observed_end=observed[1], excess_kwh=0.0, cost=None,
                              currency=latest.details.get("currency"), co2_kg=None, explanation="",
                              expected_savings_kwh=0.0, findings_count=0, reassignments=0, reopen_count=0)
                s.add(order)
                s.flush()
            before = order.status
            for e in fresh:
                d = e.details
                s.add(OrderFinding(order_id=order.id, pattern=pattern, start_at=e.start, end_at=e.end,
                                   excess_kwh=float(e.excess_kwh), cost=_num(d, "cost"), co2_kg=_num(d, "co2_kg"),
                                   severity=_num(d, "severity"), explanation=d.get("explanation"), run=run,
                                   added_at=now))
            s.flush()
            agg = s.execute(sa.select(sa.func.sum(OrderFinding.excess_kwh), sa.func.sum(OrderFinding.cost),
                                      sa.func.sum(OrderFinding.co2_kg), sa.func.count(),
                                      sa.func.min(OrderFinding.start_at), sa.func.max(OrderFinding.end_at))
                            .where(OrderFinding.order_id == order.id)).one()
            order.excess_kwh, order.cost, order.co2_kg, order.findings_count = float(agg[0] or 0.0), agg[1], agg[2], agg[3]
            order.window_start = agg[4].replace(tzinfo=UTC) if agg[4].tzinfo is None else agg[4]
            order.window_end = agg[5].replace(tzinfo=UTC) if agg[5].tzinfo is None else agg[5]
            order.observed_start = min(order.observed_start, observed[0])
            order.observed_end = max(order.observed_end, observed[1])
            days = max((order.observed_end - order.observed_start) / DAY, 1.0)
            order.expected_savings_kwh = order.excess_kwh * 365.0 / days
            order.expected_savings_cost = None if order.cost is None else order.cost * 365.0 / days
            order.explanation = latest.details.get("explanation") or (
                f"{machine.rsplit('/', 1)[-1]}: {kind.replace('_', ' ')}, {order.excess_kwh:,.0f} kWh in "
                f"{order.findings_count} finding(s)")
            if sev is not None:
                order.severity = max(order.severity or 0.0, sev)
            order.updated_at = now
            data = {"findings": len(fresh), "excess_kwh": round(sum(float(e.excess_kwh) for e in fresh), 3),
                    "run": run}
            comment = ""
            if action == "open":
                comment = (f"opened from {len(fresh)} finding(s); routed to {order.team} by rule {order.rule}"
                           if order.team else f"opened from {len(fresh)} finding(s); no rule matches: dispatch queue")
                result.opened.append(order.id)
                if order.team is None:
                    result.queued.append(order.id)
            elif action == "reopen":
                order.status, order.open_pattern = "open", pattern
                order.reopen_count += 1
                order.acknowledged_at = order.resolved_at = order.closed_at = order.verified_at = None
                order.reject_reason = None
                order.due_at = now + dt.timedelta(hours=cfg.due_hours(
                    cfg.rules[order.rule] if order.rule is not None and order.rule < len(cfg.rules) else None))
                comment = f"the pattern came back after the order was closed ({before}): reopened"
                result.reopened.append(order.id)
            elif order.status == "resolved" and order.resolved_at is not None and any(
                    e.end > order.resolved_at for e in fresh) and after_fix(
                    list(s.scalars(sa.select(OrderFinding).where(OrderFinding.order_id == order.id))), order,
                    order.observed_end, cfg.verification.absence_days, cfg.verification.return_fraction)["returned"]:
                order.status = "in_progress"
                order.closed_at = None
                action = "returned"
                comment = f"the waste came back after the resolution ({order.resolved_at.isoformat()}): back in progress"
                result.returned.append(order.id)
            else:
                result.updated.append(order.id)
            result.findings_attached += len(fresh)
            s.flush()
            self._audit(s, order, now, actor, action, None if action == "open" else before, comment, data)

    def _significant(self, events: builtins.list[Event]) -> bool:
        """True when a pattern's findings reach a threshold (kWh, money or severity) to open an order."""
        t = self.config.thresholds
        kwh = sum(max(float(e.excess_kwh), 0.0) for e in events)
        cost = _sum(_num(e.details, "cost") for e in events)
        sev = max((_num(e.details, "severity") or 0.0) for e in events)
        return bool((t.min_kwh is not None and kwh >= t.min_kwh and kwh > 0)
                    or (t.min_cost is not None and cost is not None and cost >= t.min_cost and cost > 0)
                    or (t.min_severity is not None and sev >= t.min_severity))

    # -- verification ------------------------------------------------------------------------------------------------
    def verify(self, observed_until: dt.datetime, actor: Actor = SYSTEM, order_id: int | None = None,
               measure: Callable[[dict[str, Any], dt.datetime], dict[str, Any] | None] | None = None
               ) -> builtins.list[dict[str, Any]]:
        """Verify resolved orders whose absence period has been observed.

        Parameters
        ----------
        observed_until : datetime
            End of the data the findings were synced from (the analyses cover up to here).
        order_id : int, optional
            Only this order (OrdersUsageError when it is not resolved or its period is not over yet).
        measure : callable, optional
            ``measure(order_dict, observed_until) -> {"savings_kwh", "uncertainty_kwh", "method", "cost"?, "co2_kg"?}``
            or None: the measured-savings method (the baseline verification of analytics.savings, wired by the CLI).
            Without it, or when it returns None (the method does not apply or fails its criteria), the savings are
            the pre-fix waste rate over the verified period minus what is left (method ``"absence"``), with an
            uncertainty from the day-to-day spread of the waste before the fix. Either way an order whose waste is
            back (:func:`after_fix`) goes to in_progress instead.

        Returns
        -------
        list of dict
            The orders verified.
        """
        days = self.config.verification.absence_days
        with Session(self.engine) as s:
            q = sa.select(Order.id).where(Order.status == "resolved")
            if order_id is not None:
                o = s.get(Order, int(order_id))
                if o is None:
                    raise OrderNotFound(f"no order {order_id}; 'wattline orders list' shows the orders")
                actor.check("verify", o.site)
                if o.status != "resolved":
                    raise IllegalTransition(f"order {o.id} is {o.status}: only resolved orders can be verified")
                assert o.resolved_at is not None  # resolve() sets it with the status
                if o.resolved_at + dt.timedelta(days=days) > observed_until:
                    raise OrdersUsageError(
                        f"order {o.id}: the data reach {observed_until.isoformat()}, but verification needs "
                        f"{days:g} days without the pattern after the resolution ({o.resolved_at.isoformat()}); "
                        "analyse more data first")
                q = q.where(Order.id == o.id)
            ids = list(s.scalars(q))
        done = []
        for oid in ids:
            # Measure outside any transaction (the baseline method takes seconds), then write under the lock if the
            # order is still the version measured.
            with Session(self.engine) as s:
                o = s.get(Order, oid)
                if o is None or o.status != "resolved":
                    continue
                assert o.resolved_at is not None  # resolve() sets it with the status
                if o.resolved_at + dt.timedelta(days=days) > observed_until:
                    continue
                rows = list(s.scalars(sa.select(OrderFinding).where(OrderFinding.order_id == o.id)))
                absence = after_fix(rows, o, observed_until, days, self.config.verification.return_fraction)
                snapshot, version = order_dict(o), o.version
            if absence["returned"]:
                self._send_back(oid, absence)
                continue
            measured = measure(snapshot, observed_until) if measure is not None else None
            if measured is None:
                measured = absence

            def apply(s: Session, o: Order, now: dt.datetime, measured=measured) -> dict | None:
                kwh = float(measured["savings_kwh"])
                ratio_cost = (o.cost / o.excess_kwh) if o.cost is not None and o.excess_kwh > 0 else None
                ratio_co2 = (o.co2_kg / o.excess_kwh) if o.co2_kg is not None and o.excess_kwh > 0 else None
                o.status, o.open_pattern, o.verified_at = "verified", None, now
                o.closed_at = o.closed_at or now
                o.verified_kwh = kwh
                o.verified_uncertainty_kwh = float(measured["uncertainty_kwh"])
                o.verified_cost = (measured["cost"] if measured.get("cost") is not None
                                   else None if ratio_cost is None else kwh * ratio_cost)
                o.verified_co2_kg = (measured["co2_kg"] if measured.get("co2_kg") is not None
                                     else None if ratio_co2 is None else kwh * ratio_co2)
                o.verification_method = str(measured["method"])
                return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in measured.items()}

            try:
                done.append(self._change(oid, actor, "verify", version, apply,
                                         f"verified ({measured['method']}) {days:g} days after the resolution"))
            except OrderConflict:
                continue  # changed while measuring (waste returned, reassigned): the next run looks again
        return done

    def _send_back(self, order_id: int, measured: dict[str, Any]) -> None:
        """The waste is back after the fix: the order returns to in_progress (audited, by the system)."""
        def apply(s: Session, o: Order, now: dt.datetime) -> dict | None:
            o.status, o.closed_at = "in_progress", None
            return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in measured.items()}

        self._change(order_id, SYSTEM, "returned", None, apply,
                     f"the waste came back after the resolution: {measured['after_kwh']:,.1f} kWh since the fix")


def after_fix(rows: list[OrderFinding], o: Order, until: dt.datetime, absence_days: float,
              return_fraction: float) -> dict[str, Any]:
    """Compare the pattern's excess before and after the fix (``o.resolved_at``), up to ``until``.

    The pre-fix rate is the excess of the findings before the fix per observed day [kWh/d] (finding counts for
    data-quality orders, which have no kWh). The waste is back when the excess after the fix exceeds
    ``return_fraction`` x pre-fix rate x max(days since the fix, ``absence_days``). Savings are the pre-fix rate
    times the days since the fix minus the excess measured after it [kWh]; the 68 % uncertainty comes from the
    day-to-day spread of the pre-fix excess (population sd of the daily kWh x sqrt(days)).

    Returns
    -------
    dict
        ``savings_kwh``, ``uncertainty_kwh``, ``method`` ("absence"), ``rate_kwh_per_day``, ``after_kwh``, ``days``,
        ``returned``.
    """
    fix = o.resolved_at
    assert fix is not None, o.id  # only resolved orders are verified; resolve() sets resolved_at
    before_days = max((fix - o.observed_start) / DAY, 1.0)
    days = max((until - fix) / DAY, 0.0)
    use_kwh = sum(f.excess_kwh for f in rows) > 0

    def after_share(f: OrderFinding) -> float:
        if f.start_at >= fix:
            return 1.0
        if f.end_at <= fix:
            return 0.0
        return (f.end_at - fix) / (f.end_at - f.start_at)  # a finding running over the fix instant

    weight = (lambda f: f.excess_kwh) if use_kwh else (lambda f: 1.0)
    pre = sum(weight(f) * (1.0 - after_share(f)) for f in rows)
    post = sum(weight(f) * after_share(f) for f in rows)
    before = [f for f in rows if after_share(f) < 1.0]
    rate = pre / before_days
    returned = post > return_fraction * rate * max(days, absence_days) if rate > 0 else post > 0
    per_day: dict[dt.date, float] = defaultdict(float)
    for f in before:
        per_day[f.start_at.astimezone(UTC).date()] += f.excess_kwh if use_kwh else 0.0
    daily = list(per_day.values()) + [0.0] * max(round(before_days) - len(per_day), 0)
    sd = statistics.pstdev(daily) if len(daily) > 1 else rate
    savings = rate * days - post if use_kwh else 0.0
    return {"savings_kwh": savings, "uncertainty_kwh": sd * math.sqrt(days) if use_kwh else 0.0,
            "method": "absence", "rate_kwh_per_day": rate, "after_kwh": post if use_kwh else 0.0, "days": days,
            "returned": bool(returned)}

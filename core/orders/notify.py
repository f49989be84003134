"""Notifications of order events: signed webhooks and e-mail through SMTP, with retries and a delivery log.

:meth:`Notifier.dispatch` looks at the orders and sends what is due:

- ``opened``: an order opened or reopened;
- ``due_soon``: a working order due within ``due_soon_hours``; ``overdue``: past its due time;
- ``escalated``: passed on to another team, or sent back to in_progress because the waste returned after the fix.

Each (event, target) is delivered once: the delivery log (table ``order_deliveries``) records every attempt, and a
target that failed after its retries (:class:`core.backoff.Backoff`) is tried again by the next dispatch. Webhook
bodies are JSON ``{"event", "order", "sent_at"}`` with headers ``X-Wattline-Event``, ``X-Wattline-Delivery`` (the
event key, the same on every retry so that receivers can drop duplicates) and ``X-Wattline-Signature: sha256=<hex>``,
the HMAC-SHA256 of the raw body under the shared secret. Secrets come from a file that only its owner may read or
from the environment, never from the settings file, and are never logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.backoff import Backoff
from core.config import read_secret_file
from core.errors import ConfigError
from core.orders.config import Email, OrdersConfig, Webhook
from core.orders.schema import AuditEntry, Delivery, Order
from core.orders.service import OrderService, order_dict

log = logging.getLogger(__name__)
UTC = dt.UTC
WORKING = ("open", "acknowledged", "in_progress")


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``body`` under ``secret`` (what receivers recompute and compare)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def webhook_secret(hook: Webhook) -> str:
    """The shared secret of a webhook (file of mode 600, or environment); ConfigError naming where it is missing."""
    if hook.secret_file:
        return read_secret_file(hook.secret_file, f"webhook {hook.url} secret")
    value = os.environ.get(hook.secret_env or "")
    if not value:
        raise ConfigError(f"webhook {hook.url}: environment variable {hook.secret_env} is not set; export the shared "
                          "secret there (or use secret_file)")
    return value


class Notifier:
    """Send due order events to the configured webhooks and e-mail addresses.

    Parameters
    ----------
    service : OrderService
    config : OrdersConfig, optional
        Default: the service's.
    sleep : callable
        Waits between retries [s] (``time.sleep``).
    """

    def __init__(self, service: OrderService, config: OrdersConfig | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.service = service
        self.config = config or service.config
        self.sleep = sleep

    # -- what is due -------------------------------------------------------------------------------------------------
    def events(self, now: dt.datetime) -> list[tuple[str, str, dict[str, Any]]]:
        """(event, event key, order dict) for every event that exists now."""
        soon = dt.timedelta(hours=self.config.notifications.due_soon_hours)
        out = []
        with Session(self.service.engine) as s:
            orders = {o.id: o for o in s.scalars(sa.select(Order))}
            for o in orders.values():
                d = order_dict(o)
                if o.status in WORKING:
                    out.append(("opened", f"{o.id}:opened:{o.reopen_count}", d))
                if o.status in WORKING and now < o.due_at <= now + soon:
                    out.append(("due_soon", f"{o.id}:due_soon:{o.due_at.isoformat()}", d))
                if o.status in WORKING and o.due_at <= now:
                    out.append(("overdue", f"{o.id}:overdue:{o.due_at.isoformat()}", d))
            q = sa.select(AuditEntry).where(
                sa.or_(AuditEntry.action == "returned",
                       sa.and_(AuditEntry.action == "assign", AuditEntry.data.like('%"from_team": "%'))))
            for a in s.scalars(q):
                order = orders.get(a.order_id)
                if order is not None and order.status in WORKING:
                    out.append(("escalated", f"{order.id}:escalated:{a.id}", order_dict(order)))
        return out

    def _delivered(self, key: str, target: str) -> bool:
        with Session(self.service.engine) as s:
            delivered = s.scalar(sa.select(sa.func.count()).select_from(Delivery).where(
                Delivery.event_key == key, Delivery.target == target, Delivery.ok.is_(True)))
            return (delivered or 0) > 0  # (count() always gives a row; the type says it might not)

    def _log(self, order_id: int, event: str, channel: str, target: str, key: str, attempts: int, ok: bool,
             status: str, size: int) -> None:
        with Session(self.service.engine) as s, s.begin():
            s.add(Delivery(order_id=order_id, event=event, channel=channel, target=target, at=self.service.now(),
                           attempts=attempts, ok=ok, status=status[:500], event_key=key, size_bytes=size))

    # -- sending -----------------------------------------------------------------------------------------------------
    def dispatch(self, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Send every due (event, target) not delivered yet; returns one record per delivery tried."""
        now = now or self.service.now()
        cfg = self.config.notifications
        done = []
        for event, key, order in self.events(now):
            for hook in cfg.webhooks:
                if event in hook.events and not self._delivered(key, hook.url):
                    done.append(self._webhook(hook, event, key, order, now))
            if cfg.email is not None and event in cfg.email.events:
                to = self._recipients(order, cfg.email)
                target = ",".join(to)
                if to and not self._delivered(key, "mailto:" + target):
                    done.append(self._email(cfg.email, to, event, key, order))
        return done

    def _recipients(self, order: dict[str, Any], email: Email) -> list[str]:
        if order["team"] is None:
            return list(email.dispatch_to)
        try:
            return list(self.config.team(order["team"]).email)
        except ConfigError:
            return list(email.dispatch_to)

    def _retry(self, attempts: int, min_s: float, max_s: float, send: Callable[[], str]) -> tuple[bool, int, str]:
        backoff = Backoff(min_s, max(max_s, min_s))
        status = ""
        for attempt in range(1, attempts + 1):
            try:
                return True, attempt, send()
            except (OSError, smtplib.SMTPException, _Refused) as exc:
                status = f"{type(exc).__name__}: {exc}"
                if attempt < attempts:
                    self.sleep(backoff.next_delay())
        return False, attempts, status

    def _webhook(self, hook: Webhook, event: str, key: str, order: dict[str, Any], now: dt.datetime) -> dict:
        secret = webhook_secret(hook)
        body = json.dumps({"event": event, "order": order, "sent_at": now.isoformat()}, ensure_ascii=False,
                          sort_keys=True).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "wattline-orders",
                   "X-Wattline-Event": event, "X-Wattline-Delivery": key, "X-Wattline-Signature": sign(secret, body)}

        def send() -> str:
            req = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=hook.timeout_s) as r:
                    return f"HTTP {r.status}"
            except urllib.error.HTTPError as exc:
                raise _Refused(f"HTTP {exc.code}") from None

        ok, attempts, status = self._retry(hook.max_attempts, hook.retry_min_s, hook.retry_max_s, send)
        if not ok:
            log.warning("webhook %s: %s of order %s not delivered after %d attempts: %s", hook.url, event,
                        order["id"], attempts, status)
        self._log(order["id"], event, "webhook", hook.url, key, attempts, ok, status, len(body))
        return {"event": event, "key": key, "channel": "webhook", "target": hook.url, "ok": ok, "attempts": attempts,
                "status": status}

    def _email(self, email: Email, to: list[str], event: str, key: str, order: dict[str, Any]) -> dict:
        msg = EmailMessage()
        what = {"opened": "opened", "due_soon": "due soon", "overdue": "overdue", "escalated": "escalated"}[event]
        msg["Subject"] = (f"[Wattline] order {order['id']} {what}: {order['machine'].rsplit('/', 1)[-1]} "
                          f"{order['kind'].replace('_', ' ')}")
        msg["From"] = email.sender
        msg["To"] = ", ".join(to)
        msg["X-Wattline-Delivery"] = key
        money = f", {order['cost']:,.0f} {order['currency'] or ''}".rstrip() if order.get("cost") is not None else ""
        msg.set_content(
            f"Order {order['id']} ({order['status']}, team {order['team'] or 'dispatch queue'}) is {what}.\n\n"
            f"{order['explanation']}\n\nMachine: {order['machine']}\nWindow: {order['window_start']} to "
            f"{order['window_end']}\nExcess: {order['excess_kwh']:,.1f} kWh{money}\nExpected savings: "
            f"{order['expected_savings_kwh']:,.0f} kWh per year\nDue: {order['due']}\nPage: {order['link']}\n")
        password = read_secret_file(email.password_file, "SMTP password") if email.password_file else None

        def send() -> str:
            with smtplib.SMTP(email.host, email.port, timeout=email.timeout_s) as smtp:
                if email.starttls:
                    smtp.starttls()
                if email.user:
                    smtp.login(email.user, password or "")
                refused = smtp.send_message(msg)
            if refused:
                raise _Refused(f"recipients refused: {sorted(refused)}")
            return "250 sent"

        ok, attempts, status = self._retry(email.max_attempts, email.retry_min_s, email.retry_max_s, send)
        target = "mailto:" + ",".join(to)
        self._log(order["id"], event, "email", target, key, attempts, ok, status, len(bytes(msg)))
        return {"event": event, "key": key, "channel": "email", "target": target, "ok": ok, "attempts": attempts,
                "status": status}



class _Refused(Exception):
    """The receiver answered, but not with success (HTTP error status, refused recipients)."""

"""Notifications against real local receivers: an HTTP server that checks the HMAC signature (and fails the first
delivery, to exercise the retry), and an aiosmtpd SMTP server; the delivery log; each event sent once."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.server
import json
import os
import threading

import pytest

from core.errors import ConfigError
from core.model import Event
from core.orders.config import OrdersConfig, parse_config
from core.orders.db import open_orders_db
from core.orders.notify import Notifier
from core.orders.service import Actor, OrderService
from tests.support import wait_for

UTC = dt.UTC
D0 = dt.datetime(2026, 1, 5, tzinfo=UTC)
SECRET = "s3cret-" + "k" * 24
MANAGER = Actor("anna", "plant_manager", ("north", "south"))


@pytest.fixture
def receiver():
    """A local HTTP receiver: records (headers, body); answers 500 to the first request, 200 after."""
    got: list[tuple[dict, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((dict(self.headers), body))
            self.send_response(500 if len(got) == 1 else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    class Handler:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.rcpt_tos, envelope.content.decode("utf-8", "replace")))
            return "250 OK"

    import socket

    with socket.socket() as s:  # a free loopback port (aiosmtpd checks its server by connecting to the port given)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, handler.messages
    controller.stop()


def test_webhooks_and_email_with_retry_signature_and_log(db_url, clock, receiver, smtp_server, tmp_path):
    url, got = receiver
    port, mails = smtp_server
    secret_file = tmp_path / "hook.secret"
    secret_file.write_text(SECRET)
    os.chmod(secret_file, 0o600)
    config = parse_config(OrdersConfig, {
        "teams": [{"id": "north-maint", "email": "north@example.com"}, {"id": "util", "email": ["u@example.com"]}],
        "rules": [{"match": {"site": "north"}, "team": "north-maint", "due_hours": 48}],
        "notifications": {
            "due_soon_hours": 24,
            "webhooks": [{"url": url, "secret_file": str(secret_file), "retry_min_s": 0.01, "retry_max_s": 0.05}],
            "email": {"host": "127.0.0.1", "port": port, "sender": "wattline@example.com",
                      "dispatch_to": "dispatch@example.com", "events": ["opened", "overdue"]}}})
    engine = open_orders_db(db_url)
    svc = OrderService(engine, config, now=clock)
    svc.sync([Event("north/l1/cnc-01", "idle_running", D0, D0 + dt.timedelta(hours=5), 90.0,
                    {"explanation": "cnc-01 idled 5 h"}),
              Event("south/l1/cnc-11", "idle_running", D0, D0 + dt.timedelta(hours=5), 90.0)])
    notifier = Notifier(svc)
    sent = notifier.dispatch()
    assert sorted((d["channel"], d["event"], d["ok"]) for d in sent) == [
        ("email", "opened", True), ("email", "opened", True), ("webhook", "opened", True), ("webhook", "opened", True)]
    assert sorted(d["attempts"] for d in sent if d["channel"] == "webhook") == [1, 2]  # the first POST got a 500
    assert len(got) == 3
    for headers, body in got:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Wattline-Signature"] == expected and headers["X-Wattline-Event"] == "opened"
    assert json.loads(got[-1][1])["order"]["machine"] in ("north/l1/cnc-01", "south/l1/cnc-11")
    wait_for(lambda: len(mails) == 2, what="two e-mails at the local SMTP server")
    rcpts = sorted(r for rcpt, _ in mails for r in rcpt)
    assert rcpts == ["dispatch@example.com", "north@example.com"]
    assert any("cnc-01 idled 5 h" in content for _, content in mails)
    assert notifier.dispatch() == []  # each event once per target

    clock.advance(hours=30)  # the north order (48 h) is now due within 24 h
    svc.assign(next(o["id"] for o in svc.list() if o["site"] == "north"), "util", MANAGER)  # escalated
    events = sorted((d["channel"], d["event"], d["target"]) for d in notifier.dispatch())
    assert events == [("email", "opened", "mailto:u@example.com"),  # the new owner team hears of it
                      ("webhook", "due_soon", url), ("webhook", "escalated", url)]
    clock.advance(hours=200)
    events = sorted((d["channel"], d["event"]) for d in notifier.dispatch())
    assert events == [("email", "overdue"), ("email", "overdue"), ("webhook", "overdue"), ("webhook", "overdue")]
    with engine.connect() as conn:
        log = conn.exec_driver_sql("SELECT channel, ok, attempts FROM order_deliveries").all()
    assert len(log) == 11 and all(ok for _, ok, _ in log)
    engine.dispose()


def test_undeliverable_webhook_is_logged_and_retried_next_time(db_url, clock, tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    monkeypatch.setenv("WL_TEST_HOOK_SECRET", SECRET)
    config = parse_config(OrdersConfig, {"notifications": {"webhooks": [
        {"url": f"http://127.0.0.1:{dead}/x", "secret_env": "WL_TEST_HOOK_SECRET", "max_attempts": 3,
         "retry_min_s": 0.01, "retry_max_s": 0.02}]}})
    engine = open_orders_db(db_url)
    svc = OrderService(engine, config, now=clock)
    svc.sync([Event("north/l1/cnc-01", "idle_running", D0, D0 + dt.timedelta(hours=5), 90.0)])
    first = Notifier(svc).dispatch()
    assert [(d["ok"], d["attempts"]) for d in first] == [(False, 3)] and "Connection" in first[0]["status"]
    assert [(d["ok"], d["attempts"]) for d in Notifier(svc).dispatch()] == [(False, 3)]  # tried again
    monkeypatch.delenv("WL_TEST_HOOK_SECRET")
    with pytest.raises(ConfigError, match="WL_TEST_HOOK_SECRET is not set"):
        Notifier(svc).dispatch()
    engine.dispose()

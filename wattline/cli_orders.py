"""``wattline orders``: work orders opened from the findings, their owners, status and verified savings.

Orders live in their own SQL database (:mod:`core.orders`): ``<store>.orders.db`` beside an embedded store, or the
PostgreSQL database given with ``--db``. Routing rules and thresholds come from ``--rules FILE`` (commented sample:
``core/orders/sample.yaml``); without it every order waits in the dispatch queue. People act as a user of the
dashboard's users file (``--as NAME``, ``--users FILE``): their role and sites decide what they may do.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import typer

from core.errors import ConfigError

orders_app = typer.Typer(help="Work orders opened from the findings: list, show, ack, start, assign, resolve, reject, "
                              "verify, sync, kpi.", no_args_is_help=True, rich_markup_mode=None)

StoreOpt = typer.Option(None, "--store", "-s", help="Store URL (default wattline.db); the orders database is <store>.orders.db beside an embedded store.")
DbOpt = typer.Option(None, "--db", help="Orders database URL: sqlite:///path.db or postgresql+psycopg://user@host:port/db?passfile=FILE (default: beside the store; env WATTLINE_ORDERS_DB).")
RulesOpt = typer.Option(None, "--rules", help="Orders settings YAML: thresholds, teams, routing rules (sample: core/orders/sample.yaml; env WATTLINE_ORDERS_RULES).", dir_okay=False)
JsonOpt = typer.Option(False, "--json", help="Print JSON.")
AsOpt = typer.Option(None, "--as", help="Act as this user of the users file (role and sites decide what is allowed).")
UsersOpt = typer.Option(Path("wattline-users.json"), "--users", "-u", help="Users file (JSON, mode 600), as for the dashboard.", dir_okay=False)
CommentOpt = typer.Option("", "--comment", "-m", help="Comment recorded in the audit log.")


def _service(store: str | None, db: str | None, rules: Path | None):
    from core.orders.config import read_orders_config
    from core.orders.db import open_orders_db, orders_url
    from core.orders.service import OrderService

    rules = rules or (Path(os.environ["WATTLINE_ORDERS_RULES"]) if os.environ.get("WATTLINE_ORDERS_RULES") else None)
    config = read_orders_config(rules)  # a bad rules file fails before the database is touched
    url = orders_url(store, db or os.environ.get("WATTLINE_ORDERS_DB"))
    if url.startswith("sqlite:///") and not db and store and "://" not in store and not Path(store).exists():
        raise ConfigError(f"store {store} does not exist; give the path of an existing store with --store")
    return OrderService(open_orders_db(url), config)


def _actor(name: str | None, users: Path, action: str):
    from core.orders import OrdersUsageError
    from core.orders.service import Actor

    if not name:
        raise OrdersUsageError(f"{action} needs --as USER (a user of {users}): their role and sites decide what is "
                               "allowed")
    from dashboard.users import UsersError, UsersFile

    if not users.exists():
        raise ConfigError(f"users file {users} does not exist; give it with --users or add users with 'wattline users add'")
    try:
        user = UsersFile(users).get(name)
    except UsersError as exc:
        raise ConfigError(str(exc)) from None
    if user is None:
        raise OrdersUsageError(f"unknown user {name!r} in {users}; 'wattline users list' shows the users")
    return Actor(user.name, user.role, tuple(user.sites))


def _time(value: str | None, what: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what} {value!r} is not a date or time; use YYYY-MM-DD or ISO 8601") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _print_order(order: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(order, ensure_ascii=False))
        return
    typer.echo(f"order {order['id']}: {order['status']} · {order['owner'] or 'dispatch queue'} · {order['machine']} "
               f"· {order['kind']} · {order['excess_kwh']:,.1f} kWh (expected savings {order['expected_savings_kwh']:,.0f} "
               f"kWh/year) · due {order['due'][:16]}")


LIST_KEYS = ("id", "status", "owner", "site", "machine", "kind", "opened", "due", "excess_kwh", "expected_savings_kwh")


@orders_app.command("list")
def list_cmd(status: list[str] | None = typer.Option(None, "--status", help="Only these statuses (repeat)."),
             site: str | None = typer.Option(None, "--site"), team: str | None = typer.Option(None, "--team", help="Only this team ('-' for the dispatch queue)."),
             store: str | None = StoreOpt, db: str | None = DbOpt, rules: Path | None = RulesOpt,
             as_json: bool = JsonOpt) -> None:
    """List the orders, newest first."""
    orders = _service(store, db, rules).list(status=status or None, site=site, team=team)
    if as_json:
        typer.echo(json.dumps([{**{k: o[k] for k in LIST_KEYS}, **o} for o in orders], ensure_ascii=False))
        return
    if not orders:
        typer.echo("no orders")
    rows = [(str(o["id"]), o["status"], o["owner"] or "(queue)", o["machine"], o["kind"], f"{o['excess_kwh']:,.1f}",
             f"{o['expected_savings_kwh']:,.0f}", o["due"][:16]) for o in orders]
    header = ("ID", "STATUS", "OWNER", "MACHINE", "KIND", "KWH", "KWH/YEAR", "DUE")
    widths = [max(len(r[c]) for r in [*rows, header]) for c in range(len(header))]
    for row in [header, *rows] if rows else []:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@orders_app.command("show")
def show_cmd(order_id: int = typer.Argument(...), store: str | None = StoreOpt, db: str | None = DbOpt,
             rules: Path | None = RulesOpt, as_json: bool = JsonOpt) -> None:
    """One order with its evidence and audit log."""
    order = _service(store, db, rules).get(order_id)
    if as_json:
        typer.echo(json.dumps(order, ensure_ascii=False))
        return
    _print_order(order, False)
    typer.echo(f"  {order['explanation']}")
    typer.echo(f"  evidence: {order['findings']} finding(s) {order['window_start'][:16]} .. {order['window_end'][:16]}, "
               f"cost {order['cost']}, CO2 {order['co2_kg']} kg; page {order['link']}")
    for a in order["audit"]:
        typer.echo(f"  {a['at'][:19]} {a['actor']:<12} {a['action']:<9} {a['from'] or '':>12} -> {a['to']:<12} "
                   f"{a['team'] or ''} {a['comment']}")


def _transition(action: str):
    def command(order_id: int = typer.Argument(...), as_user: str | None = AsOpt, users: Path = UsersOpt,
                comment: str = CommentOpt, store: str | None = StoreOpt, db: str | None = DbOpt,
                rules: Path | None = RulesOpt, as_json: bool = JsonOpt,
                at: str | None = typer.Option(None, "--at", help="resolve: when the fix took effect (default now)."),
                reason: str | None = typer.Option(None, "--reason", help="reject: why (required)."),
                version: int | None = typer.Option(None, "--if-version", help="Only if the order is still at this version.")) -> None:
        svc = _service(store, db, rules)
        actor = _actor(as_user, users, action)
        order = svc.transition(order_id, action, actor, comment, reason=reason, at=_time(at, "--at"),
                               expected_version=version)
        _print_order(order, as_json)

    command.__doc__ = {"ack": "Acknowledge an order (open -> acknowledged).",
                       "start": "Start work on an order (acknowledged -> in_progress).",
                       "resolve": "Mark an order resolved (the fix is done; verification follows).",
                       "reject": "Reject an order with a reason (not work to do)."}[action]
    return command


for _name in ("ack", "start", "resolve", "reject"):
    orders_app.command(_name)(_transition(_name))


@orders_app.command("assign")
def assign_cmd(order_id: int = typer.Argument(...), team: str = typer.Argument(..., help="Team id (from the rules file)."),
               as_user: str | None = AsOpt, users: Path = UsersOpt, comment: str = CommentOpt,
               store: str | None = StoreOpt, db: str | None = DbOpt, rules: Path | None = RulesOpt,
               as_json: bool = JsonOpt) -> None:
    """Give an order to a team (from the dispatch queue, or passed on: counted as a reassignment)."""
    svc = _service(store, db, rules)
    _print_order(svc.assign(order_id, team, _actor(as_user, users, "assign"), comment), as_json)


def _data_end(store_url: str) -> dt.datetime:
    from core.storage import open_store
    from wattline.cli_analyze import _energy_machines

    with open_store(store_url) as st:
        _, _, last = _energy_machines(st)
    if last is None:
        raise ConfigError(f"store {store_url} holds no energy data to verify against; give --until")
    return dt.datetime.fromtimestamp(last / 1e9, dt.UTC)


@orders_app.command("sync")
def sync_cmd(run: str | None = typer.Option(None, "--run", help="Findings of this analysis run (default: the newest run)."),
             store: str | None = StoreOpt, db: str | None = DbOpt, rules: Path | None = RulesOpt,
             as_json: bool = JsonOpt) -> None:
    """Open, update or reopen orders from the stored findings of an analysis run (wattline analyze)."""
    from core.storage import open_store
    from core.storage.results import results_for
    from wattline.cli import _require_existing_store

    store = store or "wattline.db"
    _require_existing_store(store)
    svc = _service(store, db, rules)
    with open_store(store) as st, results_for(st) as results:
        if run is None:
            runs = results.runs()
            if not runs:
                raise ConfigError(f"store {store} holds no analysis runs; run 'wattline analyze' first")
            run = runs[0].run
        findings = results.query_findings(run=run)
    result = svc.sync(findings, run=run).to_dict()
    if as_json:
        typer.echo(json.dumps({"run": run, **result}))
        return
    typer.echo(f"run {run}: {len(findings)} finding(s): {len(result['opened'])} order(s) opened "
               f"({len(result['queued'])} to the dispatch queue), {len(result['updated'])} updated, "
               f"{len(result['reopened'])} reopened, {len(result['returned'])} back in progress, "
               f"{result['below_threshold']} pattern(s) below the threshold")


def baseline_measure(store_url: str, notes: list[str]):
    """The measured-savings method for :meth:`OrderService.verify`: ``wattline savings`` on the order's machine from
    the first full UTC day after the fix (IPMVP Option B, analytics.savings). It applies to waste orders; it is not
    used (None: the absence method instead) when it fails Guideline 14, when its 68 % uncertainty is half the savings
    or more, or when the data do not allow it."""
    import contextlib
    import io

    from core.errors import WattlineError
    from wattline.cli_savings import run_savings

    def measure(order: dict[str, Any], until: dt.datetime) -> dict[str, Any] | None:
        if order["category"] != "waste":
            return None
        fix = dt.datetime.fromisoformat(order["resolved"])
        day = fix.date() + dt.timedelta(days=0 if fix.time() == dt.time() else 1)
        days = int((until - dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)).total_seconds() // 86400)
        if days < 1:
            return None
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                r = run_savings(store_url, order["machine"], day.isoformat(), reporting_days=days)
        except WattlineError as exc:
            notes.append(f"order {order['id']}: baseline method not applicable ({exc}); absence method used")
            return None
        savings, fsu = r.get("savings_kwh"), r.get("fsu_68")
        if savings is None or fsu is None or savings <= 0 or fsu >= 0.5 or not r.get("passes_g14"):
            notes.append(f"order {order['id']}: baseline method inconclusive (savings {savings}, FSU 68 % {fsu}, "
                         f"Guideline 14 {'passed' if r.get('passes_g14') else 'failed'}); absence method used")
            return None
        money = r.get("cost_savings")
        return {"savings_kwh": savings, "uncertainty_kwh": fsu * savings, "method": "baseline",
                "cost": money.get("amount") if isinstance(money, dict) else money, "co2_kg": r.get("co2_kg"),
                "fsu_90": r.get("fsu_90"),
                "intervention": day.isoformat(), "reporting_days": days}

    return measure


@orders_app.command("verify")
def verify_cmd(order_id: int | None = typer.Argument(None, help="Only this order (needs --as)."),
               until: str | None = typer.Option(None, "--until", help="End of the analysed data (default: the store's last energy data)."),
               method: str = typer.Option("auto", "--method", help="auto: measured savings against the baseline (wattline savings) where it applies and is conclusive, else the pattern's absence; absence: always the latter."),
               as_user: str | None = AsOpt, users: Path = UsersOpt, store: str | None = StoreOpt,
               db: str | None = DbOpt, rules: Path | None = RulesOpt, as_json: bool = JsonOpt) -> None:
    """Verify resolved orders whose pattern stayed absent for the verification period after the fix (run
    'wattline orders sync' on the newest analysis first: returning waste sends an order back to in_progress)."""
    from core.orders.service import SYSTEM

    svc = _service(store, db, rules)
    actor = _actor(as_user, users, "verify") if (order_id is not None or as_user) else SYSTEM
    observed = _time(until, "--until") or _data_end(store or "wattline.db")
    if method not in ("auto", "absence"):
        raise ConfigError(f"--method {method!r} is not valid; valid: auto, absence")
    notes: list[str] = []
    measure = baseline_measure(store or "wattline.db", notes) if method == "auto" else None
    done = svc.verify(observed, actor, order_id, measure=measure)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    if as_json:
        typer.echo(json.dumps(done, ensure_ascii=False))
        return
    for o in done:
        typer.echo(f"order {o['id']} verified: {o['verified_kwh']:,.1f} ± {o['verified_uncertainty_kwh']:,.1f} kWh "
                   f"({o['verification_method']})")
    if not done:
        typer.echo("no resolved order is due for verification")


@orders_app.command("kpi")
def kpi_cmd(store: str | None = StoreOpt, db: str | None = DbOpt, rules: Path | None = RulesOpt,
            as_json: bool = JsonOpt) -> None:
    """KPIs in total, per site and per team: auto-dispatch rate, time to acknowledge and close, on-time %, ..."""
    from core.orders.kpi import kpis

    result = kpis(_service(store, db, rules).list())
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    t = result["total"]
    rate = "n/a" if t["auto_dispatch_rate"] is None else f"{100 * t['auto_dispatch_rate']:.0f} %"
    typer.echo(f"{t['orders']} orders, auto-dispatched {rate} (reference 86 %), {t['in_dispatch_queue']} in the queue, "
               f"on time {t['on_time_pct']} %, passed on more than once {t['passed_on_more_than_once']}, "
               f"expected {t['expected_savings_kwh']:,.0f} kWh/year, verified {t['verified_savings_kwh']:,.0f} kWh")


@orders_app.command("notify")
def notify_cmd(store: str | None = StoreOpt, db: str | None = DbOpt, rules: Path | None = RulesOpt,
               as_json: bool = JsonOpt) -> None:
    """Send due order events (opened, due soon, overdue, escalated) to the webhooks and e-mail addresses of the
    rules file's notifications: section; each once, failures retried with backoff and logged."""
    from core.orders.notify import Notifier

    svc = _service(store, db, rules)
    sent = Notifier(svc).dispatch()
    if as_json:
        typer.echo(json.dumps(sent, ensure_ascii=False))
        return
    for d in sent:
        typer.echo(f"{'sent' if d['ok'] else 'FAILED'} {d['event']} ({d['key']}) to {d['target']} after "
                   f"{d['attempts']} attempt(s): {d['status']}")
    if not sent:
        typer.echo("nothing to send")
    failed = [d for d in sent if not d["ok"]]
    if failed:
        from core.orders import OrdersError

        raise OrdersError(f"{len(failed)} of {len(sent)} notification(s) not delivered; they are retried next time "
                          "(see the delivery log)")

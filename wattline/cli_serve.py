"""``wattline serve --config FILE``: everything one machine runs, as child processes under one supervisor.

Each service is a ``wattline`` sub-command in its own process (``collect``, ``dashboard``, ``analyze`` on a schedule,
``analyze --follow`` and any other command named in ``services:``), so each one also runs alone on another host with
the same arguments. Why processes and not threads: a collector, the dashboard's gunicorn and a long analysis must not
share one interpreter lock, and a crash or a leak in one must not take the others down.

- A service that dies is restarted after a backoff (``core.backoff.Backoff``); restarts are counted in the status.
- A scheduled service (``every_s``) starts every ``every_s`` seconds; a run still going when the next one is due is not
  doubled (the skip is counted).
- SIGTERM or Ctrl-C: every child gets SIGTERM (the collector then flushes or spools what it holds), then ``grace_s``
  to exit, then SIGKILL for its whole process group. Children get SIGTERM too if the supervisor itself is killed
  (Linux ``PR_SET_PDEATHSIG``), so nothing is left running unsupervised.
- The status (one JSON document) is rewritten every second in ``status_file``; ``wattline serve status`` prints it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import typer

from core.backoff import Backoff
from core.errors import ConfigError, WattlineError
from wattline.serve_config import ServeConfig, read_serve_config

log = logging.getLogger(__name__)

STATUS_VERSION = 1


class ServeError(WattlineError):
    """The supervisor is not running or cannot run (runtime: exit 1)."""


STALE_AFTER_S = 10.0


def _now_iso(t: float | None = None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def _pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to send SIGTERM to this child when the supervisor dies (even by SIGKILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


@dataclass
class Service:
    """One supervised child: a long-running service (``every_s`` None) or a scheduled one."""

    name: str
    args: list[str]
    every_s: float | None = None
    kind: str = "service"
    #: Scheduled analytics: each run gets ``--from`` this far before its start [s].
    lookback_s: float | None = None
    proc: subprocess.Popen | None = None
    started_at: float | None = None
    next_start: float = 0.0
    restarts: int = 0
    exits: int = 0
    runs: int = 0
    failed_runs: int = 0
    skipped_runs: int = 0
    last_exit_code: int | None = None
    last_exit_at: float | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(1.0, 60.0))

    @property
    def command(self) -> list[str]:
        """The child's command line: this Python, ``-m wattline``, the arguments (and ``--from`` for a lookback)."""
        extra = []
        if self.lookback_s is not None:
            start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.lookback_s)
            extra = ["--from", start.isoformat(timespec="seconds")]
        return [sys.executable, "-m", "wattline", *self.args, *extra]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self, now: float, stopped: bool = False) -> dict:
        idle = "stopped" if stopped else ("waiting" if self.every_s else "restarting")
        return {
            "name": self.name, "kind": self.kind, "args": self.args, "every_s": self.every_s,
            "state": "running" if self.running() else idle,
            "pid": self.proc.pid if self.proc is not None and self.running() else None,
            "started_at": _now_iso(self.started_at) if self.running() else None,
            "uptime_s": round(now - self.started_at, 1) if self.running() and self.started_at else None,
            "restarts": self.restarts, "exits": self.exits, "runs": self.runs, "failed_runs": self.failed_runs,
            "skipped_runs": self.skipped_runs, "last_exit_code": self.last_exit_code,
            "last_exit_at": _now_iso(self.last_exit_at),
            "next_start_at": None if self.running() else _now_iso(time.time() + max(0.0, self.next_start - now)),
        }


def build_services(cfg: ServeConfig) -> list[Service]:
    """The services a config asks for, in start order (collectors first: they hold data nobody else has)."""
    store = ["--store", cfg.store]
    services = [Service(f"collector-{c.name}" if not c.name.startswith("collector") else c.name,
                        ["collect", "--config", str(c.config), *store, *(["--shard", c.shard] if c.shard else [])],
                        kind="collector")
                for c in cfg.collectors]
    a = cfg.analytics
    if a.enabled:
        args = ["analyze", *store, "--quiet", "--run", a.run]
        if a.plant is not None:
            args += ["--plant", str(a.plant)]
        if a.cluster is not None:
            args += ["--cluster", a.cluster]
        if a.jobs is not None:
            args += ["--jobs", str(a.jobs)]
        services.append(Service("analytics", args, every_s=a.every_s, kind="analytics",
                                lookback_s=a.lookback_days * 86400))
        if a.follow.enabled:
            follow = ["analyze", "--follow", *store, "--every", a.follow.every, "--window", a.follow.window] + \
                (["--plant", str(a.plant)] if a.plant is not None else [])
            services.append(Service("analytics-follow", follow, kind="analytics"))
    o = cfg.orders
    if o.enabled:
        args = ["orders", "sync", *store] + (["--db", o.db] if o.db else []) + \
            (["--rules", str(o.rules)] if o.rules is not None else [])
        services.append(Service("orders", args, every_s=o.every_s, kind="orders"))
    d = cfg.dashboard
    if d.enabled:
        args = ["dashboard", *store, "--users", str(d.users), "--host", d.host, "--port", str(d.port),
                "--workers", str(d.workers), "--threads", str(d.threads)]
        if d.plant is not None:
            args += ["--plant", str(d.plant)]
        if d.secure_cookies:
            args.append("--secure-cookies")
        # The dashboard shows and changes the orders of the database the orders service syncs into.
        args += (["--orders-db", o.db] if o.db else []) + (["--orders-rules", str(o.rules)] if o.rules is not None else [])
        if d.api_tokens is not None:
            args += ["--api-tokens", str(d.api_tokens)]
        args += d.api_limits.options()
        services.append(Service("dashboard", args, kind="dashboard"))
    for cmd in cfg.services:
        services.append(Service(cmd.name, list(cmd.args), every_s=cmd.every_s, kind="command"))
    for svc in services:
        svc.backoff = Backoff(cfg.restart.min_s, cfg.restart.max_s)
    return services


class ServeSupervisor:
    """Start, watch, restart and stop the services of one machine.

    Parameters
    ----------
    cfg : ServeConfig
        The settings (paths already absolute).
    services : list of Service, optional
        Default: :func:`build_services`.
    """

    def __init__(self, cfg: ServeConfig, services: list[Service] | None = None) -> None:
        self.cfg = cfg
        self.services = services if services is not None else build_services(cfg)
        self.stop_event = threading.Event()
        self.started = time.time()
        self.state = "starting"
        self._stop_signal: int | None = None

    # -- children ----------------------------------------------------------------------------------------------------
    def _start(self, svc: Service, now: float) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", WATTLINE_SERVICE=svc.name)
        try:
            svc.proc = subprocess.Popen(svc.command, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                                        # preexec_fn is safe here: the supervisor has one thread
                                        preexec_fn=_pdeathsig if sys.platform.startswith("linux") else None)
        except OSError as exc:  # fork failed (out of memory, process limit): try again later
            log.error("cannot start %s: %s", svc.name, exc)
            svc.next_start = now + svc.backoff.next_delay()
            return
        svc.started_at = now
        if svc.every_s:
            svc.runs += 1
        log.info("started %s (pid %d): wattline %s", svc.name, svc.proc.pid, " ".join(svc.args))

    def _reaped(self, svc: Service, code: int, now: float) -> None:
        """A child exited by itself: count it and plan its next start."""
        ran = now - (svc.started_at or now)
        svc.last_exit_code, svc.last_exit_at = code, time.time()
        svc.exits += 1
        assert svc.proc is not None, "poll() reaps only a started child"
        _kill_group(svc.proc.pid)  # what the child left behind (a writer process, gunicorn workers)
        svc.proc = None
        if svc.every_s:
            if code != 0:
                svc.failed_runs += 1
                log.error("%s run failed with exit code %d", svc.name, code)
            return  # next_start was set when the run started
        if ran > svc.backoff.max_s:
            svc.backoff.reset()
        delay = svc.backoff.next_delay()
        svc.next_start = now + delay
        svc.restarts += 1
        log.error("%s exited with code %d after %.1f s; restarting in %.1f s", svc.name, code, ran, delay)

    def poll(self, now: float | None = None) -> None:
        """One supervision step: reap exited children, start what is due."""
        now = time.monotonic() if now is None else now
        for svc in self.services:
            if svc.proc is not None:
                code = svc.proc.poll()
                if code is not None:
                    self._reaped(svc, code, now)
            if svc.every_s and now >= svc.next_start:
                svc.next_start += svc.every_s * max(1, int((now - svc.next_start) // svc.every_s) + 1) \
                    if svc.next_start else now + svc.every_s
                if svc.proc is not None:
                    svc.skipped_runs += 1
                    log.warning("%s: the previous run is still going; this run is skipped", svc.name)
                    continue
                self._start(svc, now)
            elif not svc.every_s and svc.proc is None and now >= svc.next_start:
                self._start(svc, now)

    def stop_children(self) -> None:
        """SIGTERM to every child, ``grace_s`` to exit, then SIGKILL to the process group of the rest."""
        running = [(s, s.proc) for s in self.services if s.proc is not None and s.running()]
        for _, proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.grace_s
        while any(s.running() for s, _ in running) and time.monotonic() < deadline:
            self.stop_event.wait(0.05)
        for svc, proc in running:
            if svc.running():
                log.error("%s did not stop within %g s after SIGTERM; killing it", svc.name, self.cfg.grace_s)
                _kill_group(proc.pid)
                proc.wait()
            else:
                _kill_group(proc.pid)
            svc.last_exit_code, svc.last_exit_at = proc.returncode, time.time()
            svc.proc = None

    # -- status ------------------------------------------------------------------------------------------------------
    def status(self) -> dict:
        """The status document (``status_file``)."""
        now = time.monotonic()
        return {
            "version": STATUS_VERSION, "pid": os.getpid(), "state": self.state, "store": _safe_url(self.cfg.store),
            "started_at": _now_iso(self.started), "updated_at": _now_iso(time.time()),
            "updated_unix": time.time(), "grace_s": self.cfg.grace_s,
            "services": [s.status(now, self.state in ("stopping", "stopped")) for s in self.services],
        }

    def write_status(self) -> None:
        path = self.cfg.status_file
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(self.status(), indent=1), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:  # a full disk must not stop the supervisor; the next write may succeed
            log.error("cannot write the status file %s: %s", path, exc)

    # -- main loop ---------------------------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self._stop_signal = signum
        self.stop_event.set()

    def run(self) -> int:
        """Supervise until SIGTERM / SIGINT; return the exit code (0 after a clean stop)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.state = "running"
            self.poll()
            self.write_status()
            last_status = time.monotonic()
            while not self.stop_event.is_set():
                # Polling is the point here: children are watched, not awaited one at a time.
                self.stop_event.wait(0.2)
                self.poll()
                if time.monotonic() - last_status >= 1.0:
                    self.write_status()
                    last_status = time.monotonic()
            self.state = "stopping"
            self.write_status()
            started = time.monotonic()
            self.stop_children()
            self.state = "stopped"
            self.write_status()
            log.warning("stopped all services in %.1f s", time.monotonic() - started)
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _safe_url(url: str) -> str:
    """The store URL without its query (which may name a token file)."""
    return url.split("?", 1)[0]


def _prepare_store(url: str) -> None:
    """Open the store once before the services start: an embedded store is created (so that the dashboard and the
    analytics find it) and migrated to this release's layout in one process, not raced by several."""
    from core.storage import open_store

    try:
        open_store(url).close()
    except WattlineError as exc:  # InfluxDB down: the services retry (the collector spools); say so and go on
        log.error("cannot open the store %s now (%s); the services will retry", _safe_url(url), exc)


def read_status(path: Path) -> dict:
    """Read a status file written by ``wattline serve``.

    Raises
    ------
    ConfigError
        When it does not exist or is not a status document.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"status file {path} does not exist; is 'wattline serve' running with this config?") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"status file {path} cannot be read: {exc}") from None
    if not isinstance(doc, dict) or "services" not in doc:
        raise ConfigError(f"{path} is not a 'wattline serve' status file")
    return doc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def format_status(doc: dict) -> list[str]:
    """Status document as a table, newest facts first."""
    lines = [(f"wattline serve pid {doc['pid']} {doc['state']} since {doc['started_at']} "
              f"(updated {doc['updated_at']}), store {doc['store']}")]
    rows = [("SERVICE", "STATE", "PID", "UPTIME_S", "RESTARTS", "RUNS", "FAILED", "LAST_EXIT")]
    for s in doc["services"]:
        rows.append((s["name"], s["state"], str(s["pid"] or "-"), str(s["uptime_s"] if s["uptime_s"] is not None else "-"),
                     str(s["restarts"]), str(s["runs"]), str(s["failed_runs"]),
                     "-" if s["last_exit_code"] is None else f"{s['last_exit_code']} at {s['last_exit_at']}"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return lines


serve_app = typer.Typer(help="Run every service of one machine under one supervisor.", rich_markup_mode=None,
                        add_completion=False, invoke_without_command=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="Serve settings (YAML; see deploy/wattline.yaml).", dir_okay=False)


@serve_app.callback()
def serve(ctx: typer.Context, config: Path | None = ConfigOpt,
          check: bool = typer.Option(False, "--check", help="Validate the config and print the services; start nothing.")) -> None:
    """Run the collectors, scheduled analytics, the dashboard and other services as supervised child processes until
    SIGTERM or Ctrl-C (restarted with backoff when they die). 'wattline serve status' shows them."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"config": config}  # 'wattline serve --config F status' reads the same file
        return
    if config is None:
        raise ConfigError("which services? give the serve settings with --config FILE (sample: deploy/wattline.yaml)")
    cfg = read_serve_config(config)
    services = build_services(cfg)
    if not services:
        raise ConfigError(f"{config}: no services: add collectors, enable analytics or the dashboard, or add services")
    if check:
        for svc in services:
            every = f" every {svc.every_s:g} s" if svc.every_s else ""
            typer.echo(f"{svc.name}{every}: wattline {' '.join(svc.args)}")
        return
    _prepare_store(cfg.store)
    supervisor = ServeSupervisor(cfg, services)
    typer.echo(f"wattline serve: {len(services)} services ({', '.join(s.name for s in services)}); status in "
               f"{cfg.status_file}; SIGTERM or Ctrl-C stops", err=True)
    supervisor.run()


@serve_app.command("status")
def status(ctx: typer.Context, config: Path | None = ConfigOpt,
           status_file: Path | None = typer.Option(None, "--status-file", help="Status file (default: the config's status_file).", dir_okay=False),
           as_json: bool = typer.Option(False, "--json", help="Print the status document as JSON.")) -> None:
    """Show the services of a running 'wattline serve': state, pid, restarts, last exit. Exit code 1 when the
    supervisor is not running or its status is stale."""
    if config is None and isinstance(ctx.obj, dict):
        config = ctx.obj.get("config")
    if status_file is None:
        if config is None:
            raise ConfigError("give --config FILE (the serve settings) or --status-file FILE")
        status_file = read_serve_config(config, check_files=False).status_file
    doc = read_status(status_file)
    stale = doc["state"] == "stopped" or not _alive(int(doc["pid"])) or \
        time.time() - float(doc.get("updated_unix", 0)) > STALE_AFTER_S
    if as_json:
        typer.echo(json.dumps(dict(doc, stale=stale), indent=1))
    else:
        for line in format_status(doc):
            typer.echo(line)
    if stale:
        raise ServeError(f"wattline serve is not running (status {status_file} last updated {doc['updated_at']})")


def register(app: typer.Typer) -> None:
    """Add ``serve`` (and ``serve status``) to the ``wattline`` command line."""
    app.add_typer(serve_app, name="serve")

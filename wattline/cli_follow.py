"""``wattline analyze --follow``: score the newest intervals for anomalies as they arrive, without refitting each time.

At start the anomaly models (``analytics.anomaly.plant.PlantAnomalies``, with their baselines) are fitted on the
last ``history`` days before the newest complete window; then every ``--every`` the windows completed since are read
from the store, scored by :class:`analytics.anomaly.stream.AnomalyStream` (events open and extend), and the findings
are written with ``core.storage.results`` under one run id (each write replaces the run's findings, so a reader sees
the current state). The models are refitted on a schedule (``refit`` seconds, nightly by default) in a supervised
background thread (``core.supervise``); a failed refit is logged and retried, the old models keep scoring meanwhile.

The users' false-alarm budgets and patterns marked as normal (:mod:`analytics.anomaly.preferences`, the file beside
the store) are read at start and again whenever the file changes: a new budget moves the machine's threshold and a
marked pattern stops being reported from the next tick on, without refitting.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from wattline.cli_analyze import (
    NS,
    WINDOW_S,
    AnalyzeError,
    _choose_plant,
    _energy_machines,
)

if TYPE_CHECKING:
    from analytics.anomaly.stream import AnomalyStream

log = logging.getLogger(__name__)


def parse_every(text: str, option: str = "--every") -> int:
    """``"5m"``, ``"90s"``, ``"1h"`` or plain seconds -> seconds (``option`` names the flag in the error)."""
    from core.errors import ConfigError

    t = str(text).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        value = -1
    if value <= 0:
        raise ConfigError(f"{option} {text!r} is not a duration; use e.g. 5m, 90s or 1h")
    return int(value)


def _utc(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / NS, dt.UTC)


def fit_anomalies(data: Any, quality: Any, settings: Any = None, parallel: Any = None) -> Any:
    """The follower's models (:class:`analytics.anomaly.plant.PlantAnomalies` with their baselines) fitted on
    ``data``, the machines fanned out as ``wattline analyze`` does (:class:`analytics.parallel.Fanout`: with
    ``parallel.jobs`` unset, over one worker process per core for a year of a large plant, in this process for small
    data); the models are the same either way."""
    from analytics.anomaly.plant import PlantAnomalies
    from analytics.parallel import Fanout

    with Fanout(parallel, work=len(data.frame)) as fan:
        return PlantAnomalies(settings).fit(data, quality=quality, fanout=fan)


class Follower:
    """The follow loop's state: store, plant, models, stream (see the module docstring).

    Parameters
    ----------
    store : core.storage.base.Store
        Open store.
    plant_file : Path or None
        Plant file (the demo plant is recognised as in ``wattline analyze``).
    history_days : float
        Days fitted at start and at each refit [d].
    run : str
        Run id the findings are stored under.
    echo : callable
        Prints a line (a new finding).
    preferences : Path, optional
        The anomaly preferences file (budgets, normal patterns); None: none.
    window_s : int
        Window length the models are fitted and the new data scored at [s]: 900 as ``wattline analyze`` (findings
        agree with a batch run); 60 finds a large excess within minutes (a window is scored once complete, and an
        event needs a few windows of evidence: about 4 smoothing and 4 persistence windows).
    parallel : analytics.parallel.ParallelSettings, optional
        Where the fits run (``analytics`` of the settings, ``--jobs``/``--cluster``); default: this box.
    """

    def __init__(self, store: Any, plant_file: Any, history_days: float, run: str,
                 echo: Callable[[str], None] = typer.echo, preferences: Any = None, window_s: int = WINDOW_S,
                 parallel: Any = None) -> None:
        if int(window_s) <= 0 or 86400 % int(window_s):
            from core.errors import ConfigError

            raise ConfigError(f"--window {window_s} s does not divide a day; use e.g. 1m, 5m or 15m")
        self.window_s = int(window_s)
        self.parallel = parallel
        self.store, self.run, self.echo = store, run, echo
        self.preferences = preferences
        self._prefs_stamp: tuple | None = None
        self._prefs: Any = None
        self.known: list = []  # meter faults found so far (an anomaly overlapping one is that fault)
        self.history_s = int(history_days * 86400)
        self.notes: list = []
        self.stored, _, last = _energy_machines(store)
        if not self.stored or last is None:  # series without values yet (a collector just started) are no data
            raise AnalyzeError("the store holds no energy data to follow; start a collector or import data first")
        self.plant = _choose_plant(plant_file, self.stored, self.notes)
        self.stream: AnomalyStream | None = None  # set by start()
        self.reported: set[tuple] = set()
        # Each series' last value at the end of the previous tick's read: the next tick continues from it instead of
        # looking every series' previous value up again (a value stored late, before the end of a read already
        # made, is not seen by the carry; a refit or a batch run reads it).
        self._carry: dict = {}
        # The refit thread and the scoring loop share the store: one reader or writer at a time.
        self._store_lock = threading.Lock()

    def complete_until(self) -> int:
        """End of the newest complete window with data [ns]."""
        with self._store_lock:
            _, _, last = _energy_machines(self.store)
        if last is None:  # every value is gone since the start (retention): no new window
            return 0
        w = self.window_s * NS
        return (last // w) * w

    def read(self, start_ns: int, stop_ns: int, carry: dict | None = None):
        """Interval data of ``[start_ns, stop_ns)`` and their meter faults; ``carry`` continues the previous read
        (``IntervalData.from_store``)."""
        from analytics.data import IntervalData
        from analytics.quality import find_meter_faults

        with self._store_lock:
            data = IntervalData.from_store(self.store, self.plant, _utc(start_ns), _utc(stop_ns),
                                           resolution_s=self.window_s, carry=carry)
        return data, find_meter_faults(data)

    def fit(self, stop_ns: int, carry: dict | None = None):
        """Anomaly models fitted on the history before ``stop_ns`` (``carry``: as in :meth:`read`)."""
        start = stop_ns - self.history_s * NS
        data, quality = self.read(start, stop_ns, carry=carry)
        self._load_preferences()
        settings = None if self._prefs is None else self._prefs.plant_settings()
        return fit_anomalies(data, quality, settings, self.parallel)

    def _load_preferences(self) -> bool:
        """Re-read the preferences file when it changed since the last read; True when it did."""
        if self.preferences is None:
            return False
        from pathlib import Path

        from analytics.anomaly.preferences import read_preferences

        try:
            st = Path(self.preferences).stat()
            stamp: tuple | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._prefs_stamp and self._prefs is not None:
            return False
        self._prefs, self._prefs_stamp = read_preferences(self.preferences), stamp
        return True

    def start(self) -> None:
        from analytics.anomaly.stream import AnomalyStream

        until = self.complete_until()
        self.echo(f"fitting anomaly models on {self.history_s / 86400:g} days up to {_utc(until).isoformat()}")
        self.stream = stream = AnomalyStream(self.fit(until, carry=self._carry))
        self._next = until
        self.echo(f"following {len(stream.model.detectors)} machine(s) in {self.window_s / 60:g}-min windows "
                  f"from {_utc(until).isoformat()}")

    def tick(self) -> int:
        """Score the windows completed since the last tick; returns how many windows were scored."""
        stream = self.stream
        assert stream is not None, "start() first"
        until = self.complete_until()
        if until <= self._next:
            return 0
        data, quality = self.read(self._next, until, carry=self._carry)
        from analytics.errors import AnalyticsError

        try:
            if self._load_preferences():
                stream.set_preferences(dict(self._prefs.alerts_per_week), self._prefs.patterns_by_machine())
        except (AnalyticsError, OSError) as exc:  # a bad file must not stop the follower: the last good ones stay
            log.error("anomaly preferences %s not applied: %s", self.preferences, exc)
        kept_from = stream.tail_start
        self.known = [k for k in self.known if kept_from is None or k.end > kept_from] + list(quality.events)
        events = stream.update(data, quality, known=self.known)
        self._next = until
        from core.storage.results import results_for

        with self._store_lock, results_for(self.store) as results:
            results.write_findings(self.run, events, replace=True, run_kind="follow")
        for ev in events:
            key = (ev.machine, ev.start)
            if key not in self.reported:
                self.reported.add(key)
                self.echo(ev.details.get("explanation") or f"{ev.machine}: anomaly from {ev.start.isoformat()}")
        return data.n_times

    def refit(self) -> None:
        """Refit on the latest history and hand the models to the stream."""
        assert self.stream is not None, "start() first"
        model = self.fit(self._next)
        self.stream.refit(model)
        log.info("anomaly models refitted up to %s", _utc(self._next).isoformat())


def _preferences_file(store_url: str, explicit: Any = None) -> Any:
    """The anomaly preferences file of the store, None for a store without a place for one (defaults apply)."""
    from analytics.anomaly.preferences import preferences_path
    from analytics.errors import AnalyticsError

    try:
        return preferences_path(store_url, explicit)
    except AnalyticsError as exc:
        log.info("%s", exc)
        return None


def run_follow(store_url: str, plant_file: Any, every_s: int, history_days: float = 28.0, refit_s: float = 86400.0,
               run: str | None = None, stop: threading.Event | None = None, preferences: Any = None,
               window_s: int = WINDOW_S, parallel: Any = None) -> Follower:
    """Follow the store until ``stop`` is set (Ctrl-C ends it from the command line)."""
    from core.storage import open_store
    from core.supervise import Supervisor

    stop = stop or threading.Event()
    with open_store(store_url) as store:
        follower = Follower(store, plant_file, history_days, run or "follow-anomalies",
                            preferences=_preferences_file(store_url, preferences), window_s=window_s,
                            parallel=parallel)
        follower.start()
        supervisor = Supervisor(prefix="analyze")

        def refit_loop() -> None:
            while not stop.wait(refit_s):
                follower.refit()

        supervisor.thread("anomaly-refit", refit_loop, wake=stop)
        try:
            while not stop.is_set():
                started = time.monotonic()
                follower.tick()
                stop.wait(max(0.0, every_s - (time.monotonic() - started)))
        except KeyboardInterrupt:
            stop.set()
        return follower

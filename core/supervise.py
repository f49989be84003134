"""Supervised background threads and asyncio tasks: nothing dies quietly.

A background thread or task that raises is otherwise gone without a trace (a thread prints to stderr, a task's
exception waits for someone to look). :class:`Supervisor` runs each one in a loop: an unexpected exception is logged
with its traceback, counted (``failures``, for the metrics) and reported as a :class:`~core.notices.Notice`, and the
work starts again after a backoff (:class:`core.backoff.Backoff`). A job that must not restart, or that keeps failing
beyond ``max_restarts``, is given up: ``fatal`` is set and ``on_fatal`` is called, so that the owner can stop and
exit non-zero instead of running on half-dead.

The job itself must keep its data safe across a restart (the batch writer puts a batch in flight back in its queue);
the supervisor only restarts it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core.backoff import Backoff
from core.notices import Notice

log = logging.getLogger(__name__)


class Supervisor:
    """Start and watch background threads and asyncio tasks.

    Parameters
    ----------
    notify : callable, optional
        Receives a :class:`~core.notices.Notice` per failure (``<prefix>.task.failed``, level error) and when a job is
        given up (``<prefix>.task.gave_up``).
    prefix : str
        First part of the notice names (``"collector"``, ``"storage"``).
    restart_min_s, restart_max_s : float
        Backoff between restarts [s]; it starts again from ``restart_min_s`` when a job ran longer than
        ``restart_max_s`` before failing.
    max_restarts : int or None
        Consecutive quick failures after which a job is given up; None restarts for ever.
    on_fatal : callable, optional
        Called with ``(name, exception)`` when a job is given up.

    Attributes
    ----------
    failures : Counter
        Unexpected exceptions per job name.
    restarts : Counter
        Restarts per job name.
    last_error : dict
        The latest ``"Type: message"`` per job name.
    fatal : tuple or None
        ``(name, exception)`` of the first job given up.
    """

    def __init__(self, notify: Callable[[Notice], None] | None = None, *, prefix: str = "wattline",
                 restart_min_s: float = 0.1, restart_max_s: float = 30.0, max_restarts: int | None = None,
                 on_fatal: Callable[[str, BaseException], None] | None = None) -> None:
        self.notify = notify
        self.prefix = prefix
        self.restart_min_s = float(restart_min_s)
        self.restart_max_s = float(restart_max_s)
        self.max_restarts = max_restarts
        self.on_fatal = on_fatal
        self.failures: collections.Counter[str] = collections.Counter()
        self.restarts: collections.Counter[str] = collections.Counter()
        self.last_error: dict[str, str] = {}
        self.fatal: tuple[str, BaseException] | None = None
        self._lock = threading.Lock()

    # -- bookkeeping ---------------------------------------------------------------------------------------------------
    def _failed(self, name: str, exc: BaseException, restart: bool, quick_failures: int) -> bool:
        """Record a failure; return whether the job restarts."""
        give_up = not restart or (self.max_restarts is not None and quick_failures > self.max_restarts)
        text = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.failures[name] += 1
            self.last_error[name] = text
            if not give_up:
                self.restarts[name] += 1
        log.error("background job %s failed (%s); %s", name, text, "giving up" if give_up else "restarting",
                  exc_info=(type(exc), exc, exc.__traceback__))
        self._notice(Notice(f"{self.prefix}.task.failed",
                            f"background job {name} failed with {text}; "
                            + ("it was given up" if give_up else "it is restarted, nothing it held is lost"),
                            {"task": name, "error": text, "restarting": not give_up}, level="error"))
        if give_up:
            with self._lock:
                first = self.fatal is None
                if first:
                    self.fatal = (name, exc)
            self._notice(Notice(f"{self.prefix}.task.gave_up", f"background job {name} stopped for good: {text}",
                                {"task": name, "error": text}, level="error"))
            if self.on_fatal is not None:
                try:
                    self.on_fatal(name, exc)
                except Exception:
                    log.exception("on_fatal callback failed for %s", name)
        return not give_up

    def _notice(self, notice: Notice) -> None:
        if self.notify is None:
            return
        try:
            self.notify(notice)
        except Exception:
            log.exception("cannot report notice %s", notice.name)

    def _backoff(self) -> Backoff:
        return Backoff(self.restart_min_s, max(self.restart_min_s, self.restart_max_s))

    # -- threads -------------------------------------------------------------------------------------------------------
    def thread(self, name: str, target: Callable[[], Any], *, restart: bool = True,
               wake: threading.Event | None = None, daemon: bool = True) -> threading.Thread:
        """Start ``target()`` in a thread named ``name``, restarted after an unexpected exception.

        Parameters
        ----------
        name : str
            Thread and job name (in logs, notices and metrics).
        target : callable
            The job; returning normally ends it.
        restart : bool
            False: a failure gives the job up (``on_fatal``).
        wake : threading.Event, optional
            Setting it cuts a restart backoff short (e.g. at shutdown, so that a restarted writer drains at once).
        daemon : bool
            Daemon thread.

        Returns
        -------
        threading.Thread
            The started thread.
        """

        def loop() -> None:
            backoff = self._backoff()
            while True:
                started = time.monotonic()
                try:
                    target()
                    return
                except Exception as exc:  # noqa: BLE001 - the point: report and restart, never die quietly
                    if time.monotonic() - started > backoff.max_s:
                        backoff.reset()
                    if not self._failed(name, exc, restart, backoff.attempt + 1):
                        return
                    delay = backoff.next_delay()
                    if wake is not None:
                        wake.wait(delay)
                    else:
                        time.sleep(delay)

        thread = threading.Thread(target=loop, name=name, daemon=daemon)
        thread.start()
        return thread

    # -- asyncio tasks -------------------------------------------------------------------------------------------------
    def task(self, name: str, factory: Callable[[], Awaitable[Any]], *, restart: bool = True) -> asyncio.Task:
        """Run ``await factory()`` as a task named ``name``, restarted after an unexpected exception.

        Cancelling the task ends it (no restart). Must be called with an event loop running.
        """

        async def loop() -> Any:
            backoff = self._backoff()
            while True:
                started = time.monotonic()
                try:
                    return await factory()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - report and restart, never die quietly
                    if time.monotonic() - started > backoff.max_s:
                        backoff.reset()
                    if not self._failed(name, exc, restart, backoff.attempt + 1):
                        return None
                    await asyncio.sleep(backoff.next_delay())

        return asyncio.get_running_loop().create_task(loop(), name=name)

    def snapshot(self) -> dict[str, dict]:
        """Per job: failures, restarts and the latest error (for the status document)."""
        with self._lock:
            return {name: {"failures": n, "restarts": self.restarts[name], "last_error": self.last_error.get(name)}
                    for name, n in sorted(self.failures.items())}

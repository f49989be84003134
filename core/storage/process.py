"""A store run in a child process, so that its writes never compete with the caller for Python's interpreter lock.

Why: SQLite's ``executemany`` releases and re-takes the GIL around every row. Next to a busy asyncio receive loop,
each re-take waits for the thread switch interval: measured on a 2-core machine, 300,000 rows/s alone against 1,760
rows/s with one busy Python thread beside it at a 0.5 ms switch interval. In its own process the store has its own
interpreter lock; the caller's writer thread only pickles column arrays into a pipe and waits for the answer with the
lock released.

Every :class:`~core.storage.base.Store` method is forwarded, so a ProcessStore is a drop-in store (the storage
contract suite runs against it). :meth:`ProcessStore.write_batch` sends a series key only the first time it is used;
afterwards values carry small integer ids. When the child dies, the call raises
:class:`~core.errors.StoreUnavailable` (a collector spools the batch) and the next call starts a new child.

Shutdown always completes: every wait on the child has a timeout (a call that gets no answer within
``call_timeout_s`` kills the child and raises StoreUnavailable), :meth:`ProcessStore.abort` kills a wedged child from
any thread, and the child honours SIGTERM: it keeps answering for ``term_grace_s`` (so that the parent, which got the
same signal, can still flush through it), then closes the store and exits.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection
from typing import Any, Protocol

import numpy as np

from core.errors import StoreError, StoreUnavailable
from core.model import Point, SeriesKey
from core.storage.base import SeriesBatch, Store

log = logging.getLogger(__name__)

#: Store methods a ProcessStore forwards to its child.
_FORWARDED = frozenset({"write", "write_arrays", "flush", "query", "last_values", "series", "_aggregate_part"})


#: The child's program: it gets its end of the pipe as a file descriptor, then the caller's import path and the
#: arguments of :func:`_serve` as the first message (nothing secret on its command line).
_CHILD_CODE = ("import sys; from multiprocessing.connection import Connection; c = Connection(int(sys.argv[1])); "
               "path, args = c.recv(); sys.path[:] = path; from core.storage.process import _serve; _serve(c, *args)")


class _ChildProcess(Protocol):
    """What the store uses of its writer process: a :class:`_Child` or a ``multiprocessing.Process``."""

    @property
    def pid(self) -> int | None: ...
    @property
    def exitcode(self) -> int | None: ...
    def is_alive(self) -> bool: ...
    def join(self, timeout: float | None = None) -> None: ...
    def kill(self) -> None: ...


class _Child:
    """The child process: a plain interpreter started with :mod:`subprocess`, with the parts of the
    ``multiprocessing.Process`` interface the store uses (``pid``, ``is_alive``, ``exitcode``, ``join``, ``kill``).

    Why not multiprocessing: its forkserver is a second helper process for the whole run, plus a resource-tracker
    process (together ~25 MB PSS measured beside a 10,000-series writer), and spawn or forkserver re-import the caller's
    main module in the child (for ``wattline collect`` the whole CLI). A fresh interpreter imports only the store
    (~0.3 s, once per child) and, like forkserver, never inherits the caller's threads.
    """

    def __init__(self, child_fd: int) -> None:
        self._popen = subprocess.Popen([sys.executable, "-c", _CHILD_CODE, str(child_fd)], pass_fds=(child_fd,),
                                       stdin=subprocess.DEVNULL, close_fds=True)
        self.pid = self._popen.pid

    def is_alive(self) -> bool:
        return self._popen.poll() is None

    @property
    def exitcode(self) -> int | None:
        return self._popen.poll()

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout)

    def kill(self) -> None:
        if self._popen.poll() is None:
            self._popen.kill()


class ProcessStore(Store):
    """Open the store at ``url`` in a child process and forward every call to it.

    Parameters
    ----------
    url : str
        Store URL as accepted by :func:`core.storage.open_store` (give SQLite files as absolute paths: the child does
        not share the caller's working directory).
    start_timeout_s : float
        Longest wait for the child to open the store [s].
    call_timeout_s : float
        Longest wait for the answer to one call (a write of a large batch included) [s]; past it the child is
        considered wedged: it is killed and the call raises StoreUnavailable.
    term_grace_s : float
        After a SIGTERM, how long the child still answers before it closes the store and exits [s].

    Raises
    ------
    StoreError
        When the child cannot open the store (the message is the store's own, naming the file or server).
    """

    def __init__(self, url: str, *, start_timeout_s: float = 60.0, call_timeout_s: float = 120.0,
                 term_grace_s: float = 30.0) -> None:
        self.url = url
        self.start_timeout_s = float(start_timeout_s)
        self.call_timeout_s = float(call_timeout_s)
        self.term_grace_s = float(term_grace_s)
        self.aborts = 0
        self.description = url
        self._lock = threading.Lock()
        self._proc: _ChildProcess | None = None
        self._conn: Connection | None = None
        self._closed = False
        self._reset_keys()
        self._start()

    # -- child lifecycle -------------------------------------------------------------------------------------------------
    def _reset_keys(self) -> None:
        self._key_ids: dict[SeriesKey, int] = {}
        self._last_keys: tuple | None = None
        self._last_ids = np.zeros(0, dtype=np.int64)
        self._new_keys: list[SeriesKey] = []

    def _start(self) -> None:
        parent, child = multiprocessing.Pipe()
        proc: _ChildProcess
        if os.name == "posix":
            try:
                proc = _Child(child.fileno())
            finally:
                child.close()
            try:
                parent.send((list(sys.path), (self.url, self.term_grace_s)))
            except OSError as exc:
                proc.kill()
                raise StoreUnavailable(f"store process for {self.url} ended at start ({exc})") from exc
        else:  # no file descriptors to hand over: multiprocessing's spawn
            spawned = multiprocessing.get_context("spawn").Process(
                target=_serve, args=(child, self.url, self.term_grace_s), name="wattline-store", daemon=True)
            spawned.start()
            proc = spawned
            child.close()
        if not parent.poll(self.start_timeout_s):
            proc.kill()
            raise StoreUnavailable(f"store process for {self.url} did not start within {self.start_timeout_s:.0f} s")
        try:
            ok, info = parent.recv()
        except EOFError as exc:
            proc.join(5)
            raise StoreUnavailable(f"store process for {self.url} ended at start (exit code {proc.exitcode})") from exc
        if not ok:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
            raise info
        self.description = f"{info} (writer process {proc.pid})"
        self._proc, self._conn = proc, parent
        self._reset_keys()

    def _drop_child(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            self._proc.join(1)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(1)
        self._proc = self._conn = None
        self._reset_keys()

    def _exchange(self, message: tuple) -> Any:
        """Send one request and return the answer; called with the lock held."""
        if self._closed:
            raise StoreError(f"store {self.url} is closed")
        if self._conn is None:
            self._start()
        conn = self._conn
        assert conn is not None  # _start() connected or raised
        try:
            conn.send(message)
            if not conn.poll(self.call_timeout_s):
                pid = self.pid
                self._kill_child()
                self._drop_child()
                raise StoreUnavailable(f"store process {pid} for {self.url} did not answer within "
                                       f"{self.call_timeout_s:.0f} s and was killed; a new one starts with the next call")
            ok, result = conn.recv()
        except (EOFError, OSError) as exc:
            code = self._proc.exitcode if self._proc is not None else None
            self._drop_child()
            raise StoreUnavailable(
                f"store process for {self.url} ended (exit code {code}); a new one starts with the next call"
            ) from exc
        if ok:
            return result
        raise result

    def _kill_child(self) -> None:
        proc = self._proc
        if proc is not None and proc.is_alive():
            log.error("killing the store process %s for %s", proc.pid, self.url)
            proc.kill()

    def abort(self) -> None:
        """Kill the child now, from any thread (a wedged writer at shutdown).

        A call waiting for it raises StoreUnavailable, so its caller spools the batch; the next call starts a new
        child.
        """
        self.aborts += 1
        self._kill_child()

    @property
    def pid(self) -> int | None:
        """Process id of the child, or None while none runs."""
        return self._proc.pid if self._proc is not None else None

    # -- Store interface -------------------------------------------------------------------------------------------------
    def write_batch(self, batch: SeriesBatch) -> int:
        with self._lock:
            if self._conn is None and not self._closed:
                self._start()
            if batch.keys is not self._last_keys:
                # Map the batch's keys to ids the child knows; keys it has not seen travel with this request only.
                ids = np.empty(len(batch.keys), dtype=np.int64)
                for i, key in enumerate(batch.keys):
                    j = self._key_ids.get(key)
                    if j is None:
                        j = self._key_ids[key] = len(self._key_ids)
                        self._new_keys.append(key)
                    ids[i] = j
                self._last_keys, self._last_ids = batch.keys, ids
            new, self._new_keys = self._new_keys, []
            series = self._last_ids[np.asarray(batch.series, dtype=np.int64)]
            return self._exchange(("_write_ids", (new, series, batch.times_ns, batch.values, batch.status), {}))

    def write(self, points: Iterable[Point]) -> int:
        return self._call("write", list(points))

    def write_arrays(self, key, times_ns, values, status=None, *, bulk: bool = False) -> int:
        return self._call("write_arrays", key, times_ns, values, status, bulk=bulk)

    def flush(self) -> None:
        if not self._closed:
            self._call("flush")

    def query(self, *args, **kwargs):
        return self._call("query", *args, **kwargs)

    def last_values(self, *args, **kwargs):
        return self._call("last_values", *args, **kwargs)

    def _aggregate_part(self, *args, **kwargs):
        # aggregate() and read_frame() (the base class's) make one such call per chunk: computed in the child next to
        # the data, so only the per-window result crosses the pipe, and every call stays short.
        return self._call("_aggregate_part", *args, **kwargs)

    def series(self, *args, **kwargs):
        return self._call("series", *args, **kwargs)

    def _call(self, method: str, *args, **kwargs) -> Any:
        with self._lock:
            return self._exchange((method, args, kwargs))

    def close(self, timeout_s: float | None = None) -> None:
        """Close the store in the child (which flushes it) and end the child.

        Parameters
        ----------
        timeout_s : float, optional
            Longest wait for another thread's call to finish and for the child to close [s]; default
            ``call_timeout_s``. Past it the child is killed (its writes are committed transactions; nothing
            acknowledged is lost).
        """
        timeout_s = self.call_timeout_s if timeout_s is None else float(timeout_s)
        if not self._lock.acquire(timeout=timeout_s):
            log.error("store process for %s is busy beyond %.0f s at close; killing it", self.url, timeout_s)
            self.abort()
            if not self._lock.acquire(timeout=timeout_s):  # pragma: no cover - a caller stuck outside the pipe
                self._closed = True
                return
        try:
            if self._closed:
                return
            saved, self.call_timeout_s = self.call_timeout_s, timeout_s
            try:
                if self._conn is not None:
                    self._exchange(("close", (), {}))
            except StoreError as exc:
                log.warning("closing %s: %s", self.url, exc)
            finally:
                self.call_timeout_s = saved
                self._closed = True
                self._drop_child()
        finally:
            self._lock.release()


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a StoreError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any pickling problem
        return StoreError(f"{type(exc).__name__}: {exc}")


def _serve(conn, url: str, term_grace_s: float = 30.0) -> None:
    """Child process: open the store, answer requests until ``close``, until the parent goes away, or until
    ``term_grace_s`` [s] after a SIGTERM."""
    # Ctrl-C reaches the whole process group; the parent decides when to stop and flushes through us. SIGTERM (also
    # sent to the whole group by service managers) is honoured after a grace period that leaves the parent time to
    # flush through us; then the store is closed and the process ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    terminated: list[float] = []

    def on_term(signum, frame) -> None:
        if not terminated:
            terminated.append(time.monotonic())

    signal.signal(signal.SIGTERM, on_term)
    from core.storage import open_store
    from core.storage.sqlite import SQLiteStore

    try:
        store = open_store(url)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send((False, _portable(exc if isinstance(exc, StoreError) else StoreError(f"cannot open {url}: {exc}"))))
        return
    if isinstance(store, SQLiteStore):
        store.tune_for_writing()  # this process writes: WAL checkpoints out of the writes, a small page cache
    conn.send((True, store.description))
    keys: list[SeriesKey] = []
    keys_tuple: tuple = ()
    closing = False
    try:
        while True:
            try:
                if not conn.poll(0.5):
                    if terminated and time.monotonic() - terminated[0] > term_grace_s:
                        log.warning("store process for %s: SIGTERM %.0f s ago; closing the store", url, term_grace_s)
                        return  # the finally block closes the store
                    continue
                method, args, kwargs = conn.recv()
            except (EOFError, OSError):
                return  # the parent ended: close the store and go
            try:
                if method == "_write_ids":
                    new, series, times, values, status = args
                    if new:
                        keys.extend(new)
                        keys_tuple = tuple(keys)
                    result = store.write_batch(SeriesBatch(keys_tuple, series, times, values, status))
                elif method == "close":
                    closing, closed = True, None
                    try:
                        store.close()
                    except Exception as exc:  # noqa: BLE001
                        closed = _portable(exc)
                    conn.send((closed is None, closed))
                    return
                elif method in _FORWARDED:
                    result = getattr(store, method)(*args, **kwargs)
                else:
                    raise StoreError(f"ProcessStore: unknown method {method!r}")
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
                conn.send((False, _portable(exc)))
            else:
                conn.send((True, result))
    finally:
        if not closing:
            store.close()

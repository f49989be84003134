"""Fan-out of the per-machine fits and scoring: in this process, over joblib worker processes on one box, or over a
Dask distributed cluster when ``analytics.cluster`` (``wattline analyze --cluster``) names a scheduler.

The one implementation of the parallel map every analysis uses (:func:`Fanout.map`). Each item is one independent
unit (a baseline scope, a machine's anomaly detector) that carries its own data; items are batched per partition
key, the site, so a task never mixes sites and a multi-site plant spreads site by site. Results come back in the
items' order whatever the engine, so the fan-out never changes a result: the same function runs on the same item in
every mode. A failure of one item names it (the machine or scope) and the worker it ran on.

Workers of a Dask cluster must run the same Wattline release (the task functions are sent by reference and imported
there): start them with ``dask worker tcp://scheduler:8786`` from the same installation.
"""

from __future__ import annotations

import math
import os
import re
import socket
import traceback
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from analytics.errors import AnalyticsError
from core.config import FrozenModel

#: With ``jobs`` unset, smaller data are fitted in the analysing process: starting worker processes (each imports
#: scikit-learn and pandas, 2-8 s on a loaded 2-core box) costs more than the fits of about 10 machine-years
#: (docs/operations.md, "Sizing") [machines x 15-min windows].
AUTO_MIN_WINDOWS = 1_000_000
#: Time to reach the Dask scheduler [s].
CONNECT_TIMEOUT_S = 30.0
#: A Dask scheduler address: tcp:// or tls:// host and port.
_ADDRESS = re.compile(r"^(tcp|tls)://[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


class ParallelSettings(FrozenModel):
    """Where the per-machine fits and scoring run (``analytics`` in the service config)."""

    cluster: str | None = Field(None, description="Dask scheduler address (tcp://host:8786): fits and scoring run on "
                                "its workers. None: on this box.")
    jobs: int | None = Field(None, ge=1, le=256, description="Worker processes on this box when no cluster is named "
                             "(joblib); 1 runs everything in the analysing process. Default: one per CPU core for "
                             "data of at least AUTO_MIN_WINDOWS machine-windows, else in the analysing process.")

    @field_validator("cluster")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not _ADDRESS.match(value.strip()):
            raise ValueError(f"{value!r} is not a Dask scheduler address; give tcp://host:port (e.g. "
                             "tcp://analytics-1:8786, what 'dask scheduler' prints) or leave it out to run on this box")
        return None if value is None else value.strip()


class WorkerError(AnalyticsError):
    """An item failed in a worker (or the worker died); the message names the item and the worker."""


@dataclass(frozen=True)
class _Failed:
    label: str
    error: str
    trace: str
    host: str


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _run_batch(fn: Callable[[Any, Any], Any], batch: list[tuple[str, Any]], shared: Any) -> list[Any]:
    """Run ``fn`` on each item of a batch (in a worker); a failing item becomes a :class:`_Failed` naming it."""
    out: list[Any] = []
    for label, item in batch:
        try:
            out.append(fn(item, shared))
        except Exception as exc:  # noqa: BLE001 - reported in the caller with the item named; the batch's other items run
            out.append(_Failed(label, f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=6),
                               socket.gethostname() + f" pid {os.getpid()}"))
    return out


class Fanout:
    """Runs independent items in this process, over joblib processes or on a Dask cluster (see the module docstring).

    Use as a context manager (the cluster connection and worker processes live for the block)::

        with Fanout(ParallelSettings(cluster="tcp://analytics-1:8786")) as fan:
            results = fan.map(fit_one, items, labels, partitions, what="baseline")

    Parameters
    ----------
    settings : ParallelSettings, optional
        Default: joblib processes on this box, as many as cores, when ``work`` is large enough.
    work : int, optional
        Size of the data [machines x windows] (settable later, once the data are read): with ``jobs`` unset, under
        :data:`AUTO_MIN_WINDOWS` everything runs in this process.
    """

    def __init__(self, settings: ParallelSettings | None = None, work: int | None = None) -> None:
        self.settings = settings or ParallelSettings()
        self.work = work
        self._client: Any = None
        self.workers = 1 if self.settings.cluster else (self.settings.jobs or _cores())

    @property
    def mode(self) -> str:
        """``"dask"``, ``"joblib"`` or ``"serial"``."""
        if self.settings.cluster:
            return "dask"
        if self.settings.jobs is None and (self.work or 0) < AUTO_MIN_WINDOWS:
            return "serial"
        return "serial" if self.workers <= 1 else "joblib"

    def __enter__(self) -> Fanout:
        if self.mode == "dask":
            try:
                from distributed import Client

                self._client = Client(self.settings.cluster, timeout=CONNECT_TIMEOUT_S,
                                      set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise AnalyticsError(f"analytics.cluster: cannot reach the Dask scheduler {self.settings.cluster} "
                                     f"within {CONNECT_TIMEOUT_S:g} s ({exc}); start it with 'dask "
                                     "scheduler' and workers with 'dask worker ADDRESS', or leave analytics.cluster "
                                     "out to run on this box") from None
            try:  # a scheduler without workers would hold the tasks forever
                self._client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
            except TimeoutError:
                self._client.close()
                self._client = None
                raise AnalyticsError(f"analytics.cluster: the Dask scheduler {self.settings.cluster} has no worker "
                                     f"(none joined within {CONNECT_TIMEOUT_S:g} s); start workers with 'dask worker "
                                     f"{self.settings.cluster}' on the analytics hosts") from None
            self.workers = max(1, len(self._client.scheduler_info(n_workers=-1).get("workers", {})))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def map(self, fn: Callable[[Any, Any], Any], items: Iterable[Any], labels: Sequence[str],
            partitions: Sequence[Hashable], what: str, shared: Any = None) -> list[Any]:
        """``[fn(item, shared) for item in items]``, fanned out.

        Parameters
        ----------
        fn : callable
            A module-level function (workers import it by name).
        items : iterable
            One per unit of work, in order; consumed lazily, so building an item (its data) can wait until it is
            sent.
        labels : sequence of str
            Name of each item for errors (the machine path or scope).
        partitions : sequence
            Partition key of each item (the site): a batch holds items of one partition only.
        what : str
            What the items are, for errors ("anomaly detector", "baseline").
        shared : object, optional
            Small object every call gets (settings).

        Raises
        ------
        WorkerError
            An item raised (the first failing one is named, with its error and worker) or a worker died.
        """
        n = len(labels)
        if len(partitions) != n:
            raise AnalyticsError(f"{what}: {n} labels but {len(partitions)} partition keys")
        if n == 0:
            return []
        spans = self._batches(partitions)
        it = iter(items)

        def batches() -> Iterable[list[tuple[str, Any]]]:
            for a, b in spans:
                yield [(labels[k], next(it)) for k in range(a, b)]

        if self.mode == "dask" and self._client is not None:
            parts = self._map_dask(fn, batches(), spans, labels, what, shared)
        elif self.mode == "joblib" and len(spans) > 1:
            from joblib import Parallel, delayed

            try:  # loky keeps its worker processes between maps (imports paid once per analysing process)
                parts = Parallel(n_jobs=self.workers, backend="loky", return_as="list")(
                    delayed(_run_batch)(fn, batch, shared) for batch in batches())
            except Exception as exc:  # noqa: BLE001 - a dead worker process (TerminatedWorkerError), an unpicklable result
                raise WorkerError(f"{what}: a worker process failed while fitting {n} item(s) ({labels[0]} ...): "
                                  f"{type(exc).__name__}: {exc}") from None
        else:
            parts = [_run_batch(fn, batch, shared) for batch in batches()]
        out = [r for part in parts for r in part]
        for r in out:
            if isinstance(r, _Failed):
                raise WorkerError(f"{what} of {r.label} failed on {r.host}: {r.error}\n{r.trace}")
        return out

    def _batches(self, partitions: Sequence[Hashable]) -> list[tuple[int, int]]:
        """Index spans ``[a, b)``: runs of one partition key, cut so that every worker gets about four batches (few
        round trips, yet a slow batch does not hold the rest)."""
        n = len(partitions)
        size = n if self.mode == "serial" else max(1, math.ceil(n / (4 * max(self.workers, 1))))
        spans, a = [], 0
        for k in range(1, n + 1):
            if k == n or partitions[k] != partitions[a] or k - a >= size:
                spans.append((a, k))
                a = k
        return spans

    def _map_dask(self, fn: Callable, batches: Iterable[list], spans: list[tuple[int, int]], labels: Sequence[str],
                  what: str, shared: Any) -> list[list[Any]]:
        """Submit the batches with at most two per worker in flight (the coordinator holds only those items' data),
        gather in order."""
        from distributed import as_completed

        client = self._client
        results: list[Any] = [None] * len(spans)
        index: dict[str, int] = {}
        limit = 2 * self.workers
        pending = iter(enumerate(batches))
        first: list[Any] = []

        def submit_next() -> bool:
            try:
                j, batch = next(pending)
            except StopIteration:
                return False
            fut = client.submit(_run_batch, fn, batch, shared, pure=False)
            index[fut.key] = j
            if done is None:
                first.append(fut)
            else:
                done.add(fut)
            return True

        done = None
        for _ in range(limit):
            if not submit_next():
                break
        done = as_completed(first, loop=client.loop)
        for fut in done:
            j = index.pop(fut.key)
            if fut.status == "error":
                a, b = spans[j]
                exc = fut.exception()
                names = ", ".join(labels[a:b][:5]) + (" ..." if b - a > 5 else "")
                raise WorkerError(f"{what} of {names} failed on the Dask cluster {self.settings.cluster}: "
                                  f"{type(exc).__name__}: {exc}")
            results[j] = fut.result()
            fut.release()
            submit_next()
        return results

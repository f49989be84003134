"""Results beside the series: the analytics' findings and model outputs, kept per run.

A *run* is one execution of an analysis (``run`` id chosen by the caller, e.g. ``"baseline-2026-12-02T17:00"``). What
it produces is stored in the same store as the measured series, so that the dashboard, Grafana and the API read it
from one place:

- **findings**: :class:`core.model.Event` objects (the schema the simulator's ground truth uses too). The extra facts
  of a finding travel in ``Event.details`` under fixed keys (:data:`FINDING_KEYS`): ``cost`` [currency], ``co2_kg``
  [kg], ``severity`` [0-1, higher is worse] and ``explanation`` (text for a person). They are stored as columns /
  fields of their own so that Grafana can sum them; every other detail is kept as JSON.
- **outputs**: model outputs as series, e.g. a baseline as measurement ``wattline_baseline`` with field
  ``expected_kwh`` and tags ``machine`` and ``run``: a Grafana panel plots it beside the measured energy, and
  :meth:`core.storage.base.Store.query` reads it like any series.

Writing a run's findings or an output again replaces what the run wrote before (``replace=True``); other runs are
never touched. :meth:`ResultStore.delete_run` removes everything of a run.

Use :func:`results_for` to get the implementation that fits a store; callers never name a backend class.
"""

from __future__ import annotations

import abc
import datetime as dt
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from core.errors import StoreError
from core.model import EVENT_KINDS, Event, from_ns, to_ns

if TYPE_CHECKING:
    import pandas as pd

    from core.storage.base import Store

#: Keys of ``Event.details`` that are stored as typed columns / fields of their own (numbers, then text).
FINDING_NUMBERS = ("cost", "co2_kg", "severity")
FINDING_TEXTS = ("explanation",)
FINDING_KEYS = FINDING_NUMBERS + FINDING_TEXTS
#: Measurement of model outputs called ``name``: ``wattline_<name>``.
OUTPUT_PREFIX = "wattline_"
#: Largest time a store holds (InfluxDB's limit is in April 2262) [ns].
END_NS = to_ns("2262-01-01T00:00:00+00:00")

_RUN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class RunInfo:
    """One stored run.

    Parameters
    ----------
    run : str
        Run id.
    created : datetime
        When the run was first written (aware, UTC).
    kind : str
        Kind of run (``"analysis"``, ``"baseline"``, ...), as given by the writer.
    findings : int
        Findings stored for the run.
    outputs : dict
        Output name -> number of values stored for it.
    """

    run: str
    created: dt.datetime
    kind: str
    findings: int
    outputs: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (time as ISO 8601 UTC)."""
        return {"run": self.run, "created": self.created.isoformat(), "kind": self.kind, "findings": self.findings,
                "outputs": dict(self.outputs)}


class ResultStore(abc.ABC):
    """Findings and model outputs of analysis runs, stored beside the series of a :class:`~core.storage.base.Store`."""

    #: Short description for logs (no secrets).
    description: str = ""

    @abc.abstractmethod
    def write_findings(self, run: str, events: Iterable[Event | Mapping[str, Any]], replace: bool = True, *,
                       run_kind: str = "analysis") -> int:
        """Store the findings of ``run``.

        Parameters
        ----------
        run : str
            Run id: letters, digits and ``_ . : + -``, up to 128 characters.
        events : iterable of Event or mapping
            Findings; mappings are read with :meth:`core.model.Event.from_dict`. Extra facts go in ``details``
            (:data:`FINDING_KEYS` are stored typed).
        replace : bool
            Remove the findings ``run`` stored before (True), or add to them (False).
        run_kind : str
            Kind of run recorded with it (shown by :meth:`runs`).

        Returns
        -------
        int
            Number of findings written.

        Raises
        ------
        StoreError
            For a bad run id, an unknown kind, a naive datetime or a detail that is not JSON; nothing is written then.
        """

    @abc.abstractmethod
    def query_findings(self, start: Any = None, stop: Any = None, kinds: Sequence[str] | None = None,
                       machines: Sequence[str] | None = None, run: str | None = None) -> list[Event]:
        """Findings overlapping ``[start, stop)`` (each end optional), sorted by start, machine, kind.

        ``machines`` matches the machine path (``site/line/machine``) or the machine tag alone.
        """

    @abc.abstractmethod
    def delete_run(self, run: str) -> int:
        """Remove the findings, outputs and record of ``run``; returns the number of findings removed."""

    @abc.abstractmethod
    def runs(self) -> list[RunInfo]:
        """Every stored run, newest first."""

    @abc.abstractmethod
    def write_outputs(self, run: str, name: str, frame: pd.DataFrame, replace: bool = True, *,
                      run_kind: str = "analysis") -> int:
        """Store model outputs of ``run`` as series of measurement ``wattline_<name>``.

        Parameters
        ----------
        run : str
            Run id (added to every series as tag ``run``).
        name : str
            Output name: lower-case letters, digits, ``_`` (e.g. ``"baseline"``).
        frame : DataFrame
            Long form: ``time`` (aware datetimes or [ns]), tag columns (text, e.g. ``machine``) and one numeric column
            per field (e.g. ``expected_kwh`` [kWh]). NaN values are stored as missing; a series whose values are all
            NaN is not written (reading gives NaN there all the same).
        replace : bool
            Remove what ``run`` stored under ``name`` before.

        Returns
        -------
        int
            Number of values written.
        """

    def read_outputs(self, name: str, start: Any = None, stop: Any = None, run: str | None = None,
                     machines: Sequence[str] | None = None, fields: Sequence[str] | None = None,
                     tags: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Model outputs called ``name`` in ``[start, stop)``.

        Parameters
        ----------
        name : str
            Output name given to :meth:`write_outputs`.
        start, stop : datetime, ISO string or int [ns], optional
            Range; the whole history when omitted.
        run : str, optional
            Only this run; the newest run that wrote ``name`` when omitted.
        machines : sequence of str, optional
            Only series whose ``machine`` tag is one of these.
        fields : sequence of str, optional
            Only these fields; all that the run wrote when omitted.
        tags : mapping, optional
            More tag filters (tag -> value or list of values), e.g. ``{"site": "north", "line": "l1"}``.

        Returns
        -------
        DataFrame
            Columns ``time`` (UTC), ``run``, the tag columns, then one column per field; sorted by tags and time.
            Empty when nothing matches.
        """
        import pandas as pd

        check_name(name)
        lo = 0 if start is None else _time_ns(start, "start")
        hi = END_NS if stop is None else _time_ns(stop, "stop")
        if run is None:
            run = next((r.run for r in self.runs() if name in r.outputs), None)
            if run is None:
                return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "run": pd.Series([], dtype=object)})
        check_run(run)
        wanted = list(fields) if fields is not None else self._output_fields(run, name)
        where: dict[str, Any] = {**(tags or {}), "run": run}
        if machines is not None:
            where["machine"] = [str(m) for m in machines]
        merged = None
        for field_name in wanted:
            part = self.series_store.query(OUTPUT_PREFIX + name, field_name, lo, hi, tags=where)
            part = part.drop(columns=["status"], errors="ignore").rename(columns={"value": field_name})
            if merged is None:
                merged = part
            else:
                keys = [c for c in part.columns if c != field_name and c in merged.columns]
                merged = merged.merge(part, on=keys, how="outer")
        if merged is None or merged.empty:
            return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "run": pd.Series([], dtype=object)})
        tag_cols = [c for c in merged.columns if c not in ("time", "run", *wanted)]
        merged = merged.sort_values([*tag_cols, "time"]).reset_index(drop=True)
        return merged[["time", "run", *sorted(tag_cols), *wanted]]

    #: The store whose ``query`` reads outputs (set by implementations).
    series_store: Store

    @abc.abstractmethod
    def _output_fields(self, run: str, name: str) -> list[str]:
        """Fields ``run`` wrote under output ``name`` (empty when none)."""

    def close(self) -> None:  # noqa: B027 - a no-op default; result stores that own a connection override it
        """Release what this result store opened itself (never the store it was made for)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def results_for(store: Store) -> ResultStore:
    """Return the result store that keeps results beside the series of ``store``.

    SQLite: tables in the same file. A :class:`~core.storage.process.ProcessStore`: the same file (or server) opened
    in this process (SQLite in WAL mode serves both). InfluxDB: measurements ``wattline_findings``, ``wattline_runs``
    and ``wattline_<output>`` in the store's bucket.

    Raises
    ------
    StoreError
        For a store without results support.
    """
    from core.storage.process import ProcessStore
    from core.storage.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        from core.storage.results_sqlite import SQLiteResultStore

        return SQLiteResultStore(store)
    influx = sys.modules.get("core.storage.influx")  # not imported: the store cannot be an InfluxStore
    if influx is not None and isinstance(store, influx.InfluxStore):
        from core.storage.results_influx import InfluxResultStore

        return InfluxResultStore(store)
    if isinstance(store, ProcessStore):
        from core.storage import open_store

        # The child process writes the series; results are written rarely, from this process, to the same place.
        inner = open_store(store.url)
        results = results_for(inner)
        results._owned = inner  # type: ignore[attr-defined]
        return results
    raise StoreError(f"{type(store).__name__} ({store.description}) cannot store results; use SQLite or InfluxDB")


# -- validation and conversion shared by the backends ---------------------------------------------------------------------
def check_run(run: Any) -> str:
    """Return ``run`` when it is a valid run id, else raise StoreError naming it."""
    if not isinstance(run, str) or not _RUN_RE.match(run):
        raise StoreError(f"invalid run id {run!r}: use 1-128 letters, digits and _ . : + - (starting with a letter "
                         "or digit)")
    return run


def check_name(name: Any, what: str = "output name") -> str:
    """Return ``name`` when it is a valid output name / run kind, else raise StoreError naming it."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise StoreError(f"invalid {what} {name!r}: use lower-case letters, digits and _, starting with a letter")
    return name


def check_kinds(kinds: Sequence[str] | None) -> list[str] | None:
    """Validate a kind filter; raise StoreError naming an unknown kind."""
    if kinds is None:
        return None
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    for kind in kinds:
        if kind not in EVENT_KINDS:
            raise StoreError(f"unknown finding kind {kind!r}; valid kinds: {', '.join(EVENT_KINDS)}")
    return kinds


def _time_ns(value: Any, what: str) -> int:
    try:
        return to_ns(value)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"findings {what} {value!r}: {exc}") from exc


def range_ns(start: Any, stop: Any) -> tuple[int, int]:
    """``[start, stop)`` in [ns]; open ends become the whole history. Naive datetimes raise StoreError."""
    lo = 0 if start is None else _time_ns(start, "start")
    hi = END_NS if stop is None else _time_ns(stop, "stop")
    if hi <= lo:
        raise StoreError(f"findings range is empty: stop ({stop}) must be after start ({start})")
    return lo, hi


def as_event(item: Event | Mapping[str, Any], index: int) -> Event:
    """An :class:`Event` from an Event or its JSON form; StoreError naming the finding and the bad value otherwise."""
    if isinstance(item, Event):
        event = item
    elif isinstance(item, Mapping):
        try:
            event = Event.from_dict(item)
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"finding #{index}: {exc} (in {dict(item)!r})") from exc
    else:
        raise StoreError(f"finding #{index} is a {type(item).__name__}, not a core.model.Event or its dict form")
    # Event checks these in __post_init__, but an Event can be built around it (dataclasses.replace, object.__new__).
    if event.kind not in EVENT_KINDS:
        raise StoreError(f"finding #{index}: unknown kind {event.kind!r}; valid kinds: {', '.join(EVENT_KINDS)}")
    for what in ("start", "end"):
        when = getattr(event, what)
        if not isinstance(when, dt.datetime) or when.tzinfo is None:
            raise StoreError(f"finding #{index}: {what} {when!r} has no time zone; give it an offset such as +00:00")
    if event.end < event.start:
        raise StoreError(f"finding #{index}: end {event.end.isoformat()} is before start {event.start.isoformat()}")
    if not event.machine:
        raise StoreError(f"finding #{index}: machine is empty")
    return event


@dataclass(frozen=True)
class FindingRow:
    """A finding flattened for storage: tags, typed columns and the remaining details as JSON."""

    kind: str
    machine: str
    site: str
    line: str
    machine_tag: str
    start_ns: int
    end_ns: int
    excess_kwh: float
    numbers: dict[str, float]
    texts: dict[str, str]
    details_json: str


def finding_row(event: Event, index: int) -> FindingRow:
    """Flatten ``event``; StoreError naming the detail when a typed detail has the wrong type or details are not JSON."""
    details = dict(event.details or {})
    numbers: dict[str, float] = {}
    texts: dict[str, str] = {}
    for key in FINDING_NUMBERS:
        if key in details and details[key] is not None:
            value = details.pop(key)
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if isinstance(value, bool) or not math.isfinite(number):
                raise StoreError(f"finding #{index} ({event.machine}, {event.kind}): details[{key!r}] = {value!r} is "
                                 "not a finite number")
            numbers[key] = number
    for key in FINDING_TEXTS:
        if key in details and details[key] is not None:
            value = details.pop(key)
            if not isinstance(value, str):
                raise StoreError(f"finding #{index} ({event.machine}, {event.kind}): details[{key!r}] = {value!r} is "
                                 "not text")
            texts[key] = value
    try:
        details_json = json.dumps(details, ensure_ascii=False, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"finding #{index} ({event.machine}, {event.kind}): details are not JSON: {exc}") from exc
    excess = float(event.excess_kwh)
    if not math.isfinite(excess):
        raise StoreError(f"finding #{index} ({event.machine}, {event.kind}): excess_kwh {event.excess_kwh!r} is not "
                         "a finite number")
    parts = event.machine.split("/")
    site, line, tag = (parts if len(parts) == 3 and all(parts) else ("", "", event.machine))
    return FindingRow(event.kind, event.machine, site, line, tag, to_ns(event.start), to_ns(event.end), excess,
                      numbers, texts, details_json)


def finding_event(kind: str, site: str, line: str, machine_tag: str, start_ns: int, end_ns: int, excess_kwh: float,
                  numbers: Mapping[str, Any], texts: Mapping[str, Any], details_json: str | None) -> Event:
    """Rebuild an :class:`Event` from its stored form (typed details merged back into ``details``)."""
    details = json.loads(details_json) if details_json else {}
    for key in FINDING_NUMBERS:
        value = numbers.get(key)
        if value is not None and not math.isnan(float(value)):
            details[key] = float(value)
    for key in FINDING_TEXTS:
        value = texts.get(key)
        if value is not None:
            details[key] = value
    machine = f"{site}/{line}/{machine_tag}" if site and line else machine_tag
    return Event(machine, kind, from_ns(int(start_ns)), from_ns(int(end_ns)), float(excess_kwh), details)


def machine_matches(event: Event, machines: Sequence[str] | None) -> bool:
    """True when ``machines`` is None or names the event's machine path or its machine tag."""
    if machines is None:
        return True
    wanted = {machines} if isinstance(machines, str) else set(machines)
    return event.machine in wanted or event.machine.rsplit("/", 1)[-1] in wanted


def sort_events(events: list[Event]) -> list[Event]:
    """Findings in a stable order: start, machine, kind, end."""
    return sorted(events, key=lambda e: (e.start, e.machine, e.kind, e.end))


def output_columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Split an outputs frame into tag columns (text) and field columns (numbers); StoreError naming a bad column."""
    import pandas as pd

    if "time" not in frame.columns:
        raise StoreError(f"an outputs frame needs a 'time' column; it has {list(frame.columns)}")
    tags, fields = [], []
    for col in frame.columns:
        if col == "time":
            continue
        if not isinstance(col, str) or not col:
            raise StoreError(f"outputs column {col!r}: column names must be non-empty text")
        if col in ("run", "wattline_status", "wattline_missing"):
            raise StoreError(f"outputs column {col!r} is reserved; rename it")
        if pd.api.types.is_bool_dtype(frame[col]) or pd.api.types.is_numeric_dtype(frame[col]):
            fields.append(col)
        else:
            tags.append(col)
    if not fields:
        raise StoreError(f"an outputs frame needs at least one numeric column; it has {list(frame.columns)}")
    return tags, fields


def output_times_ns(frame: pd.DataFrame):
    """The ``time`` column as int64 [ns]; StoreError for naive times."""
    import numpy as np
    import pandas as pd

    col = frame["time"]
    if pd.api.types.is_integer_dtype(col):
        return col.to_numpy(dtype=np.int64)
    if pd.api.types.is_datetime64_any_dtype(col):
        if getattr(col.dt, "tz", None) is None:
            raise StoreError("outputs column 'time' holds naive datetimes; give them a time zone (e.g. tz='UTC')")
        return col.dt.tz_convert("UTC").dt.as_unit("ns").astype("int64").to_numpy()
    try:
        return np.array([to_ns(t) for t in col], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"outputs column 'time': {exc}") from exc


def write_output_series(store: Store, run: str, name: str, frame: pd.DataFrame) -> tuple[int, list[str]]:
    """Write an outputs frame as series of ``wattline_<name>`` tagged with ``run`` through ``store.write_arrays``.

    Returns
    -------
    tuple
        (values written, field names).
    """
    import numpy as np
    import pandas as pd

    from core.model import SeriesKey

    tags, fields = output_columns(frame)
    times = output_times_ns(frame)
    measurement = OUTPUT_PREFIX + name
    n = 0
    groups = frame.groupby(tags, sort=True, dropna=False).indices if tags else {(): np.arange(len(frame))}
    for values, index in groups.items():
        values = values if isinstance(values, tuple) else (values,)
        tag_dict = {"run": run}
        for tag, value in zip(tags, values):
            if value is None or pd.isna(value):
                continue  # a missing tag value: the series simply has no such tag
            tag_dict[tag] = str(value)
        for field_name in fields:
            column = frame[field_name].to_numpy(dtype=float)[index]
            if not np.isfinite(column).any():
                continue  # nothing known (e.g. good units of a machine that counts none): no series at all
            # A run's outputs are history written at once: the bulk layout (SQLite's columnar chunks) writes a year
            # of hourly outputs per machine several times faster than the row path, with the same semantics.
            n += store.write_arrays(SeriesKey.of(measurement, tag_dict, field_name), times[index], column, bulk=True)
    return n, fields

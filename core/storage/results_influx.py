"""Results in an InfluxDB bucket, beside the series, so that Grafana and Flux read them like any data.

Layout (in the store's raw bucket):

- ``wattline_findings``: one point per finding, stamped with its start; tags ``run``, ``kind``, ``site``, ``line``,
  ``machine`` (a machine given without a ``site/line/machine`` path has only the ``machine`` tag); fields
  ``excess_kwh`` [kWh], ``cost`` [currency], ``co2_kg`` [kg], ``severity`` [0-1], ``end`` [ns, integer],
  ``explanation`` and ``details`` (JSON of the other details). Text is stored with JSON string escapes (a newline
  as ``\\n``), so that no line of line protocol ever contains a raw newline; ordinary text reads as it was written.
- ``wattline_runs``: one point per run, stamped with its creation time; tag ``run``; fields ``kind`` and
  ``outputs`` (JSON: output name -> fields and number of values).
- ``wattline_<name>``: model outputs, ordinary series with a ``run`` tag (rolled up like every series).

Two findings of one run with the same machine, kind and start would be one point in InfluxDB; the later ones are
shifted by a few nanoseconds, which the microsecond resolution of :class:`core.model.Event` never shows.
Writes go through the store's write path (line protocol, spool when the server is away) and are flushed before a
call returns, so a query right after sees them. A run is removed with InfluxDB's delete API (predicate
``_measurement="..." AND run="..."``) in the raw bucket and, for outputs, in the rollup buckets too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core.errors import StoreError, StoreUnavailable
from core.model import Event, from_ns
from core.storage.base import ROLLUP_RESOLUTIONS_S
from core.storage.influx_flux import END_OF_TIME, RESULT_RECORDS, rollup_bucket
from core.storage.influx_lp import LineEncoder, escape_string_field, flux_str, flux_time
from core.storage.results import (
    END_NS,
    FINDING_NUMBERS,
    FINDING_TEXTS,
    OUTPUT_PREFIX,
    ResultStore,
    RunInfo,
    as_event,
    check_kinds,
    check_name,
    check_run,
    finding_event,
    finding_row,
    machine_matches,
    range_ns,
    sort_events,
    write_output_series,
)

if TYPE_CHECKING:
    import pandas as pd

    from core.storage.influx import InfluxStore

FINDINGS, RUNS = RESULT_RECORDS
_DROP = '  |> drop(columns: ["_start", "_stop", "_measurement"])\n'


def _text_field(text: str) -> str:
    """A string field value: JSON escapes (no raw newline), then line protocol's quote/backslash escapes."""
    return '"' + escape_string_field(json.dumps(str(text), ensure_ascii=False)[1:-1]) + '"'


def _read_text(stored: str) -> str:
    return json.loads('"' + stored + '"')


class InfluxResultStore(ResultStore):
    """Results in the bucket of an :class:`~core.storage.influx.InfluxStore` (see the module docstring)."""

    series_store: InfluxStore  # (the base class's Store: here always the InfluxStore whose bucket holds the results)

    def __init__(self, store: InfluxStore) -> None:
        self.series_store = store
        self.description = f"results in {store.description}"
        self._encoder = LineEncoder()
        self._owned = None

    def close(self) -> None:
        """Close a store opened for a ProcessStore; the given store stays open."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    # -- plumbing ------------------------------------------------------------------------------------------------------
    def _table(self, flux: str) -> pd.DataFrame:
        return self.series_store._table(flux)

    def _write(self, lines: list[str]) -> None:
        store = self.series_store
        store.write_line_protocol(lines)
        store.flush(refresh_rollups=True)
        if len(store.spool):
            raise StoreUnavailable(f"InfluxDB {store.description} did not take the results; they are kept in the "
                                   f"spool {store.spool.folder} and written when it is back")

    def _delete(self, measurement: str, run: str, rollups: bool = False) -> None:
        """Delete the points of ``measurement`` tagged ``run`` (all time) in the raw bucket and maybe the rollups."""
        store = self.series_store
        s = store.settings
        buckets = [s.bucket]
        if rollups and store.rollups_ready():
            buckets += [rollup_bucket(s.bucket, r) for r in ROLLUP_RESOLUTIONS_S]
        # Run ids and names are checked against a strict pattern: no quote can end the predicate's string early.
        predicate = f'_measurement="{measurement}" AND run="{run}"'
        api = store._client.delete_api()
        for bucket in buckets:
            try:
                api.delete(start="1970-01-01T00:00:00Z", stop=END_OF_TIME, predicate=predicate, bucket=bucket,
                           org=s.org)
            except Exception as exc:
                status = getattr(exc, "status", None)
                if status is not None and status < 500:
                    raise StoreError(f"InfluxDB {store.description} refused to delete run {run!r} from {bucket}: "
                                     f"{exc}") from exc
                raise StoreUnavailable(f"InfluxDB {store.description}: cannot delete run {run!r} from {bucket}: "
                                       f"{exc}") from exc
        invalidate = getattr(store, "invalidate_series_cache", None)
        if invalidate is not None:
            invalidate()

    # -- runs ----------------------------------------------------------------------------------------------------------
    def _run_records(self, run: str | None = None) -> dict[str, tuple[int, str, dict]]:
        """run -> (created [ns], kind, outputs {name: {"fields": [...], "n": n}})."""
        from core.storage.influx import _times_ns

        where = f" and r.run == {flux_str(run)}" if run is not None else ""
        frame = self._table(
            f"from(bucket: {flux_str(self.series_store.settings.bucket)})\n"
            f"  |> range(start: 0, stop: {END_OF_TIME})\n"
            f"  |> filter(fn: (r) => r._measurement == {flux_str(RUNS)}{where})\n"
            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n' + _DROP
        )
        records: dict[str, tuple[int, str, dict]] = {}
        if frame.empty:
            return records
        times = _times_ns(frame["_time"]).tolist()
        for row, t in zip(frame.to_dict("records"), times):
            outputs = json.loads(_read_text(row.get("outputs") or "{}") or "{}")
            records[row["run"]] = (int(t), _read_text(row.get("kind", "")), outputs)
        return records

    def _record_line(self, run: str, created_ns: int, kind: str, outputs: dict) -> str:
        return (f"{self._encoder.prefix(RUNS, {'run': run})} kind={_text_field(kind)},"
                f"outputs={_text_field(json.dumps(outputs, sort_keys=True))} {int(created_ns)}")

    def _touch_run(self, run: str, run_kind: str, outputs: dict | None = None) -> list[str]:
        import time

        old = self._run_records(run).get(run)
        created, kind, stored = old if old is not None else (time.time_ns(), run_kind, {})
        if outputs is not None:
            stored = outputs
        return [self._record_line(run, created, kind, stored)]

    def runs(self) -> list[RunInfo]:
        records = self._run_records()
        counts: dict[str, int] = {}
        frame = self._table(
            f"from(bucket: {flux_str(self.series_store.settings.bucket)})\n"
            f"  |> range(start: 0, stop: {END_OF_TIME})\n"
            f'  |> filter(fn: (r) => r._measurement == {flux_str(FINDINGS)} and r._field == "excess_kwh")\n'
            '  |> group(columns: ["run"])\n  |> count()\n'
        )
        for row in frame.to_dict("records") if not frame.empty else []:
            counts[row["run"]] = int(row["_value"])
        infos = [RunInfo(run, from_ns(created), kind, counts.get(run, 0),
                         {name: int(o.get("n", 0)) for name, o in sorted(outputs.items())})
                 for run, (created, kind, outputs) in records.items()]
        return sorted(infos, key=lambda r: (-r.created.timestamp(), r.run))

    def delete_run(self, run: str) -> int:
        check_run(run)
        record = self._run_records(run).get(run)
        before = len(self.query_findings(run=run))
        self._delete(FINDINGS, run)
        for name in (record[2] if record else {}):
            self._delete(OUTPUT_PREFIX + name, run, rollups=True)
        self._delete(RUNS, run)
        return before

    # -- findings ------------------------------------------------------------------------------------------------------
    def write_findings(self, run: str, events: Iterable[Event | Mapping[str, Any]], replace: bool = True, *,
                       run_kind: str = "analysis") -> int:
        check_run(run)
        check_name(run_kind, "run kind")
        rows = [finding_row(as_event(item, i), i) for i, item in enumerate(events)]  # all checked before writing
        lines = []
        seen: dict[tuple, int] = {}
        for row in rows:
            tags = {"run": run, "kind": row.kind, "site": row.site, "line": row.line, "machine": row.machine_tag}
            identity = (row.kind, row.site, row.line, row.machine_tag, row.start_ns)
            shift = seen[identity] = seen.get(identity, -1) + 1
            if shift >= 1000:
                raise StoreError(f"run {run!r}: more than 1000 findings of {row.machine} {row.kind} start at "
                                 f"{from_ns(row.start_ns).isoformat()}")
            fields = [f"excess_kwh={row.excess_kwh!r}"]
            fields += [f"{k}={float(v)!r}" for k, v in row.numbers.items()]
            fields.append(f"end={row.end_ns}i")
            fields += [f"{k}={_text_field(v)}" for k, v in row.texts.items()]
            fields.append(f"details={_text_field(row.details_json)}")
            lines.append(f"{self._encoder.prefix(FINDINGS, tags)} {','.join(fields)} {row.start_ns + shift}")
        if replace:
            self._delete(FINDINGS, run)
        self._write(self._touch_run(run, run_kind) + lines)
        return len(rows)

    def query_findings(self, start: Any = None, stop: Any = None, kinds: Sequence[str] | None = None,
                       machines: Sequence[str] | None = None, run: str | None = None) -> list[Event]:
        from core.storage.influx import _times_ns

        lo, hi = range_ns(start, stop)
        kinds = check_kinds(kinds)
        where = [f"r._measurement == {flux_str(FINDINGS)}"]
        if run is not None:
            where.append(f"r.run == {flux_str(check_run(run))}")
        if kinds is not None:
            where.append("(" + " or ".join(f"r.kind == {flux_str(k)}" for k in kinds) + ")")
        frame = self._table(
            f"from(bucket: {flux_str(self.series_store.settings.bucket)})\n"
            f"  |> range(start: 0, stop: {flux_time(min(hi, END_NS))})\n"
            f"  |> filter(fn: (r) => {' and '.join(where)})\n"
            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
            f'  |> filter(fn: (r) => r["end"] > {int(lo)})\n' + _DROP
        )
        if frame.empty:
            return []
        starts = _times_ns(frame["_time"]).tolist()
        events = []
        for row, start_ns in zip(frame.to_dict("records"), starts):
            numbers = {k: float(row[k]) for k in FINDING_NUMBERS if row.get(k, "") != ""}
            texts = {k: _read_text(row[k]) for k in FINDING_TEXTS if row.get(k, "") != ""}
            event = finding_event(row["kind"], row.get("site", ""), row.get("line", ""), row["machine"], start_ns,
                                  int(row["end"]), float(row["excess_kwh"]), numbers, texts,
                                  _read_text(row.get("details", "") or "{}"))
            if machine_matches(event, machines):
                events.append(event)
        return sort_events(events)

    # -- outputs -------------------------------------------------------------------------------------------------------
    def write_outputs(self, run: str, name: str, frame: pd.DataFrame, replace: bool = True, *,
                      run_kind: str = "analysis") -> int:
        check_run(run)
        check_name(name)
        check_name(run_kind, "run kind")
        record = self._run_records(run).get(run)
        outputs = dict(record[2]) if record else {}
        if replace:
            self._delete(OUTPUT_PREFIX + name, run, rollups=True)
            outputs.pop(name, None)
        n, fields = write_output_series(self.series_store, run, name, frame)
        old = outputs.get(name, {"fields": [], "n": 0})
        outputs[name] = {"fields": sorted(set(old["fields"]) | set(fields)), "n": int(old["n"]) + n}
        self._write(self._touch_run(run, run_kind, outputs))  # also flushes the outputs and refreshes their rollups
        return n

    def _output_fields(self, run: str, name: str) -> list[str]:
        record = self._run_records(run).get(run)
        return list(record[2].get(name, {}).get("fields", [])) if record else []

"""Import meter exports (CSV) into the store: ``wattline import csv FILE --mapping MAPPING.yaml``.

A mapping file (a frozen model, :class:`ImportMapping`; commented example in ``docs/examples/steel-industry.yaml``) says
which column holds the time, in which format and zone, whether a stamp is the start or the end of its interval, and
which columns go to which ``measurement.field`` in which unit, with constant tags.

The whole file is parsed and checked before anything is written: when any row is bad, every bad row is reported with
its line number (up to a limit), what is wrong and how to fix it, and the store is left untouched. Then each series is
written once with :meth:`core.storage.base.Store.write_arrays` (``bulk=True``).

Stored timestamps follow the data model: a value of an interval is stamped with the interval's *end* (UTC), like a
meter's integration period; an interval amount (energy in the interval) is stored cumulated as a register (a counter,
e.g. the catalogue's ``electrical.energy_kwh``) with an opening reading at the start of the first interval, so that
the increase of the register over any range is the energy imported for that range.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from core.config import FrozenModel, parse_config, read_yaml
from core.errors import ConfigError, WattlineError
from core.model import MEASUREMENTS, SeriesKey, from_ns

if TYPE_CHECKING:
    from core.storage.base import Store

#: StatusCode stored with an empty cell of an optional column (the meter reported nothing): BadNoCommunication.
STATUS_MISSING = 0x80310000

#: Conversion factors of the units the importer converts, per dimension: unit -> factor to the first unit listed.
UNIT_FACTORS: dict[str, dict[str, float]] = {
    "energy": {"kWh": 1.0, "Wh": 1e-3, "MWh": 1e3, "GWh": 1e6},
    "power": {"kW": 1.0, "W": 1e-3, "MW": 1e3},
    "reactive energy": {"kVarh": 1.0, "kvarh": 1.0, "kVArh": 1.0, "varh": 1e-3, "Varh": 1e-3, "MVarh": 1e3, "Mvarh": 1e3},
    "reactive power": {"kVar": 1.0, "kvar": 1.0, "kVAr": 1.0, "var": 1e-3, "Var": 1e-3, "MVar": 1e3, "Mvar": 1e3},
    "ratio": {"1": 1.0, "%": 1e-2},
}

_OFFSET_AT_END = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})$")


class DataFileError(WattlineError):
    """A data file to import has bad rows or no usable data; the message lists them with line numbers."""

    exit_code = 2


# -- the mapping ---------------------------------------------------------------------------------------------------


class CsvOptions(FrozenModel):
    """How the file is written."""

    delimiter: str = Field(",", min_length=1, max_length=1, description="Field separator, one character.")
    decimal: str = Field(".", min_length=1, max_length=1, description="Decimal mark of numbers ('.' or ',').")
    encoding: str = Field("utf-8-sig", description="Text encoding; utf-8-sig also reads UTF-8 with a byte-order mark.")


class TimeMapping(FrozenModel):
    """The time column and how to read it."""

    column: str = Field(..., description="Header of the time column.")
    format: str = Field("ISO8601", description="strftime format such as '%d/%m/%Y %H:%M', or ISO8601.")
    zone: str = Field("UTC", description="IANA time zone of stamps without an offset, e.g. Europe/Berlin.")
    stamps: Literal["end", "start"] = Field("end", description="Whether a stamp is the end or the start of its interval.")
    interval_s: int | None = Field(None, gt=0, description="Interval length [s]; the most common step when omitted.")
    midnight_previous_date: bool = Field(
        False, description="A 00:00 stamp carries the previous day's date (the interval ending at 24:00): add a day."
    )
    ambiguous: Literal["order", "earlier", "later", "error"] = Field(
        "order",
        description="Local times that occur twice when clocks go back: 'order' takes them in file order (in an oldest-first "
        "file the first occurrence is the earlier instant, newest-first the later); 'earlier'/'later' take that "
        "instant always; 'error' reports the rows.",
    )
    nonexistent: Literal["error", "shift_forward"] = Field(
        "error", description="Local times skipped when clocks go forward: report the rows, or shift them forward."
    )

    @field_validator("zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone; give an IANA name such as Europe/Berlin, Asia/Seoul or UTC") from None
        return value


class ColumnMapping(FrozenModel):
    """One CSV column and where it goes."""

    column: str = Field(..., description="Header of the column.")
    to: str = Field(..., description="measurement.field it is stored as, e.g. electrical.energy_kwh.")
    unit: str | None = Field(None, description="Unit in the file; the stored unit when omitted.")
    store_unit: str | None = Field(None, description="Unit stored, for fields outside the catalogue; default: unit.")
    kind: Literal["value", "interval", "counter", "code"] = Field(
        "value",
        description="value: stored as given; interval: the amount in the interval (energy), stored cumulated as a "
        "register; counter: the file holds the register; code: text mapped to numbers by `codes`.",
    )
    codes: dict[str, float] | None = Field(None, description="For kind code: text -> stored number.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags of this column, added to the file's tags.")
    required: bool = Field(True, description="An empty cell is a bad row; when false it is stored as missing.")

    @model_validator(mode="after")
    def _consistent(self) -> ColumnMapping:
        if self.to.count(".") != 1 or not all(self.to.split(".")):
            raise ValueError(f"to: {self.to!r} must be measurement.field, e.g. electrical.energy_kwh")
        if (self.kind == "code") != (self.codes is not None):
            raise ValueError("kind: code needs a `codes` table (text: number), and `codes` needs kind: code")
        measurement, name = self.to.split(".")
        spec = MEASUREMENTS.get(measurement)
        catalogue = next((f for f in spec.fields if f.name == name), None) if spec else None
        if catalogue is not None:
            if self.store_unit is not None and self.store_unit != catalogue.unit:
                raise ValueError(f"{self.to} is stored in {catalogue.unit} (catalogue); drop store_unit or write {catalogue.unit}")
            if catalogue.kind == "counter" and self.kind == "value":
                raise ValueError(
                    f"{self.to} is a counter register in the catalogue; set kind: interval when the column holds the "
                    "amount per interval, or kind: counter when it holds the register"
                )
            if catalogue.kind != "counter" and self.kind in ("interval", "counter"):
                raise ValueError(f"{self.to} is a {catalogue.kind} in the catalogue, not a counter; use kind: value")
        unit_factor(self.unit or self.target_unit, self.target_unit)  # raises ValueError naming the units
        return self

    @property
    def key(self) -> tuple[str, str]:
        """(measurement, field)."""
        measurement, name = self.to.split(".")
        return measurement, name

    @property
    def target_unit(self) -> str | None:
        """Unit of the stored values: the catalogue's, else ``store_unit``, else ``unit``."""
        measurement, name = self.key
        spec = MEASUREMENTS.get(measurement)
        catalogue = next((f for f in spec.fields if f.name == name), None) if spec else None
        if catalogue is not None:
            return catalogue.unit
        return self.store_unit or self.unit


class ImportMapping(FrozenModel):
    """A mapping file: how to read one kind of CSV export into the store."""

    csv: CsvOptions = CsvOptions()
    time: TimeMapping
    tags: dict[str, str] = Field(default_factory=dict, description="Constant tags of every series (site, line, machine).")
    columns: list[ColumnMapping] = Field(..., min_length=1, description="The columns to import.")

    @model_validator(mode="after")
    def _distinct(self) -> ImportMapping:
        seen: dict[tuple, str] = {}
        for col in self.columns:
            key = (col.to, tuple(sorted({**self.tags, **col.tags}.items())))
            if key in seen:
                raise ValueError(f"columns {seen[key]!r} and {col.column!r} both go to {col.to} with the same tags")
            seen[key] = col.column
        return self


def unit_factor(unit: str | None, target: str | None) -> float:
    """Factor that converts values in ``unit`` to ``target`` (1 when equal).

    Raises
    ------
    ValueError
        When the units differ and are not two units of one dimension in :data:`UNIT_FACTORS`.
    """
    if unit == target:
        return 1.0
    for factors in UNIT_FACTORS.values():
        if unit in factors and target in factors:
            return factors[unit] / factors[target]
    for dimension, factors in UNIT_FACTORS.items():
        if target in factors:
            raise ValueError(f"cannot convert {unit!r} to {target!r}; {dimension} units: {', '.join(factors)}")
    raise ValueError(f"cannot convert {unit!r} to {target!r}; give the values in {target!r} or drop `unit`")


def read_mapping(path: str | Path) -> ImportMapping:
    """Read and validate a mapping file; errors name the file, line, key and valid options.

    Raises
    ------
    ConfigError
        When the file is missing, not valid YAML or does not describe a valid mapping.
    """
    data, lines = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with keys time, columns, tags, csv")
    return parse_config(ImportMapping, data, str(path), lines)


# -- parsing ---------------------------------------------------------------------------------------------------------


@dataclass
class ParsedColumn:
    """One mapped column after parsing, in file row order (bad rows included, masked by ``ParsedFile.good``)."""

    mapping: ColumnMapping
    values: np.ndarray  # stored unit; NaN where empty
    key: SeriesKey


@dataclass
class ParsedFile:
    """A parsed CSV file: times and columns of its data rows, and what is wrong with which row."""

    path: Path
    lines: np.ndarray  # line number in the file of each data row
    times_ns: np.ndarray  # interval end [ns, UTC]; undefined where the row is bad
    columns: list[ParsedColumn]
    interval_s: int | None
    problems: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def good(self) -> np.ndarray:
        """Mask of rows without problems."""
        bad = set(self.problems)
        return np.array([line not in bad for line in self.lines.tolist()], dtype=bool)

    def report(self, max_errors: int) -> str:
        """The bad rows as ``file:line: problem`` lines (at most ``max_errors``), with a count of the rest."""
        lines = sorted(self.problems)
        shown = [f"{self.path}:{line}: {'; '.join(self.problems[line])}" for line in lines[:max_errors]]
        if len(lines) > max_errors:
            shown.append(f"... and {len(lines) - max_errors} more bad rows (--max-errors shows more)")
        return "\n".join(shown)


def parse_csv(path: str | Path, mapping: ImportMapping, progress: bool = False) -> ParsedFile:
    """Parse a CSV export with a mapping, checking every row; nothing is written.

    Parameters
    ----------
    path : path-like
        The CSV file; the first line is the header.
    mapping : ImportMapping
        How to read it.
    progress : bool
        Show a tqdm bar while reading rows.

    Returns
    -------
    ParsedFile
        Times and values of every data row, and the problems of bad rows by line number.

    Raises
    ------
    DataFileError
        When the file cannot be read, has no header, lacks a mapped column or has no data rows.
    """
    path = Path(path)
    header, lines, cells = _read_rows(path, mapping, progress)
    parsed = ParsedFile(path, lines, np.zeros(len(lines), dtype=np.int64), [], mapping.time.interval_s)
    n_fields = len(header)
    for i, row_cells in enumerate(cells):
        if len(row_cells) != n_fields:
            parsed.problems[int(lines[i])].append(
                f"{len(row_cells)} fields where the header has {n_fields}; check for a stray or missing "
                f"{mapping.csv.delimiter!r} or an unclosed quote"
            )
    index = {name: j for j, name in enumerate(header)}

    def column(name: str) -> list[str]:
        j = index[name]
        return [(row[j] if j < len(row) else "").strip() for row in cells]

    _parse_times(parsed, column(mapping.time.column), mapping.time)
    base_tags = dict(mapping.tags)
    for col in mapping.columns:
        values = _parse_values(parsed, col, column(col.column), mapping.csv.decimal)
        measurement, name = col.key
        key = SeriesKey.of(measurement, {**base_tags, **col.tags}, name)
        parsed.columns.append(ParsedColumn(col, values, key))
    return parsed


def _read_rows(path: Path, mapping: ImportMapping, progress: bool) -> tuple[list[str], np.ndarray, list[list[str]]]:
    from tqdm import tqdm

    try:
        size = path.stat().st_size
        handle = path.open("r", encoding=mapping.csv.encoding, newline="")
    except FileNotFoundError:
        raise DataFileError(f"{path}: file not found; check the path") from None
    except (OSError, LookupError) as exc:
        raise DataFileError(f"{path}: cannot open: {exc}") from None
    lines: list[int] = []
    cells: list[list[str]] = []
    try:
        with handle, tqdm(total=size, unit="B", unit_scale=True, desc="read", disable=not progress or None) as bar:
            reader = csv.reader(handle, delimiter=mapping.csv.delimiter)
            header = [h.strip() for h in next(reader, [])]
            last_line = reader.line_num
            done = 0
            for row in reader:
                if row and any(c.strip() for c in row):  # blank lines are not rows
                    lines.append(last_line + 1)  # the line the row starts on
                    cells.append(row)
                    if progress and len(cells) % 4096 == 0:  # text mode has no tell(); estimate bytes from the row
                        done_now = min(size, len(cells) * (sum(len(c) + 1 for c in row)))
                        bar.update(max(0, done_now - done))
                        done = max(done, done_now)
                last_line = reader.line_num
            bar.update(max(0, size - done))
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path}: not {mapping.csv.encoding} text ({exc.reason} at byte {exc.start}); set csv.encoding in the mapping") from None
    except csv.Error as exc:
        raise DataFileError(f"{path}:{reader.line_num}: {exc}") from None
    if not header or not any(header):
        raise DataFileError(f"{path}: empty file; the first line must be the header naming the columns")
    wanted = [mapping.time.column] + [c.column for c in mapping.columns]
    missing = [w for w in wanted if w not in header]
    if missing:
        raise DataFileError(
            f"{path}: no column {', '.join(repr(m) for m in missing)} in the header; columns here: "
            f"{', '.join(repr(h) for h in header)} (fix the mapping or check csv.delimiter)"
        )
    if not cells:
        raise DataFileError(f"{path}: no data rows below the header")
    return header, np.asarray(lines, dtype=np.int64), cells


def _parse_times(parsed: ParsedFile, texts: list[str], spec: TimeMapping) -> None:
    """Fill ``parsed.times_ns`` with interval ends [ns, UTC]; record unreadable, ambiguous and duplicate stamps."""
    import pandas as pd

    n = len(texts)
    fmt = spec.format
    with_offset = np.array([bool(_OFFSET_AT_END.search(t)) for t in texts], dtype=bool) if (
        fmt == "ISO8601" or "%z" in fmt) else np.zeros(n, dtype=bool)
    utc_ns = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    flagged = np.zeros(n, dtype=bool)  # rows whose local time breaks a DST rule (reported as such)
    if with_offset.any():
        aware = pd.to_datetime(pd.Series(texts)[with_offset], format=fmt, errors="coerce", utc=True)
        idx = pd.DatetimeIndex(aware)
        ok[with_offset] = ~idx.isna()
        utc_ns[with_offset] = np.where(idx.isna(), 0, idx.as_unit("ns").asi8)
    naive_rows = ~with_offset
    if naive_rows.any():
        local = pd.DatetimeIndex(pd.to_datetime(pd.Series(texts)[naive_rows], format=fmt, errors="coerce"))
        if spec.midnight_previous_date:
            midnight = (local.hour == 0) & (local.minute == 0) & (local.second == 0) & (local.microsecond == 0)
            local = local + pd.to_timedelta(np.where(midnight, 1, 0), unit="D")
        ns, good, trouble = _localize(local, spec)
        rows = np.flatnonzero(naive_rows)
        utc_ns[rows] = ns
        ok[rows] = good
        for j, message in trouble.items():
            parsed.problems[int(parsed.lines[rows[j]])].append(message)
            flagged[rows[j]] = True
    example = dt.datetime(2024, 3, 31, 14, 15).strftime(fmt) if fmt != "ISO8601" else "2024-03-31T14:15:00"
    for j in np.flatnonzero(~ok & ~flagged).tolist():
        parsed.problems[int(parsed.lines[j])].append(
            f"time {texts[j]!r} does not match format {fmt!r} (e.g. {example!r}); fix the cell or time.format"
        )
    interval_s = spec.interval_s
    if interval_s is None:
        steps = np.diff(np.unique(utc_ns[ok]))
        if len(steps):
            values, counts = np.unique(steps, return_counts=True)
            interval_s = int(values[np.argmax(counts)] // 1_000_000_000)
        parsed.interval_s = interval_s or None
    if spec.stamps == "start":
        if not parsed.interval_s:
            raise DataFileError(f"{parsed.path}: cannot tell the interval from one stamp; set time.interval_s in the mapping")
        utc_ns = utc_ns + parsed.interval_s * 1_000_000_000
    parsed.times_ns = utc_ns
    first_line: dict[int, int] = {}
    for j in np.flatnonzero(ok).tolist():
        t = int(utc_ns[j])
        if t in first_line:
            parsed.problems[int(parsed.lines[j])].append(
                f"time {texts[j]!r} is the same instant as line {first_line[t]}; drop the duplicate row"
            )
        else:
            first_line[t] = int(parsed.lines[j])


def _localize(local, spec: TimeMapping) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Local wall-clock times -> UTC [ns], applying the mapping's rules for ambiguous and skipped local times.

    Returns the UTC times, a mask of usable rows and a message per row index that breaks a rule.
    """
    n = len(local)
    if spec.zone == "UTC":
        good = ~np.asarray(local.isna())
        return np.where(good, local.as_unit("ns").asi8, 0), good, {}
    earlier = local.tz_localize(spec.zone, ambiguous=np.ones(n, dtype=bool), nonexistent="NaT")
    later = local.tz_localize(spec.zone, ambiguous=np.zeros(n, dtype=bool), nonexistent="NaT")
    e_ns, l_ns = earlier.as_unit("ns").asi8, later.as_unit("ns").asi8
    readable = ~np.asarray(local.isna())
    skipped = readable & np.asarray(earlier.isna())
    twice = readable & ~skipped & (e_ns != l_ns)
    ns = e_ns.copy()
    good = readable & ~skipped
    trouble: dict[int, str] = {}
    if twice.any():
        if spec.ambiguous == "later":
            ns[twice] = l_ns[twice]
        elif spec.ambiguous == "order":
            # A file newest-first meets the later instant first: the direction comes from the unambiguous stamps.
            steps = np.diff(e_ns[good & ~twice])
            newest_first = int((steps < 0).sum()) > int((steps > 0).sum())
            seen: dict[int, int] = {}
            for j in np.flatnonzero(twice).tolist():
                count = seen.get(int(e_ns[j]), 0)
                seen[int(e_ns[j])] = count + 1
                if (count == 1) != newest_first and count <= 1:
                    ns[j] = l_ns[j]
                elif count > 1:
                    good[j] = False
                    trouble[j] = (f"local time {local[j]} occurs a third time in {spec.zone}; it occurs twice when "
                                  "clocks go back: drop the extra row")
        elif spec.ambiguous == "error":
            for j in np.flatnonzero(twice).tolist():
                good[j] = False
                trouble[j] = (f"local time {local[j]} occurs twice in {spec.zone} (clocks go back); set time.ambiguous "
                              "to order, earlier or later, or export times in UTC")
    if skipped.any():
        if spec.nonexistent == "shift_forward":
            shifted = local[skipped].tz_localize(spec.zone, ambiguous=np.ones(int(skipped.sum()), dtype=bool),
                                                 nonexistent="shift_forward")
            ns[skipped] = shifted.as_unit("ns").asi8
            good[skipped] = True
        else:
            for j in np.flatnonzero(skipped).tolist():
                trouble[j] = (f"local time {local[j]} does not exist in {spec.zone} (clocks go forward); fix the stamp, "
                              "set time.nonexistent: shift_forward, or export times in UTC")
    return np.where(good, ns, 0), good, trouble


def _parse_values(parsed: ParsedFile, col: ColumnMapping, texts: list[str], decimal: str) -> np.ndarray:
    """Parse a column to floats in the stored unit; record bad cells as row problems."""
    import pandas as pd

    n = len(texts)
    empty = np.array([t == "" for t in texts], dtype=bool)
    if col.kind == "code":
        codes = col.codes or {}
        values = np.array([codes.get(t, np.nan) for t in texts], dtype=float)
        unknown = ~empty & np.isnan(values)
        for j in np.flatnonzero(unknown).tolist():
            parsed.problems[int(parsed.lines[j])].append(
                f"column {col.column!r}: {texts[j]!r} is not one of the codes {', '.join(repr(c) for c in codes)}; "
                "fix the cell or add it to `codes` in the mapping"
            )
    else:
        cleaned = texts if decimal == "." else [t.replace(".", "").replace(decimal, ".") for t in texts]
        values = pd.to_numeric(pd.Series(cleaned, dtype=object), errors="coerce").to_numpy(dtype=float)
        bad = ~empty & ~np.isfinite(values)
        for j in np.flatnonzero(bad).tolist():
            parsed.problems[int(parsed.lines[j])].append(
                f"column {col.column!r}: {texts[j]!r} is not a number; fix the cell"
                + (f" (decimal mark is {decimal!r}, see csv.decimal)" if "," in texts[j] or "." in texts[j] else "")
            )
        values = values * unit_factor(col.unit or col.target_unit, col.target_unit)
        if col.kind == "interval":
            for j in np.flatnonzero(values < 0).tolist():
                parsed.problems[int(parsed.lines[j])].append(
                    f"column {col.column!r}: {texts[j]!r} is negative, but an amount per interval cannot be; "
                    "if the column is a register, set kind: counter"
                )
    if col.required:
        for j in np.flatnonzero(empty).tolist():
            parsed.problems[int(parsed.lines[j])].append(
                f"column {col.column!r} is empty; fill it, or set required: false for the column to store it as missing"
            )
    values[empty] = np.nan
    assert len(values) == n
    return values


# -- importing ---------------------------------------------------------------------------------------------------


@dataclass
class ImportSummary:
    """What an import wrote.

    Attributes
    ----------
    rows : int
        Data rows imported.
    series : list of str
        ``measurement.field{tags}`` of each series written.
    values : int
        Values written (opening register readings included).
    first_ns, last_ns : int
        First and last interval end [ns, UTC].
    interval_s : int or None
        Interval length [s].
    totals : dict
        Sum of each interval column in its stored unit (``{"electrical.energy_kwh": kWh}``).
    warnings : list of str
        What the import recovered from.
    """

    file: str
    store: str
    rows: int
    series: list[str]
    values: int
    first_ns: int
    last_ns: int
    interval_s: int | None
    zone: str
    totals: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (times ISO 8601 in UTC)."""
        return {
            "file": self.file, "store": self.store, "rows": self.rows, "series": self.series, "values": self.values,
            "first": from_ns(self.first_ns).isoformat(), "last": from_ns(self.last_ns).isoformat(),
            "interval_s": self.interval_s, "totals": self.totals, "warnings": self.warnings, "dry_run": self.dry_run,
        }

    def line(self) -> str:
        """One summary line for a person (times in the file's zone)."""
        zone = zoneinfo.ZoneInfo(self.zone)
        first = from_ns(self.first_ns).astimezone(zone).isoformat(timespec="minutes")
        last = from_ns(self.last_ns).astimezone(zone).isoformat(timespec="minutes")
        totals = "".join(f"; {name} +{value:,.2f}" for name, value in self.totals.items())
        verb = "checked (dry run, nothing written)" if self.dry_run else f"imported into {self.store}"
        return (f"{verb}: {self.rows:,} rows of {self.file}, {len(self.series)} series, {self.values:,} values, "
                f"intervals ending {first} .. {last}{totals}")


def check_csv(path: str | Path, mapping: ImportMapping, max_errors: int = 50, progress: bool = False) -> ParsedFile:
    """Parse a CSV export and check every row; nothing is written.

    Raises
    ------
    DataFileError
        When any row is bad: all of them up to ``max_errors``, each with its line number, what is wrong and how to fix it.
    """
    parsed = parse_csv(path, mapping, progress)
    if parsed.problems:
        raise DataFileError(
            f"{parsed.path}: {len(parsed.problems):,} of {len(parsed.lines):,} rows are bad; nothing was written. "
            f"Fix them and import again:\n{parsed.report(max_errors)}"
        )
    return parsed


def import_csv(
    path: str | Path,
    mapping: ImportMapping,
    store: Store | None,
    max_errors: int = 50,
    progress: bool = False,
) -> ImportSummary:
    """Import a CSV export into a store, all or nothing.

    Parameters
    ----------
    path : path-like
        The CSV file.
    mapping : ImportMapping
        How to read it (:func:`read_mapping`).
    store : Store or None
        Where to write; None checks the file only (dry run).
    max_errors : int
        Bad rows listed at most in the error.
    progress : bool
        Show tqdm bars (reading, writing).

    Raises
    ------
    DataFileError
        When any row is bad (all of them listed up to ``max_errors``, with line numbers); nothing is written.
    """
    return write_parsed(check_csv(path, mapping, max_errors, progress), mapping, store, progress)


def write_parsed(parsed: ParsedFile, mapping: ImportMapping, store: Store | None, progress: bool = False) -> ImportSummary:
    """Write a checked file (:func:`check_csv`) to a store, one ``write_arrays(..., bulk=True)`` call per series.

    Interval amounts become a register: an opening reading of 0 at the start of the first interval and the running sum
    at each interval end. A file that continues a stored register (its last reading is at or before the start of the
    file's first interval) continues its sum without an opening reading, so that a gap between the two files is a gap
    (the increase across it is spread over it), not zero consumption. None as ``store`` computes the summary without
    writing.
    """
    from tqdm import tqdm

    if parsed.problems:
        raise DataFileError(f"{parsed.path}: {len(parsed.problems)} bad rows; nothing was written:\n{parsed.report(50)}")
    order = np.argsort(parsed.times_ns, kind="stable")
    times = parsed.times_ns[order]
    interval_ns = (parsed.interval_s or 0) * 1_000_000_000
    warnings: list[str] = []
    writes: list[tuple[SeriesKey, np.ndarray, np.ndarray, np.ndarray]] = []
    totals: dict[str, float] = {}
    for col in parsed.columns:
        values = col.values[order]
        status = np.where(np.isnan(values), STATUS_MISSING, 0).astype(np.int64)
        if col.mapping.kind != "interval":
            writes.append((col.key, times, values, status))
            continue
        if not interval_ns:
            raise DataFileError(f"{parsed.path}: cannot tell the interval from one row; set time.interval_s in the mapping")
        opening_ns = int(times[0]) - interval_ns
        opening, with_opening = _opening_reading(store, col.key, opening_ns, warnings) if store is not None else (0.0, True)
        # Summed in extended precision so that the register's increase is the correctly rounded sum of the column
        # (a float64 running sum drifts by ~1e-7 kWh over a year of 15-min values).
        register = (np.longdouble(opening) + np.cumsum(np.nan_to_num(values, nan=0.0).astype(np.longdouble))).astype(float)
        register[np.isnan(values)] = np.nan
        if with_opening:
            writes.append((col.key, np.concatenate([[opening_ns], times]), np.concatenate([[opening], register]),
                           np.concatenate([[0], status])))
        else:
            writes.append((col.key, times, register, status))
        label = col.mapping.to if not col.mapping.tags else f"{col.mapping.to}{col.mapping.tags}"
        totals[label] = totals.get(label, 0.0) + float(np.nansum(values))
    written = 0
    if store is not None:
        for key, t, v, s in tqdm(writes, desc="write", unit="series", disable=not progress or None):
            written += store.write_arrays(key, t, v, s, bulk=True)
        store.flush()
    else:
        written = sum(len(t) for _, t, _, _ in writes)
    return ImportSummary(
        file=str(parsed.path), store=getattr(store, "description", "") if store is not None else "", rows=len(times),
        series=[_describe(k) for k, *_ in writes], values=written, first_ns=int(times[0]), last_ns=int(times[-1]),
        interval_s=parsed.interval_s, zone=mapping.time.zone, totals=totals, warnings=warnings, dry_run=store is None,
    )


def _describe(key: SeriesKey) -> str:
    tags = ",".join(f"{k}={v}" for k, v in key.tags)
    return f"{key.measurement}.{key.field}{{{tags}}}"


def _opening_reading(store: Store, key: SeriesKey, opening_ns: int, warnings: list[str]) -> tuple[float, bool]:
    """The register value at the start of the imported range [stored unit], and whether to write it as a reading.

    A file that continues a stored register starts from its last value (no reading written: the stored one is the
    previous reading); a re-import of the same range starts from the stored value at the opening time (so it writes
    the same values again); anything else starts at 0.
    """
    last = store.last_values(key.measurement, key.field, key.tag_dict)
    tags = key.tag_dict
    if not last.empty:
        extra = [c for c in last.columns if c not in ("time", "value", "status") and c not in tags]
        same = np.ones(len(last), dtype=bool)
        for c in extra:
            same &= last[c].isna().to_numpy()
        last = last[same]
    if last.empty:
        return 0.0, True
    last_ns = int(last["time"].iloc[0].value)
    value = float(last["value"].iloc[0])
    if last_ns <= opening_ns and np.isfinite(value):
        return value, False
    at = store.query(key.measurement, key.field, opening_ns, opening_ns + 1, tags=tags)
    if not at.empty:
        same = np.ones(len(at), dtype=bool)
        for c in (c for c in at.columns if c not in ("time", "value", "status") and c not in tags):
            same &= at[c].isna().to_numpy()
        if same.any() and np.isfinite(float(at["value"][same].iloc[0])):
            return float(at["value"][same].iloc[0]), True
    warnings.append(
        f"{_describe(key)} already has values after {from_ns(opening_ns).isoformat()} that this file does not "
        "continue; the imported register starts at 0 there"
    )
    return 0.0, True

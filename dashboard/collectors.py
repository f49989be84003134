"""Numbers and components of the Collectors page: collector health and data quality per machine.

Collector health comes from the ``wattline_collector`` series every collector writes into the store (see
``collectors/health.py``); the dashboard imports no collector code, so collectors on other hosts show up too. Data
quality per machine comes from hourly counts of the energy register (the store's rollups: a year never reads raw
points) and, for the share of Bad values, from the raw status of the last hour only.
"""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pandas as pd
from dash import html

from core.model import status_severity

NS = 1_000_000_000
HOUR_NS = 3600 * NS
MEASUREMENT = "wattline_collector"  # written by collectors/health.py (not imported: the dashboard reads the store)
HEALTH_FIELDS = ("connected", "values_per_s", "last_value_age_s", "backlog", "spool_bytes", "bad_nodes", "reconnects")
#: A collector whose newest health point is older than this is shown as silent (it writes every 10 s) [s].
SILENT_AFTER_S = 60.0

COLLECTOR_COLUMNS = (("collector", "Collector"), ("server", "Server"), ("state", "State"),
                     ("values_per_s", "Values/s"), ("last_value_age", "Last value"), ("backlog", "Backlog"),
                     ("spool", "Spool"), ("bad_nodes", "Bad nodes"), ("reconnects", "Reconnects"),
                     ("reported", "Reported"))
QUALITY_COLUMNS = (("machine", "Machine"), ("completeness", "Completeness"), ("gaps", "Gaps"),
                   ("longest_gap", "Longest gap"), ("bad_share", "Bad values (last hour)"), ("last_value", "Last value"))


def fmt_bytes(n: float | None) -> str:
    """Bytes for people: ``0 B``, ``12.3 kB``, ``4.5 MB``."""
    if n is None or not np.isfinite(n):
        return "—"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} B"


def fmt_age(seconds: float | None) -> str:
    """An age for people: ``0.4 s``, ``12 s``, ``5 min``, ``3.2 h``, ``2.0 d``."""
    if seconds is None or not np.isfinite(seconds):
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def health_store(raw_store, ctx, site: str | None):
    """Where to read collector health: the whole store for a user of every site looking at all of them (collectors
    whose points carry no site tag show up too), else the view limited to the chosen sites."""
    return raw_store if ctx.user.all_sites and site in (None, "", "all") else ctx.store


def collector_rows(store, now_ns: int, tz: dt.tzinfo, silent_after_s: float = SILENT_AFTER_S) -> list[dict]:
    """One row per (collector, server) from the newest health point of each, for the people who run them.

    ``state`` is ``connected``, ``disconnected`` or ``silent`` (no health point for ``silent_after_s``: the collector
    itself is down or cannot write). Points of one server repeated for several sites are shown once.
    """
    latest: dict[tuple[str, str], dict] = {}
    for field in HEALTH_FIELDS:
        frame = store.last_values(MEASUREMENT, field)
        if frame.empty:
            continue
        for row in frame.itertuples(index=False):
            key = (str(getattr(row, "collector", "")), str(getattr(row, "server", "")))
            item = latest.setdefault(key, {"time_ns": 0, "sites": set()})
            t = int(pd.Timestamp(row.time).value)
            item["time_ns"] = max(item["time_ns"], t)
            site = getattr(row, "site", None)
            if isinstance(site, str) and site:
                item["sites"].add(site)
            item[field] = float(row.value) if row.value == row.value else None
    rows = []
    for (collector, server), item in sorted(latest.items()):
        reported_age = (now_ns - item["time_ns"]) / NS
        if reported_age > silent_after_s:
            state = "silent"
        else:
            state = "connected" if item.get("connected") == 1.0 else "disconnected"
        value_age = item.get("last_value_age_s")
        rows.append({
            "collector": collector, "server": server, "sites": ", ".join(sorted(item["sites"])), "state": state,
            "values_per_s": item.get("values_per_s"), "last_value_age_s": value_age,
            "last_value_age": fmt_age(value_age), "backlog": item.get("backlog"),
            "spool_bytes": item.get("spool_bytes"), "spool": fmt_bytes(item.get("spool_bytes")),
            "bad_nodes": item.get("bad_nodes"), "reconnects": item.get("reconnects"),
            "reported_age_s": reported_age,
            "reported": f"{fmt_age(reported_age)} ago at "
                        f"{pd.Timestamp(item['time_ns'], tz='UTC').tz_convert(tz):%H:%M:%S}",
        })
    return rows


def hourly_counts(store, start_ns: int, stop_ns: int, tz: dt.tzinfo) -> pd.DataFrame:
    """Energy-register values per machine and local hour (the store's rollups): ``time``, ``site``, ``line``,
    ``machine``, ``value``. Through a store limited to the user's sites inside a request, the closed days come from
    the shared cache (:func:`dashboard.overview.closed_days_cached`) and only today's hours are counted."""
    from dashboard.overview import closed_days_cached, read_once

    tzname = getattr(tz, "key", None) or "UTC"
    read = read_once(start_ns, stop_ns, lambda lo, hi: store.aggregate("electrical", "energy_kwh", lo, hi, every=3600,
                                                                       agg="count", tz=tzname))
    sites = getattr(store, "sites", None)
    if sites is None:
        return read(start_ns, stop_ns)
    return closed_days_cached(f"energy_counts|{','.join(sites)}|{tzname}", tzname, start_ns, stop_ns, read)


def _hours_with_values(counts: pd.DataFrame):
    """``(machine path, sorted distinct hour numbers [h since the epoch] with a value)`` per machine of an
    :func:`hourly_counts` frame, machines in sorted order."""
    if counts.empty:
        return
    counts = counts[counts["value"].fillna(0).to_numpy() > 0]
    if counts.empty:
        return
    paths = (counts["site"].astype(str) + "/" + counts["line"].astype(str) + "/" + counts["machine"].astype(str))
    hour_of = pd.to_datetime(counts["time"], utc=True).dt.as_unit("ns").astype("int64").to_numpy() // HOUR_NS
    # One sort of (machine, hour) for all machines; each machine's distinct hours are then a slice.
    codes, names = pd.factorize(paths, sort=True)
    order = np.lexsort((hour_of, codes))
    codes, hour_of = codes[order], hour_of[order]
    bounds = np.flatnonzero(np.diff(codes)) + 1
    for path, have in zip(names, np.split(hour_of, bounds)):
        yield path, np.unique(have)


def completeness_shares(store, start_ns: int, stop_ns: int, now_ns: int, tz: dt.tzinfo) -> dict[str, float]:
    """Completeness per machine path over ``[start, min(stop, now))``, as :func:`quality_rows` gives it, without the
    rest of the rows (their latest values and the raw values of the last hour): the enterprise KPIs need only this."""
    from dashboard.overview import closed_days_cached

    stop_ns = min(stop_ns, now_ns)
    if stop_ns <= start_ns:
        return {}
    tzname = getattr(tz, "key", None) or "UTC"

    def read(lo: int, hi: int) -> pd.DataFrame:
        found = [(path, len(have), int(have[0]), int(have[-1]))
                 for path, have in _hours_with_values(hourly_counts(store, lo, hi, tz))]
        return pd.DataFrame(found, columns=["path", "hours", "first", "last"])

    sites = getattr(store, "sites", None)
    # Per machine: hours with a value, first and last of them. Closed days and today hold different hours, so their
    # counts add up; the closed days' few hundred rows are cached instead of going over their hourly counts again.
    stats = read(start_ns, stop_ns) if sites is None else closed_days_cached(
        f"completeness|{','.join(sites)}|{tzname}", tzname, start_ns, stop_ns, read)
    if stats.empty:
        return {}
    per = stats.groupby("path", sort=True)
    hours, first, last = per["hours"].sum(), per["first"].min(), per["last"].max()
    return {path: int(n) / int(b - a + 1) for path, n, a, b in zip(hours.index, hours, first, last)}


def quality_rows(store, start_ns: int, stop_ns: int, now_ns: int, tz: dt.tzinfo,
                 stale_after_s: float = 3600.0) -> list[dict]:
    """Data quality per machine over ``[start, min(stop, now))``: completeness, gaps, share of Bad values.

    Completeness is the share of hours between the machine's first and newest value in the range with at least one
    energy register value; a gap is a run of hours without any in between (silence since the newest value shows as
    its age, ``last_value``, and marks the row ``stale`` after ``stale_after_s``); the Bad share counts the raw values of the last hour whose
    OPC UA status is Bad (stored as missing), over all values of that hour.
    """
    stop_ns = min(stop_ns, now_ns)
    if stop_ns <= start_ns:
        return []
    counts = hourly_counts(store, start_ns, stop_ns, tz)
    last = store.last_values("electrical", "energy_kwh")
    recent = store.query("electrical", "energy_kwh", max(start_ns, now_ns - HOUR_NS), stop_ns + 1)
    rows: list[dict] = []
    bad = {}
    if not recent.empty:
        severities = {int(code): status_severity(int(code)) == "bad" for code in pd.unique(recent["status"])}
        recent = recent.assign(path=recent["site"] + "/" + recent["line"] + "/" + recent["machine"],
                               bad=recent["status"].map(lambda c: severities[int(c)]).astype(bool))
        bad = recent.groupby("path")["bad"].mean().to_dict()
    last_ns = {}
    if not last.empty:
        when = pd.to_datetime(last["time"], utc=True).dt.as_unit("ns").astype("int64").tolist()
        for site, line, machine, t in zip(last["site"], last["line"], last["machine"], when):
            last_ns[f"{site}/{line}/{machine}"] = t
    for path, have in _hours_with_values(counts):
        # Between the first and the newest value: silence since then shows as the age of the last value instead.
        span = int(have[-1] - have[0] + 1)
        steps = np.diff(have) - 1
        runs = steps[steps > 0]
        share = len(have) / span
        age = (now_ns - last_ns[path]) / NS if path in last_ns else None
        longest = int(runs.max()) if len(runs) else 0
        rows.append({
            "machine": path, "completeness_share": float(share),
            "completeness": f"{100 * share:.1f} %", "gaps": len(runs),
            "longest_gap_h": longest, "longest_gap": f"{longest} h" if len(runs) else "—",
            "bad_share_value": bad.get(path), "bad_share": "—" if path not in bad else f"{100 * bad[path]:.1f} %",
            "last_value_age_s": age, "last_value": fmt_age(age) + " ago" if age is not None else "—",
            "status": "stale" if age is None or age > stale_after_s else "ok",
        })
    return rows


#: Lifetime of the shared quality rows [s]: an hourly count over the period of every machine costs hundreds of ms on
#: a year of 200 machines, and the page refreshes every 10 s. Once expired, the old rows are served while a background
#: thread counts again, so the ages shown are at most this old.
QUALITY_TTL_S = 60.0


def shared_quality_rows(store, start_ns: int, stop_ns: int, now_ns: int, tz: dt.tzinfo) -> list[dict]:
    """:func:`quality_rows`, shared for :data:`QUALITY_TTL_S` per site scope of ``store`` and period inside a
    dashboard request (:func:`dashboard.data.shared_result`); computed directly outside one."""
    from dashboard.data import shared_result

    name = f"quality|{start_ns}|{stop_ns}|{getattr(tz, 'key', None) or tz}"
    return shared_result(store, name, lambda: quality_rows(store, start_ns, stop_ns, now_ns, tz), QUALITY_TTL_S)


def table(rows: list[dict], columns, row_class=None, numeric=()) -> html.Table:
    """A plain HTML table of ``rows`` (``columns``: (key, title) pairs); numbers with thousands separators."""
    def cell(key, value):
        if key in numeric and isinstance(value, (int, float)) and value == value:
            text = f"{value:,.1f}" if isinstance(value, float) and not float(value).is_integer() else f"{value:,.0f}"
        else:
            text = "—" if value is None else value
        return html.Td(text, className=f"col-{key}" + (" num" if key in numeric else ""))

    head = html.Thead(html.Tr([html.Th(title, className=f"col-{key}") for key, title in columns]))
    body = html.Tbody([html.Tr([cell(key, row.get(key)) for key, _ in columns],
                               className=row_class(row) if row_class else None) for row in rows])
    return html.Table([head, body], className="series-table")


def rows_frame(rows: list[dict], columns) -> pd.DataFrame:
    """``rows`` as a table with the table's columns (raw numbers, not the formatted text)."""
    return pd.DataFrame([{key: row.get(key) for key in columns} for row in rows], columns=list(columns))


def rows_csv(rows: list[dict], columns) -> str:
    """``rows`` as CSV with the table's columns (raw numbers, not the formatted text)."""
    buf = io.StringIO()
    rows_frame(rows, columns).to_csv(buf, index=False)
    return buf.getvalue()


COLLECTOR_CSV = ("collector", "server", "sites", "state", "values_per_s", "last_value_age_s", "backlog", "spool_bytes",
                 "bad_nodes", "reconnects", "reported_age_s")
QUALITY_CSV = ("machine", "completeness_share", "gaps", "longest_gap_h", "bad_share_value", "last_value_age_s")


def collector_summary(rows: list[dict]) -> str:
    """One line: how many collectors and servers, how many connected."""
    if not rows:
        return ""
    ok = sum(r["state"] == "connected" for r in rows)
    text = f"{len({r['collector'] for r in rows})} collector(s), {len(rows)} server connection(s), {ok} connected"
    silent = sum(r["state"] == "silent" for r in rows)
    return text + (f", {silent} silent (no health report for over {fmt_age(SILENT_AFTER_S)})" if silent else "")

"""Numbers of the plant overview and the findings grid, from the store's rollups and the analytics' stored findings.

Pure functions over a store (already limited to the user's sites, :func:`dashboard.access.scoped_store`) and the
result store; no Dash here, so they are tested without a browser.

Energy per hour comes from the hourly ``last`` value of each energy register, read from the store's rollups
(:meth:`core.storage.base.Store.aggregate`), turned into increases by :func:`core.storage.intervals.counter_increase`
(the one place counter arithmetic lives): a year of 200 machines never reads raw points. A machine without a register
falls back to its hourly mean power [kW] x 1 h. Findings are those of the newest analysis run that stored any
(``wattline analyze`` replaces a run's findings when it runs again; a newer run supersedes older ones).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.model import METER_FAULT_KINDS, WASTE_KINDS

if TYPE_CHECKING:
    from core.tariff import TariffSpec

NS = 1_000_000_000
HOUR_NS = 3600 * NS
ENERGY = ("electrical", "energy_kwh")
POWER = ("electrical", "active_power_kw")
KIND_LABELS = {
    "idle_running": "Idle running",
    "off_shift_load": "Off-shift load",
    "excess_specific_energy": "Excess energy per unit",
    "air_leak": "Compressed-air leak",
    "peak_demand": "Demand peak",
    "meter_stuck": "Meter stuck",
    "meter_reset": "Meter reset",
    "meter_gap": "Meter gap",
    "meter_spike": "Meter spike",
}
CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "CNY": "¥", "INR": "₹"}


# -- formatting for people ---------------------------------------------------------------------------------------------
def fmt_energy(kwh: float | None) -> str:
    """Energy with a unit a person reads at a glance: ``850 kWh``, ``12.4 MWh``, ``3.21 GWh``."""
    if kwh is None or not np.isfinite(kwh):
        return "—"
    a = abs(kwh)
    if a >= 1e6:
        return f"{kwh / 1e6:,.2f} GWh"
    if a >= 1e4:
        return f"{kwh / 1e3:,.1f} MWh"
    if a >= 100:
        return f"{kwh:,.0f} kWh"
    return f"{kwh:,.1f} kWh"


def fmt_money(amount: float | None, currency: str | None) -> str:
    """Money with thousands separators and the currency's symbol (its code when it has no common symbol)."""
    if amount is None or not np.isfinite(amount) or not currency:
        return "—"
    symbol = CURRENCY_SYMBOLS.get(currency)
    number = f"{amount:,.0f}" if abs(amount) >= 10 else f"{amount:,.2f}"
    return f"{symbol} {number}" if symbol else f"{number} {currency}"


def fmt_co2(kg: float | None) -> str:
    """CO2 mass: ``850 kg`` or ``12.4 t``."""
    if kg is None or not np.isfinite(kg):
        return "—"
    return f"{kg / 1000:,.1f} t CO₂" if abs(kg) >= 1000 else f"{kg:,.0f} kg CO₂"


def fmt_pct(fraction: float | None) -> str:
    return "—" if fraction is None or not np.isfinite(fraction) else f"{100 * fraction:.1f} %"


# -- sites ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SiteInfo:
    """What the dashboard needs of a site: name, zone, currency, tariff, CO2 factor (None when unknown)."""

    id: str
    name: str
    tz: str
    currency: str | None = None
    tariff: TariffSpec | None = None
    co2_kg_per_kwh: float | None = None


def known_sites(store, plant) -> list[str]:
    """Site ids: the plant file's, else the ``site`` tags of the stored electrical series."""
    if plant is not None:
        return [s.id for s in plant.sites]
    return sorted({i.key.tag_dict["site"] for i in store.series("electrical") if "site" in i.key.tag_dict})


def site_info(site: str, plant, default_tz: dt.tzinfo) -> SiteInfo:
    """The plant file's facts about ``site`` (defaults: the dashboard's zone, no currency, no CO2 factor)."""
    if plant is not None:
        for spec in plant.sites:
            if spec.id == site:
                return SiteInfo(spec.id, spec.name or spec.id, spec.timezone, spec.currency, spec.tariff,
                                spec.co2_kg_per_kwh)
    return SiteInfo(site, site, getattr(default_tz, "key", None) or "UTC")


def site_options(user, known: list[str], plant) -> list[dict]:
    """Options of the site selector: the sites ``user`` may see, led by "all" of them."""
    names = {s.id: (s.name or s.id) for s in plant.sites} if plant is not None else {}
    visible = [s for s in known if user.may_see(s)] if user.all_sites else sorted(user.sites)
    label = "All sites" if user.all_sites else ("All my sites" if len(visible) > 1 else None)
    options = [{"label": label, "value": "all"}] if label else []
    return options + [{"label": names.get(s, s), "value": s} for s in visible]


# -- energy --------------------------------------------------------------------------------------------------------------
#: Lifetime of the cached energy of closed days [s]: late data for a past day (a spool replayed after an outage)
#: show after at most this long; today's hours are always read fresh.
CLOSED_DAYS_TTL_S = 3600.0


def energy_by_hour(store, site: SiteInfo, start_ns: int, stop_ns: int) -> pd.DataFrame:
    """Energy per machine and local hour of one site [kWh], from the store's hourly rollups.

    Inside a dashboard request (:func:`dashboard.cache.request_cache`) the hours before the site's local midnight are
    cached for :data:`CLOSED_DAYS_TTL_S` and shared by the overview, the enterprise KPIs and every worker: a year of
    200 machines is read once, then only today's hours are. The cache is used only through a store limited to
    the sites the user may see (:class:`dashboard.access.SiteScopedStore`) that includes ``site``.

    Returns
    -------
    DataFrame
        ``time`` (hour start, UTC), ``line``, ``machine``, ``kwh``.
    """
    if site.id not in getattr(store, "sites", ()):
        return _energy_by_hour(store, site, start_ns, stop_ns)
    return closed_days_cached(f"energy_by_hour|{site.id}|{site.tz}", site.tz, start_ns, stop_ns,
                              lambda lo, hi: _energy_by_hour(store, site, lo, hi))


@dataclass
class EnergySummary:
    """A site's energy over a range at the coarsest resolution each chart needs (from :func:`energy_by_hour`).

    ``hours``: ``time`` (local hour start, UTC), ``kwh`` — all the site's machines added up (KPI tiles and their
    cost at the hour's tariff, heatmap, daily and weekly EnPIs); ``days``: ``day`` (local date as a naive midnight),
    ``line``, ``machine``, ``kwh`` — per machine and local day (energy flows). A month of 200 machines is 720 + 6,000
    rows instead of 144,000 machine-hours.
    """

    hours: pd.DataFrame
    days: pd.DataFrame

    def hours_in(self, start_ns: int, stop_ns: int) -> pd.DataFrame:
        """The site's hours in ``[start, stop)``."""
        t = self.hours["time"]
        return self.hours[(t >= pd.Timestamp(start_ns, tz="UTC")) & (t < pd.Timestamp(stop_ns, tz="UTC"))]

    def days_in(self, start_ns: int, stop_ns: int, tz: str) -> pd.DataFrame:
        """The machine-days of the local days in ``[start, stop)`` (local midnights in zone ``tz``)."""
        lo, hi = (pd.Timestamp(t, tz="UTC").tz_convert(tz).tz_localize(None) for t in (start_ns, stop_ns))
        d = self.days["day"]
        return self.days[(d >= lo) & (d < hi)]


def local_days(times: pd.Series, tz: str) -> pd.Series:
    """Local date (a naive midnight) in zone ``tz`` of UTC times."""
    return times.dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()


def summarise_hours(hours: pd.DataFrame, tz: str) -> EnergySummary:
    """:class:`EnergySummary` of an :func:`energy_by_hour` frame (machines in zone ``tz``)."""
    if hours.empty:
        return EnergySummary(pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "kwh": []}),
                             pd.DataFrame({"day": pd.Series([], dtype="datetime64[ns]"), "line": [], "machine": [],
                                           "kwh": []}))
    site_hours = hours.groupby("time", as_index=False, sort=True)["kwh"].sum()
    days = (hours.assign(day=local_days(hours["time"], tz))
            .groupby(["day", "line", "machine"], as_index=False, sort=True)["kwh"].sum())
    return EnergySummary(site_hours, days)


def energy_summary(store, site: SiteInfo, start_ns: int, stop_ns: int) -> EnergySummary:
    """The site's :class:`EnergySummary` over ``[start, stop)`` (whole local days or today's hours).

    Read from the store's hourly rollups (:func:`energy_by_hour`'s arithmetic, so the same numbers); inside a dashboard
    request through a store limited to the user's sites, the closed days' summary is shared through the results cache
    for :data:`CLOSED_DAYS_TTL_S` (small: hundreds of rows, not a row per machine and hour) and only today's hours are
    read.
    """
    read = read_once(start_ns, stop_ns, lambda lo, hi: _energy_by_hour(store, site, lo, hi))
    memo: dict = {}

    def hourly(lo: int, hi: int) -> EnergySummary:
        if (lo, hi) not in memo:
            memo[(lo, hi)] = summarise_hours(read(lo, hi), site.tz)
        return memo[(lo, hi)]

    if site.id not in getattr(store, "sites", ()):
        return hourly(start_ns, stop_ns)
    key = f"{site.id}|{site.tz}"
    hours = closed_days_cached(f"site_hours|{key}", site.tz, start_ns, stop_ns, lambda lo, hi: hourly(lo, hi).hours)
    days = closed_days_cached(f"machine_days|{key}", site.tz, start_ns, stop_ns, lambda lo, hi: hourly(lo, hi).days)
    return EnergySummary(hours, days)


def read_once(start_ns: int, stop_ns: int, read):
    """``read(lo, hi)`` (an hourly frame with a ``time`` column) for :func:`closed_days_cached`, answering its two
    reads with one: asked for the closed days ``[start, cut)`` (cut before ``stop``), it reads ``[start, stop)`` once
    and keeps the hours from ``cut`` on for the read of today that follows (the same hours as two reads: hourly
    windows end at local midnight). Any other range is read as asked.
    """
    memo: dict = {}

    def once(lo: int, hi: int) -> pd.DataFrame:
        if (lo, hi) in memo:
            return memo.pop((lo, hi))
        if lo != start_ns or hi >= stop_ns:
            return read(lo, hi)
        whole = read(start_ns, stop_ns)
        later = (whole["time"] >= pd.Timestamp(hi, tz="UTC")).to_numpy() if not whole.empty else np.zeros(0, bool)
        memo[(hi, stop_ns)] = whole[later].reset_index(drop=True)
        return whole[~later].reset_index(drop=True)

    return once


#: Prefix of the cache keys of closed days' hourly results (kept for :data:`CLOSED_DAYS_TTL_S`).
CLOSED_PREFIX = "closed|"


def closed_days_cached(key: str, tz: str, start_ns: int, stop_ns: int, read) -> pd.DataFrame:
    """``read(start_ns, stop_ns)`` (an hourly frame), the hours before local midnight in zone ``tz`` shared through the
    results cache for :data:`CLOSED_DAYS_TTL_S` under ``key`` (which must name everything the result depends on
    besides the range, the sites included), today's hours read fresh. Outside a dashboard request: ``read`` directly.

    Hourly windows in local time end at local midnight, so the two reads give exactly the hours of one read.
    """
    import time

    from dashboard.cache import request_cache
    from dashboard.data import local_midnight_ns

    cache = request_cache()
    if cache is None:
        return read(start_ns, stop_ns)
    cut = min(max(local_midnight_ns(time.time_ns(), zoneinfo.ZoneInfo(tz)), start_ns), stop_ns)
    if cut <= start_ns:
        return read(start_ns, stop_ns)
    closed = _expand(cache.get_or_compute(f"{CLOSED_PREFIX}{key}|{start_ns}|{cut}",
                                          lambda: _compact(read(start_ns, cut)), ttl_s=CLOSED_DAYS_TTL_S))
    if cut >= stop_ns:
        return closed
    today = read(cut, stop_ns)
    return closed if today.empty else pd.concat([closed, today], ignore_index=True)


_NAMES = ("site", "line", "machine")


def _compact(frame: pd.DataFrame) -> pd.DataFrame:
    """Site, line and machine names as categories: a year of 200 machines pickles to a fraction of the size."""
    return frame.astype({c: "category" for c in _NAMES if c in frame.columns}) if not frame.empty else frame


def _expand(frame: pd.DataFrame) -> pd.DataFrame:
    """Back to plain strings (grouping by categories would add every line x machine pair)."""
    return frame.astype({c: object for c in _NAMES if c in frame.columns}) if not frame.empty else frame


def machine_energy_by_hour(store, site: SiteInfo, line: str, machine: str, start_ns: int,
                           stop_ns: int) -> pd.DataFrame:
    """Energy per local hour of one machine [kWh] (the machine page): only that machine's hourly rollups are read.

    Returns
    -------
    DataFrame
        As :func:`energy_by_hour`, for the one machine.
    """
    return _energy_by_hour(store, site, start_ns, stop_ns, {"line": line, "machine": machine})


def _pair_codes(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of the (line, machine) pairs of a query frame's rows, numbered in sorted (line, machine) order, and each
    code's line and machine (object arrays; a missing tag is ""). Two one-column factorizations combined: a
    MultiIndex of 100,000s of rows built a tuple per row (0.1-0.2 s per call)."""
    parts = []
    for col in ("line", "machine"):
        values = frame[col].fillna("").astype(str) if col in frame.columns else pd.Series([""] * len(frame))
        codes, uniques = pd.factorize(values, sort=True)
        parts.append((codes.astype(np.int64), np.asarray(uniques, dtype=object)))
    (c_line, u_line), (c_machine, u_machine) = parts
    pair, uniques = pd.factorize(c_line * len(u_machine) + c_machine, sort=True)
    return pair, u_line[uniques // len(u_machine)], u_machine[uniques % len(u_machine)]


def register_by_hour(store, measurement: str, field: str, site: SiteInfo, start_ns: int, stop_ns: int,
                     tags: dict) -> tuple[pd.DataFrame, set]:
    """Increase per machine and local hour of a counter register (energy [kWh], good units) from the store's hourly
    ``last`` rollups, all machines at once (:func:`core.storage.intervals.counter_increase_many`, the store's counter
    rule).

    Returns
    -------
    tuple
        DataFrame ``time`` (hour start, UTC), ``line``, ``machine``, ``value`` (hours outside a machine's readings
        left out; ordered by line, machine and time), and the set of ``(line, machine)`` with any reading.
    """
    from core.storage.intervals import counter_increase_many, window_edges

    # One hour before the range: the register value at its start.
    last = store.aggregate(measurement, field, start_ns - HOUR_NS, stop_ns, every=3600, agg="last", tags=tags,
                           tz=site.tz)
    if last.empty:
        return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "line": [], "machine": [],
                             "value": []}), set()
    codes, key_line, key_machine = _pair_codes(last)
    t = pd.to_datetime(last["time"], utc=True).dt.as_unit("ns").astype("int64").to_numpy() + HOUR_NS
    t = np.minimum(t, stop_ns)  # a window's last value ~ its end
    order = np.lexsort((t, codes))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(key_line)))])
    edges = window_edges(start_ns, stop_ns, 3600, site.tz)
    increase = counter_increase_many(t[order], last["value"].to_numpy(dtype=float)[order], offsets, edges)
    series, window = np.nonzero(np.isfinite(increase))
    frame = pd.DataFrame({"time": pd.to_datetime(edges[:-1][window], utc=True), "line": key_line[series],
                          "machine": key_machine[series], "value": increase[series, window]})
    return frame, set(zip(key_line.tolist(), key_machine.tolist()))


def _energy_by_hour(store, site: SiteInfo, start_ns: int, stop_ns: int,
                    only: dict[str, str] | None = None) -> pd.DataFrame:
    empty = pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "line": [], "machine": [], "kwh": []})
    tags = {"site": site.id, **(only or {})}
    registers, seen = register_by_hour(store, *ENERGY, site, start_ns, stop_ns, tags)
    rows = [registers.rename(columns={"value": "kwh"})] if len(registers) else []
    # Power only for machines without register readings: reading a year of every machine's power to drop it again
    # doubled the cost of a long range.
    # The latest values list the power series cheaply (listing series with counts costs seconds on a big store).
    latest = store.last_values(*POWER, tags=tags)
    without = set()
    if not latest.empty and {"line", "machine"} <= set(latest.columns):
        recent = latest[latest["time"].dt.as_unit("ns").astype("int64") >= start_ns]
        without = set(zip(recent["line"].astype(str), recent["machine"].astype(str))) - seen
    power = pd.DataFrame()
    if len(without) == 1:
        line, machine = next(iter(without))
        power = store.aggregate(*POWER, start_ns, stop_ns, every=3600, agg="mean", tz=site.tz,
                                tags={"site": site.id, "line": line, "machine": machine})
    elif without:
        power = store.aggregate(*POWER, start_ns, stop_ns, every=3600, agg="mean", tags=tags, tz=site.tz)
    if not power.empty:
        for (line, machine), part in power.groupby(["line", "machine"], sort=True):
            if (line, machine) in seen:
                continue
            t = pd.to_datetime(part["time"], utc=True).dt.as_unit("ns").to_numpy()
            rows.append(pd.DataFrame({"time": t, "line": line, "machine": machine,
                                      "kwh": part["value"].to_numpy(dtype=float)}))  # mean kW over 1 h = kWh
    if not rows:
        return empty
    out = pd.concat(rows, ignore_index=True)
    out["time"] = pd.to_datetime(out["time"], utc=True)
    return out


STATE = ("machine_state", "state")
#: Longest stretch the state timeline covers [days]: state seconds come from raw state changes.
STATE_DAYS = 7


def state_hours(store, site: SiteInfo, line: str, machine: str, start_ns: int, stop_ns: int) -> pd.DataFrame:
    """Share of each hour a machine spent in each state, over the last :data:`STATE_DAYS` days of the range.

    Returns
    -------
    DataFrame
        ``time`` (hour start, UTC), ``state`` (off, idle, running, fault), ``share`` (0-1).
    """
    from core.model import MACHINE_STATES

    lo = max(start_ns, stop_ns - STATE_DAYS * 86400 * NS)
    frame = store.aggregate(*STATE, lo, stop_ns, every=3600, agg="state_seconds", tz=site.tz,
                            tags={"site": site.id, "line": line, "machine": machine}, max_hold_s=3600)
    if frame.empty:
        return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "state": [], "share": []})
    frame = frame.groupby(["time", "state"], as_index=False)["value"].sum()
    frame["state"] = frame["state"].map(lambda c: MACHINE_STATES.get(int(c), str(c)))
    frame["share"] = frame["value"] / 3600.0
    return frame[["time", "state", "share"]]


def cost_and_co2(site: SiteInfo, hours: pd.DataFrame) -> tuple[float | None, float | None]:
    """Cost [currency] (the site's tariff at each hour) and CO2 [kg] of hourly energy; None when unknown."""
    if hours.empty:
        return (0.0 if site.tariff is not None else None), (0.0 if site.co2_kg_per_kwh is not None else None)
    kwh = hours["kwh"].to_numpy(dtype=float)
    cost = None
    if site.tariff is not None:
        from core.tariff import energy_cost

        times = hours["time"].dt.as_unit("ns").astype("int64").to_numpy() + HOUR_NS // 2
        cost = float(np.nansum(energy_cost(site.tariff, site.tz, times, kwh)))
    co2 = float(np.nansum(kwh) * site.co2_kg_per_kwh) if site.co2_kg_per_kwh is not None else None
    return cost, co2


# -- findings ------------------------------------------------------------------------------------------------------------
def latest_run_findings(store, start_ns: int | None = None, stop_ns: int | None = None) -> list:
    """Findings of the newest analysis run that stored any, overlapping ``[start, stop)``; [] without results.

    Inside a dashboard request they are shared through the results cache (key: the run, its creation time and its
    number of findings, and the range)."""
    from core.errors import StoreError
    from core.storage.results import results_for
    from dashboard.cache import request_cache

    try:
        results = results_for(store)
    except StoreError:
        return []
    with results:
        run = next((r for r in results.runs() if r.findings), None)
        if run is None:
            return []
        cache = request_cache()
        if cache is None:
            return results.query_findings(start_ns, stop_ns, run=run.run)
        # Shared by every callback and user in the range (each filters to what the user may see): reading and
        # building a month of a large plant's findings cost ~0.1 s per callback. A new run, or findings added to or
        # removed from one, changes the key; a run re-stored with as many findings shows after the cache's lifetime.
        key = f"findings|{run.run}|{run.created.isoformat()}|{run.findings}|{start_ns}|{stop_ns}"
        return cache.get_or_compute(key, lambda: results.query_findings(start_ns, stop_ns, run=run.run))


def visible(findings: list, user, sites: list[str]) -> list:
    """Findings of machines in ``sites`` that ``user`` may see (a finding without a site only for all-site roles)."""
    from dashboard.access import machine_site

    out = []
    for ev in findings:
        site = machine_site(ev.machine)
        if site is None:
            if user.all_sites:
                out.append(ev)
        elif site in sites and user.may_see(site):
            out.append(ev)
    return out


def machine_href(path: str) -> str | None:
    """Link of a machine's page (None for a machine without site and line)."""
    from urllib.parse import quote

    parts = str(path).split("/")
    return "/machine/" + "/".join(quote(p, safe="") for p in parts) if len(parts) == 3 else None


def finding_rows(findings: list, plant, default_tz: dt.tzinfo) -> list[dict]:
    """One grid row per finding: plain JSON values, local times of the machine's site, labels for people."""
    rows = []
    sites: dict[str, tuple[SiteInfo, zoneinfo.ZoneInfo]] = {}  # a few sites, thousands of findings
    for ev in findings:
        d = ev.details or {}
        parts = ev.machine.split("/")
        site = parts[0] if len(parts) == 3 else ""
        if site not in sites:
            known = site_info(site, plant, default_tz)
            sites[site] = (known, zoneinfo.ZoneInfo(known.tz))
        info, tz = sites[site]
        currency = d.get("currency") or info.currency
        cost = d.get("cost")
        rows.append({
            "machine": ev.machine,
            "machine_name": parts[-1],
            "site": site,
            "line": parts[1] if len(parts) == 3 else "",
            "category": "Data quality" if ev.kind in METER_FAULT_KINDS else "Waste",
            "kind": KIND_LABELS.get(ev.kind, ev.kind),
            "start": ev.start.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            "hours": round((ev.end - ev.start).total_seconds() / 3600, 2),
            "kwh": round(float(ev.excess_kwh), 1),
            "cost": None if cost is None else round(float(cost), 2),
            "money": fmt_money(cost, currency) if cost is not None else "—",
            "currency": currency or "",
            "co2_kg": None if d.get("co2_kg") is None else round(float(d["co2_kg"]), 1),
            "explanation": d.get("explanation") or KIND_LABELS.get(ev.kind, ev.kind),
            "link": machine_href(ev.machine),
        })
    rows.sort(key=lambda r: -(r["kwh"] or 0))
    return rows


def findings_frame(rows: list[dict]) -> pd.DataFrame:
    """The grid's rows as the table the export buttons download (CSV, Parquet)."""
    columns = ["site", "line", "machine_name", "category", "kind", "start", "hours", "kwh", "cost", "currency",
               "co2_kg", "explanation", "order_id", "order_status", "order_owner", "order_due"]
    frame = pd.DataFrame(rows, columns=columns).rename(columns={"machine_name": "machine", "hours": "duration_h",
                                                                "kwh": "avoidable_kwh"})
    frame["order_id"] = frame["order_id"].astype("Int64")  # ids, not floats; empty without an order
    return frame


def findings_csv(rows: list[dict]) -> str:
    """The grid's rows as CSV (what the export button downloads)."""
    return findings_frame(rows).to_csv(index=False)


# -- the overview ----------------------------------------------------------------------------------------------------------
@dataclass
class Overview:
    """Everything the overview page shows, for the sites chosen."""

    sites: list[SiteInfo]
    start_ns: int
    stop_ns: int
    energy_kwh: float = 0.0
    tiles: dict[str, dict] = field(default_factory=dict)  # "today", "7d", "30d" -> {kwh, cost, co2, currency}
    potential_kwh: float = 0.0
    potential_cost: float | None = None
    potential_co2: float | None = None
    currency: str | None = None
    by_cause: pd.DataFrame = field(default_factory=pd.DataFrame)
    top_machines: pd.DataFrame = field(default_factory=pd.DataFrame)
    heatmap: pd.DataFrame = field(default_factory=pd.DataFrame)
    flows: pd.DataFrame = field(default_factory=pd.DataFrame)
    latest: list = field(default_factory=list)
    findings: int = 0

    @property
    def potential_fraction(self) -> float | None:
        return self.potential_kwh / self.energy_kwh if self.energy_kwh > 0 else None


def _one_currency(currencies) -> str | None:
    found = {c for c in currencies if c}
    return found.pop() if len(found) == 1 else None


def _sums(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """``by``, kwh and cost summed, and the number of findings per value of ``by`` (sorted by it): what a named
    aggregation gives, without its overhead (~50 ms per call)."""
    groups = frame.groupby(by, sort=True)
    out = groups[["kwh", "cost"]].sum()
    out["findings"] = groups.size()
    return out.reset_index()


def _whole_days(start_ns: int, stop_ns: int, tz: zoneinfo.ZoneInfo) -> bool:
    """True when ``start`` and ``stop`` are local midnights (the pages' periods are)."""
    from dashboard.data import local_midnight_ns

    return local_midnight_ns(start_ns, tz) == start_ns and local_midnight_ns(stop_ns, tz) == stop_ns


def overview(store, findings: list, sites: list[SiteInfo], start_ns: int, stop_ns: int, now_ns: int) -> Overview:
    """Compute the overview for ``sites`` over ``[start, stop)``; KPI tiles for today, 7 and 30 days before ``now``.

    Parameters
    ----------
    store : Store
        The store as the user may see it.
    findings : list of Event
        Findings already limited to what the user may see (:func:`visible`).
    sites : list of SiteInfo
    start_ns, stop_ns : int
        The period [ns].
    now_ns : int
        Now [ns] (the KPI tiles end with today).
    """
    from dashboard.periods import day_range

    ov = Overview(sites, start_ns, stop_ns, currency=_one_currency(s.currency for s in sites))
    frames, flows = [], []
    for site in sites:
        tz = zoneinfo.ZoneInfo(site.tz)
        tile_lo = min(day_range(30, now_ns, tz)[0], start_ns)
        tile_hi = max(day_range(1, now_ns, tz)[1], stop_ns)
        # The site's hours (all machines added up) and its machine-days: what the tiles, heatmap and flows show.
        summary = energy_summary(store, site, tile_lo, tile_hi)
        for key, days in (("today", 1), ("7d", 7), ("30d", 30)):
            lo, hi = day_range(days, now_ns, tz)
            sel = summary.hours_in(lo, hi)
            cost, co2 = cost_and_co2(site, sel)
            tile = ov.tiles.setdefault(key, {"kwh": 0.0, "cost": 0.0, "co2": 0.0})
            tile["kwh"] += float(sel["kwh"].sum())
            tile["cost"] = None if cost is None or tile["cost"] is None else tile["cost"] + cost
            tile["co2"] = None if co2 is None or tile["co2"] is None else tile["co2"] + co2
        period = summary.hours_in(start_ns, stop_ns)
        local = period["time"].dt.tz_convert(tz)
        frames.append(period.assign(weekday=local.dt.day_of_week.to_numpy(), hour=local.dt.hour.to_numpy()))
        machines = summary.days_in(start_ns, stop_ns, site.tz) if _whole_days(start_ns, stop_ns, tz) else (
            _energy_by_hour(store, site, start_ns, stop_ns))  # a range cutting a day (not a period of the pages)
        if not machines.empty:
            flows.append(machines.groupby(["line", "machine"], as_index=False)["kwh"].sum().assign(site=site.id))
    if ov.currency is None:
        for tile in ov.tiles.values():
            tile["cost"] = None  # sites in different currencies are not added up
    period = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["time", "kwh", "weekday", "hour"])
    ov.energy_kwh = float(period["kwh"].sum()) if not period.empty else 0.0
    if not period.empty:
        # Mean power per local weekday and hour [kW] (an hour's kWh is its mean kW), summed over sites.
        per_hour = period.groupby(["time", "weekday", "hour"], as_index=False)["kwh"].sum()
        ov.heatmap = per_hour.groupby(["weekday", "hour"], as_index=False)["kwh"].mean().rename(columns={"kwh": "kw"})
    if flows:
        ov.flows = (pd.concat(flows, ignore_index=True)[["site", "line", "machine", "kwh"]]
                    .sort_values(["site", "line", "machine"]).reset_index(drop=True))

    waste = [e for e in findings if e.kind in WASTE_KINDS
             and int(e.start.timestamp() * NS) < stop_ns and int(e.end.timestamp() * NS) > start_ns]
    ov.findings = len(waste)
    if waste:
        frame = pd.DataFrame({
            "kind": [e.kind for e in waste],
            "machine": [e.machine for e in waste],
            "kwh": [float(e.excess_kwh) for e in waste],
            "cost": [np.nan if (e.details or {}).get("cost") is None else float(e.details["cost"]) for e in waste],
            "co2": [np.nan if (e.details or {}).get("co2_kg") is None else float(e.details["co2_kg"]) for e in waste],
        })
        ov.potential_kwh = float(frame["kwh"].sum())
        ov.potential_cost = float(frame["cost"].sum()) if ov.currency and frame["cost"].notna().any() else None
        ov.potential_co2 = float(frame["co2"].sum()) if frame["co2"].notna().any() else None
        cause = _sums(frame, "kind")
        cause = cause.sort_values("kwh", ascending=False).reset_index(drop=True)
        cause["label"] = cause["kind"].map(lambda k: KIND_LABELS.get(k, k))
        total = cause["kwh"].sum()
        cause["cum_pct"] = 100 * cause["kwh"].cumsum() / total if total > 0 else 0.0
        ov.by_cause = cause
        top = _sums(frame, "machine")
        ov.top_machines = top.sort_values("kwh", ascending=False).head(10).reset_index(drop=True)
    ov.latest = sorted(findings, key=lambda e: e.end, reverse=True)[:8]
    return ov

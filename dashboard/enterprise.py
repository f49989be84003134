"""Numbers of the Enterprise KPIs page and the monthly PDF report: per site and in total.

Per site over a period: energy, cost, CO2 (store rollups, :func:`dashboard.overview.energy_by_hour`), the EnPI
"energy per good unit" [kWh/unit] per local week (energy over the increase of the ``production/good_count``
counters), the remaining reduction potential (the newest analysis run's waste findings), and data coverage (share of
the plant file's machines that are metered, completeness from :func:`dashboard.collectors.quality_rows`).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.model import WASTE_KINDS
from dashboard.overview import (
    SiteInfo,
    closed_days_cached,
    cost_and_co2,
    energy_summary,
    local_days,
    read_once,
    register_by_hour,
)

NS = 1_000_000_000
CSV_COLUMNS = ("site", "energy_kwh", "cost", "currency", "co2_kg", "good_units", "kwh_per_unit", "potential_kwh",
               "potential_share", "machines", "metered", "completeness")


@dataclass
class SiteKpis:
    """One site's KPIs over a period (money in the site's currency)."""

    site: SiteInfo
    energy_kwh: float = 0.0
    cost: float | None = None
    co2_kg: float | None = None
    good_units: float = 0.0
    potential_kwh: float = 0.0
    machines: int = 0
    metered: int = 0
    completeness: float | None = None
    weekly: pd.DataFrame = field(default_factory=pd.DataFrame)  # week (local Monday), kwh, good, kwh_per_unit
    daily: pd.DataFrame = field(default_factory=pd.DataFrame)  # day (local), kwh

    @property
    def kwh_per_unit(self) -> float | None:
        return self.energy_kwh / self.good_units if self.good_units > 0 else None

    @property
    def potential_share(self) -> float | None:
        return self.potential_kwh / self.energy_kwh if self.energy_kwh > 0 else None

    def row(self) -> dict:
        """A table/CSV row (raw numbers)."""
        return {"site": self.site.name, "energy_kwh": self.energy_kwh, "cost": self.cost,
                "currency": self.site.currency, "co2_kg": self.co2_kg, "good_units": self.good_units,
                "kwh_per_unit": self.kwh_per_unit, "potential_kwh": self.potential_kwh,
                "potential_share": self.potential_share, "machines": self.machines, "metered": self.metered,
                "completeness": self.completeness}


def site_kpis(store, site: SiteInfo, findings: list, plant, start_ns: int, stop_ns: int, now_ns: int) -> SiteKpis:
    """KPIs of ``site`` over ``[start, stop)`` from ``store`` (already limited to what the user may see)."""
    from dashboard.collectors import completeness_shares

    out = SiteKpis(site)
    # The site's hours (all machines added up) and its good units per local day: a month is hundreds of rows.
    hours = energy_summary(store, site, start_ns, stop_ns).hours
    out.energy_kwh = float(hours["kwh"].sum()) if not hours.empty else 0.0
    out.cost, out.co2_kg = cost_and_co2(site, hours)
    good = good_by_day(store, site, start_ns, stop_ns)
    good_day = good.set_index("day")["good"] if not good.empty else pd.Series(dtype=float)
    out.good_units = float(good_day.sum()) if len(good_day) else 0.0
    if not hours.empty:
        day = local_days(hours["time"], site.tz)
        out.daily = hours.groupby(day)["kwh"].sum().rename_axis("day").reset_index()
        week = (day - pd.to_timedelta(day.dt.day_of_week, unit="D"))
        weekly = hours.groupby(week)["kwh"].sum().rename_axis("week").to_frame()
        if len(good_day):
            gd = pd.Series(good_day.to_numpy(), index=pd.DatetimeIndex(good_day.index))
            gw = gd.groupby(gd.index - pd.to_timedelta(gd.index.day_of_week, unit="D")).sum()
            weekly["good"] = gw.reindex(weekly.index).fillna(0.0)
        else:
            weekly["good"] = 0.0
        weekly["kwh_per_unit"] = weekly["kwh"] / weekly["good"].where(weekly["good"] > 0)
        out.weekly = weekly.reset_index()
    out.potential_kwh = float(sum(e.excess_kwh * _overlap(e, start_ns, stop_ns) for e in findings
                                  if e.kind in WASTE_KINDS and str(e.machine).split("/")[0] == site.id))
    # A machine is metered when it has a power or energy-register value: the latest values say so cheaply (listing
    # series with their counts costs seconds on a year of 200 machines).
    metered = set()
    for name in ("active_power_kw", "energy_kwh"):
        last = store.last_values("electrical", name, tags={"site": site.id})
        if not last.empty and "machine" in last.columns:
            metered |= set(last["machine"].dropna().astype(str))
    if plant is not None:
        planned = [ref for ref in plant.machines if ref.site.id == site.id]
        out.machines = len(planned)
        out.metered = sum(ref.spec.id in metered for ref in planned)
    else:
        out.machines = out.metered = len(metered)
    shares = [v for k, v in completeness_shares(store, start_ns, stop_ns, now_ns, dt.UTC).items()
              if k.split("/")[0] == site.id]
    out.completeness = float(np.mean(shares)) if shares else None
    return out


def good_by_day(store, site: SiteInfo, start_ns: int, stop_ns: int) -> pd.DataFrame:
    """Good units of the site per local day (``day``: naive local midnight, ``good``) from the counters' hourly
    rollups (:func:`dashboard.overview.register_by_hour`: never raw points for a long range); the closed days shared
    through the results cache like the energy (:func:`dashboard.overview.closed_days_cached`)."""

    counters = read_once(start_ns, stop_ns, lambda lo, hi: register_by_hour(
        store, "production", "good_count", site, lo, hi, {"site": site.id})[0])

    def read(lo: int, hi: int) -> pd.DataFrame:
        good = counters(lo, hi)
        if good.empty:
            return pd.DataFrame({"day": pd.Series([], dtype="datetime64[ns]"), "good": pd.Series([], dtype=float)})
        return good.groupby(local_days(good["time"], site.tz))["value"].sum().rename_axis("day").rename(
            "good").reset_index()

    if site.id not in getattr(store, "sites", ()):
        return read(start_ns, stop_ns)
    return closed_days_cached(f"good_by_day|{site.id}|{site.tz}", site.tz, start_ns, stop_ns, read)


def _digest(findings: list) -> str:
    """Fingerprint of a list of findings (a new analysis run changes it)."""
    import hashlib

    return hashlib.sha256(repr([(e.machine, e.kind, e.start.isoformat(), e.end.isoformat(), e.excess_kwh)
                                for e in findings]).encode()).hexdigest()[:16]


def _overlap(event, start_ns: int, stop_ns: int) -> float:
    """Share of a finding's duration inside ``[start, stop)``: its excess counts pro rata, so a month's potential is
    that month's (a finding that began last month does not count whole)."""
    a, b = int(event.start.timestamp() * NS), int(event.end.timestamp() * NS)
    if b <= a:
        return 1.0 if start_ns <= a < stop_ns else 0.0
    return max(0.0, min(b, stop_ns) - max(a, start_ns)) / (b - a)


def totals(kpis: list[SiteKpis]) -> dict:
    """All sites added up; money only when every site has the same currency."""
    currencies = {k.site.currency for k in kpis}
    energy = sum(k.energy_kwh for k in kpis)
    good = sum(k.good_units for k in kpis)
    potential = sum(k.potential_kwh for k in kpis)
    costs = [k.cost for k in kpis if k.cost is not None]
    co2s = [k.co2_kg for k in kpis if k.co2_kg is not None]
    cost = sum(costs) if len(currencies) == 1 and len(costs) == len(kpis) else None
    co2 = sum(co2s) if len(co2s) == len(kpis) else None
    machines, metered = sum(k.machines for k in kpis), sum(k.metered for k in kpis)
    comp = [k.completeness for k in kpis if k.completeness is not None]
    return {"site": "All sites", "energy_kwh": energy, "cost": cost,
            "currency": currencies.pop() if len(currencies) == 1 else None, "co2_kg": co2, "good_units": good,
            "kwh_per_unit": energy / good if good > 0 else None, "potential_kwh": potential,
            "potential_share": potential / energy if energy > 0 else None, "machines": machines,
            "metered": metered, "completeness": float(np.mean(comp)) if comp else None}


def month_range(month: str, tz: str) -> tuple[int, int]:
    """``[start, stop)`` [ns] of local calendar month ``YYYY-MM`` in zone ``tz``; ValueError for a bad month."""
    import zoneinfo

    try:
        first = dt.date.fromisoformat(month + "-01")
    except (TypeError, ValueError):
        raise ValueError(f"month {month!r} is not YYYY-MM, e.g. 2026-11") from None
    nxt = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    zone = zoneinfo.ZoneInfo(tz)
    start = dt.datetime.combine(first, dt.time(), tzinfo=zone)
    stop = dt.datetime.combine(nxt, dt.time(), tzinfo=zone)
    return int(start.timestamp()) * NS, int(stop.timestamp()) * NS


def kpis_frame(rows: list[dict]) -> pd.DataFrame:
    """KPI rows as downloaded (raw numbers)."""
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def kpis_csv(rows: list[dict]) -> str:
    """KPI rows as CSV (raw numbers)."""
    return kpis_frame(rows).to_csv(index=False)


def enterprise_view(raw_store, user, site: str | None, plant, default_tz, now_ns: int, *, days: int | None = None,
                    month: str | None = None, with_rows: bool = True):
    """(per-site KPIs, totals, findings rows) for ``user`` over the last ``days`` or a local calendar ``month``;
    without ``with_rows`` the findings rows are not built (an empty list).

    Raises
    ------
    dashboard.access.AccessDenied
        For a site the user may not see. ValueError for a bad ``month``.
    """
    from dashboard.access import SiteScopedStore, scoped_store, sites_for
    from dashboard.cache import request_cache
    from dashboard.overview import finding_rows, known_sites, latest_run_findings, site_info, visible
    from dashboard.periods import day_range

    chosen = sites_for(user, site, known_sites(scoped_store(raw_store, user), plant))
    infos = [site_info(s, plant, default_tz) for s in chosen]
    kpis, shown = [], []
    for info in infos:
        import zoneinfo

        start, stop = month_range(month, info.tz) if month else day_range(days or 30, now_ns, zoneinfo.ZoneInfo(info.tz))
        found = visible(latest_run_findings(raw_store, start, stop), user, [info.id])
        args = (SiteScopedStore(raw_store, [info.id]), info, found, plant, start, stop, now_ns)
        # Everyone who may see the site shares its KPIs for the cache's lifetime (new findings change the key).
        cache = request_cache()
        kpis.append(site_kpis(*args) if cache is None else cache.get_or_compute(
            f"site_kpis|{info.id}|{start}|{stop}|{_digest(found)}", functools.partial(site_kpis, *args)))
        shown += found
    # The page shows no finding rows (the report and the API do): building a row per finding costs ~0.1 s per month
    # of a large plant.
    rows = [r for r in finding_rows(shown, plant, default_tz) if r["category"] == "Waste"] if with_rows else []
    return kpis, totals(kpis), rows

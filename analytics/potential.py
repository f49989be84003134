"""Reduction potential by cause: how much energy is avoidable, why, where, and what it costs in money and CO2.

House API: ``ReductionPotential(settings).fit(data, fault=..., fine_power=...)`` then ``.events`` (findings as
:class:`core.model.Event` with ``cost``, ``co2_kg``, ``severity`` and ``explanation`` in their details),
``.predict()`` (avoidable energy per machine, window and cause) and ``.to_dict()`` (the potential per cause, machine,
line, site and plant, and the plant total as a fraction of consumption).

Money: every window of excess is priced with its site's tariff at that time (``core.tariff.energy_cost``, time-of-use
aware); a start-up surge additionally carries its share of the demand charge: the month's charge on the site's peak
15-min power minus the charge had the surges not happened. CO2: the site's grid factor [kg/kWh].
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from analytics.causes import DETECTORS, Context
from analytics.data import IntervalData
from analytics.errors import AnalyticsError
from core.config import FrozenModel
from core.model import WASTE_KINDS, Event
from core.notices import Notice

NS = 1_000_000_000
LABELS = {"idle_running": "idle running", "off_shift_load": "off-shift load",
          "excess_specific_energy": "excess specific energy", "air_leak": "air leaks", "peak_demand": "peak demand"}


class PotentialSettings(FrozenModel):
    """Settings of :class:`ReductionPotential`."""

    causes: tuple[str, ...] = Field(WASTE_KINDS, description="Causes to assess (core.model.WASTE_KINDS).")
    min_event_kwh: float = Field(0.05, ge=0, description="Findings below this excess are dropped [kWh].")


@dataclass(frozen=True)
class SiteEconomics:
    """Tariff, currency, CO2 factor and time zone of one site."""

    site: str
    timezone: str
    currency: str | None
    tariff: Any
    co2_kg_per_kwh: float | None


def site_economics(data: IntervalData) -> dict[str, SiteEconomics]:
    """Per site: what the plant file says about prices and CO2 (nothing without a plant file)."""
    out: dict[str, SiteEconomics] = {}
    plant_sites = {s.id: s for s in data.plant.sites} if data.plant is not None else {}
    for info in data.machines.values():
        if info.site in out:
            continue
        spec = plant_sites.get(info.site)
        if spec is None:
            out[info.site] = SiteEconomics(info.site, info.timezone or "UTC", None, None, None)
        else:
            out[info.site] = SiteEconomics(info.site, spec.timezone, getattr(spec, "currency", "EUR"),
                                           getattr(spec, "tariff", None), getattr(spec, "co2_kg_per_kwh", None))
    return out


def _part_of_day(t: dt.datetime) -> str:
    h = t.hour
    return "night" if h < 6 or h >= 22 else "morning" if h < 12 else "afternoon" if h < 18 else "evening"


def _when(t: dt.datetime) -> str:
    return f"{t.strftime('%A')} {_part_of_day(t)} ({t.strftime('%d %b %H:%M')})"


def _money(cost: float | None, currency: str | None) -> str:
    return "" if cost is None or currency is None else f", {cost:,.0f} {currency}" if cost >= 10 else f", {cost:,.2f} {currency}"


def explain(kind: str, machine: str, start: dt.datetime, end: dt.datetime, kwh: float, cost: float | None,
            currency: str | None, co2: float | None, details: dict) -> str:
    """One plain sentence for a plant manager (local times of the site)."""
    name = machine.split("/")[-1]
    hours = (end - start).total_seconds() / 3600
    tail = f": {kwh:,.1f} kWh{_money(cost, currency)}" + (f", {co2:,.0f} kg CO2" if co2 is not None else "")
    if kind == "idle_running":
        ctx = details.get("context")
        kw = details.get("idle_kw", 0.0)
        if ctx == "break":
            return f"{name} idled through the break on {_when(start)} at {kw:.0f} kW instead of eco mode{tail}"
        if ctx == "shift":
            return f"{name} idled {hours:.1f} h on {_when(start)} at {kw:.0f} kW with no production and no setup{tail}"
        return f"{name} idled {hours:.1f} h from {_when(start)} at {kw:.0f} kW outside the shift{tail}"
    if kind == "off_shift_load":
        return (f"{name} stayed on from {_when(start)} to {_when(end)} at {details.get('mean_kw', 0):.0f} kW where "
                f"{details.get('base_kw', 0):.0f} kW must run{tail}")
    if kind == "air_leak":
        return (f"{name}: a compressed-air leak of {details.get('leak_m3_min_at_start', 0):.1f} to "
                f"{details.get('leak_m3_min_at_end', 0):.1f} m3/min from {start.strftime('%d %b')} to "
                f"{end.strftime('%d %b')}{tail}")
    if kind == "excess_specific_energy":
        peak = details.get("ratio_to_best_practice_max") or 1.0
        return (f"{name} used up to {100 * (peak - 1):.0f}% more energy than its best practice for the same work "
                f"for {details.get('days', 0)} days from {start.strftime('%A %d %b')}{tail}")
    if kind == "peak_demand":
        extra = details.get("demand_charge")
        dc = f" plus {extra:,.0f} {currency} demand charge" if extra and currency else ""
        return (f"{name} started with a {details.get('surge_kw', 0):.0f} kW surge on {_when(start)} together with "
                f"{details.get('group_size', 1) - 1} other machine(s){tail}{dc}")
    return f"{name}: {LABELS.get(kind, kind)} {tail}"


class ReductionPotential:
    """Avoidable energy by cause, with costs, CO2 and findings (see the module docstring).

    Parameters
    ----------
    settings : PotentialSettings, optional
    """

    def __init__(self, settings: PotentialSettings | None = None) -> None:
        self.settings = settings or PotentialSettings()
        bad = [c for c in self.settings.causes if c not in DETECTORS]
        if bad:
            raise AnalyticsError(f"unknown cause(s) {bad}; valid: {', '.join(DETECTORS)}")
        self.data: IntervalData | None = None
        self.excess: dict[str, np.ndarray] = {}
        self.cost: dict[str, np.ndarray] = {}
        self.events: list[Event] = []
        self.warnings: list[Notice] = []
        self.assessed: dict[str, list[str]] = {}
        self.demand_charge: dict[str, float] = {}

    # -- fitting ------------------------------------------------------------------------------------------------------
    def fit(self, data: IntervalData, fault: np.ndarray | None = None,
            fine_power: Callable[[str, int, int], tuple[np.ndarray, np.ndarray]] | None = None) -> ReductionPotential:
        """Run the detectors on ``data``.

        Parameters
        ----------
        data : IntervalData
            15-min interval data (any resolution works; demand charges assume 15 min).
        fault : ndarray of bool (machines x windows), optional
            Windows with a meter fault (``analytics.quality``): never counted as waste.
        fine_power : callable, optional
            ``fine_power(path, start_ns, stop_ns) -> (times_ns, kw)`` 1-min power (peak demand needs it).
        """
        if not data.machines or data.n_times == 0:
            raise AnalyticsError("no interval data to assess: the range holds no machine with energy data")
        self.data = data
        ctx = Context(data, fault, fine_power)
        self._ctx = ctx
        econ = site_economics(data)
        self.econ = econ
        if data.plant is not None:
            series = {s.id: s.co2_series for s in data.plant.sites if getattr(s, "co2_series", None)}
            if series:
                self.warnings.append(Notice("analytics.potential.co2_series_not_used",
                                            "a time-varying grid CO2 factor is configured but CO2 is computed with each "
                                            "site's constant co2_kg_per_kwh", {"co2_series": series}))
        found: list[tuple[str, int, int, int, dict]] = []
        for kind, detect in DETECTORS.items():
            if kind not in self.settings.causes:
                continue
            res = detect(ctx)
            # Never count a meter-fault window, never count energy twice.
            ex = np.where(ctx.fault, 0.0, np.clip(res.excess, 0, None))
            room = np.clip(np.where(np.isfinite(ctx.E), ctx.E, 0) - ctx.claimed, 0, None)
            ex = np.minimum(ex, room)
            ctx.claimed += ex
            ctx.claimed_by[kind] = ex
            self.excess[kind] = ex
            self.warnings.extend(res.warnings)
            self.assessed[kind] = res.assessed
            found.extend((kind, i, a, b, d) for i, a, b, d in res.events)
        if data.plant is None:
            self.warnings.append(Notice("analytics.potential.no_plant",
                                        "no plant file: costs, CO2 and the causes that need shift calendars or machine "
                                        "kinds were not assessed (see the other warnings for which and why)",
                                        {"assessed": {k: len(v) for k, v in self.assessed.items()}}))
        self._price(econ)
        self.events = self._events(found, econ)
        return self

    def _price(self, econ: dict[str, SiteEconomics]) -> None:
        ctx = self._ctx
        t = ctx.times_ns
        missing = set()
        # Price per window and machine (one price series per site: energy_cost is price x energy).
        price = np.full((ctx.n_m, ctx.n_t), np.nan)
        per_site: dict[str, np.ndarray] = {}
        for i, info in enumerate(ctx.infos):
            e = econ[info.site]
            if e.tariff is None:
                missing.add(info.site)
                continue
            if info.site not in per_site:
                from core.tariff import energy_cost

                per_site[info.site] = energy_cost(e.tariff, e.timezone, t, np.ones(ctx.n_t))
            price[i] = per_site[info.site]
        for kind, ex in self.excess.items():
            self.cost[kind] = price * ex
        if missing:
            self.warnings.append(Notice("analytics.potential.no_tariff", f"no tariff for site(s) {sorted(missing)}: "
                                        "their avoidable energy is reported in kWh without money",
                                        {"sites": sorted(missing)}))
        # Demand charge avoided without the surges, per site and month.
        self._dc_by_window = np.zeros((ctx.n_m, ctx.n_t))
        peak = self.excess.get("peak_demand")
        if peak is None or not peak.any():
            return
        from core.tariff import demand_charges

        for site, e in econ.items():
            if e.tariff is None or not getattr(e.tariff, "demand_charge_per_kw", 0):
                continue
            rows = [i for i, info in enumerate(ctx.infos) if info.site == site]
            kw = ctx.E_acct[rows].sum(axis=0) / ctx.h
            surge_kw = peak[rows].sum(axis=0) / ctx.h
            with_ = demand_charges(e.tariff, e.timezone, t, kw)
            without = demand_charges(e.tariff, e.timezone, t, kw - surge_kw)
            saved = dict(zip(with_["month"], with_["charge"] - without["charge"].to_numpy()))
            months = pd.DatetimeIndex(t, tz="UTC").tz_convert(e.timezone).strftime("%Y-%m").to_numpy()
            for month, amount in saved.items():
                if amount <= 0:
                    continue
                sel = months == month
                share = peak[rows][:, sel]
                total = share.sum()
                if total > 0:
                    block = self._dc_by_window[rows]
                    block[:, sel] += amount * share / total
                    self._dc_by_window[rows] = block
                    self.demand_charge[site] = self.demand_charge.get(site, 0.0) + float(amount)

    def _events(self, found: list, econ: dict[str, SiteEconomics]) -> list[Event]:
        ctx = self._ctx
        res_ns = int(ctx.res * NS)
        t = ctx.times_ns
        daily = ctx.E_acct.sum(axis=1) / max(ctx.n_t * ctx.h / 24, 1e-9)
        groups: dict[str, int] = {}
        for kind, _i, _a, _b, d in found:
            if kind == "peak_demand":
                groups[d["group"]] = groups.get(d["group"], 0) + 1
        events = []
        for kind, i, a, b, d in found:
            info = ctx.infos[i]
            e = econ[info.site]
            kwh = float(self.excess[kind][i, a:b].sum())
            if kwh < self.settings.min_event_kwh:
                continue
            c = self.cost[kind][i, a:b]
            cost = float(np.nansum(c)) if np.isfinite(c).any() else None
            details = {k: v for k, v in d.items() if k not in ("start_ns", "end_ns")}
            if kind == "peak_demand":
                dc = float(self._dc_by_window[i, a:b].sum())
                details["demand_charge"] = round(dc, 2)
                details["group_size"] = groups.get(d["group"], 1)
                cost = None if cost is None else cost + dc
                start_ns, end_ns = d.get("start_ns", t[a]), d.get("end_ns", t[b - 1] + res_ns)
            else:
                start_ns, end_ns = int(t[a]), int(t[b - 1]) + res_ns
            co2 = kwh * e.co2_kg_per_kwh if e.co2_kg_per_kwh is not None else None
            start = dt.datetime.fromtimestamp(start_ns / NS, dt.UTC)
            end = dt.datetime.fromtimestamp(end_ns / NS, dt.UTC)
            tz = e.timezone or "UTC"
            text = explain(kind, info.path, start.astimezone(zoneinfo.ZoneInfo(tz)), end.astimezone(zoneinfo.ZoneInfo(tz)),
                           kwh, cost, e.currency, co2, details)
            details.update(cost=None if cost is None else round(cost, 4), co2_kg=None if co2 is None else round(co2, 4),
                           severity=round(float(np.clip(kwh / max(daily[i], 1e-9), 0, 1)), 4), explanation=text,
                           currency=e.currency)
            events.append(Event(info.path, kind, start, end, kwh, details))
        events.sort(key=lambda ev: (ev.start, ev.machine, ev.kind))
        return events

    # -- results --------------------------------------------------------------------------------------------------
    def _check(self) -> Context:
        if self.data is None:
            raise AnalyticsError("ReductionPotential is not fitted; call fit(data) first")
        return self._ctx

    @property
    def plant_energy_kwh(self) -> float:
        """Metered energy of every machine over the range [kWh]."""
        ctx = self._check()
        return float(ctx.E_acct.sum())

    def predict(self) -> pd.DataFrame:
        """Avoidable energy per machine, window and cause (long form, non-zero rows only).

        Returns
        -------
        DataFrame
            ``machine``, ``time`` (window start, UTC), ``kind``, ``excess_kwh`` [kWh], ``cost`` [currency] (NaN without a
            tariff).
        """
        ctx = self._check()
        parts = []
        times = pd.DatetimeIndex(ctx.times_ns, tz="UTC")
        for kind, ex in self.excess.items():
            mi, ti = np.nonzero(ex > 0)
            cost = self.cost[kind][mi, ti] + (self._dc_by_window[mi, ti] if kind == "peak_demand" else 0)
            parts.append(pd.DataFrame({"machine": np.asarray(ctx.paths, dtype=object)[mi], "time": times[ti],
                                       "kind": kind, "excess_kwh": ex[mi, ti], "cost": cost}))
        if not parts:
            return pd.DataFrame(columns=["machine", "time", "kind", "excess_kwh", "cost"])
        return pd.concat(parts, ignore_index=True)

    def by_scope(self, scope: str) -> list[dict]:
        """Potential per ``scope`` ("machine", "line", "site", "plant"): energy, avoidable kWh, cost, CO2 per cause."""
        ctx = self._check()
        assert self.data is not None, "_check() raised for an unfitted model"
        out = []
        groups = self.data.groups(scope)
        for key, rows in groups.items():
            energy = float(ctx.E_acct[rows].sum())
            item: dict[str, Any] = {"scope": scope, "id": key, "energy_kwh": round(energy, 3), "by_cause": {}}
            total = cost_total = co2_total = 0.0
            has_cost = has_co2 = False
            for kind, ex in self.excess.items():
                kwh = float(ex[rows].sum())
                c = self.cost[kind][rows]
                cost = float(np.nansum(c)) if np.isfinite(c).any() else None
                if kind == "peak_demand" and cost is not None:
                    cost += float(self._dc_by_window[rows].sum())
                co2 = sum(float(ex[r].sum()) * (self.econ[ctx.infos[r].site].co2_kg_per_kwh or 0) for r in rows)
                known_co2 = any(self.econ[ctx.infos[r].site].co2_kg_per_kwh is not None for r in rows)
                item["by_cause"][kind] = {"kwh": round(kwh, 3), "cost": None if cost is None else round(cost, 2),
                                          "co2_kg": round(co2, 3) if known_co2 else None}
                total += kwh
                if cost is not None:
                    cost_total += cost
                    has_cost = True
                if known_co2:
                    co2_total += co2
                    has_co2 = True
            item.update(avoidable_kwh=round(total, 3), fraction=round(total / energy, 5) if energy > 0 else None,
                        cost=round(cost_total, 2) if has_cost else None, co2_kg=round(co2_total, 3) if has_co2 else None)
            out.append(item)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The potential: plant totals, per cause, per machine, line and site (JSON-able)."""
        self._check()
        plant = self.by_scope("plant")[0]
        currencies = sorted({e.currency for e in self.econ.values() if e.currency and e.tariff is not None})
        return {
            "total_kwh": plant["avoidable_kwh"],
            "fraction": plant["fraction"],
            "cost": plant["cost"],
            "currency": currencies[0] if len(currencies) == 1 else currencies or None,
            "co2_kg": plant["co2_kg"],
            "by_cause": {k: v["kwh"] for k, v in plant["by_cause"].items()},
            "by_cause_detail": plant["by_cause"],
            "demand_charge_avoidable": {k: round(v, 2) for k, v in self.demand_charge.items()},
            "assessed": {k: len(v) for k, v in self.assessed.items()},
            "by_site": self.by_scope("site"),
            "by_line": self.by_scope("line"),
            "by_machine": self.by_scope("machine"),
        }

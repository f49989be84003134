"""Energy by material: production machines' metered energy allocated to the materials they ran, with closure.

Method. In each interval a production machine's metered energy is shared among the materials it consumed in that
interval, pro rata to their mass, and so are its good parts; energy in intervals in which it consumed no material
(idling, warm-up, waiting for an order, off-shift load) is *not attributable* to a material and is reported as such,
never spread over the materials. Allocated plus not attributable equals the machines' metered energy: the closure is
reported (``closure_error_kwh``), so a user can see that nothing was invented or dropped. Intervals whose energy is
unknown (a meter gap) are left out of both and counted separately.

Intensity per material: ``kwh_per_kg`` [kWh/kg] and ``kwh_per_unit`` [kWh per good part]. With thousands of ids most
materials are rare: the long tail is summarised (how many ids make up 80 % of the allocated energy) and ids below a
minimum mass (``min_kg``) are kept in the totals but not ranked, because one small batch gives a noisy intensity.

House API: ``MaterialAllocation(settings).fit(data)`` then ``.table()``, ``.top()``, ``.to_dict()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analytics.data import NS, IntervalData, machine_index
from analytics.errors import AnalyticsError

COLUMNS = ["material", "kg", "units", "kwh", "kwh_per_kg", "kwh_per_unit", "machines"]


@dataclass(frozen=True)
class MaterialSettings:
    """Settings of :class:`MaterialAllocation`.

    Parameters
    ----------
    min_kg : float
        Least mass of a material [kg] for it to be ranked by intensity (it counts in every total regardless).
    tail_share : float
        Share of allocated energy that defines the "head" of the distribution (0-1); the rest is the long tail.
    """

    min_kg: float = 1.0
    tail_share: float = 0.8


class MaterialAllocation:
    """Allocate production machines' energy to materials (see the module docstring)."""

    def __init__(self, settings: MaterialSettings | None = None) -> None:
        self.settings = settings or MaterialSettings()
        self._table: pd.DataFrame | None = None
        self._rows: pd.DataFrame | None = None  # per machine, window and material: kg, units, kWh allocated
        self._closure: dict[str, float] = {}

    def fit(self, data: IntervalData) -> MaterialAllocation:
        """Allocate the energy of ``data``'s production machines (those that consumed any material).

        Returns
        -------
        MaterialAllocation
            ``self``, fitted.
        """
        mats = data.materials
        if mats is None or mats.empty:
            self._table = pd.DataFrame(columns=COLUMNS)
            self._rows = pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "material": [], "kg": [],
                                       "units": [], "kwh": []})
            self._closure = {"metered_kwh": 0.0, "allocated_kwh": 0.0, "not_attributable_kwh": 0.0,
                             "unknown_energy_intervals": 0, "closure_error_kwh": 0.0, "machines": 0}
            return self
        mats = mats[["machine", "time", "material", "kg"]]
        mats = mats[(mats["kg"] > 0).to_numpy()]
        # Each material row's window on the container's grid, by integer codes (no string copy of the rows); the
        # frame may hold some machines only (a site's), so its rows are found through the same (machine, window) key.
        paths, res_ns = data.machine_ids, data.resolution_s * NS
        start_ns = int(pd.Timestamp(data.start).value)
        n_t = max(1, -(-(int(pd.Timestamp(data.stop).value) - start_ns) // res_ns))

        def keys(machine: pd.Series, time: pd.Series) -> np.ndarray:
            mi = machine_index(machine, paths)
            tns = pd.DatetimeIndex(time).as_unit("ns").asi8
            ti = (tns - start_ns) // res_ns
            on = (mi >= 0) & (ti >= 0) & (ti < n_t) & ((tns - start_ns) % res_ns == 0)
            return np.where(on, mi * n_t + ti, -1)

        fkey = keys(data.frame["machine"], data.frame["time"])
        pos = np.full(len(paths) * n_t + 1, -1, dtype=np.int64)  # last slot: key -1
        pos[fkey[fkey >= 0]] = np.arange(len(fkey))[fkey >= 0]
        flat = keys(mats["machine"], mats["time"])
        row = pos[flat]
        on = row >= 0
        mi = machine_index(mats["machine"], paths)
        used = np.unique(mi[mi >= 0])
        energy_all = data.frame["energy_kwh"].to_numpy(float)
        good_all = data.frame["good"].to_numpy()
        kg = mats["kg"].to_numpy()
        e_row = np.where(on, energy_all[np.maximum(row, 0)], np.nan)
        good_row = np.where(on, good_all[np.maximum(row, 0)], np.nan).astype(good_all.dtype)
        # The machines' own windows, in frame order (rows of the machines that consumed any material).
        rows_of = np.flatnonzero(np.isin(np.where(fkey >= 0, fkey // n_t, -1), used))
        energy = energy_all[rows_of]
        if np.isnan(e_row).all() and not np.isnan(energy).all():
            raise AnalyticsError("material rows do not line up with the interval grid (time or machine ids differ)")
        total_kg = pd.Series(kg).groupby(flat, sort=False).transform("sum").to_numpy()
        share = kg / total_kg
        kwh = e_row * share  # NaN where the interval's energy is unknown
        units = np.nan_to_num(good_row, nan=0.0) * share
        known = ~np.isnan(kwh)
        m = pd.DataFrame({"time": mats["time"].array[known],
                          "material": mats["material"].array[known], "kg": kg[known], "units": units[known],
                          "kwh": kwh[known]})
        self._rows = m
        per = (m.assign(machine=mi[known]).groupby("material", sort=False, observed=True)
               .agg(kg=("kg", "sum"), units=("units", "sum"), kwh=("kwh", "sum"), machines=("machine", "nunique")))
        per["kwh_per_kg"] = per["kwh"] / per["kg"]
        per["kwh_per_unit"] = per["kwh"] / per["units"].where(per["units"] > 0)
        per.index = per.index.astype(str)
        per.index.name = "material"
        self._table = per.reset_index()[COLUMNS].sort_values("kwh", ascending=False, ignore_index=True)

        flag = np.zeros(len(energy_all), dtype=bool)
        flag[row[on]] = True
        with_material = flag[rows_of]
        metered = float(np.nansum(energy))
        allocated = float(per["kwh"].sum())
        not_attributable = float(np.nansum(energy[~with_material]))
        machines = used
        self._closure = {
            "metered_kwh": metered,
            "allocated_kwh": allocated,
            "not_attributable_kwh": not_attributable,
            "unknown_energy_intervals": int((with_material & ~np.isfinite(energy)).sum()),
            "closure_error_kwh": metered - allocated - not_attributable,
            "machines": len(machines),
        }
        return self

    def _fitted(self) -> pd.DataFrame:
        if self._table is None:
            raise AnalyticsError("MaterialAllocation is not fitted: call fit(data) first")
        return self._table

    def table(self) -> pd.DataFrame:
        """Every material: ``material``, ``kg`` [kg], ``units`` [good parts], ``kwh`` [kWh], ``kwh_per_kg``,
        ``kwh_per_unit`` and the number of ``machines`` that ran it; largest energy first."""
        return self._fitted().copy()

    def by_day(self, timezone: str = "UTC") -> pd.DataFrame:
        """The allocation per local calendar day and material, so that any range of whole days adds up.

        Parameters
        ----------
        timezone : str
            IANA zone whose calendar days are used (the site's; days of 23 or 25 h across daylight-saving changes).

        Returns
        -------
        DataFrame
            ``time`` (the local day's midnight, as UTC), ``material``, ``kg`` [kg], ``units`` [good parts], ``kwh``
            [kWh]; summed over days they equal :meth:`table`.
        """
        if self._rows is None:
            raise AnalyticsError("MaterialAllocation is not fitted: call fit(data) first")
        rows = self._rows
        if rows.empty:
            return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "material": pd.Series([], dtype=str),
                                 "kg": [], "units": [], "kwh": []})
        day = pd.DatetimeIndex(rows["time"]).tz_convert(timezone).normalize().tz_convert("UTC")
        # Material ids are a categorical with sorted categories: grouped by code, ordered as by id.
        out = (rows.assign(time=day).groupby(["time", "material"], sort=True, observed=True)[["kg", "units", "kwh"]]
               .sum().reset_index())
        return out.assign(material=out["material"].astype(str))

    def top(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most energy-intensive materials [kWh/kg] among those with at least ``min_kg``."""
        table = self._fitted()
        ranked = table[table["kg"] >= self.settings.min_kg].sort_values("kwh_per_kg", ascending=False).head(limit)
        return [{"material": r.material, "kg": round(float(r.kg), 3), "units": round(float(r.units), 1),
                 "kwh": round(float(r.kwh), 3), "kwh_per_kg": round(float(r.kwh_per_kg), 4),
                 "kwh_per_unit": None if not np.isfinite(r.kwh_per_unit) else round(float(r.kwh_per_unit), 4)}
                for r in ranked.itertuples()]

    def to_dict(self) -> dict[str, Any]:
        """Closure, long-tail summary and counts (JSON-ready)."""
        table = self._fitted()
        kwh = np.sort(table["kwh"].to_numpy(float))[::-1]
        total = float(kwh.sum())
        head = int(np.searchsorted(np.cumsum(kwh), self.settings.tail_share * total) + 1) if total > 0 else 0
        return {
            **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in self._closure.items()},
            "materials": len(table),
            "ranked": int((table["kg"] >= self.settings.min_kg).sum()),
            "head_materials": min(head, len(table)),
            "head_share": self.settings.tail_share,
        }

"""Energy performance indicators (ISO 50006 EnPIs): specific energy per good unit and per kg of material, per
production machine and line, against the machine's own best practice at similar conditions.

Energy counted is the energy of *producing* windows (the machine ran for at least ``min_running_share`` of the
window), so that idling and off-shift load, which are causes of their own, do not inflate the specific energy. Per
local calendar day: kWh, good units, kg, running hours and the output rate (good units per running hour). Similar
conditions are days whose output rate falls in the same quantile bin of the machine's own rates; best practice is a low
quantile (``best_quantile``) of the daily specific energy within the bin (all days when a bin has too few). The excess
of a day is ``(SEC - best) * good`` where positive: the energy the machine would have saved at its own best practice.
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
import pandas as pd
from pydantic import Field

from analytics.data import IntervalData, machine_index
from analytics.errors import AnalyticsError
from core.config import FrozenModel

#: Version of the saved form (``to_dict``).
VERSION = 1


class EnpiSettings(FrozenModel):
    """How EnPIs and best practice are computed.

    Parameters
    ----------
    best_quantile : float
        Quantile of the daily specific energy taken as best practice.
    rate_bins : int
        Output-rate bins per machine ("similar conditions").
    min_days_per_bin : int
        A bin with fewer producing days uses the machine's best practice over all days.
    min_running_share : float
        Share of a window the machine must run for the window to count as producing.
    min_good_per_day : float
        Days with fewer good units are left out (start-up days, trials).
    """

    best_quantile: float = Field(0.1, ge=0, le=0.5)
    rate_bins: int = Field(4, ge=1, le=20)
    min_days_per_bin: int = Field(3, ge=1)
    min_running_share: float = Field(0.5, gt=0, le=1)
    min_good_per_day: float = Field(10.0, ge=0)


def _day_index(data: IntervalData, timezone: str) -> tuple[np.ndarray, pd.Index]:
    """Local calendar day of each window start: index per window and the dates."""
    local = pd.DatetimeIndex(data.times_ns, tz="UTC").tz_convert(timezone)
    dates = pd.Index(local.date)
    codes, uniques = pd.factorize(dates, sort=True)
    return codes, pd.Index(uniques)


class RateBins(TypedDict):
    """Best practice of one scope per output-rate bin (``SpecificEnergy.bins`` values)."""

    rate_edges: list[float]  # inner bin edges [units per running hour]
    best_kwh_per_unit: list[float]  # one per bin [kWh/unit]
    overall_best_kwh_per_unit: float  # over every day of the scope [kWh/unit]


class SpecificEnergy:
    """Specific energy (kWh per good unit, kWh per kg) per production machine and line, with best practice.

    Attributes
    ----------
    daily : DataFrame
        One row per scope and local day: ``scope`` (``machine:<path>`` or ``line:<site/line>``), ``date``,
        ``energy_kwh``, ``good``, ``kg``, ``run_h``, ``rate`` [units/h], ``kwh_per_unit``, ``kwh_per_kg``, ``bin``,
        ``best_kwh_per_unit``, ``excess_kwh``.
    summary : DataFrame
        One row per scope: totals, ``kwh_per_unit``, ``kwh_per_kg``, ``best_kwh_per_unit``, ``excess_kwh`` and
        ``excess_share`` (excess / energy).
    """

    def __init__(self, settings: EnpiSettings | None = None) -> None:
        self.settings = settings or EnpiSettings()
        self.daily = pd.DataFrame()
        self.summary = pd.DataFrame()
        self.bins: dict[str, RateBins] = {}

    def fit(self, data: IntervalData, exclude: np.ndarray | None = None) -> SpecificEnergy:
        """Compute daily EnPIs and best practice from interval data.

        Parameters
        ----------
        data : IntervalData
            Interval data with good counts (production machines).
        exclude : ndarray of bool, optional
            (machines x windows) to leave out (meter faults).

        Raises
        ------
        AnalyticsError
            When no machine has good counts (nothing to relate energy to).
        """
        s = self.settings
        e = data.matrix("energy_kwh").astype(float)
        good = np.nan_to_num(data.matrix("good").astype(float))
        run = np.nan_to_num(data.matrix("s_running").astype(float))
        producing = (run >= s.min_running_share * data.resolution_s) & np.isfinite(e)
        if exclude is not None:
            producing &= ~np.asarray(exclude, dtype=bool)
        kg = np.zeros_like(e)
        if len(data.materials):
            mi = machine_index(data.materials["machine"], data.machine_ids)
            ti = (pd.DatetimeIndex(data.materials["time"]).as_unit("ns").asi8 - data.times_ns[0]) // (data.resolution_s * 10**9)
            ok = (mi >= 0) & (ti >= 0) & (ti < data.n_times)
            np.add.at(kg, (mi[ok].astype(int), ti[ok].astype(int)), data.materials["kg"].to_numpy(dtype=float)[ok])
        with_counts = [i for i in range(len(data.machines)) if good[i].sum() > 0]
        if not with_counts:
            raise AnalyticsError("no machine has good counts in the range: specific energy per unit cannot be computed")
        rows = []
        day_cache: dict[str, tuple[np.ndarray, pd.Index]] = {}
        infos = list(data.machines.values())
        per_machine: dict[int, pd.DataFrame] = {}
        for i in with_counts:
            tz = infos[i].timezone
            if tz not in day_cache:
                day_cache[tz] = _day_index(data, tz)
            codes, dates = day_cache[tz]
            n_days = len(dates)
            w = producing[i]
            agg = {name: np.bincount(codes[w], x[w], n_days) for name, x in
                   (("energy_kwh", e[i]), ("good", good[i]), ("kg", kg[i]), ("run_h", run[i] / 3600.0))}
            frame = pd.DataFrame({"scope": f"machine:{infos[i].path}", "date": dates, **agg})
            per_machine[i] = frame
            rows.append(self._best(frame))
        lines: dict[str, list[int]] = {}
        for i in with_counts:
            lines.setdefault(f"{infos[i].site}/{infos[i].line}", []).append(i)
        for key, members in lines.items():
            if len({infos[i].timezone for i in members}) > 1:
                continue
            total = sum(per_machine[i][["energy_kwh", "good", "kg", "run_h"]].to_numpy() for i in members)
            frame = pd.DataFrame(total, columns=["energy_kwh", "good", "kg", "run_h"])
            frame.insert(0, "date", per_machine[members[0]]["date"].to_numpy())
            frame.insert(0, "scope", f"line:{key}")
            rows.append(self._best(frame))
        self.daily = pd.concat(rows, ignore_index=True)
        self.summary = self._summarise(self.daily)
        return self

    def _best(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Daily SEC, rate bins and best practice of one scope."""
        s = self.settings
        frame = frame[frame["good"] >= max(s.min_good_per_day, 1e-9)].copy()
        frame["rate"] = frame["good"] / frame["run_h"].where(frame["run_h"] > 0)
        frame["kwh_per_unit"] = frame["energy_kwh"] / frame["good"]
        frame["kwh_per_kg"] = frame["energy_kwh"] / frame["kg"].where(frame["kg"] > 0)
        scope = str(frame["scope"].iloc[0]) if len(frame) else ""
        if len(frame) == 0:
            return frame.assign(bin=pd.Series(dtype=int), best_kwh_per_unit=np.nan, excess_kwh=0.0)
        n_bins = max(1, min(s.rate_bins, len(frame) // max(s.min_days_per_bin, 1)))
        edges = np.unique(np.nanquantile(frame["rate"], np.linspace(0, 1, n_bins + 1)))
        inner = edges[1:-1]
        frame["bin"] = np.searchsorted(inner, frame["rate"].to_numpy(), side="right")
        overall = float(np.nanquantile(frame["kwh_per_unit"], s.best_quantile))
        best = {}
        for b, group in frame.groupby("bin"):
            best[int(b)] = float(np.nanquantile(group["kwh_per_unit"], s.best_quantile)) \
                if len(group) >= s.min_days_per_bin else overall
        frame["best_kwh_per_unit"] = frame["bin"].map(best).astype(float)
        frame["excess_kwh"] = np.maximum(frame["kwh_per_unit"] - frame["best_kwh_per_unit"], 0.0) * frame["good"]
        self.bins[scope] = {"rate_edges": [float(x) for x in inner], "best_kwh_per_unit": [best.get(b, overall) for b in range(len(inner) + 1)],
                            "overall_best_kwh_per_unit": overall}
        return frame

    @staticmethod
    def _summarise(daily: pd.DataFrame) -> pd.DataFrame:
        if daily.empty:
            return pd.DataFrame()
        g = daily.groupby("scope", sort=False)
        out = g[["energy_kwh", "good", "kg", "run_h", "excess_kwh"]].sum()
        out["days"] = g.size()
        out["kwh_per_unit"] = out["energy_kwh"] / out["good"]
        out["kwh_per_kg"] = out["energy_kwh"] / out["kg"].where(out["kg"] > 0)
        out["best_kwh_per_unit"] = g["best_kwh_per_unit"].median()
        out["excess_share"] = out["excess_kwh"] / out["energy_kwh"].where(out["energy_kwh"] > 0)
        return out.reset_index()

    def best_practice(self, scope: str, rate: float) -> float:
        """Best-practice specific energy [kWh/unit] of a scope (``machine:<path>`` or ``line:<key>``) at an output rate
        [units per running hour]."""
        if scope not in self.bins:
            raise AnalyticsError(f"no EnPI for {scope!r}; scopes with EnPIs: {sorted(self.bins)[:8]}")
        b = self.bins[scope]
        return float(b["best_kwh_per_unit"][int(np.searchsorted(b["rate_edges"], rate, side="right"))])

    def to_dict(self) -> dict[str, Any]:
        """JSON form: per scope the totals, specific energy and best practice."""
        summary = self.summary.replace({np.nan: None}).to_dict(orient="records") if len(self.summary) else []
        return {"type": "wattline.enpi", "version": VERSION, "settings": self.settings.model_dump(mode="json"),
                "summary": summary, "bins": self.bins}

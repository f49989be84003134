"""Numbers of the machine page from the analysis's stored outputs: actual vs baseline per hour, energy per good unit.

``wattline analyze`` stores the output ``baseline`` (:mod:`wattline.analyze_outputs`): per machine and hour the actual
and expected energy [kWh] and the good units. Only the page's range and the one machine are read, so a year of a large
plant costs the same as a day. The dashboard only adds the stored hours up (per day, over the period); the energy
arithmetic and the model are the analytics'.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

OUTPUT = "baseline"
FIELDS = ("actual_kwh", "expected_kwh", "good")


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"),
                         **{f: pd.Series([], dtype=float) for f in FIELDS}})


@dataclass
class MachineBaseline:
    """One machine's stored outputs over a range.

    Attributes
    ----------
    hours : DataFrame
        ``time`` (hour start, UTC), ``actual_kwh``, ``expected_kwh`` [kWh], ``good`` [units]; empty without outputs.
    run : str or None
        The analysis run they come from.
    """

    hours: pd.DataFrame = field(default_factory=_empty)
    run: str | None = None

    @property
    def compared(self) -> pd.DataFrame:
        """Hours in which both the actual and the expected energy are known."""
        h = self.hours
        return h[np.isfinite(h["actual_kwh"]) & np.isfinite(h["expected_kwh"])] if len(h) else h

    @property
    def actual_kwh(self) -> float:
        """Actual energy of the compared hours [kWh]."""
        return float(self.compared["actual_kwh"].sum())

    @property
    def expected_kwh(self) -> float:
        """Baseline (expected) energy of the compared hours [kWh]."""
        return float(self.compared["expected_kwh"].sum())

    @property
    def deviation(self) -> float | None:
        """(actual - expected) / expected over the compared hours; None when nothing is compared."""
        expected = self.expected_kwh
        return (self.actual_kwh - expected) / expected if len(self.compared) and expected > 0 else None

    @property
    def good_units(self) -> float:
        """Good units in hours with known energy and counts."""
        h = self.hours
        ok = np.isfinite(h["actual_kwh"]) & np.isfinite(h["good"]) if len(h) else []
        return float(h.loc[ok, "good"].sum()) if len(h) else 0.0

    @property
    def kwh_per_unit(self) -> float | None:
        """Energy per good unit over the range [kWh/unit]: energy of the hours with counts over their good units."""
        h = self.hours
        if not len(h):
            return None
        ok = np.isfinite(h["actual_kwh"]) & np.isfinite(h["good"])
        good = float(h.loc[ok, "good"].sum())
        return float(h.loc[ok, "actual_kwh"].sum()) / good if good > 0 else None


def read_baseline(raw_store, site: str, line: str, machine: str, start_ns: int, stop_ns: int) -> MachineBaseline:
    """The stored ``baseline`` output of one machine in ``[start_ns, stop_ns)``, from the newest run that wrote it.

    ``raw_store`` is the unscoped store; the caller has checked that the user may see ``site`` (the read is limited to
    that site's tag, so a machine of the same name elsewhere never leaks in).
    """
    from core.errors import StoreError
    from core.storage.results import results_for

    try:
        results = results_for(raw_store)
    except StoreError:
        return MachineBaseline()
    with results:
        frame = results.read_outputs(OUTPUT, start_ns, stop_ns, machines=[machine], tags={"site": site, "line": line})
    if frame.empty:
        return MachineBaseline()
    for name in FIELDS:
        if name not in frame.columns:
            frame[name] = np.nan
    return MachineBaseline(frame[["time", *FIELDS]].reset_index(drop=True), str(frame["run"].iloc[0]))


def daily_kwh_per_unit(base: MachineBaseline, tz: str) -> pd.DataFrame:
    """Energy per good unit per local day [kWh/unit] (days without good units left out).

    Returns
    -------
    DataFrame
        ``day`` (local midnight, naive), ``kwh``, ``good``, ``kwh_per_unit``.
    """
    h = base.hours
    if not len(h):
        return pd.DataFrame({"day": pd.Series([], dtype="datetime64[ns]"), "kwh": [], "good": [], "kwh_per_unit": []})
    h = h[np.isfinite(h["actual_kwh"]) & np.isfinite(h["good"])]
    day = h["time"].dt.tz_convert(tz).dt.tz_localize(None).dt.floor("D")
    per = h.groupby(day)[["actual_kwh", "good"]].sum().rename(columns={"actual_kwh": "kwh"})
    per = per[per["good"] > 0]
    per["kwh_per_unit"] = per["kwh"] / per["good"]
    per.index.name = "day"
    return per.reset_index()


def baseline_summary(base: MachineBaseline) -> str:
    """The machine status line's baseline part: actual against expected over the analysed hours, energy per unit."""
    from dashboard.overview import fmt_energy

    if base.deviation is None:
        return " · no baseline yet (run 'wattline analyze')"
    unit = f" · {base.kwh_per_unit:,.3f} kWh per good unit" if base.kwh_per_unit is not None else ""
    return (f" · {fmt_energy(base.actual_kwh)} against a baseline of {fmt_energy(base.expected_kwh)} "
            f"({100 * base.deviation:+.1f} %) in the analysed hours{unit}")

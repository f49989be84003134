"""Plant anomalies: a machine drawing more than its baseline for no listed reason, found per machine by the generic
:class:`analytics.anomaly.Detector` on baseline residuals and machine features.

House API: ``PlantAnomalies(settings).fit(data, baseline=..., quality=..., potential=...)`` then ``.events``
(:class:`core.model.Event` of kind ``anomaly`` with ``cost``, ``co2_kg``, ``severity``, ``explanation``, the
``signals`` that contributed most and the event's ``signature`` in their details) and ``.to_dict()``.

Per machine the signals are: the baseline residual as power [kW] (``analytics.baseline`` expected energy vs the
metered energy), mean power [kW], running and idle shares [0-1], production rate [units/h], compressed-air flow
[m3/min] and outdoor temperature [°C] (those the machine has). The detector is fitted on the machine's windows that
are complete and not explained already (meter faults and windows a known waste cause claimed are left out, so known
waste does not become "normal"), its threshold set by the machine's false-alarm budget (alerts per week, per machine
overridable). An anomaly that overlaps a known finding of the same machine (a waste cause or a meter fault) is that
finding and is not reported twice; only events with energy above the baseline are reported (a machine drawing less
than expected is not waste). Patterns a user marked as normal (signatures per machine: the scored signals'
directions, the other signals' deviations from their usual hourly values and the time of day, see
:func:`_plant_signature`) are suppressed; budgets and patterns change on a fitted model with :meth:`set_preferences`
(``analytics.anomaly.preferences`` keeps them in a file beside the store).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from analytics.anomaly.detector import DetectedEvent, Detector, DetectorSettings
from analytics.data import NS, IntervalData
from analytics.errors import AnalyticsError, InsufficientDataError
from analytics.parallel import Fanout, ParallelSettings
from core.config import FrozenModel
from core.model import Event
from core.notices import Notice

#: Plain names of the signals, for the explanation.
SIGNAL_NAMES = {"residual_kw": "power above baseline", "power_kw": "power", "running_share": "running time",
                "idle_share": "idle time", "production_rate": "production rate", "air_flow": "air flow",
                "outdoor_temp": "outdoor temperature"}
#: Windows with less coverage are not used to fit and carry no score.
MIN_COVERAGE = 0.9


class PlantAnomalySettings(FrozenModel):
    """Settings of :class:`PlantAnomalies`."""

    detector: DetectorSettings = Field(
        DetectorSettings(method="robust", smooth_rows=4, min_rows=4, gap_rows=4, alerts_per_week=1.0),
        description="The detector per machine (15-min rows: 1 h smoothing, 1 h persistence, 1 alert per week; robust "
                    "thresholds find energy above the baseline best in analytics/tests/test_anomaly.py).")
    alerts_per_week: dict[str, float] = Field(default_factory=dict, description="False-alarm budget per machine "
                                              "path [alerts/week], overriding the detector's.")
    normal_patterns: dict[str, list[dict[str, float]]] = Field(default_factory=dict, description="Per machine path: "
                                                               "signatures of events marked as normal.")
    min_excess_kwh: float = Field(1.0, ge=0, description="Events with less energy above the baseline are dropped [kWh].")
    min_days: float = Field(7.0, gt=0, description="Least days of usable windows to fit a machine's detector [d].")


def _features(data: IntervalData, i: int, expected: np.ndarray | None, rows: slice | None = None) -> pd.DataFrame:
    """The signals of machine ``i`` (one row per window), without the ones it lacks or that never vary (all of them
    for a slice of ``rows``)."""
    h = data.hours
    res = float(data.resolution_s)
    part = slice(None) if rows is None else rows

    def row(col: str) -> np.ndarray:
        return data.matrix(col)[i, part].astype(float)

    energy = row("energy_kwh")
    cols: dict[str, np.ndarray] = {}
    if expected is not None and np.isfinite(expected).any():
        cols["residual_kw"] = (energy - expected[part]) / h
    cols["power_kw"] = np.where(np.isfinite(row("power_mean_kw")), row("power_mean_kw"), energy / h)
    cols["running_share"] = row("s_running") / res
    cols["idle_share"] = row("s_idle") / res
    cols["production_rate"] = row("good") / h
    cols["air_flow"] = row("air_flow_m3_min")
    cols["outdoor_temp"] = row("outdoor_temp_c")
    frame = pd.DataFrame(cols, index=data.times[part])
    if rows is not None:
        return frame
    keep = [c for c in frame.columns if frame[c].notna().sum() > 10 and float(np.nanstd(frame[c])) > 1e-9]
    return frame[keep]


def _signal_matrices(data: IntervalData, expected: np.ndarray | None) -> dict[str, np.ndarray]:
    """Every signal of :func:`_features` as a (machines x windows) matrix."""
    h = data.hours
    res = float(data.resolution_s)

    def mat(col: str) -> np.ndarray:
        return data.matrix(col).astype(float)

    energy = mat("energy_kwh")
    power = mat("power_mean_kw")
    out = {"power_kw": np.where(np.isfinite(power), power, energy / h), "running_share": mat("s_running") / res,
           "idle_share": mat("s_idle") / res, "production_rate": mat("good") / h,
           "air_flow": mat("air_flow_m3_min"), "outdoor_temp": mat("outdoor_temp_c")}
    if expected is not None:
        out["residual_kw"] = (energy - expected) / h
    return out


class PlantAnomalies:
    """Anomalies per machine (see the module docstring).

    Parameters
    ----------
    settings : PlantAnomalySettings, optional
    """

    def __init__(self, settings: PlantAnomalySettings | None = None) -> None:
        self.settings = settings or PlantAnomalySettings()
        self.detectors: dict[str, Detector] = {}
        self._profiles: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        #: Per machine: usual good count per running window [units] and mean daily energy [kWh] of the fitted range,
        #: what an event's production note and severity compare with (so an event depends on its own windows and the
        #: model only: a streamed event is final once its machine is back to normal).
        self._refs: dict[str, tuple[float, float]] = {}
        self.baseline: Any = None
        self.events: list[Event] = []
        self.duplicates = 0
        self.suppressed = 0
        self.warnings: list[Notice] = []

    def detector_settings(self, path: str) -> DetectorSettings:
        """The detector settings of one machine (its own false-alarm budget when the user set one)."""
        s = self.settings.detector
        budget = self.settings.alerts_per_week.get(path)
        return s if budget is None else s.model_copy(update={"alerts_per_week": float(budget)})

    def is_normal(self, path: str, signature: dict[str, float]) -> bool:
        """True when ``signature`` (a finding's) matches a pattern of machine ``path`` marked as normal."""
        from analytics.anomaly.detector import signature_similarity

        limit = self.settings.detector.suppress_similarity
        return any(signature_similarity(p, signature) >= limit for p in self.settings.normal_patterns.get(path, []))

    def set_preferences(self, alerts_per_week: dict[str, float], normal_patterns: dict[str, list[dict]]) -> None:
        """Apply the users' false-alarm budgets per machine [alerts/week] and patterns marked as normal (signatures
        per machine) to the fitted detectors without refitting: a changed budget recalibrates the machine's threshold
        on its stored calibration scores (:meth:`Detector.with_settings`), patterns replace the machine's list.
        Budgets and patterns of machines not given return to the defaults (none)."""
        self.settings = self.settings.model_copy(update={
            "alerts_per_week": {str(k): float(v) for k, v in alerts_per_week.items()},
            "normal_patterns": {str(k): [dict(p) for p in v] for k, v in normal_patterns.items()}})
        for path, det in list(self.detectors.items()):
            want = self.detector_settings(path).alerts_per_week
            if want != det.settings.alerts_per_week:
                det = det.with_settings(alerts_per_week=want)
            self.detectors[path] = det

    def fit(self, data: IntervalData, baseline: Any = None, quality: Any = None, potential: Any = None,
            fanout: Fanout | None = None) -> PlantAnomalies:
        """Fit a detector per machine and find its anomalies over ``data``.

        Parameters
        ----------
        data : IntervalData
        baseline : analytics.baseline.Baseline, optional
            Fitted; fitted here (meter faults left out) when None.
        quality : analytics.quality.QualityReport, optional
            Meter faults: left out of the fit, and anomalies overlapping them are not reported.
        potential : analytics.potential.ReductionPotential, optional
            Fitted: windows its causes claimed are left out of the fit, anomalies overlapping its findings dropped.
        fanout : analytics.parallel.Fanout, optional
            Where the machines' detectors are fitted and scored (one item per machine, batched by site); default: in
            this process. The results are the same either way: each machine is fitted and scored on its own rows.
        """
        if not data.machines or data.n_times == 0:
            raise AnalyticsError("no interval data to assess for anomalies")
        fault, claimed, known = known_findings(data, quality, potential)
        self.warnings = []
        expected = self._expected(data, baseline, fault, fanout)
        ids = data.machine_ids
        known_by: dict[str, list[Event]] = {}
        for k in known:
            known_by.setdefault(k.machine, []).append(k)

        def items() -> Iterator[tuple]:
            # Each machine travels with its own rows only (a worker never receives the whole plant).
            for i, path in enumerate(ids):
                yield (data.select([path], materials=False), None if expected is None else expected[i:i + 1],
                       fault[i:i + 1], claimed[i:i + 1], known_by.get(path, []))

        results = (fanout or Fanout(ParallelSettings(jobs=1))).map(
            _machine_item, items(), ids, [info.site for info in data.machines.values()], "anomaly detector",
            shared=self.settings)
        self.detectors, self._profiles, self.events = {}, {}, []
        self._refs = {}
        self.duplicates = self.suppressed = 0
        skipped = []
        for path, (fitted, events, duplicates, suppressed) in zip(ids, results):
            if fitted is None:
                skipped.append(path)
                continue
            self.detectors[path], self._profiles[path], self._refs[path] = fitted
            self.events.extend(events)
            self.duplicates += duplicates
            self.suppressed += suppressed
        self.events.sort(key=lambda e: (e.start, e.machine))
        if skipped:
            self.warnings.append(Notice("analytics.anomaly.insufficient_data",
                                        f"{len(skipped)} machine(s) have under {self.settings.min_days:g} days of "
                                        f"usable data and were not assessed for anomalies: {', '.join(skipped[:5])}",
                                        {"machines": skipped[:100]}))
        return self

    def _fit_machine(self, data: IntervalData, i: int, expected: np.ndarray | None, fault: np.ndarray,
                     claimed: np.ndarray) -> bool:
        """Fit machine ``i``'s detector (kept in ``detectors``, with its signals' hour profiles); False with too
        little usable data."""
        path = data.machine_ids[i]
        need = int(self.settings.min_days * 86400 / data.resolution_s)
        coverage = data.matrix("coverage")[i].astype(float)
        feats = _features(data, i, None if expected is None else expected[i])
        usable = (coverage >= MIN_COVERAGE) & ~fault[i] & (claimed[i] <= 1e-9) & feats.notna().all(axis=1).to_numpy()
        if usable.sum() < need or feats.shape[1] == 0:
            return False
        det = Detector(self.detector_settings(path))
        # Scored: the baseline residual where there is a baseline (the machine's drivers are in it already; raw
        # power, states and production are bimodal on/off signals whose level the baseline explains), else the
        # multivariate features. The other signals explain an event (_explaining_signals).
        scored = ["residual_kw"] if "residual_kw" in feats.columns else list(feats.columns)
        profile = _hour_profiles(feats[usable], data.machines[path].timezone)
        try:
            det.fit(feats.loc[usable, scored])
        except InsufficientDataError:
            return False
        self.detectors[path], self._profiles[path] = det, profile
        self._refs[path] = _references(data, i)
        return True

    def machine_signals(self, data: IntervalData, i: int, expected: np.ndarray | None,
                        fault: np.ndarray) -> pd.DataFrame:
        """The signals of machine ``i`` as its detector sees them (meter-fault windows blanked)."""
        path = data.machine_ids[i]
        # Every signal, whatever the few rows of a streaming step hold (the column filter is for fitting only).
        feats = _features(data, i, None if expected is None else expected[i], slice(0, data.n_times))
        det = self.detectors[path]
        for col in det.columns:
            if col not in feats.columns:
                feats[col] = np.nan
        return feats.where(pd.Series(~fault[i], index=feats.index), np.nan)

    def signal_arrays(self, data: IntervalData, expected: np.ndarray | None,
                      fault: np.ndarray) -> dict[str, np.ndarray]:
        """Per machine path with a detector: its scored signals as a (windows x signals) array in the detector's
        column order, meter-fault windows blanked -- :meth:`machine_signals` for all machines at once, without a
        pandas frame per machine (what a streaming step scores)."""
        mats = _signal_matrices(data, expected)
        nan = np.full(data.n_times, np.nan)
        out = {}
        for i, path in enumerate(data.machines):
            det = self.detectors.get(path)
            if det is None:
                continue
            x = np.column_stack([mats[c][i] if c in mats else nan for c in det.columns])
            x[fault[i]] = np.nan
            out[path] = x
        return out

    def detect(self, data: IntervalData, expected: np.ndarray | None, fault: np.ndarray, known: list[Event],
               scores: dict[str, np.ndarray] | None = None, first: dict[str, int] | None = None) -> list[Event]:
        """Anomaly findings of ``data`` with the fitted detectors (no refit).

        Parameters
        ----------
        data : IntervalData
        expected : ndarray or None
            (machines x windows) baseline energy [kWh].
        fault : ndarray of bool
            (machines x windows) meter-fault windows.
        known : list of Event
            Known findings; overlapping anomalies of the same machine are not reported.
        scores : dict, optional
            Path -> smoothed scores per window, when already computed (streaming).
        first : dict, optional
            Path -> first window to look at: only these machines, each from its window on (a streaming scorer
            re-detects only the machines whose events are not settled yet, from where they are not).
        """
        from analytics.potential import site_economics

        econ = site_economics(data)
        events: list[Event] = []
        self.duplicates = self.suppressed = 0
        for i, path in enumerate(data.machines):
            det = self.detectors.get(path)
            if det is None or (first is not None and path not in first):
                continue
            f = 0 if first is None else int(first[path])
            if scores is not None and not bool(np.any(scores[path][f:] >= 1.0)):
                continue  # no row reached the threshold: no event can open (the streaming fast path)
            pred = det.predict(self.machine_signals(data, i, expected, fault).iloc[f:],
                               score=None if scores is None else scores[path][f:])
            self.suppressed += len(pred.suppressed)
            for ev in pred.events:
                ev.first, ev.stop = ev.first + f, ev.stop + f
                found = self._event(data, i, ev, expected, econ)
                if found is None:
                    continue
                if self.is_normal(path, found.details["signature"]):
                    self.suppressed += 1
                    continue
                if any(k.machine == path and k.start < found.end and found.start < k.end for k in known):
                    self.duplicates += 1
                    continue
                events.append(found)
        events.sort(key=lambda e: (e.start, e.machine))
        return events

    def _expected(self, data: IntervalData, baseline: Any, fault: np.ndarray,
                  fanout: Fanout | None = None) -> np.ndarray | None:
        """Expected energy per machine and window [kWh] from the baseline (fitted here when None; None when none can
        be fitted). The baseline is kept (``self.baseline``) for scoring new windows."""
        from analytics.baseline import Baseline

        try:
            if baseline is None:
                baseline = Baseline().fit(data, exclude=fault, fanout=fanout)
            self.baseline = baseline
            return self.expected(data)
        except InsufficientDataError as exc:
            self.baseline = None
            self.warnings.append(Notice("analytics.anomaly.no_baseline", f"anomalies are found without baseline "
                                        f"residuals (no excess energy is quantified): {exc}", {}))
            return None

    def expected(self, data: IntervalData) -> np.ndarray | None:
        """Expected energy per machine and window of ``data`` from the kept baseline [kWh] (None without one)."""
        if self.baseline is None:
            return None
        keys, expected = self.baseline.predict_matrix(data, "machine")
        order = {k: j for j, k in enumerate(keys)}
        out = np.full((len(data.machines), data.n_times), np.nan)
        for i, path in enumerate(data.machines):
            if path in order:
                out[i] = expected[order[path]]
        return out

    def _event(self, data: IntervalData, i: int, ev: DetectedEvent, expected: np.ndarray | None,
               econ: dict) -> Event | None:
        """The finding of one detected run, or None when it holds no energy above the baseline."""
        info = list(data.machines.values())[i]
        a, b = ev.first, ev.stop
        energy = data.matrix("energy_kwh")[i, a:b].astype(float)
        if expected is None:
            return None
        exp = expected[i, a:b]
        ok = np.isfinite(energy) & np.isfinite(exp)
        excess_w = np.where(ok, energy - exp, 0.0)
        kwh = float(excess_w.sum())
        if kwh < self.settings.min_excess_kwh:
            return None
        t = data.times_ns
        res_ns = data.resolution_s * NS
        start = dt.datetime.fromtimestamp(int(t[a]) / NS, dt.UTC)
        end = dt.datetime.fromtimestamp((int(t[b - 1]) + res_ns) / NS, dt.UTC)
        hours = (b - a) * data.hours
        base = float(exp[ok].sum())
        e = econ.get(info.site)
        cost = co2 = None
        currency = getattr(e, "currency", None)
        if e is not None and e.tariff is not None:
            from core.tariff import energy_cost

            cost = float(np.nansum(energy_cost(e.tariff, e.timezone, t[a:b], np.clip(excess_w, 0, None))))
        if e is not None and e.co2_kg_per_kwh is not None:
            co2 = kwh * float(e.co2_kg_per_kwh)
        deviations = _signal_deviations(data, i, a, b, self._profiles.get(info.path))
        names = list(dict.fromkeys(ev.top_signals() + _explaining_signals(deviations)))
        signals = [SIGNAL_NAMES.get(s, s) for s in names]
        ref_good, daily = self._refs.get(info.path) or _references(data, i)
        prod = _production_note(data, i, a, b, ref_good)
        tz = zoneinfo.ZoneInfo((e.timezone if e is not None else None) or info.timezone or "UTC")
        local = start.astimezone(tz)
        signature = _plant_signature(ev.signature, deviations, local.hour + local.minute / 60)
        pct = f"{100 * kwh / base:.0f}% " if base > 1e-6 else ""
        money = "" if cost is None or currency is None else (f", {cost:,.0f} {currency}" if cost >= 10
                                                             else f", {cost:,.2f} {currency}")
        text = (f"{info.machine} drew {pct}({kwh / hours:,.0f} kW) above its baseline for {_duration(hours)} on "
                f"{local.strftime('%A %d %b')} from {local.strftime('%H:%M')}{prod}: {kwh:,.0f} kWh{money}; "
                f"main signals: {', '.join(signals)}")
        details = {"cost": None if cost is None else round(cost, 4), "co2_kg": None if co2 is None else round(co2, 4),
                   "currency": currency, "severity": round(float(np.clip(kwh / max(daily, 1e-9), 0, 1)), 4),
                   "explanation": text, "signals": names, "contributions": ev.to_dict()["contributions"],
                   "signature": signature, "peak_score": round(ev.peak_score, 3),
                   "baseline_kwh": round(base, 3), "excess_fraction": round(kwh / base, 4) if base > 1e-6 else None}
        return Event(info.path, "anomaly", start, end, kwh, details)

    def to_dict(self) -> dict[str, Any]:
        """Per machine: the detector's threshold and calibration; the counts of events, duplicates and suppressed."""
        return {"machines": {p: d.to_dict() for p, d in self.detectors.items()}, "events": len(self.events),
                "duplicates_of_known_findings": self.duplicates, "suppressed_as_normal": self.suppressed}


def _machine_item(item: tuple, settings: PlantAnomalySettings) -> tuple:
    """Fit and score one machine: ``item`` is ``(data, expected, fault, claimed, known)`` of that machine alone;
    returns ``(fitted, events, duplicates, suppressed)``, ``fitted`` being ``(detector, hour profiles, references)`` or None
    (too little usable data). A unit of :meth:`analytics.parallel.Fanout.map` (runs in a worker)."""
    data, expected, fault, claimed, known = item
    model = PlantAnomalies(settings)
    if not model._fit_machine(data, 0, expected, fault, claimed):
        return None, [], 0, 0
    path = data.machine_ids[0]
    events = model.detect(data, expected, fault, known)
    return (model.detectors[path], model._profiles[path], model._refs[path]), events, model.duplicates, model.suppressed


def known_findings(data: IntervalData, quality: Any = None, potential: Any = None
                   ) -> tuple[np.ndarray, np.ndarray, list[Event]]:
    """Meter-fault windows, energy the known causes claimed per window [kWh] and the known findings."""
    n_m, n_t = len(data.machines), data.n_times
    fault = quality.mask if quality is not None and quality.mask is not None else np.zeros((n_m, n_t), bool)
    claimed = np.zeros((n_m, n_t))
    known: list[Event] = list(quality.events) if quality is not None else []
    if potential is not None:
        for ex in potential.excess.values():
            claimed += ex
        known += list(potential.events)
    return np.asarray(fault, bool), claimed, known


def _local_hour(times: pd.DatetimeIndex, tz: str) -> np.ndarray:
    return times.tz_convert(tz or "UTC").hour.to_numpy()


def _hour_profiles(feats: pd.DataFrame, tz: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per signal (not the residual): median and robust spread per local hour of day on the fitted windows."""
    hour = _local_hour(pd.DatetimeIndex(feats.index), tz)
    out = {}
    for col in feats.columns:
        if col == "residual_kw":
            continue
        x = feats[col].astype(float)
        floor = 0.05 * (float(np.nanstd(x)) or 1.0)
        by_hour = x.groupby(hour)
        med = by_hour.median().reindex(range(24))
        mad = (x - med.to_numpy()[hour]).abs().groupby(hour).median().reindex(range(24))
        enough = by_hour.count().reindex(range(24)).fillna(0).to_numpy() >= 3
        out[col] = (np.where(enough, med.to_numpy(), np.nan),
                    np.where(enough, np.maximum(1.4826 * mad.to_numpy(), floor), np.nan))
    return out


def _signal_deviations(data: IntervalData, i: int, a: int, b: int, profiles: dict | None) -> dict[str, float]:
    """Per signal (not the residual): its mean over windows ``[a, b)`` in robust spreads from its usual value at those
    local hours (the fitted hour profiles)."""
    if not profiles:
        return {}
    feats = _features(data, i, None, slice(a, b))
    hour = _local_hour(pd.DatetimeIndex(feats.index), list(data.machines.values())[i].timezone)
    out = {}
    for col, (med, scale) in profiles.items():
        if col not in feats.columns:
            continue
        z = (feats[col].to_numpy(float) - med[hour]) / scale[hour]
        if np.isfinite(z).any():
            out[col] = float(np.nanmean(z))
    return out


def _explaining_signals(deviations: dict[str, float], min_z: float = 3.0) -> list[str]:
    """Signals standing over ``min_z`` spreads from their usual value (:func:`_signal_deviations`), largest first."""
    found = [(abs(z), col) for col, z in deviations.items() if abs(z) >= min_z]
    return [c for _, c in sorted(found, reverse=True)]


def _plant_signature(scored: dict[str, float], deviations: dict[str, float], local_hour: float) -> dict[str, float]:
    """What "the same pattern" means for a finding marked as normal, as a unit vector (compared by cosine
    similarity, :func:`analytics.anomaly.detector.signature_similarity`): the detector's own signature (the scored
    signals' directions, weight 1), every other signal's deviation from its usual value at those hours (z / 3 clipped
    to +-1: a signal standing 3 spreads out or more weighs as much as the scored ones, however far out) and the local
    time of day the event started (a point on the 24-h circle, weight 1: with two signals moved, excesses 2 h apart
    match at the default similarity of 0.9, 4 h apart do not). A residual-only detector signs every excess alike, so
    without the other signals and the time of day one mark would mute all of a machine's excesses: with them a night
    left running (power up, running time up, 02:00) and a day-time excess at normal production (13:00) differ."""
    vec = {k: float(v) for k, v in scored.items()}
    for col, z in deviations.items():
        if np.isfinite(z):
            vec[col] = vec.get(col, 0.0) + float(np.clip(z / 3.0, -1.0, 1.0))
    angle = 2 * np.pi * (local_hour % 24) / 24
    vec["hour_cos"], vec["hour_sin"] = float(np.cos(angle)), float(np.sin(angle))
    norm = float(np.linalg.norm(list(vec.values()))) or 1.0
    return {k: round(v / norm, 4) for k, v in vec.items()}


def _duration(hours: float) -> str:
    if hours < 1:
        return f"{hours * 60:.0f} min"
    return f"{hours:.1f} h".replace(".0 h", " h") if hours < 48 else f"{hours / 24:.1f} days"


def _references(data: IntervalData, i: int) -> tuple[float, float]:
    """Machine ``i``'s usual good count per running window [units] (NaN without production counts) and its mean daily
    energy [kWh] over ``data``."""
    good = data.matrix("good")[i].astype(float)
    running = data.matrix("s_running")[i].astype(float)
    on = running > 0.5 * data.resolution_s
    ref = np.nan
    if np.isfinite(good).any() and np.nansum(good) > 0 and on.any():
        with np.errstate(all="ignore"):
            ref = float(np.nanmedian(good[on])) if np.isfinite(good[on]).any() else np.nan
    daily = float(np.nansum(data.matrix("energy_kwh")[i].astype(float))) / max(data.n_times * data.hours / 24, 1e-9)
    return ref, daily


def _production_note(data: IntervalData, i: int, a: int, b: int, ref: float) -> str:
    """' with normal production' / ' with production N% above/below usual' / '' (no production counts); ``ref``: the
    usual good count per running window (:func:`_references`)."""
    good = data.matrix("good")[i, a:b].astype(float)
    if not np.isfinite(good).any():
        return ""
    now = np.nanmean(good)
    if not np.isfinite(ref) or ref <= 0 or not np.isfinite(now):
        return ""
    ratio = now / ref
    if 0.8 <= ratio <= 1.2:
        return " with normal production"
    return f" with production {abs(100 * (ratio - 1)):.0f}% {'above' if ratio > 1 else 'below'} usual"


def find_anomalies(data: IntervalData, quality: Any = None, potential: Any = None, baseline: Any = None,
                   settings: PlantAnomalySettings | None = None,
                   fanout: Fanout | None = None) -> tuple[list[Event], list[Notice]]:
    """Anomaly findings for ``wattline analyze``: the events and the warnings; a failure is a warning, not a crash
    (the rest of the analysis stands without anomalies). ``fanout``: see :meth:`PlantAnomalies.fit`."""
    try:
        found = PlantAnomalies(settings).fit(data, baseline=baseline, quality=quality, potential=potential,
                                             fanout=fanout)
    except AnalyticsError as exc:
        return [], [Notice("analytics.anomaly.not_assessed", f"anomalies were not assessed: {exc}", {})]
    return found.events, found.warnings

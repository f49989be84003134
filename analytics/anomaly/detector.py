"""A generic anomaly detector for any numeric frame (one row per timestamp, a column per signal).

House API: ``Detector(settings).fit(normal_frame)`` on a period known to be normal, then ``.score(frame)`` (a score
per row, in units of the alarm threshold: 1 or more alarms) and ``.predict(frame)`` (labels per row and events with
the signals that contributed most).

Candidates (``DetectorSettings.method``), chosen by measurement (``tests/benchmarks/bench_anomaly.py``,
docs/benchmarks.md):

- ``robust``: each signal standardised by its median and MAD (1.4826 x median absolute deviation) on the normal
  period; row score = largest squared robust z over the signals.
- ``pca``: PCA of the robust-standardised signals keeping ``pca_variance`` of the variance; row score = the larger of
  Hotelling's T2 (distance inside the model plane) and the squared prediction error SPE (Q statistic, distance to
  the plane: what breaks the signals' correlation), each in units of its own high quantile on the normal period.
- ``iforest``: scikit-learn ``IsolationForest`` on the standardised signals; row score = ``-score_samples``.

Scores are smoothed by a causal rolling median over ``smooth_rows`` rows (single-row noise does not alarm: the median
rises only when over half the window is raised; a variance change shows as raised squared z). The alarm threshold is set on *out-of-sample* scores of the normal period
(blocked cross-fitting: each of ``calibration_folds`` contiguous blocks scored by a model fitted on the others, since
in-sample scores are optimistic) from a false-alarm budget: a point-wise ``false_alarm_rate`` or ``alerts_per_week``.
Budgets beyond the calibration data's range are met by an exponential tail fitted above its 90 % quantile (the
peaks-over-threshold method with shape 0). Persistence: an alarm needs ``min_rows`` rows above the threshold in a run
(runs joined across gaps of up to ``gap_rows``), and a confirmed alarm extends over the neighbouring rows scoring at
least ``release`` of the way from the normal period's median score to the threshold (hysteresis). Labels are shifted back by half the smoothing window, so batch labels
equal a centred smoothing, while a streaming scorer knows each row's label ``smooth_rows // 2`` rows later.

"Mark as normal": :meth:`Detector.mark_normal` stores an event's signature (signed root-mean contribution per
signal, unit length); later events whose signature has a cosine similarity of at least ``suppress_similarity`` with
a stored one are suppressed (kept in ``Prediction.suppressed``, not in ``events`` or the labels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from analytics.data import runs
from analytics.errors import AnalyticsError, InsufficientDataError
from core.config import FrozenModel

METHODS = ("robust", "pca", "iforest")
#: Quantile of the normal period's T2 and SPE that the pca score is expressed in (each statistic in its own units).
PCA_SCALE_QUANTILE = 0.99
#: Tail model: exponential above this quantile of the calibration scores.
TAIL_QUANTILE = 0.90
WEEK_S = 7 * 86400.0


class DetectorSettings(FrozenModel):
    """Settings of :class:`Detector` (defaults: the candidate chosen by ``bench_anomaly``)."""

    method: Literal["robust", "pca", "iforest"] = Field("pca", description="Candidate model: robust, pca, iforest.")
    smooth_rows: int = Field(49, ge=1, description="Causal rolling smoothing of the row score over this many rows.")
    smoothing: Literal["median", "mean"] = Field("median", description="Rolling median (ignores isolated spikes) "
                                                 "or mean.")
    min_rows: int = Field(5, ge=1, description="Rows above the threshold an alarm needs (persistence).")
    release: float = Field(0.6, gt=0, le=1, description="An alarm extends over neighbouring rows whose score is "
                           "at least this far from the normal median to the threshold (hysteresis).")
    gap_rows: int = Field(3, ge=0, description="Runs above the threshold separated by at most this many rows join.")
    false_alarm_rate: float = Field(0.01, gt=0, lt=1,
                                    description="Budget: share of normal rows allowed above the threshold.")
    alerts_per_week: float | None = Field(None, gt=0, description="Budget in alarms per week (replaces "
                                          "false_alarm_rate; needs a time index or row_seconds).")
    row_seconds: float | None = Field(None, gt=0, description="Row spacing [s] when the frame has no time index.")
    margin: float = Field(1.0, gt=0, description="Factor applied to the budget's threshold.")
    pca_variance: float = Field(0.9, gt=0, le=1, description="Share of variance the PCA model keeps.")
    iforest_trees: int = Field(100, ge=10, description="Trees of the isolation forest.")
    calibration_folds: int = Field(4, ge=2, description="Contiguous blocks of the normal period for cross-fitting.")
    suppress_similarity: float = Field(0.9, gt=0, le=1, description="Cosine similarity of signatures that "
                                       "suppresses an event marked as normal.")
    min_fit_rows: int = Field(30, ge=5, description="Least complete rows of the normal period.")
    random_state: int = Field(0, description="Seed of the isolation forest.")


# -- the candidate models ---------------------------------------------------------------------------------------------
class _Scaler:
    """Median / MAD standardisation (a constant signal gets its standard deviation, or 1)."""

    def __init__(self, x: np.ndarray) -> None:
        self.center = np.nanmedian(x, axis=0)
        mad = 1.4826 * np.nanmedian(np.abs(x - self.center), axis=0)
        sd = np.nanstd(x, axis=0)
        self.scale = np.where(mad > 1e-12, mad, np.where(sd > 1e-12, sd, 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.center) / self.scale
        return np.where(np.isfinite(z), z, 0.0)  # a missing value counts as typical, never as an alarm


class _Model:
    """One candidate fitted on a matrix: ``score`` per row and ``contributions`` per row and signal (>= 0)."""

    def __init__(self, method: str, x: np.ndarray, settings: DetectorSettings) -> None:
        self.method = method
        self.scaler = _Scaler(x)
        z = self.scaler(x)
        if method == "pca":
            self.mean = z.mean(axis=0)
            zc = z - self.mean
            _, s, vt = np.linalg.svd(zc, full_matrices=False)
            var = s ** 2 / max(len(z) - 1, 1)
            share = np.cumsum(var) / max(var.sum(), 1e-12)
            k = int(np.searchsorted(share, settings.pca_variance) + 1)
            k = min(max(k, 1), max(z.shape[1] - 1, 1))
            self.P = vt[:k].T
            self.lam = np.maximum(var[:k], 1e-9)
            t2, spe = self._stats(z)
            self.q_t2 = max(float(np.quantile(t2, PCA_SCALE_QUANTILE)), 1e-9)
            self.q_spe = max(float(np.quantile(spe, PCA_SCALE_QUANTILE)), 1e-9)
        elif method == "iforest":
            from sklearn.ensemble import IsolationForest

            self.forest = IsolationForest(n_estimators=settings.iforest_trees, random_state=settings.random_state,
                                          max_samples=min(256, len(z))).fit(z)
        elif method != "robust":
            raise AnalyticsError(f"unknown anomaly method {method!r}; valid: {', '.join(METHODS)}")

    def _stats(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zc = z - self.mean
        t = zc @ self.P
        t2 = (t ** 2 / self.lam).sum(axis=1)
        resid = zc - t @ self.P.T
        return t2, (resid ** 2).sum(axis=1)

    def score(self, x: np.ndarray) -> np.ndarray:
        z = self.scaler(x)
        if self.method == "robust":
            return (z ** 2).max(axis=1)
        if self.method == "pca":
            t2, spe = self._stats(z)
            return np.maximum(t2 / self.q_t2, spe / self.q_spe)
        return -self.forest.score_samples(z)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per row and signal: how much each signal moved the score (squared robust z; for pca the signal's share of
        SPE and of T2 in their score units)."""
        z = self.scaler(x)
        if self.method != "pca":
            return z ** 2
        zc = z - self.mean
        t = zc @ self.P
        resid = zc - t @ self.P.T
        t2c = np.clip(zc * ((t / self.lam) @ self.P.T), 0, None)
        return resid ** 2 / self.q_spe + t2c / self.q_t2

    def signed(self, x: np.ndarray) -> np.ndarray:
        """Per row and signal: the direction each signal moved (robust z; for pca the residual off the plane plus the
        in-plane deviation)."""
        return self.scaler(x)


def _smooth(score: np.ndarray, w: int, history: np.ndarray | None = None, how: str = "median") -> np.ndarray:
    """Causal rolling median (or mean) over ``w`` rows (NaN for the first rows with under half a window unless
    ``history`` gives the rows before). The median ignores isolated spikes: it rises only when over half the window is
    raised."""
    if w <= 1:
        return np.asarray(score, float)
    head = np.zeros(0) if history is None else np.asarray(history, float)[-(w - 1):]
    s = pd.Series(np.concatenate([head, score]))
    # Rows with under half a window of history have no smoothed score (NaN: never an alarm), since a median of one or
    # two rows is single-row noise again.
    roll = s.rolling(w, min_periods=(w + 1) // 2)
    out = (roll.median() if how == "median" else roll.mean()).to_numpy()
    return out[len(head):]


def tail_quantile(values: np.ndarray, p: float) -> float:
    """The level exceeded with probability ``p``: empirical where the data reach it, else an exponential tail fitted
    above their 90 % quantile (peaks over threshold, shape 0)."""
    v = np.sort(np.asarray(values, float)[np.isfinite(values)])
    if len(v) == 0:
        raise InsufficientDataError("no finite calibration scores")
    if p >= 1 - TAIL_QUANTILE or p * len(v) >= 10:
        return float(np.quantile(v, 1 - p))
    u0 = float(np.quantile(v, TAIL_QUANTILE))
    excess = v[v > u0] - u0
    beta = float(excess.mean()) if len(excess) else 0.0
    return u0 + beta * float(np.log((1 - TAIL_QUANTILE) / p))


@dataclass
class DetectedEvent:
    """A run of anomalous rows.

    Parameters
    ----------
    start, end : object
        Index labels of the first and the last row.
    first, stop : int
        Positions ``[first, stop)`` of its rows in the scored frame.
    peak_score : float
        Highest smoothed score in threshold units (1 = at the threshold).
    mean_score : float
        Mean smoothed score over the event.
    contributions : dict
        Signal -> share of the score (sums to 1), largest first.
    signature : dict
        Signal -> signed unit-vector component: per signal the root of its mean contribution signed row by row (what
        :meth:`Detector.mark_normal` stores).
    """

    start: Any
    end: Any
    first: int
    stop: int
    peak_score: float
    mean_score: float
    contributions: dict[str, float]
    signature: dict[str, float]

    def top_signals(self, n: int = 3, min_share: float = 0.1) -> list[str]:
        """The ``n`` signals that contributed most (at least ``min_share`` each; always the first)."""
        items = list(self.contributions.items())
        return [k for j, (k, v) in enumerate(items[:n]) if j == 0 or v >= min_share]

    def to_dict(self) -> dict[str, Any]:
        return {"start": str(self.start), "end": str(self.end), "rows": self.stop - self.first,
                "peak_score": round(self.peak_score, 4), "mean_score": round(self.mean_score, 4),
                "contributions": {k: round(v, 4) for k, v in self.contributions.items()},
                "signature": {k: round(v, 4) for k, v in self.signature.items()}}


@dataclass
class Prediction:
    """What :meth:`Detector.predict` found: ``labels`` (bool per row), ``score`` (smoothed, threshold units),
    ``events`` and the events ``suppressed`` because they match a pattern marked as normal."""

    labels: pd.Series
    score: pd.Series
    events: list[DetectedEvent]
    suppressed: list[DetectedEvent] = field(default_factory=list)


class Detector:
    """Anomaly detector on a numeric frame (see the module docstring).

    Parameters
    ----------
    settings : DetectorSettings, optional
    """

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()
        self.columns: list[str] = []
        self.model: _Model | None = None
        self.threshold: float | None = None
        self.normal_patterns: list[dict[str, float]] = []
        self.calibration: dict[str, float] = {}
        self.row_seconds: float | None = None
        self._calib_raw: list[np.ndarray] = []

    # -- fit --------------------------------------------------------------------------------------------------------
    def fit(self, normal_frame: pd.DataFrame) -> Detector:
        """Fit on a period known to be normal and set the threshold from the false-alarm budget.

        Raises
        ------
        InsufficientDataError
            Fewer than ``min_fit_rows`` complete rows (the message says how many there are).
        """
        s = self.settings
        frame = self._numeric(normal_frame, fitting=True)
        x = frame.to_numpy(float)
        ok = np.isfinite(x).all(axis=1)
        if ok.sum() < max(s.min_fit_rows, 2 * s.calibration_folds):
            raise InsufficientDataError(f"the normal period has {int(ok.sum())} complete rows; the anomaly detector "
                                        f"needs at least {s.min_fit_rows}")
        xs = x[ok]
        # Out-of-sample scores of the normal period: each contiguous block scored by a model fitted on the others.
        edges = np.linspace(0, len(xs), s.calibration_folds + 1).astype(int)
        self._calib_raw = [_Model(s.method, np.concatenate([xs[:a], xs[b:]]), s).score(xs[a:b])
                           for a, b in pairwise(edges)]
        self.model = _Model(s.method, xs, s)
        self.row_seconds = s.row_seconds
        if self.row_seconds is None and isinstance(normal_frame.index, pd.DatetimeIndex) and len(normal_frame) > 1:
            self.row_seconds = float(np.median(np.diff(normal_frame.index.asi8))) / 1e9
        self._calibrate()
        return self

    def _calibrate(self) -> None:
        """Threshold from the out-of-sample normal scores and the budget of the current settings."""
        s = self.settings
        scores = np.concatenate([_smooth(raw, s.smooth_rows, how=s.smoothing) for raw in self._calib_raw])
        budget = self._row_budget()
        self.threshold = max(tail_quantile(scores, budget) * s.margin, 1e-12)
        self.calibration = {"rows": len(scores), "budget_row_rate": budget, "threshold": float(self.threshold),
                            "median_score": float(np.nanmedian(scores))}

    def with_settings(self, **changes: Any) -> Detector:
        """A detector sharing this one's fitted model with other post-processing settings (``false_alarm_rate``,
        ``alerts_per_week``, ``margin``, ``smooth_rows``, ``min_rows``, ``gap_rows``): the threshold follows a new
        false-alarm budget without refitting."""
        self._require()
        bad = set(changes) - {"false_alarm_rate", "alerts_per_week", "margin", "smooth_rows", "min_rows", "gap_rows",
                              "suppress_similarity", "smoothing", "release"}
        if bad:
            raise AnalyticsError(f"with_settings cannot change {sorted(bad)} without refitting; call fit instead")
        other = Detector(DetectorSettings(**{**self.settings.model_dump(), **changes}))
        other.columns, other.model, other._calib_raw = self.columns, self.model, self._calib_raw
        other.row_seconds, other.normal_patterns = self.row_seconds, list(self.normal_patterns)
        other._calibrate()
        return other

    def _numeric(self, frame: pd.DataFrame, fitting: bool = False) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            raise AnalyticsError(f"the anomaly detector needs a DataFrame, got {type(frame).__name__}")
        if fitting:
            cols = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and frame[c].notna().any()]
            if not cols:
                raise AnalyticsError(f"no numeric column with data in the frame; columns: {list(frame.columns)[:10]}")
            self.columns = [str(c) for c in cols]
            return frame[cols].astype(float)
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise AnalyticsError(f"the frame lacks the signal(s) {missing} the detector was fitted on; "
                                 f"it has {list(frame.columns)[:10]}")
        return frame[self.columns].astype(float)

    def _row_budget(self) -> float:
        """Allowed share of normal rows above the threshold."""
        s = self.settings
        if s.alerts_per_week is None:
            return s.false_alarm_rate
        if not self.row_seconds:
            raise AnalyticsError("alerts_per_week needs a DatetimeIndex on the normal frame or row_seconds in the "
                                 "settings")
        rows_per_week = WEEK_S / self.row_seconds
        # A false alarm holds about one smoothing window (at least min_rows rows) above the threshold.
        return float(np.clip(s.alerts_per_week * max(s.smooth_rows, s.min_rows) / rows_per_week, 1e-9, 0.5))

    def _require(self) -> _Model:
        if self.model is None or self.threshold is None:
            raise AnalyticsError("the detector is not fitted; call fit(normal_frame) first")
        return self.model

    # -- score and predict ------------------------------------------------------------------------------------------
    def raw_score(self, frame: pd.DataFrame) -> np.ndarray:
        """Unsmoothed score per row (the candidate's own units)."""
        return self._require().score(self._numeric(frame).to_numpy(float))

    def raw_score_array(self, x: np.ndarray) -> np.ndarray:
        """Unsmoothed score per row of ``x`` (rows x the fitted ``columns``, in their order), without a frame."""
        x = np.asarray(x, float)
        if x.ndim != 2 or x.shape[1] != len(self.columns):
            raise AnalyticsError(f"expected rows x {len(self.columns)} signals ({self.columns}), got shape {x.shape}")
        return self._require().score(x)

    def score(self, frame: pd.DataFrame, history: np.ndarray | None = None, raw: np.ndarray | None = None) -> pd.Series:
        """Smoothed score per row in threshold units (1 or more is above the threshold).

        Parameters
        ----------
        frame : DataFrame
            The signals the detector was fitted on (more columns are ignored).
        history : ndarray, optional
            Raw scores of the rows just before ``frame`` (a streaming scorer passes them so that the smoothing
            continues across calls).
        raw : ndarray, optional
            The rows' raw scores when already computed (:meth:`raw_score`).
        """
        raw = self.raw_score(frame) if raw is None else np.asarray(raw, float)
        return pd.Series(_smooth(raw, self.settings.smooth_rows, history, self.settings.smoothing) / self.threshold, index=frame.index,
                         name="score")

    def predict(self, frame: pd.DataFrame, score: np.ndarray | None = None) -> Prediction:
        """Labels and events of ``frame`` (rows in time order).

        Parameters
        ----------
        frame : DataFrame
            The signals.
        score : ndarray, optional
            The rows' smoothed scores in threshold units when already known (a streaming scorer scores each new row
            once, with :meth:`score` and its history, and passes the accumulated scores).
        """
        model = self._require()
        s = self.settings
        x = self._numeric(frame).to_numpy(float)
        if score is None:
            score = _smooth(model.score(x), s.smooth_rows, how=s.smoothing) / self.threshold
        score = np.asarray(score, float)
        if len(score) != len(x):
            raise AnalyticsError(f"{len(score)} scores for {len(x)} rows; pass one score per row of the frame")
        labels = np.zeros(len(x), bool)
        events, suppressed = [], []
        shift = (s.smooth_rows - 1) // 2
        contrib: np.ndarray | None = None  # computed once, for the first event only
        signed: np.ndarray | None = None
        level = self.release_level()
        found: list[tuple[int, int]] = []
        for a, b in alarm_runs(score >= 1.0, s.min_rows, s.gap_rows):
            # Hysteresis: a confirmed alarm extends over the neighbouring rows still above the release level.
            while a > 0 and score[a - 1] >= level:
                a -= 1
            while b < len(score) and score[b] >= level:
                b += 1
            if found and a <= found[-1][1]:
                found[-1] = (found[-1][0], max(b, found[-1][1]))
            else:
                found.append((a, b))
        for a, b in found:
            a = max(a - shift, 0)
            b = max(b - shift, a + 1)
            if contrib is None or signed is None:
                contrib, signed = model.contributions(x), model.signed(x)
            ev = self._event(frame, a, b, score, contrib, signed)
            if self.is_normal(ev.signature):
                suppressed.append(ev)
                continue
            labels[a:b] = True
            events.append(ev)
        return Prediction(pd.Series(labels, index=frame.index, name="anomaly"),
                          pd.Series(score, index=frame.index, name="score"), events, suppressed)

    def release_level(self) -> float:
        """Smoothed score (threshold units) down to which a confirmed alarm extends (the hysteresis level)."""
        self._require()
        assert self.threshold is not None, "_require() raised for an unfitted detector"
        med = self.calibration["median_score"] / self.threshold
        return med + self.settings.release * (1.0 - med)

    def _event(self, frame: pd.DataFrame, a: int, b: int, score: np.ndarray, contrib: np.ndarray,
               signed: np.ndarray) -> DetectedEvent:
        c = contrib[a:b].mean(axis=0)
        share = c / max(c.sum(), 1e-12)
        order = np.argsort(-share)
        # Direction per signal: contributions signed row by row, so a signal that did not move (its sign wanders)
        # averages out instead of taking a random sign.
        m = (np.sign(signed[a:b]) * contrib[a:b]).mean(axis=0)
        sig = np.sign(m) * np.sqrt(np.abs(m))
        norm = float(np.linalg.norm(sig)) or 1.0
        window = score[a:b]
        window = window[np.isfinite(window)]  # rows without a score (missing signals) do not make the event's NaN
        peak, mean = (float(window.max()), float(window.mean())) if len(window) else (0.0, 0.0)
        return DetectedEvent(frame.index[a], frame.index[b - 1], int(a), int(b), peak, mean,
                             {self.columns[j]: float(share[j]) for j in order},
                             {col: float(v / norm) for col, v in zip(self.columns, sig)})

    # -- mark as normal ---------------------------------------------------------------------------------------------
    def mark_normal(self, event: DetectedEvent | dict[str, float]) -> None:
        """Stop reporting events like this one (an event, or its ``signature`` dict)."""
        sig = event.signature if isinstance(event, DetectedEvent) else dict(event)
        self.normal_patterns.append({str(k): float(v) for k, v in sig.items()})

    def is_normal(self, signature: dict[str, float]) -> bool:
        """True when ``signature`` matches a pattern marked as normal."""
        return any(signature_similarity(p, signature) >= self.settings.suppress_similarity
                   for p in self.normal_patterns)

    def to_dict(self) -> dict[str, Any]:
        """Settings, threshold, calibration and the patterns marked as normal (the fitted model itself is refitted
        from data, not saved)."""
        return {"settings": self.settings.model_dump(), "columns": self.columns, "threshold": self.threshold,
                "calibration": self.calibration, "normal_patterns": self.normal_patterns}


def signature_similarity(a: dict[str, float], b: dict[str, float]) -> float:
    """Cosine similarity of two signatures (signal -> component; a signal missing from one counts 0 there)."""
    keys = sorted(set(a) | set(b))
    u = np.array([a.get(k, 0.0) for k in keys], float)
    v = np.array([b.get(k, 0.0) for k in keys], float)
    den = float(np.linalg.norm(u) * np.linalg.norm(v))
    return float(u @ v) / den if den > 0 else 0.0


def alarm_runs(above: np.ndarray, min_rows: int, gap_rows: int) -> list[tuple[int, int]]:
    """Runs ``[a, b)`` of rows above the threshold, joined across gaps of up to ``gap_rows`` rows, holding at least
    ``min_rows`` rows above it."""
    out: list[list[int]] = []
    for a, b in runs(np.asarray(above, bool)):
        if out and a - out[-1][1] <= gap_rows:
            out[-1][1] = b
            out[-1][2] += b - a
        else:
            out.append([a, b, b - a])
    return [(a, b) for a, b, n in out if n >= min_rows]

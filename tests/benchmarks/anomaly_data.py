"""Simulated runs in the shape of the public SKAB benchmark (Skoltech Anomaly Benchmark), to develop anomaly detectors.

A run is a frame with one row per second and 8 correlated sensors (named after SKAB's: two vibration RMS values,
motor current, pressure, temperature, thermocouple, voltage, volume flow). The sensors are driven by 3 slowly varying
latent process factors (AR(1) with lag-1 correlation 0.9-0.98: the pump's load, the valve's position and the water temperature) through a random
loading matrix, plus sensor noise at a chosen level and a slow drift of the temperatures, as a real rig warms up.
The first ``normal_rows`` rows are anomaly-free (the protocol fits on them); the rest holds one or two faults, each
shifting a few signals that load on the same factor (a correlated group) for a while:

- ``step``: an offset of 1.5-4 standard deviations;
- ``drift``: a ramp from 0 to 2-6 standard deviations;
- ``variance``: extra noise of 1-2 standard deviations;
- ``correlation``: the signals decouple from their factor (an independent process of the same variance: the
  marginal distributions stay normal, only the correlation breaks).

The truth is known by construction (``labels``). Nothing here is used by the analytics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SIGNALS = ("accel1_rms", "accel2_rms", "current", "pressure", "temperature", "thermocouple", "voltage", "flow")
FAULTS = ("step", "drift", "variance", "correlation")
NOISE_LEVELS = {"low": 0.3, "mid": 0.6, "high": 1.0}


@dataclass
class Run:
    """One simulated run: ``frame`` (DatetimeIndex, 1 s), ``labels`` (bool per row), ``normal_rows`` (fit part),
    the fault ``kind``, the affected ``signals`` and the ``noise`` level."""

    frame: pd.DataFrame
    labels: np.ndarray
    normal_rows: int
    kind: str
    signals: tuple[str, ...]
    noise: str


def _ar1(rng: np.random.Generator, n: int, phi: float, k: int = 1) -> np.ndarray:
    """Unit-variance AR(1) series (n x k)."""
    e = rng.normal(size=(n, k)) * np.sqrt(1 - phi ** 2)
    x = np.empty((n, k))
    x[0] = rng.normal(size=k)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


def make_run(seed: int, kind: str | None = None, noise: str | None = None, n: int = 1200,
             normal_rows: int = 400) -> Run:
    """Generate one run (``kind`` and ``noise`` random from the seed when None)."""
    rng = np.random.default_rng(seed)
    kind = kind or FAULTS[int(rng.integers(len(FAULTS)))]
    noise = noise or list(NOISE_LEVELS)[int(rng.integers(len(NOISE_LEVELS)))]
    d, k = len(SIGNALS), 3
    # Each signal loads mainly on one factor (its group) and a little on the others.
    group = np.array([0, 0, 0, 1, 2, 2, 0, 1])
    load = rng.normal(0, 0.3, size=(d, k))
    load[np.arange(d), group] = rng.choice([-1, 1], size=d) * rng.uniform(0.8, 1.5, size=d)
    phi = rng.uniform(0.9, 0.98)
    factors = _ar1(rng, n, phi, k)
    clean = factors @ load.T
    sd = clean[:normal_rows].std(axis=0) + 1e-9
    sensor = _ar1(rng, n, 0.3, d) * NOISE_LEVELS[noise] * sd
    # A slow warm-up drift of the temperatures over the whole run (normal behaviour, not a fault).
    warm = np.zeros((n, d))
    warm[:, 4:6] = np.linspace(0, 1, n)[:, None] * rng.uniform(0, 0.5) * sd[4:6]
    x = clean + sensor + warm
    labels = np.zeros(n, bool)
    chosen: set[int] = set()
    n_faults = 1 + int(rng.random() < 0.3)
    slots = np.array_split(np.arange(normal_rows + 20, n - 10), n_faults)
    for slot in slots:
        length = int(rng.integers(max(40, len(slot) // 5), max(41, int(len(slot) * 0.6))))
        a = int(rng.integers(slot[0], max(slot[0] + 1, slot[-1] - length)))
        b = min(a + length, n)
        g = int(rng.integers(k))
        members = np.flatnonzero(group == g)
        m = rng.choice(members, size=min(len(members), int(rng.integers(2, 4))), replace=False) \
            if len(members) > 1 else members
        if len(m) < 2:  # a group of one: add the signal that correlates best with it
            corr = np.abs(np.corrcoef(x[:normal_rows].T)[m[0]])
            corr[m[0]] = -1
            m = np.array([m[0], int(np.argmax(corr))])
        chosen.update(int(j) for j in m)
        span = np.arange(a, b)
        total = np.sqrt(clean[:normal_rows, m].var(axis=0) + sensor[:normal_rows, m].var(axis=0))
        if kind == "step":
            x[span[:, None], m] += rng.choice([-1, 1], size=len(m)) * rng.uniform(1.5, 4) * total
        elif kind == "drift":
            ramp = np.linspace(0, 1, len(span))[:, None]
            x[span[:, None], m] += ramp * rng.choice([-1, 1], size=len(m)) * rng.uniform(2, 6) * total
        elif kind == "variance":
            x[span[:, None], m] += rng.normal(size=(len(span), len(m))) * rng.uniform(1, 2) * total
        elif kind == "correlation":
            other = _ar1(rng, len(span), phi, len(m)) * np.abs(load[m, g])
            x[span[:, None], m] += other - factors[span, g][:, None] * load[m, g]
        else:
            raise ValueError(f"unknown fault kind {kind!r}; valid: {', '.join(FAULTS)}")
        labels[span] = True
    # Offsets and scales in sensor units (the detector must not rely on unit-variance inputs).
    scale = rng.uniform(0.5, 50, size=d)
    offset = rng.uniform(-10, 100, size=d)
    index = pd.date_range("2020-03-09 10:00", periods=n, freq="1s", tz="UTC")
    frame = pd.DataFrame(x * scale + offset, index=index, columns=list(SIGNALS))
    return Run(frame, labels, normal_rows, kind, tuple(SIGNALS[j] for j in sorted(chosen)), noise)


def pointwise(labels: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    """Confusion counts of one run's detection part."""
    y, p = np.asarray(labels, bool), np.asarray(predicted, bool)
    return {"tp": int((y & p).sum()), "fp": int((~y & p).sum()), "fn": int((y & ~p).sum()), "tn": int((~y & ~p).sum())}


def scores(counts: dict[str, int]) -> dict[str, float]:
    """Point-wise F1, false-alarm rate FP/(FP+TN) and missed-alarm rate FN/(FN+TP) (SKAB's definitions)."""
    tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    return {"f1": f1, "far": fp / max(fp + tn, 1), "mar": fn / max(fn + tp, 1)}

"""Synthetic interval data whose truth is known by construction (shared by the analytics tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytics.data import IntervalData


def production_frame(days: int = 56, machines: tuple[str, ...] = ("north/l1/cnc-01",), seed: int = 0,
                     a_kwh_per_unit: float = 0.08, b_kwh_per_c: float = 0.05, base_kwh: float = 2.0,
                     noise_kwh: float = 0.3, start: str = "2025-01-06") -> pd.DataFrame:
    """15-min frame where energy = base + a * good + b * temperature + noise (per machine, known coefficients).

    Production runs 06:00-22:00 on weekdays with a random rate; temperature follows a slow seasonal drift plus a daily
    swing, so it is not collinear with production.
    """
    rng = np.random.default_rng(seed)
    n = days * 96
    t = pd.date_range(start, periods=n, freq="15min", tz="UTC")
    hour = t.hour.to_numpy() + t.minute.to_numpy() / 60
    workday = t.day_of_week.to_numpy() < 5
    on = workday & (hour >= 6) & (hour < 22)
    frames = []
    for m in machines:
        rate = rng.uniform(20, 60, n // 32 + 1).repeat(32)[:n]  # parts per 15 min, changes every 8 h
        good = np.where(on, rng.poisson(rate), 0).astype(float)
        temp = 8 + 6 * np.sin(np.arange(n) / n * 2 * np.pi) + 4 * np.sin((hour - 9) / 24 * 2 * np.pi) + rng.normal(0, 1.5, n)
        energy = base_kwh + a_kwh_per_unit * good + b_kwh_per_c * temp + rng.normal(0, noise_kwh, n)
        running = np.where(on, 900.0, 0.0)
        frames.append(pd.DataFrame({
            "machine": m, "time": t, "energy_kwh": energy, "power_mean_kw": energy * 4, "power_max_kw": energy * 5,
            "s_off": np.where(on, 0.0, 900.0), "s_idle": 0.0, "s_running": running, "s_fault": 0.0,
            "good": good, "scrap": np.zeros(n), "outdoor_temp_c": temp,
        }))
    return pd.concat(frames, ignore_index=True)


def production_data(**kwargs) -> IntervalData:
    """:func:`production_frame` as interval data."""
    return IntervalData.from_frame(production_frame(**kwargs), resolution_s=900)

"""Test helpers: write a small plant or single series into a store at known times."""

from __future__ import annotations

import numpy as np

from core.model import SeriesKey

NS = 1_000_000_000
#: A fixed "now" (2026-11-26 10:00:07 UTC) so that window arithmetic in assertions is exact.
NOW_NS = 1_795_687_207 * NS


def machine_tags(line: str, machine: str, site: str = "north") -> dict[str, str]:
    return {"site": site, "line": line, "machine": machine}


def write_power(store, tags, times_s, values) -> None:
    """Write active power [kW] of one machine at whole-second times [s since the epoch]."""
    key = SeriesKey.of("electrical", tags, "active_power_kw")
    store.write_arrays(key, np.asarray(times_s, dtype=np.int64) * NS, np.asarray(values, dtype=float))


def write_field(store, measurement, field, tags, times_s, values) -> None:
    key = SeriesKey.of(measurement, tags, field)
    store.write_arrays(key, np.asarray(times_s, dtype=np.int64) * NS, np.asarray(values, dtype=float))


def fill_plant(store, end_s: int, seconds: int, step_s: int = 5, lines=(("L1", 3), ("L2", 2)), seed: int = 1) -> dict:
    """Write a small plant: power, energy register and state for each machine over ``seconds`` up to ``end_s``.

    Returns {machine label: (tags, times_s, power values)}.
    """
    rng = np.random.default_rng(seed)
    written = {}
    times = np.arange(end_s - seconds, end_s, step_s, dtype=np.int64)
    for line, n in lines:
        for i in range(n):
            name = f"{line.lower()}-m{i + 1}"
            tags = machine_tags(line, name)
            base = 10.0 + 5 * i + (20 if line == "L2" else 0)
            power = base + 2 * np.sin(times / 60.0 + i) + rng.normal(0, 0.3, len(times))
            write_power(store, tags, times, power)
            energy = 1000.0 + np.cumsum(power * step_s / 3600.0)
            write_field(store, "electrical", "energy_kwh", tags, times, energy)
            write_field(store, "machine_state", "state", tags, times, np.full(len(times), 2 if i else 1))
            written[name] = (tags, times, power)
    return written

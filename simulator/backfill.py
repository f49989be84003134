"""Backfill: render days of plant history and write them straight into a store, with the ground truth.

Each machine-day is rendered with numpy in one go and each series is written with :meth:`Store.write_arrays` once per
batch of days, so the store's bulk path (not Python loops) sets the speed.
"""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.model import SeriesKey
from core.storage import Store
from simulator.engine import Block, Simulation
from simulator.plant import Plant
from simulator.scenario import ScenarioSpec
from simulator.server import material_id
from simulator.timeline import day_number
from simulator.truth import write_manifest


@dataclass
class BackfillResult:
    """What a backfill did."""

    days: int
    values: int
    seconds: float
    manifest: dict
    truth_path: Path | None

    @property
    def values_per_s(self) -> float:
        return self.values / self.seconds if self.seconds > 0 else 0.0


class _Buffer:
    """Collects arrays per series across days, written in one ``write_arrays`` call per series and batch."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.parts: dict[SeriesKey, list] = {}
        self.values = 0

    def add(self, key: SeriesKey, times: np.ndarray, values: np.ndarray, status: np.ndarray | None = None) -> None:
        self.parts.setdefault(key, []).append((times, values, status))

    def take(self) -> dict:
        parts, self.parts = self.parts, {}
        return parts

    def flush(self, parts: dict | None = None) -> None:
        parts = self.take() if parts is None else parts
        for key, pieces in parts.items():
            times = np.concatenate([p[0] for p in pieces])
            values = np.concatenate([np.asarray(p[1], dtype=float) for p in pieces])
            status = None
            if any(p[2] is not None for p in pieces):
                status = np.concatenate([p[2] if p[2] is not None else np.zeros(len(p[0]), dtype=np.int64) for p in pieces])
            self.values += self.store.write_arrays(key, times, values, status, bulk=True)


def add_block(buf: _Buffer, plant: Plant, block: Block) -> None:
    """Queue one rendered block as store series (catalogue measurements in ``core.model.MEASUREMENTS``)."""
    t = block.times_ns
    for site in plant.sites:
        buf.add(SeriesKey.of("weather", {"site": site.id}, "outdoor_temp_c"), t, np.round(block.temperature[site.id], 2))
    for ref, sig in zip(plant.machines, block.machines):
        tags = ref.tags
        status = sig.status if sig.status.any() else None
        # Meter resolution: 1 W, 0.01 kWh, 0.001 power factor (also keeps the bulk write short).
        buf.add(SeriesKey.of("electrical", tags, "active_power_kw"), t, np.round(sig.power, 3), status)
        buf.add(SeriesKey.of("electrical", tags, "energy_kwh"), t, np.round(sig.energy, 2), status)
        buf.add(SeriesKey.of("electrical", tags, "power_factor"), t, np.round(sig.pf, 3), status)
        buf.add(SeriesKey.of("machine_state", tags, "state"), t, sig.state)
        if sig.good is not None:
            # production machines measure scrap and materials with their good parts
            assert sig.scrap is not None and sig.material is not None and sig.material_kg is not None, ref
            buf.add(SeriesKey.of("production", tags, "good_count"), t, sig.good)
            buf.add(SeriesKey.of("production", tags, "scrap_count"), t, sig.scrap)
            for mat in np.unique(sig.material[sig.material >= 0]):
                mask = sig.material == mat
                buf.add(SeriesKey.of("material", {**tags, "material": material_id(mat)}, "consumed_kg"), t[mask], np.round(sig.material_kg[mask], 3))
        if sig.flow is not None:
            buf.add(SeriesKey.of("compressed_air", tags, "flow_m3_min"), t, np.round(sig.flow, 3))
        if sig.pressure is not None:
            buf.add(SeriesKey.of("compressed_air", tags, "pressure_bar"), t, np.round(sig.pressure, 3))


def backfill(store: Store, plant: Plant, days: int, scenario: ScenarioSpec | None = None, seed: int = 0,
             start: dt.date | None = None, resolution_s: float = 60.0, truth_path: str | Path | None = None,
             batch_days: int = 7, progress: bool = True, intensity: float | None = None) -> BackfillResult:
    """Write ``days`` days of history from ``start`` (default: ``days`` days before today, UTC) into ``store``.

    Parameters
    ----------
    store : Store
        Target store (embedded or InfluxDB).
    plant, scenario, seed
        What to simulate.
    start : date, optional
        First day (UTC).
    resolution_s : float
        Grid step [s].
    truth_path : path, optional
        Where to write the ground-truth manifest (JSON).
    batch_days : int
        Days collected per series before one bulk write.
    """
    if days < 1:
        from simulator.errors import SimulatorError

        raise SimulatorError(f"--days must be at least 1, got {days}")
    if start is None:
        start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)
    first = day_number(start)
    t0 = time.perf_counter()
    sim = Simulation(plant, scenario, seed, resolution_s, first, intensity=intensity, run_days=days)
    buf = _Buffer(store)
    bar = tqdm(total=days, unit="day", desc="backfill", disable=not progress)
    # One writer thread: SQLite releases the GIL while it inserts, so rendering the next batch overlaps the writes.
    pending = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-writer") as pool:
        for i, day in enumerate(range(first, first + days)):
            add_block(buf, plant, sim.render(day))
            if (i + 1) % batch_days == 0 or i == days - 1:
                if pending is not None:
                    pending.result()
                pending = pool.submit(buf.flush, buf.take())
                elapsed = time.perf_counter() - t0
                bar.set_postfix(values=f"{buf.values:,}", rate=f"{buf.values / max(elapsed, 1e-9):,.0f}/s")
            bar.update(1)
        if pending is not None:
            pending.result()
    # The last batch was still being written when the bar reached the last day: show the final count and rate.
    elapsed = time.perf_counter() - t0
    bar.set_postfix(values=f"{buf.values:,}", rate=f"{buf.values / max(elapsed, 1e-9):,.0f}/s")
    bar.close()
    store.flush()
    manifest = sim.manifest()
    seconds = time.perf_counter() - t0
    path = write_manifest(manifest, truth_path) if truth_path else None
    return BackfillResult(days, buf.values, seconds, manifest, path)

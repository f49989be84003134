"""Rollups of :class:`core.storage.influx.InfluxStore`: whether the rollup buckets exist, and recomputing them.

The rollup buckets (1 min, 15 min, 1 h) are kept by InfluxDB tasks that :func:`core.storage.influx_setup.setup_influx`
creates; the store recomputes the hours that received late points (older than ``LATE_AFTER_S`` when written).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from core.storage.base import ROLLUP_RESOLUTIONS_S
from core.storage.influx_flux import rollup_body, rollup_bucket
from core.storage.influx_lp import flux_time
from core.storage.influx_write import HOUR_NS, InfluxState

log = logging.getLogger("core.storage.influx")


class InfluxRollups(InfluxState):
    """The rollup side of an :class:`~core.storage.influx.InfluxStore` (a mixin)."""

    # -- rollups -------------------------------------------------------------------------------------------------------
    def rollups_ready(self) -> bool:
        """True when the rollup buckets exist (``wattline influx setup`` was run); cached for 60 s."""
        ok, when = self._rollups_ok
        if time.monotonic() - when < 60:
            return ok
        try:
            api = self._client.buckets_api()
            ok = all(api.find_bucket_by_name(rollup_bucket(self.settings.bucket, r)) is not None
                     for r in ROLLUP_RESOLUTIONS_S)
        except Exception as exc:  # noqa: BLE001 - treat as "no rollups" and read raw points
            log.debug("cannot check rollup buckets: %s", exc)
            ok = False
        if not ok:
            log.info("InfluxDB rollup buckets of %s are missing: windowed queries read raw points; "
                     "run `wattline influx setup`", self.settings.bucket)
        self._rollups_ok = (ok, time.monotonic())
        return ok

    def refresh_rollups(self, start_ns: int, stop_ns: int, progress: bool = False,
                        resolutions: Iterable[int] = ROLLUP_RESOLUTIONS_S) -> None:
        """Recompute rollups for ``[start, stop)`` (widened to whole hours) inside InfluxDB, each from raw points.

        Parameters
        ----------
        start_ns, stop_ns : int
            Range [ns].
        progress : bool
            Show a tqdm bar (one step per day).
        resolutions : iterable of int
            Which rollups to rebuild [s]; all by default.
        """
        if not self.rollups_ready():
            return
        lo = (int(start_ns) // HOUR_NS) * HOUR_NS
        hi = -(-int(stop_ns) // HOUR_NS) * HOUR_NS
        step = 24 * HOUR_NS
        chunks = [(a, min(a + step, hi)) for a in range(lo, hi, step)]
        bar = None
        if progress and len(chunks) > 1:
            from tqdm import tqdm

            bar = tqdm(total=len(chunks), desc="rollups", unit="day")
        for a, b in chunks:
            for res in resolutions:
                self._run(rollup_body(self.settings.bucket, self.settings.org, res, flux_time(a), flux_time(b),
                                      from_raw=True))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()

    def refresh_dirty_rollups(self, progress: bool = False) -> None:
        """Recompute the rollups of hours that received late points through this store."""
        with self._lock:
            hours, self._dirty = sorted(self._dirty), set()
        if not hours:
            return
        try:
            start = prev = hours[0]
            for h in [*hours[1:], None]:
                if h is None or h != prev + 1:
                    self.refresh_rollups(start * HOUR_NS, (prev + 1) * HOUR_NS, progress=progress)
                    if h is None:
                        break
                    start = h
                prev = h
        except BaseException:
            with self._lock:
                self._dirty.update(hours)  # try again later
            raise

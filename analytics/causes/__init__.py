"""Detectors of avoidable energy, one module per cause (see ``analytics.potential`` for how they are combined).

Each module has ``detect(ctx) -> CauseResult``; ``ctx`` (:class:`analytics.causes._common.Context`) holds the interval
data as matrices and the windows that may not count as waste.
"""

from analytics.causes import (
    air_leak,
    excess_specific_energy,
    idle_running,
    off_shift_load,
    peak_demand,
)
from analytics.causes._common import CauseResult, Context

#: Detectors in the order they run: a later one never counts energy an earlier one explained (excess specific energy
#: comes last because it compares whole days with best practice).
DETECTORS = {
    "peak_demand": peak_demand.detect,
    "idle_running": idle_running.detect,
    "off_shift_load": off_shift_load.detect,
    "air_leak": air_leak.detect,
    "excess_specific_energy": excess_specific_energy.detect,
}

__all__ = ["DETECTORS", "CauseResult", "Context"]

"""Energy analytics: baselines, anomalies and avoidable energy.

Analytics read from a :class:`core.storage.base.Store` and follow one pattern: a data container
(:class:`analytics.data.IntervalData`), then ``Model(settings).fit(data)``, then ``.predict()`` / ``.to_dict()``. They
emit findings in the shared event schema (:class:`core.model.Event`) so that the simulator's ground truth can score
them. Analytics never import the dashboard or the simulator.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analytics.baseline import Baseline, BaselineSettings, g14_statistics
    from analytics.data import IntervalData, MachineInfo
    from analytics.enpi import EnpiSettings, SpecificEnergy
    from analytics.errors import AnalyticsError, InsufficientDataError
    from analytics.quality import QualityReport, QualitySettings, find_meter_faults

# Where each public name lives: imported on first use (PEP 562), so that importing a light submodule such as
# analytics.parallel (the CLI's settings, imported by every wattline command) does not load pandas, pyarrow and the
# models: with them `wattline collect` started at ~180 MB RSS before its first value, without them at ~85 MB.
_LAZY = {"Baseline": "baseline", "BaselineSettings": "baseline", "g14_statistics": "baseline",
         "IntervalData": "data", "MachineInfo": "data", "EnpiSettings": "enpi", "SpecificEnergy": "enpi",
         "AnalyticsError": "errors", "InsufficientDataError": "errors", "QualityReport": "quality",
         "QualitySettings": "quality", "find_meter_faults": "quality"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'analytics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"analytics.{module}"), name)
    globals()[name] = value
    return value


__all__ = ["AnalyticsError", "Baseline", "BaselineSettings", "EnpiSettings", "InsufficientDataError", "IntervalData",
           "MachineInfo", "QualityReport", "QualitySettings", "SpecificEnergy", "find_meter_faults", "g14_statistics"]

"""Energy analytics: baselines, anomalies and avoidable energy.

Analytics read from a :class:`core.storage.base.Store` and follow one pattern: a data container
(:class:`analytics.data.IntervalData`), then ``Model(settings).fit(data)``, then ``.predict()`` / ``.to_dict()``. They
emit findings in the shared event schema (:class:`core.model.Event`) so that the simulator's ground truth can score
them. Analytics never import the dashboard or the simulator.
"""

from analytics.baseline import Baseline, BaselineSettings, g14_statistics
from analytics.data import IntervalData, MachineInfo
from analytics.enpi import EnpiSettings, SpecificEnergy
from analytics.errors import AnalyticsError, InsufficientDataError
from analytics.quality import QualityReport, QualitySettings, find_meter_faults

__all__ = ["AnalyticsError", "Baseline", "BaselineSettings", "EnpiSettings", "InsufficientDataError", "IntervalData",
           "MachineInfo", "QualityReport", "QualitySettings", "SpecificEnergy", "find_meter_faults", "g14_statistics"]

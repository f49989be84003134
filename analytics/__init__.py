"""Energy analytics: baselines, anomalies and avoidable energy.

Analytics read from a :class:`core.storage.base.Store` and follow one pattern: a data container
(:class:`analytics.data.IntervalData`), then ``Model(settings).fit(data)``, then ``.predict()`` / ``.to_dict()``. They
emit findings in the shared event schema (:class:`core.model.Event`) so that the simulator's ground truth can score
them. Analytics never import the dashboard or the simulator.
"""

from analytics.data import IntervalData, MachineInfo
from analytics.errors import AnalyticsError, InsufficientDataError

__all__ = ["AnalyticsError", "InsufficientDataError", "IntervalData", "MachineInfo"]

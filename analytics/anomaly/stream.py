"""Streaming anomaly scoring: new windows are scored as they arrive with fitted models, without refitting.

``AnomalyStream(model)`` takes a fitted :class:`analytics.anomaly.plant.PlantAnomalies`; ``update(new_data)`` scores
only the new windows (baseline prediction and detector scores; the smoothing continues from each machine's raw-score
history), then turns the accumulated scores into events: an event opens when its persistence rule is met and extends
while its machine stays abnormal, so an event's start is known as soon as it opens and its end when it closes.
Because the smoothing is causal and the event rules are deterministic on the scores, the events after streaming a
range equal a batch ``PlantAnomalies.detect`` over that range with the same models (tested).

``refit(model)`` swaps in a model refitted elsewhere (for example nightly, in a supervised background thread); the
scores from then on use the new thresholds, the scores already computed stay as they were.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd

from analytics.anomaly.plant import PlantAnomalies
from analytics.data import IntervalData
from analytics.errors import AnalyticsError
from core.model import Event


class AnomalyStream:
    """Score new interval windows with fitted plant anomaly models (see the module docstring).

    Parameters
    ----------
    model : PlantAnomalies
        Fitted (``fit`` on a history).
    """

    def __init__(self, model: PlantAnomalies) -> None:
        if not model.detectors:
            raise AnalyticsError("the anomaly model has no fitted detector; fit it on a history with enough data first")
        self._lock = threading.Lock()
        self.model = model
        self.events: list[Event] = []
        self._frames: list[pd.DataFrame] = []
        self._expected: list[np.ndarray] = []
        self._fault: list[np.ndarray] = []
        self._raw: dict[str, np.ndarray] = {p: np.zeros(0) for p in model.detectors}
        self._score: dict[str, np.ndarray] = {p: np.zeros(0) for p in model.detectors}
        self._template: IntervalData | None = None
        self.windows = 0

    @property
    def stop(self) -> pd.Timestamp | None:
        """End of the windows scored so far (UTC)."""
        return None if self._template is None else pd.Timestamp(self._last_stop)

    def refit(self, model: PlantAnomalies) -> None:
        """Use ``model`` (refitted elsewhere) for the windows that arrive from now on."""
        if set(model.detectors) != set(self.model.detectors):
            missing = sorted(set(self.model.detectors) ^ set(model.detectors))
            raise AnalyticsError(f"the refitted model covers other machines ({missing[:5]}); start a new stream")
        with self._lock:
            self.model = model

    def update(self, data: IntervalData, quality=None, known: list[Event] | tuple = ()) -> list[Event]:
        """Score the new windows in ``data`` (contiguous with the last ones, same machines) and return all findings.

        Parameters
        ----------
        data : IntervalData
            The newest windows only.
        quality : analytics.quality.QualityReport, optional
            Meter faults of the new windows (blanked, like in batch).
        known : sequence of Event
            Known findings (waste causes, meter faults) of the whole streamed range: anomalies overlapping them are
            not reported.
        """
        with self._lock:
            model = self.model
            if self._template is not None:
                if list(data.machines) != list(self._template.machines):
                    raise AnalyticsError("the new windows hold other machines than the stream; start a new stream")
                if pd.Timestamp(data.start) != pd.Timestamp(self._last_stop):
                    raise AnalyticsError(f"the new windows start at {data.start}, not where the stream stopped "
                                         f"({self._last_stop}); pass contiguous windows")
            else:
                self._template, self._start = data, data.start
            n_m, n_t = len(data.machines), data.n_times
            fault = np.zeros((n_m, n_t), bool) if quality is None or quality.mask is None else np.asarray(quality.mask)
            expected = model.expected(data)
            for i, path in enumerate(data.machines):
                det = model.detectors.get(path)
                if det is None:
                    continue
                feats = model.machine_signals(data, i, expected, fault)
                raw = det.raw_score(feats)
                smoothed = det.score(feats, history=self._raw[path], raw=raw).to_numpy()
                self._raw[path] = np.concatenate([self._raw[path], raw])[-max(det.settings.smooth_rows, 1):]
                self._score[path] = np.concatenate([self._score[path], smoothed])
            self._frames.append(data.frame)
            self._expected.append(np.full((n_m, n_t), np.nan) if expected is None else expected)
            self._fault.append(fault)
            self._last_stop = data.stop
            self.windows += n_t
            whole = self.data()
            self.events = model.detect(whole, np.concatenate(self._expected, axis=1),
                                       np.concatenate(self._fault, axis=1), list(known), scores=self._score)
            return self.events

    def data(self) -> IntervalData:
        """The windows streamed so far as interval data."""
        if self._template is None:
            raise AnalyticsError("nothing streamed yet")
        t = self._template
        frame = pd.concat(self._frames, ignore_index=True)
        return IntervalData.from_frame(frame, resolution_s=t.resolution_s, start=self._start, stop=self._last_stop,
                                       plant=t.plant, machines=t.machines)

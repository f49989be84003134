"""Streaming anomaly scoring: new windows are scored as they arrive with fitted models, without refitting.

``AnomalyStream(model)`` takes a fitted :class:`analytics.anomaly.plant.PlantAnomalies`; ``update(new_data)`` scores
only the new windows (baseline prediction and detector scores for all machines at once; the smoothing continues from
each machine's raw-score history), then turns the scores into events: an event opens when its persistence rule is met
and extends while its machine stays abnormal, so an event's start is known as soon as it opens and its end when it
closes. Because the smoothing is causal and the event rules are deterministic on the scores, the events after
streaming a range equal a batch ``PlantAnomalies.detect`` over that range with the same models (tested).

A step costs what the new windows cost, not what was streamed before: per machine the stream keeps a *settled* row,
before which no later window can change an event (the ``shift + gap_rows + 1`` rows after it score below the
hysteresis level, so no later run can join, extend back into or shift into what came before); events before it are
final. Only machines with a row at or above the hysteresis level since their settled row are re-detected, from that
row on, and the windows before every machine's settled row are dropped (a machine abnormal for days keeps the tail
that long).

``refit(model)`` swaps in a model refitted elsewhere (for example nightly, in a supervised background thread); the
scores from then on use the new thresholds, the scores already computed stay as they were. ``set_preferences``
applies a changed false-alarm budget (stored scores are rescaled to the new threshold) or patterns marked as normal
(final events that match them are withdrawn) without refitting.
"""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import pandas as pd

from analytics.anomaly.plant import PlantAnomalies
from analytics.data import IntervalData, runs
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
        self._final: list[Event] = []
        # The retained tail: frames (with baseline expectation and meter-fault masks) from absolute row _base on.
        self._frames: list[pd.DataFrame] = []
        self._expected: list[np.ndarray] = []
        self._fault: list[np.ndarray] = []
        self._base = 0
        self._n = 0
        self._raw: dict[str, np.ndarray] = {p: np.zeros(0) for p in model.detectors}
        self._score: dict[str, np.ndarray] = {p: np.zeros(0) for p in model.detectors}  # from row _base on
        self._settled: dict[str, int] = dict.fromkeys(model.detectors, 0)
        self._template: IntervalData | None = None  # the first windows streamed; with it _start and _last_stop set
        self._start: dt.datetime | None = None
        self._last_stop: dt.datetime | None = None
        self._tail_start: pd.Timestamp | None = None
        self.windows = 0
        self.detected_machines = 0  # machines re-detected by the last update

    @property
    def stop(self) -> pd.Timestamp | None:
        """End of the windows scored so far (UTC)."""
        return None if self._template is None else pd.Timestamp(self._last_stop)

    @property
    def start(self) -> pd.Timestamp | None:
        """Start of the first window streamed (UTC)."""
        return None if self._template is None else pd.Timestamp(self._start)

    @property
    def tail_start(self) -> pd.Timestamp | None:
        """Start of the oldest window kept (events before it are final)."""
        return self._tail_start

    @property
    def retained_windows(self) -> int:
        """Windows per machine kept for events that are not settled yet."""
        return self._n - self._base

    def refit(self, model: PlantAnomalies) -> None:
        """Use ``model`` (refitted elsewhere) for the windows that arrive from now on."""
        if set(model.detectors) != set(self.model.detectors):
            missing = sorted(set(self.model.detectors) ^ set(model.detectors))
            raise AnalyticsError(f"the refitted model covers other machines ({missing[:5]}); start a new stream")
        with self._lock:
            self.model = model

    def set_preferences(self, alerts_per_week: dict[str, float], normal_patterns: dict[str, list[dict]]) -> None:
        """Apply false-alarm budgets and patterns marked as normal (see
        :meth:`analytics.anomaly.plant.PlantAnomalies.set_preferences`) to the streamed range: scores kept for
        unsettled events follow the new thresholds, final events matching a normal pattern are withdrawn."""
        with self._lock:
            old = {p: d.threshold for p, d in self.model.detectors.items()}
            self.model.set_preferences(alerts_per_week, normal_patterns)
            for path, det in self.model.detectors.items():
                before, after = old[path], det.threshold
                if before != after:
                    assert before is not None and after is not None  # a fitted model's detectors have thresholds
                    self._score[path] = self._score[path] * (before / after)
            self._final = [e for e in self._final if not self._is_normal(e)]
            self.events = [e for e in self.events if not self._is_normal(e)]

    def _is_normal(self, event: Event) -> bool:
        return self.model.is_normal(event.machine, event.details.get("signature") or {})

    def update(self, data: IntervalData, quality=None, known: list[Event] | tuple = ()) -> list[Event]:
        """Score the new windows in ``data`` (contiguous with the last ones, same machines) and return all findings.

        Parameters
        ----------
        data : IntervalData
            The newest windows only.
        quality : analytics.quality.QualityReport, optional
            Meter faults of the new windows (blanked, like in batch).
        known : sequence of Event
            Known findings (waste causes, meter faults) of the streamed range: anomalies overlapping them are not
            reported (an event is checked against them until it is final).
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
                self._template, self._start, self._tail_start = data, data.start, pd.Timestamp(data.start)
            n_m, n_t = len(data.machines), data.n_times
            fault = np.zeros((n_m, n_t), bool) if quality is None or quality.mask is None else np.asarray(quality.mask)
            expected = model.expected(data)
            self._score_new(model, model.signal_arrays(data, expected, fault))
            self._frames.append(data.frame)
            self._expected.append(np.full((n_m, n_t), np.nan) if expected is None else expected)
            self._fault.append(fault)
            self._last_stop = data.stop
            self._n += n_t
            self.windows += n_t
            self.events = self._detect(model, list(known))
            self._trim()
            return self.events

    def _score_new(self, model: PlantAnomalies, signals: dict[str, np.ndarray]) -> None:
        """Smoothed scores (threshold units) of the new rows, continuing each machine's smoothing: one rolling pass
        per group of machines sharing smoothing settings and history length (the same computation as the detector's
        own smoothing, column by column)."""
        groups: dict[tuple, list[str]] = {}
        raw_new = {}
        for path, x in signals.items():
            det = model.detectors[path]
            raw_new[path] = det.raw_score_array(x)
            w = max(det.settings.smooth_rows, 1)
            groups.setdefault((w, det.settings.smoothing, len(self._raw[path][-(w - 1):]) if w > 1 else 0),
                              []).append(path)
        for (w, how, n_head), paths in groups.items():
            block = np.column_stack([np.concatenate([self._raw[p][len(self._raw[p]) - n_head:], raw_new[p]])
                                     for p in paths])
            if w > 1:
                roll = pd.DataFrame(block).rolling(w, min_periods=(w + 1) // 2)
                smoothed = (roll.median() if how == "median" else roll.mean()).to_numpy()[n_head:]
            else:
                smoothed = block[n_head:]
            for j, p in enumerate(paths):
                det = model.detectors[p]
                self._score[p] = np.concatenate([self._score[p], smoothed[:, j] / det.threshold])
                self._raw[p] = np.concatenate([self._raw[p], raw_new[p]])[-max(w - 1, 1):]

    def _detect(self, model: PlantAnomalies, known: list[Event]) -> list[Event]:
        """Final events plus the events of the machines that are not settled, re-detected from their settled row."""
        first: dict[str, int] = {}
        bounds: dict[str, int] = {}
        for path, det in model.detectors.items():
            s = det.settings
            k = (s.smooth_rows - 1) // 2 + s.gap_rows + 1
            rel = self._settled[path] - self._base
            below = ~(self._score[path][rel:] >= det.release_level())
            if below.all():
                # Nothing at or above the hysteresis level since the settled row: no event, settle up to k rows back.
                self._settled[path] = max(self._settled[path], self._n - k)
                continue
            first[path] = rel
            # The latest row q with k rows below the level from it on: events ending by q are final.
            q = None
            for a, b in reversed(runs(below)):
                if b - a >= k:
                    q = self._settled[path] + b - k
                    break
            bounds[path] = q if q is not None else self._settled[path]
        self.detected_machines = len(first)
        open_events: list[Event] = []
        if first:
            tail = self.data()
            found = model.detect(tail, np.concatenate(self._expected, axis=1), np.concatenate(self._fault, axis=1),
                                 known, scores=self._score, first=first)
            times = tail.times_ns
            for ev in found:
                q = bounds[ev.machine]
                end_row = int(np.searchsorted(times, pd.Timestamp(ev.end).value)) + self._base
                (self._final if end_row <= q else open_events).append(ev)
            for path, q in bounds.items():
                self._settled[path] = q
        return sorted([*self._final, *open_events], key=lambda e: (e.start, e.machine))

    def _trim(self) -> None:
        """Drop the frames wholly before every machine's settled row."""
        keep_from = min(self._settled.values(), default=self._n)
        template = self._template
        assert template is not None  # called by update, after the first windows
        while self._frames:
            rows = len(self._frames[0]) // max(len(template.machines), 1)
            if self._base + rows > keep_from:
                break
            self._frames.pop(0)
            self._expected.pop(0)
            self._fault.pop(0)
            self._base += rows
            self._tail_start += pd.Timedelta(seconds=rows * template.resolution_s)
            for p in self._score:
                self._score[p] = self._score[p][rows:]

    def data(self) -> IntervalData:
        """The windows kept (from the oldest unsettled event's machine's settled row on) as interval data."""
        if self._template is None:
            raise AnalyticsError("nothing streamed yet")
        t = self._template
        if not self._frames:
            raise AnalyticsError("no windows are kept: every event is settled")
        frame = pd.concat(self._frames, ignore_index=True)
        return IntervalData.from_frame(frame, resolution_s=t.resolution_s, start=self._tail_start,
                                       stop=self._last_stop, plant=t.plant, machines=t.machines)

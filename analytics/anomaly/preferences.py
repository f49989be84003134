"""The users' anomaly preferences: a false-alarm budget per machine and patterns marked as normal, kept in a small JSON
file beside the store, read by ``wattline analyze`` (batch) and ``wattline analyze --follow`` (re-read when it
changes) and written by ``wattline anomalies budget|mark-normal|unmark`` or a dashboard page (plain functions here).

The file (``<store>.anomaly-preferences.json`` beside a SQLite store; for other stores the path given with
``--preferences`` or ``WATTLINE_ANOMALY_PREFERENCES``)::

    {"version": 1,
     "alerts_per_week": {"north/l1/cnc-02": 0.5},
     "normal_patterns": [{"id": "a1b2c3d4e5", "machine": "north/l1/cnc-02", "signature": {"residual_kw": 1.0, ...},
                          "start": "2025-01-22T08:00:00+00:00", "explanation": "...", "marked_at": "...",
                          "note": "night cleaning", "marked_by": "anna"}],
     "budget_set": {"north/l1/cnc-02": {"by": "anna", "at": "2025-01-23T10:00:00+00:00"}}}

A budget replaces the detector's default (1 alert per week) for that machine: its threshold is recalibrated on the
detector's stored calibration scores, without refitting. A marked pattern is the finding's ``signature`` (signed
contribution per signal, see :mod:`analytics.anomaly.detector`): later events of that machine whose signature is as
similar (cosine >= ``suppress_similarity``) are not reported. Writes are atomic (a temporary file renamed over the
old one), so a follower never reads half a file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from analytics.errors import AnalyticsError
from core.config import FrozenModel
from core.model import Event

#: Environment variable naming the preferences file (stores that are not a SQLite file).
ENV = "WATTLINE_ANOMALY_PREFERENCES"
SUFFIX = ".anomaly-preferences.json"
VERSION = 1


class NormalPattern(FrozenModel):
    """A finding a user marked as normal."""

    id: str = Field(description="The finding's id (:func:`finding_id`).")
    machine: str = Field(description="Machine path site/line/machine.")
    signature: dict[str, float] = Field(description="The finding's signature: signal -> signed unit component.")
    start: str = Field("", description="Start of the marked finding (ISO 8601).")
    explanation: str = Field("", description="The finding's sentence, for the person reading the list.")
    marked_at: str = Field("", description="When it was marked (ISO 8601, UTC).")
    note: str = Field("", description="Why it is normal (free text).")
    marked_by: str = Field("", description="Who marked it (the dashboard user; empty from the command line).")


class AnomalyPreferences(FrozenModel):
    """Budgets and normal patterns (see the module docstring)."""

    version: int = Field(VERSION, description="File layout version.")
    alerts_per_week: dict[str, float] = Field(default_factory=dict, description="Machine path -> false-alarm budget "
                                              "[alerts/week].")
    normal_patterns: list[NormalPattern] = Field(default_factory=list, description="Findings marked as normal.")
    budget_set: dict[str, dict[str, str]] = Field(default_factory=dict, description="Machine path -> who set its "
                                                  "budget and when ({'by': name, 'at': ISO 8601 UTC}).")

    def patterns_by_machine(self) -> dict[str, list[dict[str, float]]]:
        """Machine path -> signatures marked as normal (what the detectors take)."""
        out: dict[str, list[dict[str, float]]] = {}
        for p in self.normal_patterns:
            out.setdefault(p.machine, []).append(dict(p.signature))
        return out

    def plant_settings(self, base: Any = None) -> Any:
        """:class:`analytics.anomaly.plant.PlantAnomalySettings` carrying these budgets and patterns."""
        from analytics.anomaly.plant import PlantAnomalySettings

        base = base or PlantAnomalySettings()
        return base.model_copy(update={"alerts_per_week": dict(self.alerts_per_week),
                                       "normal_patterns": self.patterns_by_machine()})


def preferences_path(store_url: str, explicit: str | Path | None = None) -> Path:
    """The preferences file of a store: ``explicit``, else ``$WATTLINE_ANOMALY_PREFERENCES``, else beside a SQLite
    store's file.

    Raises
    ------
    AnalyticsError
        For a store that is not a SQLite file and no path given (the message names both ways to give one).
    """
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    url = str(store_url)
    if "://" not in url or url.startswith("sqlite://"):
        from core.storage.sqlite import parse_sqlite_url

        return Path(str(parse_sqlite_url(url)) + SUFFIX)
    raise AnalyticsError(f"the store {url.split('?', 1)[0]!r} is not a SQLite file, so the anomaly preferences have "
                         f"no place beside it; give a file with --preferences FILE or the environment variable {ENV}")


def read_preferences(path: str | Path) -> AnomalyPreferences:
    """The preferences in ``path`` (defaults when the file does not exist yet).

    Raises
    ------
    AnalyticsError
        When the file is not JSON or a key or value is invalid (the message names the file and the key).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AnomalyPreferences()
    except OSError as exc:
        raise AnalyticsError(f"cannot read anomaly preferences {path}: {exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnalyticsError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix or delete the file (budgets and "
                             "normal patterns return to the defaults)") from exc
    try:
        prefs = AnomalyPreferences.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise AnalyticsError(f"{path}: {where}: {err['msg']} (got {err.get('input')!r}); valid keys: version, "
                             "alerts_per_week, normal_patterns, budget_set") from exc
    if prefs.version > VERSION:
        raise AnalyticsError(f"{path}: version {prefs.version} is newer than this Wattline reads ({VERSION}); upgrade")
    return prefs


def write_preferences(path: str | Path, prefs: AnomalyPreferences) -> Path:
    """Write ``prefs`` to ``path`` atomically (a reader sees the old file or the new one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(prefs.model_dump(), fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def finding_id(event: Event) -> str:
    """A short stable id of a finding: the same finding found again (batch or follow) has the same id."""
    start = event.start.astimezone(dt.UTC).isoformat()
    return hashlib.sha1(f"{event.kind}|{event.machine}|{start}".encode()).hexdigest()[:10]


def set_budget(path: str | Path, machine: str, alerts_per_week: float | None, by: str = "") -> AnomalyPreferences:
    """Set (or with None remove) ``machine``'s false-alarm budget [alerts/week], recording who (``by``) and when;
    returns the new preferences."""
    if alerts_per_week is not None and not (0 < float(alerts_per_week) <= 7 * 96):
        raise AnalyticsError(f"alerts per week {alerts_per_week!r} for {machine}: give a number above 0 (for example "
                             "0.5 for one alert every two weeks)")
    prefs = read_preferences(path)
    budgets, stamps = dict(prefs.alerts_per_week), dict(prefs.budget_set)
    if alerts_per_week is None:
        budgets.pop(machine, None)
        stamps.pop(machine, None)
    else:
        budgets[machine] = float(alerts_per_week)
        stamps[machine] = {"by": by, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    prefs = prefs.model_copy(update={"alerts_per_week": budgets, "budget_set": stamps})
    write_preferences(path, prefs)
    return prefs


def mark_normal(path: str | Path, event: Event, note: str = "", by: str = "") -> NormalPattern:
    """Mark an anomaly finding as normal: later findings of its machine with a similar signature are not reported;
    ``by`` names who marked it (kept with the pattern, like the time).

    Raises
    ------
    AnalyticsError
        When the finding carries no signature (only anomaly findings do).
    """
    signature = (event.details or {}).get("signature")
    if event.kind != "anomaly" or not signature:
        raise AnalyticsError(f"finding {finding_id(event)} ({event.kind} on {event.machine}) has no anomaly signature; "
                             "only findings of kind 'anomaly' can be marked as normal")
    pattern = NormalPattern(id=finding_id(event), machine=event.machine, signature={str(k): float(v) for k, v in
                                                                                   signature.items()},
                            start=event.start.isoformat(), explanation=str(event.details.get("explanation") or ""),
                            marked_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), note=note,
                            marked_by=by)
    prefs = read_preferences(path)
    kept = [p for p in prefs.normal_patterns if p.id != pattern.id]
    write_preferences(path, prefs.model_copy(update={"normal_patterns": [*kept, pattern]}))
    return pattern


def unmark(path: str | Path, pattern_id: str) -> bool:
    """Forget a pattern marked as normal; False when there was none with that id."""
    prefs = read_preferences(path)
    kept = [p for p in prefs.normal_patterns if p.id != pattern_id]
    if len(kept) == len(prefs.normal_patterns):
        return False
    write_preferences(path, prefs.model_copy(update={"normal_patterns": kept}))
    return True


def find_finding(findings: list[Event], finding: str) -> Event:
    """The anomaly finding whose id (or id prefix of at least 4 characters) is ``finding``.

    Raises
    ------
    AnalyticsError
        None or several match (the message lists a few ids).
    """
    key = finding.strip().lower()
    hits = {finding_id(e): e for e in findings if e.kind == "anomaly" and len(key) >= 4
            and finding_id(e).startswith(key)}
    if len(hits) == 1:
        return next(iter(hits.values()))
    known = ", ".join(sorted({finding_id(e) for e in findings if e.kind == "anomaly"})[:8]) or "none stored"
    what = "matches several findings" if hits else "matches no stored anomaly finding"
    raise AnalyticsError(f"finding id {finding!r} {what}; list them with 'wattline anomalies list' (ids: {known})")

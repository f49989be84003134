"""The users' say on anomaly findings in the dashboard: mark a finding as normal (with a comment), undo it, set a
machine's false-alarm budget [alerts/week]. Plain functions; the findings page's callbacks are thin wrappers.

Everything is written through :mod:`analytics.anomaly.preferences` into the same file the command line writes and
``wattline analyze`` reads (``<store>.anomaly-preferences.json`` beside a SQLite store, else
``$WATTLINE_ANOMALY_PREFERENCES``: resolved exactly as ``wattline analyze`` and ``--follow`` resolve it, so there is
no dashboard option that could point the dashboard at a file the analysis never reads).

Who may change them (:data:`PREF_ROLES`): plant managers and engineers for their own sites, admins everywhere; a
chief data officer reads only (as for work orders). Plant managers decide how many interruptions a week a machine may
cost; engineers are the ones who know that a pattern is a normal process (a cleaning cycle); both already change the
work orders of their sites, and every change is reversible and kept with the user's name and time. Nothing the
browser sends is trusted: the finding is looked up again among the findings the user may see, the machine of a
budget must have energy data in the user's sites, an undo must name a pattern of a machine of the user's sites.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dashboard.access import machine_site

#: Roles that may mark findings as normal and set budgets (for the sites they see).
PREF_ROLES = ("plant_manager", "engineer", "admin")
#: What the user is told after a change: when it applies.
TAKES_EFFECT = ("It takes effect at the next 'wattline analyze'; a running 'wattline analyze --follow' applies it "
                "from its next step.")


def may_change(user, machine: str | None) -> bool:
    """True when ``user``'s role may change anomaly preferences and the machine's site is one of theirs."""
    site = machine_site(machine) if machine else None
    return user is not None and user.role in PREF_ROLES and site is not None and user.may_see(site)


def preferences_file(store_url: str) -> tuple[Path | None, str]:
    """The store's preferences file (as ``wattline analyze`` finds it) and, without one, why (for the page)."""
    from analytics.anomaly.preferences import preferences_path
    from analytics.errors import AnalyticsError

    try:
        return preferences_path(store_url), ""
    except AnalyticsError as exc:
        return None, f"Anomaly preferences are off for this store: {exc}."


def read_prefs(path: Path | None):
    """The preferences in ``path`` (defaults without a file) and an error message when it cannot be read."""
    from analytics.anomaly.preferences import AnomalyPreferences, read_preferences
    from analytics.errors import AnalyticsError

    if path is None:
        return AnomalyPreferences(), ""
    try:
        return read_preferences(path), ""
    except AnalyticsError as exc:
        return AnomalyPreferences(), f"Cannot read the anomaly preferences: {exc}"


def energy_machines(store) -> list[str]:
    """Machine paths ``site/line/machine`` with energy data in ``store`` (a store limited to the user's sites)."""
    out = set()
    for info in store.series("electrical"):
        t = info.key.tag_dict
        if t.get("site") and t.get("line") and t.get("machine"):
            out.add(f"{t['site']}/{t['line']}/{t['machine']}")
    return sorted(out)


def mark_rows(rows: list[dict], findings: Iterable, prefs, plant, default_tz) -> list[dict]:
    """Grid rows with ``finding_id`` on anomaly rows and those marked as normal labelled so (``marked_normal``).

    Rows are matched to their findings through :func:`dashboard.overview.finding_rows` of each anomaly finding, so the
    machine, label and local start are the grid's own.
    """
    from analytics.anomaly.preferences import finding_id
    from dashboard.overview import finding_rows

    ids = {}
    for ev in findings:
        if ev.kind == "anomaly":
            r = finding_rows([ev], plant, default_tz)[0]
            ids[(r["machine"], r["kind"], r["start"])] = finding_id(ev)
    marked = {p.id for p in prefs.normal_patterns}
    out = []
    for row in rows:
        fid = ids.get((row["machine"], row["kind"], row["start"]))
        row = {**row, "finding_id": fid, "marked_normal": fid in marked}
        if row["marked_normal"]:
            row["kind"] = f"{row['kind']} · marked normal"
        out.append(row)
    return out


def marked_options(user, prefs) -> list[dict]:
    """Dropdown options of the patterns marked as normal that ``user`` may take back (machines of their sites): the
    marked finding itself is no longer reported after the next analysis, so the grid alone cannot offer its undo."""
    out = []
    for p in prefs.normal_patterns:
        if may_change(user, p.machine):
            what = p.note or p.explanation or "no comment"
            out.append({"label": f"{p.machine} · {p.start[:16].replace('T', ' ')} UTC · {what}"[:160], "value": p.id})
    return out


def selection_state(user, row: Mapping[str, Any] | None, prefs, machines: list[str], file_note: str = "") -> dict:
    """What the anomaly card shows for the selected grid row: a sentence, which buttons are on, the budget.

    Returns
    -------
    dict
        ``text``, ``can_mark``, ``can_undo``, ``can_budget`` (bools), ``undo`` (the row's pattern id when it is marked
        and the user may take it back), ``machine`` (the row's machine when it has
        energy data, else None), ``budget`` [alerts/week] (None: the default).
    """
    machine = (row or {}).get("machine")
    machine = machine if machine in machines else None
    fid = (row or {}).get("finding_id")
    allowed = may_change(user, machine) and not file_note
    pattern = next((p for p in prefs.normal_patterns if fid and p.id == fid), None)
    if file_note:
        text = file_note
    elif not row:
        text = "Select an anomaly finding to mark it as normal, or a machine to set its false-alarm budget."
    elif pattern is not None:
        who = f" by {pattern.marked_by}" if pattern.marked_by else ""
        note = f": “{pattern.note}”" if pattern.note else ""
        when = pattern.marked_at[:16].replace("T", " ") + " UTC" if pattern.marked_at else "an unknown time"
        text = f"Marked as normal{who} at {when}{note}."
    elif fid:
        text = "An anomaly finding: if this is a normal process, mark it as normal (similar findings of this machine " \
               "are then no longer reported)."
    else:
        text = "Only findings of kind anomaly can be marked as normal."
    if row and not file_note and not may_change(user, machine):
        text += " Your role reads only." if user.role not in PREF_ROLES else ""
    return {"text": text, "can_mark": allowed and bool(fid) and pattern is None,
            "can_undo": allowed and pattern is not None, "can_budget": allowed, "machine": machine,
            "undo": pattern.id if allowed and pattern is not None else None,
            "budget": prefs.alerts_per_week.get(machine) if machine else None}


def _refused(user, machine: str | None) -> str | None:
    if user.role not in PREF_ROLES:
        return f"Not changed: role {user.role} may not change anomaly preferences."
    if not may_change(user, machine):
        return "Not changed: no such finding or machine on your sites."  # another site's: as if it did not exist
    return None


def mark_finding(user, path: Path | None, findings: Iterable, fid: Any, note: Any) -> tuple[bool, str]:
    """Mark the finding ``fid`` (one of ``findings``: those the user may see) as normal as ``user``."""
    from analytics.anomaly.preferences import finding_id, mark_normal
    from analytics.errors import AnalyticsError

    if path is None:
        return False, "Not changed: this store has no anomaly preferences file."
    event = next((e for e in findings if e.kind == "anomaly" and isinstance(fid, str) and finding_id(e) == fid), None)
    refused = _refused(user, event.machine if event is not None else None)
    if refused or event is None:
        return False, refused or "Not changed: no such finding."
    try:
        pattern = mark_normal(path, event, str(note or "").strip()[:500], by=user.name)
    except (AnalyticsError, OSError) as exc:
        return False, f"Not changed: {exc}"
    return True, f"{pattern.machine}: this pattern is marked as normal (recorded as {user.name}). {TAKES_EFFECT}"


def unmark_finding(user, path: Path | None, fid: Any) -> tuple[bool, str]:
    """Take back the mark ``fid`` (a pattern of a machine of the user's sites) as ``user``."""
    from analytics.anomaly.preferences import read_preferences, unmark
    from analytics.errors import AnalyticsError

    if path is None:
        return False, "Not changed: this store has no anomaly preferences file."
    try:
        pattern = next((p for p in read_preferences(path).normal_patterns if p.id == fid), None)
        refused = _refused(user, pattern.machine if pattern is not None else None)
        if refused or pattern is None:
            return False, refused or "Not changed: no such finding."
        unmark(path, pattern.id)
    except (AnalyticsError, OSError) as exc:
        return False, f"Not changed: {exc}"
    return True, f"{pattern.machine}: this pattern is reported again. {TAKES_EFFECT}"


def set_machine_budget(user, path: Path | None, machines: list[str], machine: Any, value: Any) -> tuple[bool, str]:
    """Set ``machine``'s budget to ``value`` [alerts/week] (empty: back to the default) as ``user``; ``machines`` are
    the machines with energy data in the user's sites."""
    from analytics.anomaly.preferences import set_budget
    from analytics.errors import AnalyticsError

    if path is None:
        return False, "Not changed: this store has no anomaly preferences file."
    machine = machine if isinstance(machine, str) and machine in machines else None
    refused = _refused(user, machine)
    if refused:
        return False, refused
    if value in (None, ""):
        budget = None
    else:
        try:
            budget = float(value)
        except (TypeError, ValueError):
            return False, f"Not changed: alerts per week {value!r} is not a number (e.g. 0.5: one every two weeks)."
    try:
        set_budget(path, machine, budget, by=user.name)
    except (AnalyticsError, OSError) as exc:
        return False, f"Not changed: {exc}"
    what = "the default budget (1 alert per week)" if budget is None else f"{budget:g} alerts per week"
    return True, f"{machine}: {what} (recorded as {user.name}). {TAKES_EFFECT}"

"""``peak_demand``: start-up surges that set demand peaks (machines started together), valued by the demand charge.

Physics. Starting a machine hard (all drives and heaters at once) draws a surge for a few minutes well above the level
it settles at; started together, the surges of a line add up into the site's 15-minute peak, which the demand charge
prices for the whole month. A surge is a *pulse*: power rises for a few minutes and falls back to the level that
follows, unlike a machine switching on (a step that stays). A 15-min window whose 1-min peak stands far above its mean
(compared with the machine's own high power level) is a candidate; its 1-min power then gives the pulse: 2-12 minutes
above the level after it by at least a third of the machine's high power level, and the energy of the pulse above that
level is the excess. A one-sample spike is a meter fault, not a surge, and the energy register must see the pulse too.
Machines of one line surging in the same window form one group.

A surge must also stand above the machine's normal 1-min peak, which keeps cutting strokes and heater cycling out. A
machine whose normal work peaks high (a machining centre with long cycles: strokes of several minutes at full cut) can
surge at start-up without exceeding that peak, although its inrush adds to the line's demand all the same. What tells
its surge from a stroke is the cause itself: the machines of a line were started *together*. So once a line has a
surge in a window, its other machines are checked for a pulse that overlaps it in time (started together, in the same
demand interval), with every test above but the normal-peak one.
"""

from __future__ import annotations

import numpy as np

from analytics.causes._common import CauseResult, Context, notice

KIND = "peak_demand"
#: Pulse height, as a share of the machine's high power level (99th percentile of its 15-min mean power).
MIN_HEIGHT = 0.33
MIN_MINUTES, MAX_MINUTES = 2, 12
#: A surge stands above the machine's normal 1-min peak (99th percentile over its windows) by this factor.
CEILING_FACTOR = 1.08
#: Resistive loads have no start-up inrush: a furnace heating to a new setpoint at full power is not a surge.
NO_INRUSH_KINDS = ("furnace", "lighting")


def _pulse(times: np.ndarray, kw: np.ndarray, t0: int, t1: int, height: float, ceiling: float | None):
    """The surge pulse starting inside ``[t0, t1)``: (first, last+1 index, level after) or None.

    ``ceiling`` is the machine's normal 1-min peak [kW]; None skips that test (a pulse corroborated by a surge of
    another machine of the line that it overlaps).
    """
    ok = np.isfinite(kw)
    inside = np.flatnonzero((times >= t0) & (times < t1) & ok)
    if len(inside) < 3:
        return None
    for start in inside.tolist():  # Python ints (index arithmetic with min/max stays int)
        before = kw[max(0, start - 10):start]
        before = before[np.isfinite(before)]
        lvl_before = float(np.median(before)) if len(before) else 0.0
        if kw[start] - lvl_before < height:
            continue
        # The pulse ends where power has fallen back to the level that follows it.
        found = None
        for end in range(start + 1, min(start + MAX_MINUTES, len(kw) - 3) + 1):
            after = kw[end:end + 10]
            after = after[np.isfinite(after)]
            if len(after) < 3:
                break
            level = float(np.median(after))
            if kw[end] - level < 0.5 * height:
                found = (end, level)
                break
        if found is None:
            return None
        end, level = found
        if end - start < MIN_MINUTES:
            return None  # a one-sample spike is a meter fault, not a surge
        if float(np.mean(kw[start:end])) - level < height:
            return None  # a step up that stays is a machine switching on, not a surge
        if ceiling is not None and float(np.mean(kw[start:end])) <= CEILING_FACTOR * ceiling:
            return None  # within what the machine peaks at in normal work (cutting strokes, heater cycling)
        return start, end, level
    return None


def _surge(ctx: Context, i: int, w: int, height: float, ceiling: float | None) -> tuple[float, dict] | None:
    """Machine ``i``'s surge starting in window ``w``: (excess [kWh], event details) or None (see ``_pulse``)."""
    window_ns = int(ctx.res * 1e9)
    t0 = int(ctx.times_ns[w])
    info = ctx.infos[i]
    assert ctx.fine_power is not None  # detect() returns early without it
    times, kw = ctx.fine_power(info.path, t0 - window_ns, t0 + 2 * window_ns)
    if len(kw) < 10:
        return None
    kw = np.asarray(kw, dtype=float)
    times = np.asarray(times)
    found = _pulse(times, kw, t0, t0 + window_ns, height, ceiling)
    if found is None:
        return None
    a, b, level = found
    step_ns = float(np.median(np.diff(times)))
    kwh = float(np.clip(kw[a:b] - level, 0, None).sum() * step_ns / 3.6e12)
    # The register must see it as well (a stuck or spiking meter does not).
    if ctx.E[i, w] - level * ctx.h < 0.5 * kwh:
        return None
    return kwh, {"surge_kw": round(float(np.max(kw[a:b]) - level), 2), "minutes": int(b - a),
                 "start_ns": int(times[a]), "end_ns": int(times[b - 1] + step_ns),
                 "group": f"{info.site}/{info.line}@{t0}"}


def detect(ctx: Context) -> CauseResult:
    """Find start-up surges (see the module docstring); needs 1-min power (``ctx.fine_power``)."""
    out = CauseResult(KIND, np.zeros((ctx.n_m, ctx.n_t)))
    if ctx.fine_power is None:
        out.warnings.append(notice("peak_demand.no_fine_data", "peak demand not assessed: it needs 1-min power data"))
        return out
    limits: dict[int, tuple[float, float]] = {}  # machine -> (pulse height, normal 1-min peak) [kW]
    found: dict[tuple[int, int], tuple[float, dict]] = {}  # (machine, window) -> (excess [kWh], details)
    for i, info in enumerate(ctx.infos):
        if info.kind in NO_INRUSH_KINDS:
            continue
        pmax, pmean = ctx.Pmax[i], ctx.E[i] / ctx.h
        v = ctx.valid[i] & np.isfinite(pmax)
        if v.sum() < 96:
            continue
        out.assessed.append(info.path)
        high = float(np.percentile(pmean[v], 99))
        if not high > 0:
            continue
        height = MIN_HEIGHT * high
        # The machine's normal peak: 1-min peaks of its 15-min windows (surges are rare, so they barely move it).
        ceiling = float(np.percentile(pmax[v], 99))
        limits[i] = (height, ceiling)
        # A pulse of m minutes and height H raises the window's peak above its mean by about H (1 - m / 15).
        cand = np.flatnonzero(v & (pmax - pmean > 0.2 * high) & (pmax > CEILING_FACTOR * ceiling))
        for w in cand.tolist():  # Python ints: the events' window indices
            got = _surge(ctx, i, w, height, ceiling)
            if got is not None:
                found[(i, w)] = got
    # Started together: the line's other machines in a window where it surged, without the normal-peak test, when
    # their pulse overlaps a surge found above.
    spans: dict[tuple[str, str, int], list[tuple[int, int]]] = {}
    for (i, w), (_kwh, d) in found.items():
        spans.setdefault((ctx.infos[i].site, ctx.infos[i].line, w), []).append((d["start_ns"], d["end_ns"]))
    for (site, line, w), sure in spans.items():
        for j, (height, _ceiling) in limits.items():
            info = ctx.infos[j]
            if info.site != site or info.line != line or (j, w) in found or not ctx.valid[j, w]:
                continue
            got = _surge(ctx, j, w, height, None)
            if got is not None and any(got[1]["start_ns"] < b and a < got[1]["end_ns"] for a, b in sure):
                found[(j, w)] = got
    for (i, w), (kwh, d) in sorted(found.items()):
        out.excess[i, w] += kwh
        out.events.append((i, w, w + 1, d))
    return out

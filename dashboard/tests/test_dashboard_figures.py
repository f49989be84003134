"""Unit tests of the figures and of the pages' render functions (what the callbacks return), without a browser."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pandas as pd

from dashboard import ids
from dashboard.data import live_view
from dashboard.figures import message_figure, power_figure
from dashboard.settings import DashboardSettings
from dashboard.tests.helpers import NOW_NS, NS, fill_plant

NOW_S = NOW_NS // NS
BERLIN = ZoneInfo("Europe/Berlin")


def _find(component, wanted_id):
    """Depth-first search of a Dash component tree for the component with id ``wanted_id``."""
    if getattr(component, "id", None) == wanted_id:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if child is not None and not isinstance(child, (str, int, float)):
            found = _find(child, wanted_id)
            if found is not None:
                return found
    return None


def _text(component) -> str:
    if component is None:
        return ""
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, (list, tuple)):
        return "".join(_text(c) for c in component)
    return _text(getattr(component, "children", None))


def test_power_figure_has_one_trace_per_machine_in_local_time(store):
    fill_plant(store, NOW_S, 600)
    view = live_view(store, "15m", NOW_NS, BERLIN, 300)
    fig = power_figure(view.machines, start_ns=view.start_ns, stop_ns=view.stop_ns, tz=BERLIN, group_legend_by_line=True)
    assert [t.name for t in fig.data] == ["l1-m1", "l1-m2", "l1-m3", "l2-m1", "l2-m2"]
    assert {t.legendgroup for t in fig.data} == {"L1", "L2"}
    assert fig.layout.yaxis.title.text == "Power [kW]"
    assert fig.layout.xaxis.title.text == "Time (Europe/Berlin)"
    # Plant wall-clock time: 10:00:07 UTC is 11:00:07 in Berlin; the last 10-s window starts at 11:00:00.
    last_x = pd.Timestamp(fig.data[0].x[-1])
    assert last_x == pd.Timestamp("2026-11-26 11:00:00")
    assert pd.Timestamp(fig.layout.xaxis.range[1]) == pd.Timestamp("2026-11-26 11:00:10")
    machine = view.machines[view.machines["label"] == "l1-m1"]
    assert list(fig.data[0].y) == machine["value"].tolist()


def test_line_figure_hover_says_how_many_machines_report(store):
    fill_plant(store, NOW_S, 600)
    view = live_view(store, "1h", NOW_NS, BERLIN, 300)
    fig = power_figure(view.lines, start_ns=view.start_ns, stop_ns=view.stop_ns, tz=BERLIN, show_reporting=True)
    assert [t.name for t in fig.data] == ["L1", "L2"]
    assert "machines" in fig.data[0].hovertemplate
    assert fig.data[0].customdata[-1].tolist() == [3, 3]


def test_message_figure_shows_the_text():
    fig = message_figure("No power values in the last 1 h")
    assert fig.layout.annotations[0].text == "No power values in the last 1 h"
    assert len(fig.data) == 0


def test_render_live_empty_store_shows_the_empty_state(store):
    from dashboard.render import render_live

    settings = DashboardSettings("plant.db", tz=BERLIN)
    view = live_view(store, "15m", NOW_NS, BERLIN, 300)
    kpis, empty, empty_style, graphs_style, *_figs, _status = render_live(view, settings, NOW_NS)
    assert "No data yet" in _text(empty) and "wattline demo" in _text(empty)
    assert empty_style == {} and graphs_style == {"display": "none"}
    assert _text(_find(kpis[0], ids.KPI_PLANT_POWER)) == "—"


def test_render_live_with_data_fills_kpis_and_figures(store):
    from dashboard.render import render_live

    written = fill_plant(store, NOW_S, 600)
    settings = DashboardSettings("plant.db", tz=BERLIN)
    view = live_view(store, "15m", NOW_NS, BERLIN, 300)
    kpis, empty, _empty_style, graphs_style, line_fig, machine_fig, status = render_live(view, settings, NOW_NS)
    assert empty == [] and graphs_style == {}
    latest = sum(power[-1] for _tags, _times, power in written.values())
    assert _text(_find(kpis[0], ids.KPI_PLANT_POWER)) == f"{latest:,.1f} kW"
    assert "kWh" in _text(_find(kpis[1], ids.KPI_ENERGY_TODAY))
    assert "3 running" in _text(_find(kpis[2], ids.KPI_MACHINE_STATES))
    assert len(machine_fig.data) == 5 and len(line_fig.data) == 2
    assert "newest value 5 s old" in status


def test_render_live_range_without_values_explains_why(store):
    from dashboard.render import render_live

    fill_plant(store, NOW_S - 7200, 600)  # two hours ago: nothing in the last 15 min
    settings = DashboardSettings("plant.db", tz=BERLIN)
    view = live_view(store, "15m", NOW_NS, BERLIN, 300)
    *_head, line_fig, _machine_fig, _status = render_live(view, settings, NOW_NS)
    assert "No power values in the last 15 min" in line_fig.layout.annotations[0].text


def test_render_series_summary_counts_stale_series():
    from dashboard.data import SeriesSelection
    from dashboard.render import render_series

    settings = DashboardSettings("plant.db", stale_after_s=300)
    rows = [
        {"measurement": "electrical", "tags": f"line=L1 · machine={m}", "field": "active_power_kw", "unit": "kW",
         "count": 1234, "first": "2026-11-26 09:00:00", "last": "2026-11-26 10:00:00", "age": age, "age_s": 0.0,
         "status": status}
        for m, age, status in (("a", "2 s", "ok"), ("b", "2.0 h", "stale"), ("c", "1.0 d", "stale"))
    ]
    grid, summary, empty, style = render_series(SeriesSelection(rows, 3, 2, 3), settings)
    assert summary == "3 series, 2 stale (no value for more than 5 min)"
    assert grid == rows and empty == [] and style == {"display": "none"}
    grid, summary, empty, style = render_series(SeriesSelection(rows[1:2], 3, 2, 1), settings)
    assert grid == rows[1:2] and summary.endswith("; 1 match the filter")
    grid, summary, empty, style = render_series(SeriesSelection([], 0, 0, 0), settings)
    assert grid == [] and "No series stored yet" in _text(empty) and style == {}


def test_render_live_says_when_the_newest_values_are_bad(store):
    from dashboard.render import render_live
    from dashboard.tests.helpers import machine_tags, write_power

    for name in ("a", "b"):
        write_power(store, machine_tags("L1", name), [NOW_S - 3], [float("nan")])
    settings = DashboardSettings("plant.db", tz=BERLIN)
    view = live_view(store, "15m", NOW_NS, BERLIN, 300)
    kpis, *_mid, line_fig, _machine_fig, _status = render_live(view, settings, NOW_NS)
    assert "marked bad by the source" in line_fig.layout.annotations[0].text
    assert "2 machines report no usable value" in _text(kpis[0])

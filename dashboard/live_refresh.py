"""The live page's refresh outputs, shared by every user of a site scope for one refresh interval (issue 12, "Fast").

Kept out of :mod:`dashboard.pages.live` so that tests call it without a Dash app (a page module registers itself).
"""

from __future__ import annotations

import time

import plotly.graph_objects as go

from core.storage.base import Store
from dashboard.data import get_time_range, live_view, shared_result
from dashboard.render import render_live
from dashboard.settings import DashboardSettings


def live_outputs(store: Store, range_key: str | None, settings: DashboardSettings) -> tuple:
    """The refresh callback's outputs: :func:`live_view` rendered by :func:`render_live`.

    Shared per site scope and range for one refresh interval (:func:`dashboard.data.shared_result`): the view and
    its figures (hundreds of traces for 200 machines, seconds to build) are made once, in the background after the
    first time, and every user's refresh gets them as plain dicts. The status line says when they were read.
    """
    time_range = get_time_range(range_key)  # a bad key fails here, in the request, not in a background thread

    def build() -> tuple:
        now_ns = time.time_ns()
        view = live_view(store, time_range.key, now_ns, settings.tz, settings.stale_after_s)
        return tuple(out.to_plotly_json() if isinstance(out, go.Figure) else out
                     for out in render_live(view, settings, now_ns))

    name = f"live|{time_range.key}|{settings.tz}|{settings.stale_after_s}"
    return shared_result(store, name, build, settings.refresh_s)

"""Behaviour changed for speed on a year of a large plant (issue 12, docs/benchmarks.md "Dashboard")."""

from __future__ import annotations

from dashboard.settings import DashboardSettings


def _series_rows(n: int, stale_every: int) -> list[dict]:
    return [{"measurement": "material", "tags": f"machine=m{i:05d}", "field": "kwh", "unit": "kWh", "count": i,
             "first": "2026-11-26 09:00:00", "last": "2026-11-26 10:00:00", "age": "2 s", "age_s": 2.0,
             "status": "stale" if i % stale_every == 0 else "ok"} for i in range(n)]


def test_series_table_renders_at_most_max_rows_stale_first():
    from dashboard.render import MAX_SERIES_ROWS, render_series

    rows = _series_rows(MAX_SERIES_ROWS * 3, 7)
    table, summary, _empty, _style = render_series(rows, DashboardSettings("plant.db"))
    body = table.children[1].children
    stale = sum(r["status"] == "stale" for r in rows)
    assert len(body) == MAX_SERIES_ROWS
    assert [tr.className for tr in body[:stale]] == ["stale"] * stale
    assert all(tr.className == "ok" for tr in body[stale:])
    assert summary.startswith(f"{len(rows)} series, {stale} stale") and f"showing {MAX_SERIES_ROWS}" in summary


def test_series_table_under_the_limit_keeps_every_row_in_order():
    from dashboard.render import MAX_SERIES_ROWS, render_series

    rows = _series_rows(MAX_SERIES_ROWS, 7)
    table, summary, _empty, _style = render_series(rows, DashboardSettings("plant.db"))
    body = table.children[1].children
    assert [tr.children[4].children for tr in body] == [f"{i:,}" for i in range(MAX_SERIES_ROWS)]
    assert "showing" not in summary

"""``read_frame``'s join of its columns straight from the per-series pieces, for :mod:`core.storage.query`.

``core.storage.query.wide_frame`` joins one long frame per column (a row per series and window, tag columns as codes)
into the wide frame. Building those long frames and matching their rows cost as much as the arithmetic of a chunk;
here the columns' pieces ``(series key, window starts, values, state)`` are placed on a dense grid of (``by`` tag
combination x window) and the wide frame is built once from it. The answer is the same frame as ``wide_frame`` of the
long frames gives (rows sorted by the ``by`` tags then time; the same columns and dtypes; state seconds 0 in the other
states of a window whose state is known; unknown state codes left out); what the grid does not answer (a series
without a ``by`` tag, several series sharing their ``by`` tags, windows that are not the chunk's) returns None, and
the caller takes the long frames and ``wide_frame`` (which sums or refuses them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.model import MACHINE_STATES

if TYPE_CHECKING:
    import pandas as pd

    from core.storage.base import Column


def _state_names(col: Column) -> list[str]:
    from core.storage.query import column_names

    return column_names(col)


def wide_from_rows(parts: list[tuple[Column, list[tuple], bool]], by: list[str],
                   labels: np.ndarray) -> pd.DataFrame | None:
    """The wide frame of one chunk from each column's pieces.

    Parameters
    ----------
    parts : list
        ``(column, pieces, with_state)`` in the output's column order; pieces as
        :func:`core.storage.query.part_rows` gives them.
    by : list of str
        Tags that identify an output row (with the time).
    labels : ndarray of int64
        The chunk's window starts [ns], sorted; every piece's times must be among them.

    Returns
    -------
    pandas.DataFrame or None
        The frame ``core.storage.query.wide_frame`` gives for these pieces, or None where the grid does not apply.
    """
    import pandas as pd

    grid = np.asarray(labels, dtype=np.int64)
    n_w = len(grid)
    combos: dict[tuple, int] = {}
    columns = []
    for col, rows, with_state in parts:
        owner: dict[tuple, tuple] = {}
        items = []
        for key, times, values, state in rows:
            if len(times) == 0:
                continue
            if with_state:
                state = int(state)  # as the long frame's int64 state column holds it
                if state not in MACHINE_STATES:
                    continue  # unknown state codes are left out
            tags = dict(key)
            combo = tuple(tags.get(t) for t in by)
            if any(v is None for v in combo) or owner.setdefault(combo, key) != key:
                return None  # a missing by tag, or series sharing their by tags: the reference join
            combos.setdefault(combo, len(combos))
            items.append((combo, times, values, state))
        columns.append((col, items, with_state))
    if not combos or n_w == 0:
        return None
    ordered = sorted(combos)  # as the tags' codes in sorted order rank them
    rank_of = np.empty(len(ordered), dtype=np.int64)
    for r, combo in enumerate(ordered):
        rank_of[combos[combo]] = r
    present = np.zeros(len(ordered) * n_w, dtype=bool)
    cells: list[tuple[np.ndarray, np.ndarray, np.ndarray | None] | None] = []
    for _, items, with_state in columns:
        if not items:
            cells.append(None)
            continue
        sizes = [len(it[1]) for it in items]
        times = np.concatenate([np.asarray(it[1], dtype=np.int64) for it in items])
        w = np.searchsorted(grid, times)
        if (w >= n_w).any() or (grid[w] != times).any():
            return None
        base = rank_of[np.array([combos[it[0]] for it in items], dtype=np.int64)] * n_w
        cell = np.repeat(base, sizes) + w
        values = np.concatenate([np.asarray(it[2]) for it in items])
        states = np.repeat(np.array([it[3] for it in items], dtype=np.int64), sizes) if with_state else None
        present[cell] = True
        cells.append((cell, values, states))
    row_of = np.cumsum(present) - 1
    at = np.flatnonzero(present)
    n_rows = len(at)
    out: dict = {"time": pd.to_datetime(grid[at % n_w], unit="ns", utc=True)}
    combo_row = at // n_w
    for j, tag in enumerate(by):
        # one value per tag combination, its dtype inferred as the long frames' tag columns infer it
        per_combo = pd.Series(np.array([combo[j] for combo in ordered], dtype=object))
        out[tag] = per_combo.take(combo_row).reset_index(drop=True)
    for (col, _, with_state), got in zip(columns, cells):
        if got is None:
            continue
        cell, values, states = got
        placed = scatter_rows(_state_names(col), values, row_of[cell], n_rows, states if with_state else None)
        if placed is None:
            return None
        out.update(placed)
    out_columns = ["time", *by, *(n for col, _, _ in parts for n in _state_names(col))]
    for name in out_columns:
        if name not in out:
            out[name] = np.full(n_rows, np.nan)
    return pd.DataFrame(out)[out_columns]


def row_keys(codes: list[np.ndarray], times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output rows of the join: rows sorted by the tag codes (in ``codes``' order, each a code in sorted order of its
    values) and then time, one per distinct key. Returns each source row's output row and, per output row, one source
    row holding its key.

    The key is made dense (the distinct tag combinations x the distinct times, both coded in sorted order by hashing)
    and ranked by a cumulative count over it, instead of sorting all source rows (a lexsort of four keys over every
    value of a chunk cost most of the join); a key space too large for that takes the sort.
    """
    n = len(times)
    combo = np.zeros(n, dtype=np.int64)
    space = 1
    for c in codes:
        size = int(c.max()) + 1 if len(c) else 1
        space *= size
        combo = combo * size + c
    if space < 2**62:
        import pandas as pd

        tag_code, tag_uniques = pd.factorize(combo, sort=True)
        time_code, time_uniques = pd.factorize(times, sort=True)
        dense = len(tag_uniques) * len(time_uniques)
        if dense <= max(4 * n, 1 << 22):
            key = tag_code.astype(np.int64) * len(time_uniques) + time_code
            present = np.zeros(dense, dtype=bool)
            present[key] = True
            rank = np.cumsum(present) - 1
            row = rank[key]
            first = np.empty(int(rank[-1]) + 1 if dense else 0, dtype=np.int64)
            first[row] = np.arange(n, dtype=np.int64)
            return row, first
    order = np.lexsort((times, *reversed(codes)))
    new = np.zeros(len(order), dtype=bool)
    new[:1] = True
    for a in (*codes, times):
        b = a[order]
        new[1:] |= b[1:] != b[:-1]
    row = np.empty(len(order), dtype=np.int64)
    row[order] = np.cumsum(new) - 1
    return row, order[new]


def scatter_rows(names: list[str], values: np.ndarray, rows: np.ndarray, n_rows: int,
                 states: np.ndarray | None = None) -> dict[str, np.ndarray] | None:
    """One column's values placed at their output rows: ``{name: array of n_rows}`` (NaN where it has no value).

    With ``states`` (a ``state_seconds`` column): one array per machine state, ``names`` in ``MACHINE_STATES`` order,
    and 0 s in the other states of every row the column has a value for. None when two values fall on one output row
    (series sharing their by tags): the caller then takes the reference join, which says what to do with them.
    """
    if states is not None:
        known = np.zeros(n_rows, dtype=bool)
        known[rows] = True
        block = {}
        for code, name in zip(MACHINE_STATES, names):
            sel = states == code
            if np.bincount(rows[sel], minlength=n_rows).max(initial=0) > 1:
                return None
            arr = np.full(n_rows, np.nan)
            arr[rows[sel]] = values[sel].astype(float)
            block[name] = arr
        for arr in block.values():
            arr[known & np.isnan(arr)] = 0.0  # a known state: 0 s in the others
        return block
    if np.bincount(rows, minlength=n_rows).max(initial=0) > 1:
        return None
    if values.dtype.kind == "f" or n_rows > len(rows):
        arr = np.full(n_rows, np.nan)
    else:
        arr = np.empty(n_rows, dtype=values.dtype)  # every row filled: the column keeps its dtype (integers)
    arr[rows] = values
    return {names[0]: arr}

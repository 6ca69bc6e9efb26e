"""Selecting rows of a batched UNet call without copying them where the layout allows it.

A fancy index (``x[[0, 3]]``) copies the rows; a basic slice (``x[0::3]``, ``x[1:3]``) is a view. The
branch layout ``[FG_u, BG_u, BL_u, FG_c, BG_c, BL_c]`` makes every branch an evenly spaced set of rows
and every run of plain rows consecutive, so the hot paths (offsets on the foreground rows, blended
self-attention) read and write views.
"""
from __future__ import annotations

from typing import Collection, Sequence


def row_index(rows: Sequence[int]) -> slice | list[int]:
    """``rows`` as a slice when they are evenly spaced and increasing (a view), else as a list (a copy)."""
    if not rows:
        return []
    if len(rows) == 1:
        return slice(rows[0], rows[0] + 1)
    step = rows[1] - rows[0]
    if step > 0 and all(b - a == step for a, b in zip(rows, rows[1:])):
        return slice(rows[0], rows[-1] + 1, step)
    return list(rows)


def row_runs(rows: Collection[int]) -> list[slice]:
    """Sorted ``rows`` as runs of consecutive rows: [0, 1, 3, 4] -> [0:2, 3:5]."""
    runs: list[slice] = []
    for r in sorted(set(rows)):
        if runs and runs[-1].stop == r:
            runs[-1] = slice(runs[-1].start, r + 1)
        else:
            runs.append(slice(r, r + 1))
    return runs

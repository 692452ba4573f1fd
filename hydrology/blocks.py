"""How the out-of-core drought build cuts a grid and a record into blocks.

The build (:mod:`hydrology.outofcore`) reads blocks of cells by groups of calendar years
(:func:`read_blocks`, :func:`year_slabs`) and fits blocks of cells over the whole record
(:func:`choose_tile`), each sized to a memory budget and aligned with the input's storage
chunks; the dry run's projection (:mod:`hydrology.projection`) plans its probe with the same
functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "BLOCK_BYTES",
    "FIT_SERIES",
    "choose_tile",
    "fit_bytes_per_cell",
    "grid_blocks",
    "halo_cells",
    "read_blocks",
    "year_slabs",
]

#: Default input size of one block (bytes): every time-varying variable, every step.
BLOCK_BYTES = 64 * 2**20


#: Monthly float64 series per cell that fitting a block holds beside its inputs and
#: indices: the analogue forecast's observed months, sums and ensemble accumulators (about
#: 8 per SPI target, made one analogue year at a time: linear in the record), and the
#: cube's float32 features, targets and baselines of the block (about 12 in float64 terms).
FIT_SERIES = 20


def fit_bytes_per_cell(n_years: int, n_vars: int, n_targets: int) -> int:
    """Bytes one cell takes while its block is fitted (phases 2 and 3 of the build).

    Args:
        n_years: Calendar years of the record.
        n_vars: Time-varying input variables.
        n_targets: Target indices.

    Returns:
        ``8 * 12 * n_years * (n_vars + n_targets + FIT_SERIES)``: linear in the record.
    """
    return 8 * 12 * n_years * (n_vars + n_targets + FIT_SERIES)


def choose_tile(
    shape: tuple[int, int],
    bytes_per_cell: int,
    block_bytes: int = BLOCK_BYTES,
    align: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """A block shape whose input is about ``block_bytes``.

    Args:
        shape: Grid ``(lat, lon)``.
        bytes_per_cell: Input bytes of one cell's whole record (all variables, all steps).
        block_bytes: Target input bytes of a block.
        align: The input's chunk shape ``(lat, lon)``: the block is a multiple of it, or a
            divisor of it, so that no input chunk is shared by blocks of different rows.

    Returns:
        ``(rows, cols)``, each at least 1 and at most the grid's.
    """
    ny, nx = shape
    cells = max(1, block_bytes // max(bytes_per_cell, 1))
    rows = max(1, min(ny, math.isqrt(cells)))
    cols = max(1, min(nx, cells // rows))
    if cols == nx:  # whole rows: as many as fit
        rows = max(1, min(ny, cells // nx))
    if align is not None:
        rows, cols = _aligned(rows, align[0], ny), _aligned(cols, align[1], nx)
    return rows, cols


def _aligned(size: int, chunk: int, total: int) -> int:
    """``size`` rounded down to a multiple of ``chunk``, or to a divisor of it."""
    if chunk >= total:
        return min(size, total)
    if size >= chunk:
        return min(total, size - size % chunk)
    return max(d for d in range(1, chunk + 1) if chunk % d == 0 and d <= size)


def read_blocks(
    shape: tuple[int, int],
    times: pd.DatetimeIndex,
    cell_step_bytes: int,
    block_bytes: int = BLOCK_BYTES,
    align: tuple[int, int] | None = None,
) -> tuple[tuple[int, int], int]:
    """How the out-of-core build reads a record: blocks of cells by groups of years.

    Args:
        shape: Grid ``(lat, lon)``.
        times: The record's time stamps.
        cell_step_bytes: Bytes of one cell and step, every time-varying variable.
        block_bytes: Memory budget of one read.
        align: The input's chunk shape ``(lat, lon)`` (:func:`choose_tile`).

    Returns:
        ``(tile, years)``: a block of cells aligned with ``align`` whose year fits the
        budget, and how many calendar years of it fit.
    """
    n_years = int(times.year[-1] - times.year[0] + 1) if times.size else 1
    per_year = -(-times.size // n_years) * cell_step_bytes
    tile = choose_tile(shape, per_year, block_bytes, align)
    years = int(max(1, min(n_years, block_bytes // (per_year * tile[0] * tile[1]))))
    return tile, years


def halo_cells(regional: Sequence[float]) -> int:
    """Cells the regional-mean kernels reach beyond a cell (scipy's Gaussian radius)."""
    return max((int(3.0 * float(s) + 0.5) for s in regional), default=0)


def grid_blocks(shape: tuple[int, int], tile: tuple[int, int]) -> list[tuple[slice, slice]]:
    """The blocks of the grid, row-major."""
    return [
        (slice(y, min(y + tile[0], shape[0])), slice(x, min(x + tile[1], shape[1])))
        for y in range(0, shape[0], tile[0])
        for x in range(0, shape[1], tile[1])
    ]


def year_slabs(times: pd.Index, years: int) -> list[slice]:
    """The steps of each group of ``years`` calendar years of the record, in order.

    Args:
        times: The record's time stamps (a ``DatetimeIndex`` or a ``CFTimeIndex``), sorted.
        years: Calendar years per group (the first group starts at the record's first year).

    Returns:
        Contiguous slices of positions covering the record.
    """
    year = np.asarray(times.year)
    group = (year - year[0]) // years
    edges = [0, *(np.flatnonzero(np.diff(group)) + 1).tolist(), times.size]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]

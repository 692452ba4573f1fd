"""Lazy torch datasets over the drought sample cube, and the masked loss.

Samples are ``(cell, issue month)`` pairs of a :class:`hydrology.dataset.DroughtCube`:
:class:`CellDataset` indexes them lazily (index arithmetic into the cube, no materialised
windows), :class:`TileDataset` cuts the grid into tiles for the ConvLSTM. Partially NaN
targets are masked in the loss (:func:`masked_mse`).

Kept apart from :mod:`hydrology.dataset` so that the cube's preprocessing (which dask
workers import) does not import torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from hydrology.dataset import DroughtCube
from twins.errors import DataError
from twins.train.batching import Collated

Sample = tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def gather_windows(
    values: torch.Tensor, cell: torch.Tensor, issue: torch.Tensor, seq_len: int
) -> torch.Tensor:
    """``values[cell[i], issue[i] - seq_len + 1 : issue[i] + 1]`` for every ``i``, in one gather.

    The table is seen as overlapping rows of ``seq_len * F`` values (an ``unfold`` view, no
    copy), one per ``(cell, start month)``, so a batch is one ``index_select`` of contiguous
    windows: about 4x faster than advanced indexing with a ``(B, seq_len)`` index.

    Args:
        values: Contiguous ``(cell, time, F)`` table, e.g. the cube's dynamic features.
        cell: ``(B,)`` int64 cell positions.
        issue: ``(B,)`` int64 issue time indices, each ``>= seq_len - 1``.
        seq_len: Window length in time steps (months).

    Returns:
        ``(B, seq_len, F)`` windows ending at the issue months (a copy).
    """
    if not values.is_contiguous():
        raise ValueError("gather_windows needs a contiguous (cell, time, F) table")
    n_time, n_feat = values.shape[1], values.shape[2]
    rows = values.view(-1).unfold(0, seq_len * n_feat, n_feat)
    start = cell * n_time + issue - (seq_len - 1)
    return rows.index_select(0, start).view(cell.numel(), seq_len, n_feat)


class CellDataset(Dataset[Sample]):
    """Lazy ``(cell, issue month)`` samples of one split.

    Sample ``i`` is cell ``cell_pos[i // n_t]`` issued at month ``t0 + i % n_t``:
    ``((dynamic (seq, F), static (S,), baseline (n_out,)), target (n_out,))``. Samples
    whose targets are all NaN are dropped (``keep`` holds the remaining flat indices).

    Args:
        cube: The sample cube.
        split: ``"train"``, ``"val"`` or ``"test"``.
        seq_len: Months of input history, issue month included.
        cell_pos: Positions of the cells to use (default: all land cells).
    """

    def __init__(
        self, cube: DroughtCube, split: str, seq_len: int, cell_pos: np.ndarray | None = None
    ) -> None:
        self.cube, self.split, self.seq_len = cube, split, seq_len
        self.cell_pos = np.arange(cube.cells.size) if cell_pos is None else np.asarray(cell_pos)
        self.t0, t1 = cube.issue_range(split, seq_len)
        self.n_t = max(t1 - self.t0 + 1, 0)
        if self.n_t == 0 or self.cell_pos.size == 0:
            raise DataError(
                f"split {split!r} has no samples (seq_len {seq_len}, leads {cube.leads})",
                hint="shorten seq_len or lengthen the period",
            )
        valid = np.isfinite(cube.target[self.cell_pos, self.t0 : self.t0 + self.n_t]).any(-1)
        self.keep = np.flatnonzero(valid.ravel())
        self._dyn = torch.from_numpy(np.ascontiguousarray(cube.dynamic))
        self._sta = torch.from_numpy(cube.static)
        self._base = torch.from_numpy(np.ascontiguousarray(cube.baseline))
        self._tgt = torch.from_numpy(np.ascontiguousarray(cube.target))

    def __len__(self) -> int:
        return int(self.keep.size)

    def locate(self, i: int) -> tuple[int, int]:
        """``(cell position, issue time index)`` of sample ``i``."""
        flat = int(self.keep[i])
        return int(self.cell_pos[flat // self.n_t]), self.t0 + flat % self.n_t

    def __getitem__(self, i: int) -> Sample:
        c, t = self.locate(i)
        dyn = self._dyn[c, t - self.seq_len + 1 : t + 1]
        return (dyn, self._sta[c], self._base[c, t]), self._tgt[c, t]

    def __getitems__(self, indices: Sequence[int]) -> Collated:
        """A whole batch in one gather per field (the DataLoader's batched fetch).

        Returns:
            :class:`~twins.train.batching.Collated` holding exactly what ``default_collate``
            makes of ``[self[i] for i in indices]``: ``((dynamic (B, seq, F), static (B, S),
            baseline (B, n_out)), target (B, n_out))``.
        """
        flat = torch.from_numpy(self.keep[np.asarray(indices, dtype=np.int64)])
        c = torch.from_numpy(self.cell_pos)[flat // self.n_t]
        t = self.t0 + flat % self.n_t
        dyn = gather_windows(self._dyn, c, t, self.seq_len)
        ct = c * self._dyn.shape[1] + t
        base = self._base.reshape(-1, self._base.shape[2]).index_select(0, ct)
        tgt = self._tgt.reshape(-1, self._tgt.shape[2]).index_select(0, ct)
        return Collated(((dyn, self._sta.index_select(0, c), base), tgt))


class TileDataset(Dataset[Sample]):
    """Lazy ``(tile, issue month)`` space-time cubelets of one split, for the ConvLSTM.

    Sample: ``((dynamic (seq, F, P, P), static (S, P, P), baseline (n_out, P, P)),
    target (n_out, P, P))``; sea cells are 0 in the inputs and NaN in the target. Tiles
    are ``P x P`` with stride ``P`` (the last row/column of tiles is shifted to fit).

    Args:
        cube: The sample cube.
        split: Split name.
        seq_len: Months of input history.
        tile: Tile size ``P`` (clamped to the grid).
    """

    def __init__(self, cube: DroughtCube, split: str, seq_len: int, tile: int = 16) -> None:
        ny, nx = cube.shape
        self.py, self.px = min(tile, ny), min(tile, nx)
        self.origins = [(y, x) for y in _starts(ny, self.py) for x in _starts(nx, self.px)]
        self.seq_len = seq_len
        self.t0, t1 = cube.issue_range(split, seq_len)
        self.n_t = max(t1 - self.t0 + 1, 0)
        if self.n_t == 0:
            raise DataError(f"split {split!r} has no samples for seq_len {seq_len}")
        g = cube.grid
        self._dyn = torch.from_numpy(np.nan_to_num(g(cube.dynamic.transpose(1, 2, 0))))  # T,F,H,W
        self._sta = torch.from_numpy(np.nan_to_num(g(cube.static.T)))  # S,H,W
        self._base = torch.from_numpy(np.nan_to_num(g(cube.baseline.transpose(1, 2, 0))))
        self._tgt = torch.from_numpy(g(cube.target.transpose(1, 2, 0)))  # T,O,H,W

    def __len__(self) -> int:
        return len(self.origins) * self.n_t

    def __getitem__(self, i: int) -> Sample:
        y, x = self.origins[i // self.n_t]
        t = self.t0 + i % self.n_t
        sy, sx = slice(y, y + self.py), slice(x, x + self.px)
        dyn = self._dyn[t - self.seq_len + 1 : t + 1, :, sy, sx]
        return (dyn, self._sta[:, sy, sx], self._base[t, :, sy, sx]), self._tgt[t, :, sy, sx]


def _starts(n: int, p: int) -> list[int]:
    s = list(range(0, n - p + 1, p))
    if s[-1] + p < n:
        s.append(n - p)
    return s


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the finite target entries (NaN targets are masked).

    Args:
        pred: ``(batch, n_out, ...)``.
        target: Same shape, NaN where unknown.

    Returns:
        Scalar: sum of squared errors over valid entries / their count (0 if none).
    """
    valid = torch.isfinite(target)
    diff = torch.where(valid, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    return (diff**2).sum() / valid.sum().clamp_min(1)

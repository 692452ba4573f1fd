"""Rank-sharded reading of a cell-chunked cube store: each rank its own chunks of cells.

Under DDP (or Ray Train) with ``W`` ranks, rank ``r`` trains on the cells of its shard only
(:func:`shard_positions`: whole chunks of cells, contiguous, disjoint over ranks, together
all cells), loaded once from the store (:func:`rank_dataset`): no chunk is read by two ranks
and none is missed. An epoch is every training sample of every rank once
(:class:`ShardedBatchSampler`): each rank shuffles its own samples and cuts them into as
many steps as every other rank, so DDP's ranks step together, and the trainer weights each
rank's loss by its share of the step's global batch.

What every rank reads beyond its shard is the per-cell ``valid`` mask (one byte per cell
and month), to count the samples of every shard (:func:`shard_counts`).

Evaluation, which the trainer shards by contiguous sample ranges, reads chunk by chunk
through :class:`LazyCellDataset` (samples are cell-major, so a contiguous range of samples
is a contiguous range of cells and chunks).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset, Sampler

from hydrology.cubestore import dataset_to_cube
from hydrology.dataset import CellDataset, DroughtCube, Sample, gather_windows, subsample_cells
from twins.errors import DataError
from twins.train.batching import Collated

__all__ = [
    "LazyCellDataset",
    "ShardedBatchSampler",
    "rank_dataset",
    "shard_counts",
    "shard_positions",
]

log = logging.getLogger(__name__)


def shard_positions(n_cells: int, cells_per_chunk: int, rank: int, world: int) -> range:
    """The cell positions of ``rank``'s shard: whole chunks, contiguous.

    Chunks are dealt out as :func:`twins.train.sampler.shard_indices` deals samples: the
    shards are disjoint, together all cells, and differ by at most one chunk.

    Args:
        n_cells: Cells in the store.
        cells_per_chunk: Cells per store chunk.
        rank: This rank, ``0 <= rank < world``.
        world: Number of ranks.

    Returns:
        ``range`` of positions along ``cell``.

    Raises:
        DataError: Fewer chunks than ranks (a rank would have no cells).
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside [0, {world})")
    n_chunks = -(-n_cells // cells_per_chunk)
    if n_chunks < world:
        raise DataError(
            f"the cube store has {n_chunks} chunks of {cells_per_chunk} cells for {world} "
            "ranks: a rank would get no cells",
            hint="train on fewer ranks, or rebuild the store with smaller chunks",
        )
    base, extra = divmod(n_chunks, world)
    first = rank * base + min(rank, extra)
    last = first + base + (1 if rank < extra else 0)
    return range(first * cells_per_chunk, min(last * cells_per_chunk, n_cells))


def _chunk_size(ds: xr.Dataset) -> int:
    chunks = ds["dynamic"].chunks
    if chunks is None:
        raise ValueError("the cube store's Dataset is not chunked (open it with open_cube)")
    return int(chunks[0][0])


def _subsample(ds: xr.Dataset, positions: np.ndarray, k: int, offset: int) -> np.ndarray:
    """Positions (into ``positions``) of the regular ``k x k`` subsample, as
    :func:`hydrology.dataset.subsample_cells` picks it."""
    if k <= 1:
        return np.arange(positions.size)
    flat = ds["cell_index"].values[positions]
    iy, ix = np.divmod(flat, ds.sizes["grid_lon"])
    return np.flatnonzero((iy % k == offset % k) & (ix % k == offset % k))


def _issue_window(ds: xr.Dataset, split: str, seq_len: int) -> tuple[int, int]:
    """``(t0, n_t)``: the first issue month and the number of issue months of a split."""
    meta = ds.attrs["meta"]
    times = ds["time"].values
    a, b = (np.datetime64(x) for x in meta["splits"][split])
    ia = int(np.searchsorted(times, a))
    ib = int(np.searchsorted(times, b, side="right")) - 1
    t0, t1 = max(ia - 1, seq_len - 1), ib - max(meta["leads"])
    return t0, max(t1 - t0 + 1, 0)


def shard_counts(
    ds: xr.Dataset, split: str, seq_len: int, world: int, subsample: int = 1
) -> list[int]:
    """Samples of ``split`` in every rank's shard (what :class:`ShardedBatchSampler` needs).

    Reads the ``valid`` mask of every cell, chunk by chunk, nothing else.

    Args:
        ds: :func:`hydrology.cubestore.open_cube` output.
        split: ``train``, ``val`` or ``test``.
        seq_len: Months of input history.
        world: Number of ranks.
        subsample: Keep a regular ``k x k`` subsample of cells (offset 0).

    Returns:
        ``[samples of rank 0, ..., samples of rank world - 1]``.
    """
    t0, n_t = _issue_window(ds, split, seq_len)
    per_cell = ds["valid"].isel(time=slice(t0, t0 + n_t)).sum("time").values
    chunk = _chunk_size(ds)
    out = []
    for r in range(world):
        pos = np.asarray(shard_positions(ds.sizes["cell"], chunk, r, world))
        out.append(int(per_cell[pos[_subsample(ds, pos, subsample, 0)]].sum()))
    return out


def rank_dataset(
    ds: xr.Dataset,
    split: str,
    seq_len: int,
    rank: int,
    world: int,
    subsample: int = 1,
) -> tuple[CellDataset, DroughtCube]:
    """The samples of ``split`` on ``rank``'s cells, read from its chunks only.

    Args:
        ds: :func:`hydrology.cubestore.open_cube` output.
        split: ``train``, ``val`` or ``test``.
        seq_len: Months of input history.
        rank: This rank.
        world: Number of ranks.
        subsample: Keep a regular ``k x k`` subsample of cells (offset 0).

    Returns:
        ``(dataset, cube of the shard's cells)``; the dataset's samples are cell-major.
    """
    pos = shard_positions(ds.sizes["cell"], _chunk_size(ds), rank, world)
    local = dataset_to_cube(ds, np.asarray(pos))
    keep = subsample_cells(local, subsample, 0)
    log.info("rank %d/%d: cells %d..%d (%d used)", rank, world, pos.start, pos.stop - 1, keep.size)
    return CellDataset(local, split, seq_len, keep), local


class ShardedBatchSampler(Sampler[list[int]]):
    """This rank's batches of an epoch over its own shard (the trainer's sampler interface).

    Every rank takes the same number of steps ``S`` (enough for the global batch, at most
    the smallest shard's samples), shuffles its own samples (seeded by ``seed``, the epoch
    and the rank) and spreads all of them over the ``S`` steps (sizes differ by at most
    one): each sample of each shard once per epoch, none twice. :meth:`global_sizes` gives
    the samples of each step summed over ranks, for the trainer's loss weights.

    Args:
        counts: Samples of every rank's shard (:func:`shard_counts`), the same on all ranks.
        global_batch: Samples per optimizer step summed over ranks (a step holds
            ``sum(counts) / S`` on average, more when a shard is smaller than ``S``).
        rank: This rank.
        shuffle: Permute the samples each epoch.
        seed: Base seed of the permutations.
        max_steps: Cap on steps per epoch (the first ones), or ``None``.

    Raises:
        DataError: A rank has no samples.
    """

    def __init__(
        self,
        counts: Sequence[int],
        global_batch: int,
        rank: int,
        shuffle: bool = True,
        seed: int = 0,
        max_steps: int | None = None,
    ) -> None:
        self.counts = [int(c) for c in counts]
        if min(self.counts) < 1:
            raise DataError(
                f"rank {self.counts.index(min(self.counts))} has no training samples "
                f"(samples per rank {self.counts})",
                hint="train on fewer ranks",
            )
        if not 0 <= rank < len(self.counts):
            raise ValueError(f"rank {rank} outside [0, {len(self.counts)})")
        #: Steps that spread every sample of every shard.
        self.spread = min(-(-sum(self.counts) // max(global_batch, 1)), min(self.counts))
        self.steps = self.spread if max_steps is None else min(self.spread, max_steps)
        self.rank, self.shuffle, self.seed, self.epoch = rank, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = epoch

    def local_sizes(self, rank: int | None = None) -> list[int]:
        """Samples of ``rank`` (default: this one) in each step of the epoch."""
        n = self.counts[self.rank if rank is None else rank]
        base, extra = divmod(n, self.spread)
        return [base + (1 if s < extra else 0) for s in range(self.steps)]

    def global_sizes(self) -> list[int]:
        """Samples in each step summed over ranks."""
        per_rank = [self.local_sizes(r) for r in range(len(self.counts))]
        return [int(sum(step)) for step in zip(*per_rank, strict=True)]

    def __iter__(self) -> Iterator[list[int]]:
        n = self.counts[self.rank]
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, self.rank]).permutation(n)
        else:
            order = np.arange(n)
        start = 0
        for size in self.local_sizes():
            yield order[start : start + size].tolist()
            start += size

    def __len__(self) -> int:
        return self.steps


class LazyCellDataset(Dataset[Sample]):
    """The samples of :class:`hydrology.dataset.CellDataset`, read from the store by chunk.

    Sample ``i`` is the same as ``CellDataset``'s (cell-major, all-NaN targets dropped); a
    batch reads the chunks of its cells that are not among the last ``cache_chunks`` read.

    Args:
        ds: :func:`hydrology.cubestore.open_cube` output.
        split: ``train``, ``val`` or ``test``.
        seq_len: Months of input history.
        cell_pos: Positions (sorted) of the cells to use; default all.
        cache_chunks: Chunks kept in memory.

    Raises:
        DataError: The split has no samples.
    """

    def __init__(
        self,
        ds: xr.Dataset,
        split: str,
        seq_len: int,
        cell_pos: np.ndarray | None = None,
        cache_chunks: int = 2,
    ) -> None:
        self.ds, self.split, self.seq_len = ds, split, seq_len
        n = ds.sizes["cell"]
        self.cell_pos = np.arange(n) if cell_pos is None else np.asarray(cell_pos, np.int64)
        self.t0, self.n_t = _issue_window(ds, split, seq_len)
        if self.n_t == 0 or self.cell_pos.size == 0:
            raise DataError(
                f"split {split!r} has no samples (seq_len {seq_len}, "
                f"leads {ds.attrs['meta']['leads']})",
                hint="shorten seq_len or lengthen the period",
            )
        valid = ds["valid"].isel(time=slice(self.t0, self.t0 + self.n_t)).values
        self.keep = np.flatnonzero(valid[self.cell_pos].ravel())
        self.chunk = _chunk_size(ds)
        self.cache_chunks = max(1, cache_chunks)
        self._cache: OrderedDict[int, dict[str, torch.Tensor]] = OrderedDict()
        #: Chunks read so far (in order), for tests and logs.
        self.reads: list[int] = []

    def __len__(self) -> int:
        return int(self.keep.size)

    def locate(self, i: int) -> tuple[int, int]:
        """``(cell position, issue time index)`` of sample ``i``."""
        flat = int(self.keep[i])
        return int(self.cell_pos[flat // self.n_t]), self.t0 + flat % self.n_t

    def _load(self, k: int) -> dict[str, torch.Tensor]:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        part = self.ds.isel(cell=slice(k * self.chunk, (k + 1) * self.chunk))
        arrays = part[["dynamic", "static", "baseline", "target"]].reset_index("cell").compute()
        out = {n: torch.from_numpy(np.ascontiguousarray(arrays[n].values)) for n in arrays}
        self._cache[k] = out
        self.reads.append(k)
        while len(self._cache) > self.cache_chunks:
            self._cache.popitem(last=False)
        return out

    def __getitem__(self, i: int) -> Sample:
        (dyn, sta, base), tgt = self.__getitems__([i]).batch
        return (dyn[0], sta[0], base[0]), tgt[0]

    def __getitems__(self, indices: Sequence[int]) -> Collated:
        """A batch, as :meth:`hydrology.dataset.CellDataset.__getitems__` gives it."""
        flat = self.keep[np.asarray(indices, dtype=np.int64)]
        cell = self.cell_pos[flat // self.n_t]
        issue = torch.from_numpy(self.t0 + flat % self.n_t)
        parts: dict[str, list[tuple[np.ndarray, torch.Tensor]]] = {}
        for k in np.unique(cell // self.chunk):
            rows = np.flatnonzero(cell // self.chunk == k)
            arrays = self._load(int(k))
            c = torch.from_numpy(cell[rows] - k * self.chunk)
            t = issue[rows]
            ct = c * arrays["dynamic"].shape[1] + t
            got = {
                "dynamic": gather_windows(arrays["dynamic"], c, t, self.seq_len),
                "static": arrays["static"].index_select(0, c),
                "baseline": arrays["baseline"]
                .reshape(-1, arrays["baseline"].shape[2])
                .index_select(0, ct),
                "target": arrays["target"]
                .reshape(-1, arrays["target"].shape[2])
                .index_select(0, ct),
            }
            for name, value in got.items():
                parts.setdefault(name, []).append((rows, value))
        out = {}
        for name, pieces in parts.items():
            first = pieces[0][1]
            full = torch.empty((len(indices), *first.shape[1:]), dtype=first.dtype)
            for rows, value in pieces:
                full[torch.from_numpy(rows)] = value
            out[name] = full
        return Collated(((out["dynamic"], out["static"], out["baseline"]), out["target"]))

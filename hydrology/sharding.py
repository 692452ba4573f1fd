"""Rank-sharded reading of a cell-chunked cube store: each rank its own chunks of cells.

Under DDP (or Ray Train) with ``W`` ranks, rank ``r`` trains on the cells of its shard only
(:func:`shard_positions`: whole chunks of cells, contiguous, disjoint over ranks, together
all cells), loaded once from the store (:func:`rank_dataset`): no chunk is read by two ranks
and none is missed. An epoch is every training sample of every rank once
(:class:`twins.train.sampler.ShardedBatchSampler`): each rank shuffles its own samples and
cuts them into as many steps as every other rank, so DDP's ranks step together, and the
trainer weights each rank's loss by its share of the step's global batch.

Only the months a split needs are read (:func:`sample_window`: the split and the input
history before its first issue month), so a rank holds its cells over the training period,
not the whole record. What every rank reads beyond its shard is the per-cell ``valid`` mask
(one byte per cell and month), to count the samples of every shard (:func:`shard_counts`).

Evaluation, which the trainer shards by contiguous sample ranges, reads chunk by chunk
through :class:`LazyCellDataset` (samples are cell-major, so a contiguous range of samples
is a contiguous range of cells and chunks); the skill evaluation predicts chunk by chunk
(:func:`predict_by_chunk`) over the months it verifies (:func:`verification_window`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.utils.data import Dataset

from hydrology.cubestore import dataset_to_cube, load_cells
from hydrology.dataset import DroughtCube, subsample_cells
from hydrology.evaluate import predict
from hydrology.samples import CellDataset, Sample, gather_windows
from twins.errors import DataError
from twins.train.batching import Collated

__all__ = [
    "LazyCellDataset",
    "cell_subsample",
    "predict_by_chunk",
    "rank_dataset",
    "sample_window",
    "shard_counts",
    "shard_positions",
    "verification_window",
]

log = logging.getLogger(__name__)

#: Bytes of read chunks a :class:`LazyCellDataset` keeps in memory by default.
CACHE_BYTES = 64 * 2**20


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


def cell_subsample(ds: xr.Dataset, k: int, offset: int = 0) -> np.ndarray:
    """Cell positions of the store's regular ``k x k`` subsample (those
    :func:`hydrology.dataset.subsample_cells` picks in the whole cube)."""
    return _subsample(ds, np.arange(ds.sizes["cell"]), k, offset)


def _split_range(ds: xr.Dataset, split: str) -> tuple[int, int]:
    """``[ia, ib]``: the split's months as time indices (:meth:`DroughtCube.split_range`)."""
    times = ds["time"].values
    a, b = (np.datetime64(x) for x in ds.attrs["meta"]["splits"][split])
    return int(np.searchsorted(times, a)), int(np.searchsorted(times, b, side="right")) - 1


def _issue_window(ds: xr.Dataset, split: str, seq_len: int) -> tuple[int, int]:
    """``(t0, n_t)``: the first issue month and the number of issue months of a split."""
    ia, ib = _split_range(ds, split)
    t0, t1 = max(ia - 1, seq_len - 1), ib - max(ds.attrs["meta"]["leads"])
    return t0, max(t1 - t0 + 1, 0)


def sample_window(ds: xr.Dataset, split: str, seq_len: int) -> slice:
    """The months a split's samples read: its first issue month's input history to the
    split's end.

    A cube cut to these months (``dataset_to_cube(ds, time=...)``) has the same samples
    of ``split`` in the same order, their issue months shifted by the window's start: the
    first issue month ``max(ia - 1, seq_len - 1)`` reads back to ``max(ia - seq_len, 0)``,
    and the split's months are kept whole so that its issue range ends where it did.
    """
    ia, ib = _split_range(ds, split)
    return slice(max(ia - seq_len, 0), ib + 1)


def verification_window(ds: xr.Dataset, split: str, seq_len: int) -> slice:
    """The months the skill evaluation of a split reads
    (:func:`hydrology.evaluate.evaluate_run`): forecasts issued from ``max(leads)`` months
    before the split, with their input history, to the split's end.

    A cube cut to these months gives the same skill table and figures as the whole cube.
    """
    ia, ib = _split_range(ds, split)
    return slice(max(ia - max(ds.attrs["meta"]["leads"]) - seq_len + 1, 0), ib + 1)


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
        ``(dataset, cube of the shard's cells over the split's months)``; the dataset's
        samples are cell-major, their issue months counted from the window's start
        (:func:`sample_window`).
    """
    pos = shard_positions(ds.sizes["cell"], _chunk_size(ds), rank, world)
    window = sample_window(ds, split, seq_len)
    local = dataset_to_cube(ds, np.asarray(pos), time=window)
    keep = subsample_cells(local, subsample, 0)
    log.info(
        "rank %d/%d: cells %d..%d (%d used), months %d..%d",
        rank,
        world,
        pos.start,
        pos.stop - 1,
        keep.size,
        window.start,
        window.stop - 1,
    )
    return CellDataset(local, split, seq_len, keep), local


class LazyCellDataset(Dataset[Sample]):
    """The samples of :class:`hydrology.samples.CellDataset`, read from the store by chunk.

    Sample ``i`` is the same as ``CellDataset``'s (cell-major, all-NaN targets dropped); a
    batch reads the chunks of its cells that are not in memory, keeping of each chunk only
    the cells used and only the split's months (:func:`sample_window`). What was read stays
    in memory up to ``cache_bytes`` (least recently used out first): a validation subsample
    that fits is read once for the whole training, a test split larger than that is read
    chunk by chunk.

    Args:
        ds: :func:`hydrology.cubestore.open_cube` output.
        split: ``train``, ``val`` or ``test``.
        seq_len: Months of input history.
        cell_pos: Positions (sorted) of the cells to use; default all.
        cache_bytes: Bytes of read chunks kept in memory (at least the last chunk is kept).

    Raises:
        DataError: The split has no samples.
    """

    def __init__(
        self,
        ds: xr.Dataset,
        split: str,
        seq_len: int,
        cell_pos: np.ndarray | None = None,
        cache_bytes: int = CACHE_BYTES,
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
        self.window = sample_window(ds, split, seq_len)
        self.chunk = _chunk_size(ds)
        self.cache_bytes = cache_bytes
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
        cells = self.cell_pos[self.cell_pos // self.chunk == k]  # the chunk's cells used
        names = ("dynamic", "static", "baseline", "target")
        arrays = load_cells(self.ds, names, cells, self.window)
        out = {n: torch.from_numpy(arrays[n]) for n in names}
        out["cells"] = torch.from_numpy(cells)
        self._cache[k] = out
        self.reads.append(k)
        held = sum(t.nbytes for part in self._cache.values() for t in part.values())
        while len(self._cache) > 1 and held > self.cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            held -= sum(t.nbytes for t in dropped.values())
        return out

    def __getitem__(self, i: int) -> Sample:
        (dyn, sta, base), tgt = self.__getitems__([i]).batch
        return (dyn[0], sta[0], base[0]), tgt[0]

    def __getitems__(self, indices: Sequence[int]) -> Collated:
        """A batch, as :meth:`hydrology.samples.CellDataset.__getitems__` gives it."""
        flat = self.keep[np.asarray(indices, dtype=np.int64)]
        cell = self.cell_pos[flat // self.n_t]
        issue = torch.from_numpy(self.t0 - self.window.start + flat % self.n_t)
        parts: dict[str, list[tuple[np.ndarray, torch.Tensor]]] = {}
        for k in np.unique(cell // self.chunk):
            rows = np.flatnonzero(cell // self.chunk == k)
            arrays = self._load(int(k))
            c = torch.from_numpy(np.searchsorted(arrays["cells"].numpy(), cell[rows]))
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


#: Cells per forward pass of :func:`predict_by_chunk`: an LSTM's input projection holds
#: ``(seq_len, cells, 4 hidden)`` float32 at once (36 months x 8192 cells x 256 = 302 MB at
#: the in-memory default; 38 MB with 1024).
PREDICT_CELLS = 1024


@torch.no_grad()
def predict_by_chunk(
    model: nn.Module, ds: xr.Dataset, issue: np.ndarray, seq_len: int
) -> np.ndarray:
    """:func:`hydrology.evaluate.predict` over a cube store, one chunk of cells at a time.

    Args:
        model: Trained per-cell model.
        ds: :func:`hydrology.cubestore.open_cube` output, possibly cut along ``time``.
        issue: Issue time indices (into ``ds``'s months), each ``>= seq_len - 1``.
        seq_len: Months of input history.

    Returns:
        ``(cell, len(issue), n_out)`` float32 forecasts, equal to ``predict`` on the whole
        cube (each cell's forecast depends on that cell only).
    """
    n, chunk = ds.sizes["cell"], _chunk_size(ds)
    out = np.empty((n, issue.size, ds.sizes["output"]), np.float32)
    for start in range(0, n, chunk):
        cells = np.arange(start, min(start + chunk, n))
        cube = dataset_to_cube(ds, cells)
        out[cells] = predict(model, cube, issue, seq_len, batch_size=PREDICT_CELLS)
    return out

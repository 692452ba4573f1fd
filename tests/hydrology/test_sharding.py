"""Rank-sharded reading of the cube store: every chunk read by exactly one rank, every
training sample once per epoch, through a store that counts the chunk reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
import zarr.storage

from hydrology.cubestore import cube_to_dataset, dataset_to_cube, open_cube, write_cube
from hydrology.dataset import DEFAULT_SPLITS, DroughtCube, build_cube
from hydrology.evaluate import evaluate_run, issue_months, predict
from hydrology.models.lstm import CellLSTM
from hydrology.samples import CellDataset
from hydrology.sharding import (
    LazyCellDataset,
    cell_subsample,
    predict_by_chunk,
    rank_dataset,
    sample_window,
    shard_counts,
    shard_positions,
    verification_window,
)
from hydrology.synthetic import generate
from twins.errors import DataError
from twins.train.sampler import ShardedBatchSampler

SEQ = 12
CHUNK = 9  # 108 served cells of the tiny grid: 12 chunks
SAMPLE_VARS = ("dynamic", "static", "baseline", "target")


class CountingStore(zarr.storage.WrapperStore):  # type: ignore[type-arg]
    """A local store that records every key read."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.keys: list[str] = []

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        self.keys.append(key)
        return await self._store.get(key, prototype, byte_range)

    def chunks(self, name: str) -> list[str]:
        """The data chunks of variable ``name`` read so far (``name/c/i/...``)."""
        return [k for k in self.keys if re.fullmatch(rf"{name}/c(/\d+)+", k)]


@pytest.fixture(scope="module")
def cube() -> DroughtCube:
    return build_cube(generate("tiny"), DEFAULT_SPLITS["tiny"])


@pytest.fixture(scope="module")
def store(cube: DroughtCube, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cube") / "c.zarr"
    write_cube(cube_to_dataset(cube, (4, 6)), path, CHUNK)
    return path


def _counting(path: Path) -> tuple[xr.Dataset, CountingStore]:
    counter = CountingStore(zarr.storage.LocalStore(path, read_only=True))
    return open_cube(counter), counter


@pytest.mark.parametrize(
    "n_cells, chunk, world", [(108, 9, 2), (108, 9, 5), (100, 7, 3), (7, 7, 1)]
)
def test_shards_are_whole_chunks_disjoint_and_complete(
    n_cells: int, chunk: int, world: int
) -> None:
    shards = [shard_positions(n_cells, chunk, r, world) for r in range(world)]
    flat = [p for s in shards for p in s]
    assert flat == list(range(n_cells))  # contiguous, in rank order, each cell once
    assert all(s.start % chunk == 0 for s in shards)
    sizes = [-(-len(s) // chunk) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    with pytest.raises(DataError, match="13 ranks: a rank would get no cells"):
        shard_positions(108, 9, 0, 13)


@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_reads_its_own_chunks_and_an_epoch_covers_every_sample_once(
    cube: DroughtCube, store: Path, world: int
) -> None:
    full = open_cube(store)
    # the whole training split in memory, cells in the store's order
    reference = CellDataset(dataset_to_cube(full), "train", SEQ)
    all_samples = {reference.locate(i) for i in range(len(reference))}
    counts = shard_counts(full, "train", SEQ, world)
    assert sum(counts) == len(reference)
    read: list[dict[str, set[str]]] = []
    seen: list[tuple[int, int]] = []
    for rank in range(world):
        ds, counter = _counting(store)
        data, local = rank_dataset(ds, "train", SEQ, rank, world)
        assert len(data) == counts[rank]
        read.append({v: set(counter.chunks(v)) for v in SAMPLE_VARS})
        offset = shard_positions(full.sizes["cell"], CHUNK, rank, world).start
        sampler = ShardedBatchSampler(counts, 64, rank, seed=3)
        sampler.set_epoch(2)
        assert len(sampler) == len(sampler.global_sizes())
        assert sum(sampler.global_sizes()) == sum(counts)  # every sample of every rank
        for batch in sampler:
            for i in batch:
                c, t = data.locate(i)
                seen.append((offset + c, t))
        # samples are those of the reference at the same (cell, issue month)
        (dyn, _, base), tgt = data.__getitems__([0, len(data) - 1]).batch
        ends = [reference_index(reference, offset, data, i) for i in (0, len(data) - 1)]
        ref = reference.__getitems__(ends).batch
        assert torch.equal(dyn, ref[0][0]) and torch.equal(base, ref[0][2])
        assert torch.equal(tgt.nan_to_num(9.0), ref[1].nan_to_num(9.0))
        assert local.cells.size == len(shard_positions(full.sizes["cell"], CHUNK, rank, world))
    n_chunks = -(-full.sizes["cell"] // CHUNK)
    for v in SAMPLE_VARS:
        per_rank = [r[v] for r in read]
        assert sum(len(s) for s in per_rank) == len(set().union(*per_rank)), (
            f"{v}: a chunk read twice"
        )
        assert len(set().union(*per_rank)) == n_chunks, f"{v}: a chunk missed"
    assert len(seen) == len(set(seen)) and set(seen) == all_samples


def reference_index(reference: CellDataset, offset: int, data: CellDataset, i: int) -> int:
    """Position in ``reference`` of sample ``i`` of a rank's dataset."""
    c, t = data.locate(i)
    return next(j for j in range(len(reference)) if reference.locate(j) == (offset + c, t))


def test_the_sampler_steps_together_and_weights_by_share() -> None:
    sampler = ShardedBatchSampler([10, 7, 9], global_batch=6, rank=1, shuffle=False)
    assert len(sampler) == 5  # 26 / 6 -> 5 steps (at most the smallest shard, 7)
    assert sampler.local_sizes(0) == [2, 2, 2, 2, 2] and sampler.local_sizes(1) == [2, 2, 1, 1, 1]
    assert sampler.global_sizes() == [6, 6, 5, 5, 4]
    assert [len(b) for b in sampler] == sampler.local_sizes()
    assert sorted(i for b in sampler for i in b) == list(range(7))
    capped = ShardedBatchSampler([10, 7, 9], 6, 0, max_steps=2)
    assert len(capped) == 2 and capped.global_sizes() == [6, 6]
    a, b = (
        ShardedBatchSampler([10, 7, 9], 6, 0, seed=1),
        ShardedBatchSampler([10, 7, 9], 6, 0, seed=1),
    )
    b.set_epoch(1)
    assert list(a) != list(b) and sorted(sum(list(a), [])) == sorted(sum(list(b), []))
    with pytest.raises(
        DataError, match=r"rank 1 has no training samples \(samples per rank \[4, 0\]\)"
    ):
        ShardedBatchSampler([4, 0], 2, 0)


def test_lazy_evaluation_reads_chunk_by_chunk_and_equals_the_in_memory_dataset(
    cube: DroughtCube, store: Path
) -> None:
    ds, counter = _counting(store)
    lazy = LazyCellDataset(ds, "test", SEQ)
    assert not counter.chunks("dynamic")  # nothing read before the first batch
    mem = CellDataset(dataset_to_cube(open_cube(store)), "test", SEQ)
    assert len(lazy) == len(mem)
    # the trainer's evaluation: one contiguous shard of samples, in order, batches of 100
    shard = range(len(lazy) // 3, 2 * len(lazy) // 3)
    for start in range(shard.start, shard.stop, 100):
        idx = list(range(start, min(start + 100, shard.stop)))
        got, want = lazy.__getitems__(idx).batch, mem.__getitems__(idx).batch
        for g, w in zip([*got[0], got[1]], [*want[0], want[1]], strict=True):
            assert torch.equal(g.nan_to_num(9.0), w.nan_to_num(9.0))
    cells = {lazy.locate(i)[0] // CHUNK for i in shard}
    assert lazy.reads == sorted(cells)  # each chunk of the shard once, no other
    assert len(counter.chunks("dynamic")) == len(cells)
    (dyn, sta, base), tgt = lazy[5]
    (dyn2, sta2, base2), tgt2 = mem[5]
    assert torch.equal(dyn, dyn2) and torch.equal(sta, sta2) and torch.equal(base, base2)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_a_split_cut_to_its_months_has_the_same_samples(store: Path, split: str) -> None:
    """A rank holds its cells over the split's months only (sample_window): the samples
    are those of the whole record, bit for bit, their issue months shifted by the cut."""
    ds = open_cube(store)
    window = sample_window(ds, split, SEQ)
    whole = CellDataset(dataset_to_cube(ds), split, SEQ)
    cut_cube = dataset_to_cube(ds, time=window)
    cut = CellDataset(cut_cube, split, SEQ)
    assert cut_cube.times.size == window.stop - window.start < ds.sizes["time"]
    assert len(cut) == len(whole)
    assert all(
        cut.locate(i) == (c, t - window.start)
        for i, (c, t) in ((i, whole.locate(i)) for i in range(0, len(whole), 7))
    )
    idx = list(range(0, len(whole), 3))
    got, want = cut.__getitems__(idx).batch, whole.__getitems__(idx).batch
    for g, w in zip([*got[0], got[1]], [*want[0], want[1]], strict=True):
        assert torch.equal(g.nan_to_num(9.0), w.nan_to_num(9.0))


# predict_by_chunk runs the model on 9 cells at a time, predict on all 108: the same float32
# operations on the same numbers, except that a matrix product may sum in another order for
# another batch size. An LSTM gate's pre-activation sums K = F + H + 1 = 29 terms of size
# <= ~10 (|z-scores| <= 5 clip, weights ~ 1/sqrt(H)): a reordering moves it by <= K eps32 10
# = 3.5e-5; gates are 1-Lipschitz and the cell state accumulates over SEQ = 12 months
# (forget gate <= 1): <= 12 x 3.5e-5 = 4.2e-4 on the state, the output head (K = 16 + ...)
# sums a few such terms: 1e-3 bounds it.
CHUNK_ATOL = 1e-3


def test_skill_from_the_verification_months_by_chunk_equals_the_whole_cube(
    store: Path,
) -> None:
    """The task's evaluation from a store: the months the test split's verification reads
    (verification_window), without the inputs, and the forecasts made chunk by chunk, give
    the skill table of the whole cube in memory."""
    ds = open_cube(store)
    whole = dataset_to_cube(ds)
    torch.manual_seed(0)
    model = CellLSTM(whole.dynamic.shape[2], whole.static.shape[1], len(whole.outputs), 16)
    model.eval()
    window = ds.isel(time=verification_window(ds, "test", SEQ))
    cut = dataset_to_cube(window, inputs=False)
    assert cut.dynamic.shape[2] == 0 and cut.times.size < whole.times.size
    issue_cut, issue_whole = issue_months(cut, "test", SEQ), issue_months(whole, "test", SEQ)
    assert np.array_equal(issue_cut + (whole.times.size - cut.times.size), issue_whole)
    chunked = predict_by_chunk(model, window, issue_cut, SEQ)
    reference = predict(model, whole, issue_whole, SEQ)
    np.testing.assert_allclose(chunked, reference, rtol=0, atol=CHUNK_ATOL)
    # the same forecasts verified on the cut cube and on the whole cube: the same table
    a = evaluate_run(model, cut, SEQ, forecasts=chunked)
    b = evaluate_run(model, whole, SEQ, forecasts=chunked)
    pd.testing.assert_frame_equal(a, b)
    assert set(a.method) == {"model", "persistence", "climatology", "analogue"}


def test_a_validation_subsample_is_read_once_and_holds_only_its_cells(store: Path) -> None:
    """Validation runs many times in a training: its subsample's cells (what fits the cache)
    are read from the store once, and of each chunk only those cells are kept."""
    ds, counter = _counting(store)
    cells = cell_subsample(ds, 2, 1)
    lazy = LazyCellDataset(ds, "val", SEQ, cells)
    mem = CellDataset(dataset_to_cube(open_cube(store)), "val", SEQ, cells)
    assert len(lazy) == len(mem)
    for _ in range(2):  # two validations, as the trainer shards them on one rank
        for start in range(0, len(lazy), 50):
            idx = list(range(start, min(start + 50, len(lazy))))
            got, want = lazy.__getitems__(idx).batch, mem.__getitems__(idx).batch
            for g, w in zip([*got[0], got[1]], [*want[0], want[1]], strict=True):
                assert torch.equal(g.nan_to_num(9.0), w.nan_to_num(9.0))
    chunks = sorted({int(c) // CHUNK for c in cells})
    assert lazy.reads == chunks  # each chunk once over both passes
    assert len(counter.chunks("dynamic")) == len(chunks)
    assert sum(part["dynamic"].shape[0] for part in lazy._cache.values()) == cells.size

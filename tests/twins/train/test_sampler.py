"""Per-rank sharding: disjoint, complete, identical global batches for any world size."""

from __future__ import annotations

import pytest

from twins.train.sampler import GlobalBatchSampler, shard_indices


@pytest.mark.parametrize(
    ("n", "batch", "world"), [(100, 10, 2), (103, 10, 2), (97, 12, 4), (50, 7, 3), (10, 10, 1)]
)
def test_shards_cover_each_global_batch_exactly(n: int, batch: int, world: int) -> None:
    ranks = [GlobalBatchSampler(n, batch, r, world, seed=4) for r in range(world)]
    single = GlobalBatchSampler(n, batch, 0, 1, seed=4)
    for epoch in range(3):
        for s in [*ranks, single]:
            s.set_epoch(epoch)
        per_rank = [list(s) for s in ranks]
        assert len({len(p) for p in per_rank}) == 1  # same step count on every rank
        seen: list[int] = []
        # the same global batches as one process (one process keeps a tail < world size)
        for step, global_batch in enumerate(single.global_batches()[: len(per_rank[0])]):
            union = [i for p in per_rank for i in p[step]]
            assert sorted(union) == sorted(
                global_batch.tolist()
            )  # same samples per step as 1 rank
            seen += union
        assert len(seen) == len(set(seen))  # no sample twice
        dropped = n - len(seen)
        assert dropped == (n % batch if 0 < n % batch < world else 0)


def test_partial_batch_smaller_than_world_is_dropped() -> None:
    s = GlobalBatchSampler(21, 10, 0, 2)
    assert s.global_sizes() == [10, 10]  # 1 left over < 2 ranks: dropped
    assert GlobalBatchSampler(22, 10, 0, 2).global_sizes() == [10, 10, 2]


def test_epochs_reshuffle_deterministically() -> None:
    a, b = GlobalBatchSampler(50, 5, seed=1), GlobalBatchSampler(50, 5, seed=1)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)


def test_max_steps_and_bad_arguments() -> None:
    assert len(GlobalBatchSampler(100, 10, max_steps=3)) == 3
    with pytest.raises(ValueError, match="smaller than world size"):
        GlobalBatchSampler(100, 1, 0, 2)
    with pytest.raises(ValueError, match="outside"):
        GlobalBatchSampler(100, 10, 2, 2)


@pytest.mark.parametrize(("n", "world"), [(10, 3), (3, 4), (0, 2), (101, 2)])
def test_eval_shards(n: int, world: int) -> None:
    shards = [list(shard_indices(n, r, world)) for r in range(world)]
    assert [i for s in shards for i in s] == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1

"""Per-rank sharding of an epoch: every sample once, no padding, no duplicates.

Training uses :class:`GlobalBatchSampler`: one permutation per epoch (seeded by
``seed + epoch``, identical on all ranks) cut into global batches; rank ``r``
takes positions ``r, r + W, ...`` of each global batch. The union over ranks of
one step is exactly that global batch, so DDP on ``W`` ranks sees the same
samples per step as one process with the same global batch. When each rank holds
only its own shard of the training samples (a task that reads a cell-chunked store
by rank), :class:`ShardedBatchSampler` draws each rank's batches from its shard
instead: every sample of every shard once per epoch, ranks stepping together.
Evaluation uses :func:`shard_indices`, contiguous and uneven.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from twins.errors import DataError

log = logging.getLogger(__name__)


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this rank's indices of each global batch of an epoch.

    A final partial global batch smaller than the world size would leave a rank
    with nothing to compute, which DDP cannot synchronise; it is dropped (at
    most ``world_size - 1`` samples per epoch, different ones each epoch when
    shuffling). Call :meth:`set_epoch` before each epoch.

    Args:
        n: Dataset length.
        global_batch: Samples per optimizer step, summed over ranks.
        rank: This rank.
        world_size: Number of ranks.
        shuffle: Permute the samples each epoch.
        seed: Base seed of the permutation.
        max_steps: Cap on steps per epoch, or ``None``.
    """

    def __init__(
        self,
        n: int,
        global_batch: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        max_steps: int | None = None,
    ) -> None:
        if global_batch < world_size:
            raise ValueError(
                f"global batch {global_batch} is smaller than world size {world_size}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        self.n, self.global_batch, self.rank, self.world_size = n, global_batch, rank, world_size
        self.shuffle, self.seed, self.max_steps, self.epoch = shuffle, seed, max_steps, 0
        self._cache: tuple[int, list[torch.Tensor]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = epoch

    def global_batches(self) -> list[torch.Tensor]:
        """The epoch's global batches (index tensors), identical on every rank."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        batches = list(torch.split(order, self.global_batch))
        if batches and len(batches[-1]) < self.world_size:
            batches.pop()
        if self.max_steps is not None:
            batches = batches[: self.max_steps]
        self._cache = (self.epoch, batches)
        return batches

    def global_sizes(self) -> list[int]:
        """Samples in each global batch of the epoch."""
        return [len(b) for b in self.global_batches()]

    def __iter__(self) -> Iterator[list[int]]:
        # one conversion per epoch: per-step tensor slicing costs more than the list slice
        order = torch.cat(self.global_batches()).tolist() if self.global_batches() else []
        start = 0
        for size in self.global_sizes():
            yield order[start + self.rank : start + size : self.world_size]
            start += size

    def __len__(self) -> int:
        return len(self.global_batches())


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


def shard_indices(n: int, rank: int, world_size: int) -> range:
    """Contiguous shard of ``range(n)`` for ``rank``; shards differ in size by at most one.

    The shards of all ranks are disjoint and their union is ``range(n)``.
    """
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))

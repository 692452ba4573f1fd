"""The training loop: one loop for one process, DDP ranks and Ray Train workers.

The loop is composed from plain torch objects (model, loss function,
optimizer, scheduler, datasets) plus callbacks; :mod:`twins.train.build` makes
them from a config. Under DDP each rank computes its share of every global
batch and weights its mean loss by ``local_n * world / global_n``, so DDP's
gradient averaging yields the gradient of the mean loss over the global batch:
the same step a single process takes with that batch.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from twins.train.batching import collate
from twins.train.callbacks import Callback
from twins.train.checkpoint import atomic_torch_save, load_checkpoint, rng_state, set_rng_state
from twins.train.dist import Strategy
from twins.train.sampler import GlobalBatchSampler, ShardedBatchSampler, shard_indices

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Any], torch.Tensor]


def move_to(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, list | tuple):
        return type(batch)(move_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    return batch


def default_batch_size(batch: Any) -> int:
    """Samples in a collated batch: first dimension of its first tensor."""
    first = batch
    while isinstance(first, list | tuple):
        first = first[0]
    if isinstance(first, dict):
        first = next(iter(first.values()))
    return int(first.shape[0])


@dataclass
class FitResult:
    """What a training run produced.

    Attributes:
        epochs: Epochs completed (including those before a resume).
        steps: Optimizer steps taken.
        best: Best value of the monitored metric (``inf`` if never validated).
        best_step: Optimizer step at which the best value was reached.
        history: One metrics dict per epoch.
        stopped_early: Whether early stopping ended the run.
        wall_s: Wall time of this ``fit`` call in seconds.
    """

    epochs: int
    steps: int
    best: float
    best_step: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    wall_s: float = 0.0

    @property
    def last(self) -> dict[str, float]:
        """Metrics of the last epoch."""
        return self.history[-1] if self.history else {}


class Trainer:
    """One training loop, whatever launched it.

    Args:
        model: The bare model; the strategy wraps it (DDP) and moves it.
        loss_fn: ``loss_fn(model, batch) -> scalar``, a mean over the batch's samples.
        optimizer_fn: Builds the optimizer from the wrapped model's parameters.
        train_data: Training dataset (map-style).
        val_data: Validation dataset, or ``None``.
        strategy: Where this rank sits and how ranks talk.
        epochs: Epochs to train.
        batch_size: Global batch size.
        seed: Seed of the per-epoch permutation.
        scheduler_fn: Builds the LR scheduler from the optimizer, or ``None``.
        callbacks: Hooks run in order.
        val_every: Validate every this many steps; 0 means once per epoch.
        monitor: Metric that selects the best state (lower is better).
        grad_clip: Max global gradient norm, or ``None``.
        max_steps_per_epoch: Cap on steps per epoch, or ``None``.
        num_workers: DataLoader worker processes.
        batch_size_fn: Counts samples in a batch.
        collate_fn: Collates samples into a batch (default: :func:`~twins.train.batching.collate`,
            which passes a dataset's own :class:`~twins.train.batching.Collated` batches through).
        config_yaml: Resolved config stored in checkpoints.
        train_counts: When ``train_data`` holds only this rank's shard of the training
            samples, the number of samples of every rank's shard (the same on all ranks):
            batches are then drawn from the rank's own shard
            (:class:`~twins.train.sampler.ShardedBatchSampler`). None (default): every rank
            holds all samples and takes its part of each global batch.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        optimizer_fn: Callable[[nn.Module], torch.optim.Optimizer],
        train_data: Dataset[Any],
        val_data: Dataset[Any] | None,
        strategy: Strategy,
        *,
        epochs: int,
        batch_size: int,
        seed: int = 0,
        scheduler_fn: Callable[[torch.optim.Optimizer], Any] | None = None,
        callbacks: Sequence[Callback] = (),
        val_every: int = 0,
        monitor: str = "val_loss",
        grad_clip: float | None = None,
        max_steps_per_epoch: int | None = None,
        num_workers: int = 0,
        batch_size_fn: Callable[[Any], int] = default_batch_size,
        collate_fn: Callable[[Any], Any] = collate,
        config_yaml: str = "",
        train_counts: Sequence[int] | None = None,
    ) -> None:
        self.strategy = strategy
        self.model = strategy.wrap(model)
        self.loss_fn = loss_fn
        self.optimizer = optimizer_fn(self.model)
        self.scheduler = scheduler_fn(self.optimizer) if scheduler_fn else None
        self.train_data, self.val_data = train_data, val_data
        self.epochs, self.batch_size, self.seed = epochs, batch_size, seed
        self.callbacks = list(callbacks)
        self.val_every, self.monitor, self.grad_clip = val_every, monitor, grad_clip
        self.batch_size_fn, self.collate_fn = batch_size_fn, collate_fn
        self.config_yaml = config_yaml
        self.num_workers = num_workers
        self.sampler: GlobalBatchSampler | ShardedBatchSampler
        if train_counts is None:
            self.sampler = GlobalBatchSampler(
                len(train_data),  # type: ignore[arg-type]
                batch_size,
                strategy.rank,
                strategy.world_size,
                shuffle=True,
                seed=seed,
                max_steps=max_steps_per_epoch,
            )
        else:
            if len(train_counts) != strategy.world_size or train_counts[strategy.rank] != len(
                train_data  # type: ignore[arg-type]
            ):
                raise ValueError(
                    f"train_counts {list(train_counts)} do not fit rank {strategy.rank} of "
                    f"{strategy.world_size} holding {len(train_data)} samples"  # type: ignore[arg-type]
                )
            self.sampler = ShardedBatchSampler(
                train_counts,
                batch_size,
                strategy.rank,
                shuffle=True,
                seed=seed,
                max_steps=max_steps_per_epoch,
            )
        self.loader = DataLoader(
            train_data,
            batch_sampler=self.sampler,
            num_workers=num_workers,
            collate_fn=collate_fn,
            persistent_workers=num_workers > 0,
        )
        self.epoch = 0
        self.step = 0
        self.best = math.inf
        self.best_step = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []
        self.last_val: dict[str, float] = {}
        self.should_stop = False

    def release_data(self) -> None:
        """Drop the training and validation data (after :meth:`fit`; the trainer cannot fit
        again)."""
        self.train_data = self.val_data = None
        self.loader = None  # type: ignore[assignment]

    # -- properties -----------------------------------------------------------------
    @property
    def bare_model(self) -> nn.Module:
        """The model without its DDP wrapper."""
        return self.strategy.unwrap(self.model)

    @property
    def steps_in_epoch(self) -> int:
        """Optimizer steps in the current epoch."""
        return len(self.sampler)

    # -- evaluation -----------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, data: Dataset[Any], prefix: str = "val") -> dict[str, float]:
        """Mean loss over a dataset, each rank evaluating a contiguous shard.

        Returns:
            ``{f"{prefix}_loss": mean loss over all samples}``.
        """
        model = self.bare_model
        was_training = model.training
        model.eval()
        n_total = len(data)  # type: ignore[arg-type]
        shard = Subset(
            data, list(shard_indices(n_total, self.strategy.rank, self.strategy.world_size))
        )
        loader = DataLoader(shard, batch_size=self.batch_size, collate_fn=self.collate_fn)
        acc = torch.zeros(2, dtype=torch.float64, device=self.strategy.device)
        for batch in loader:
            batch = move_to(batch, self.strategy.device)
            n = self.batch_size_fn(batch)
            acc[0] += float(self.loss_fn(model, batch)) * n
            acc[1] += n
        self.strategy.all_reduce_sum(acc)
        model.train(was_training)
        return {f"{prefix}_loss": float(acc[0] / acc[1]) if acc[1] > 0 else math.nan}

    def validate(self) -> dict[str, float]:
        """Validate, keep the best state, and run the validation hooks."""
        if self.val_data is None:
            return {}
        metrics = self.evaluate(self.val_data, "val")
        self.last_val = dict(metrics)
        value = metrics.get(self.monitor, math.nan)
        if value < self.best:
            self.best, self.best_step = value, self.step
            self.best_state = {
                k: v.detach().cpu().clone() for k, v in self.bare_model.state_dict().items()
            }
        for cb in self.callbacks:
            cb.on_validation_end(self, metrics)
        return metrics

    # -- checkpoints ----------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to resume, gathering every rank's RNG state (collective)."""
        rngs = self.strategy.all_gather_object(rng_state())
        sched = self.scheduler.state_dict() if self.scheduler is not None else None
        return {
            "format": 1,
            "model": self.bare_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": sched,
            "rng": rngs,
            "epoch": self.epoch,
            "step": self.step,
            "best": self.best,
            "best_step": self.best_step,
            "best_state": self.best_state,
            "history": self.history,
            "callbacks": [cb.state_dict() for cb in self.callbacks],
            "world_size": self.strategy.world_size,
            "config": self.config_yaml,
        }

    def save_checkpoint(self, path: Path) -> None:
        """Write a resumable checkpoint atomically (collective; rank 0 writes)."""
        state = self.checkpoint_state()
        if self.strategy.is_main:
            atomic_torch_save(state, Path(path))
        self.strategy.barrier()

    def load_checkpoint(self, path: Path) -> None:
        """Restore model, optimizer, scheduler, RNG, counters and callbacks from ``path``."""
        ckpt = load_checkpoint(Path(path))
        self.bare_model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        rngs = ckpt["rng"]
        same_world = ckpt["world_size"] == self.strategy.world_size
        set_rng_state(rngs[self.strategy.rank] if same_world else rngs[0])
        if not same_world and self.strategy.is_main:
            log.warning(
                "resuming a %d-rank checkpoint on %d ranks: data order is exact, "
                "dropout RNG streams are not",
                ckpt["world_size"],
                self.strategy.world_size,
            )
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.best, self.best_step = float(ckpt["best"]), int(ckpt["best_step"])
        self.best_state = ckpt["best_state"]
        self.history = list(ckpt["history"])
        for cb, st in zip(self.callbacks, ckpt["callbacks"], strict=False):
            cb.load_state_dict(st)
        if self.strategy.is_main:
            log.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step)

    # -- training -------------------------------------------------------------------
    def _train_epoch(self) -> dict[str, float]:
        self.model.train()
        self.sampler.set_epoch(self.epoch)
        sizes = self.sampler.global_sizes()
        world = self.strategy.world_size
        device = self.strategy.device
        move = device.type != "cpu"
        step_hooks = [
            cb for cb in self.callbacks if type(cb).on_step_end is not Callback.on_step_end
        ]
        losses: list[torch.Tensor] = []
        counts: list[int] = []
        for i, batch in enumerate(self.loader):
            if move:
                batch = move_to(batch, device)
            n_local = self.batch_size_fn(batch)
            loss = self.loss_fn(self.model, batch)
            weight = n_local * world / sizes[i]
            (loss * weight if weight != 1.0 else loss).backward()
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            losses.append(loss.detach())
            counts.append(n_local)
            for cb in step_hooks:
                cb.on_step_end(self, self.step, None)
            if self.val_every and self.step % self.val_every == 0:
                self.validate()
                if self.should_stop:
                    break
        acc = torch.zeros(2, dtype=torch.float64, device=device)
        if losses:
            n = torch.tensor(counts, dtype=torch.float64, device=device)
            acc[0] = (torch.stack(losses).to(torch.float64) * n).sum()
            acc[1] = n.sum()
        self.strategy.all_reduce_sum(acc)
        return {
            "train_loss": float(acc[0] / acc[1]) if acc[1] > 0 else math.nan,
            "samples": float(acc[1]),
        }

    def fit(self, resume_from: Path | None = None) -> FitResult:
        """Train until ``epochs`` or early stopping.

        Args:
            resume_from: Checkpoint to continue from (exactly where it stopped).

        Returns:
            The :class:`FitResult`; the model holds the last state (use
            :meth:`restore_best` for the best one).
        """
        t0 = time.perf_counter()
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        for cb in self.callbacks:
            cb.on_fit_start(self)
        while self.epoch < self.epochs and not self.should_stop:
            self.epoch += 1
            for cb in self.callbacks:
                cb.on_epoch_start(self, self.epoch)
            metrics: dict[str, float] = {"epoch": float(self.epoch)}
            metrics.update(self._train_epoch())
            if not self.val_every and not self.should_stop:
                metrics.update(self.validate())
            elif self.val_data is not None:  # validated within the epoch: report the latest
                metrics.update(self.last_val or self.validate())
                metrics[f"best_{self.monitor}"] = self.best
            if self.scheduler is not None:
                if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    value = self.best if self.val_every else metrics.get(self.monitor)
                    self.scheduler.step(metrics["train_loss"] if value is None else value)
                else:
                    self.scheduler.step()
            metrics["lr"] = float(self.optimizer.param_groups[0]["lr"])
            self.history.append(metrics)  # callbacks may add entries; checkpoints include them
            for cb in self.callbacks:
                cb.on_epoch_end(self, self.epoch, metrics)
        result = FitResult(
            epochs=self.epoch,
            steps=self.step,
            best=self.best,
            best_step=self.best_step,
            history=list(self.history),
            stopped_early=self.should_stop,
            wall_s=time.perf_counter() - t0,
        )
        for cb in self.callbacks:
            cb.on_fit_end(self, result)
        return result

    def restore_best(self) -> nn.Module:
        """Load the best validated state into the model (if any) and return the bare model."""
        if self.best_state is not None:
            self.bare_model.load_state_dict(copy.deepcopy(self.best_state))
        return self.bare_model

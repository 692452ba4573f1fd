"""Build optimizers, schedulers, callbacks and a :class:`Trainer` from a config."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from twins.config import RunConfig, to_yaml
from twins.config.schema import OptimizerConfig, SchedulerConfig
from twins.task import Splits, Task
from twins.train.callbacks import Callback, Checkpointing, EarlyStopping, ProgressBar
from twins.train.dist import Strategy
from twins.train.loop import Trainer


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def optimizer_factory(cfg: OptimizerConfig) -> Callable[[nn.Module], torch.optim.Optimizer]:
    """A function building the configured optimizer for a model's parameters."""

    def make(model: nn.Module) -> torch.optim.Optimizer:
        params = model.parameters()
        if cfg.name == "adam":
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.name == "adamw":
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )

    return make


def scheduler_factory(cfg: SchedulerConfig, epochs: int) -> Callable[[Any], Any] | None:
    """A function building the configured LR scheduler, or ``None`` for a constant rate."""
    if cfg.name == "none":
        return None

    def make(opt: torch.optim.Optimizer) -> Any:
        if cfg.name == "step":
            return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
        if cfg.name == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=cfg.gamma, patience=cfg.patience
        )

    return make


def build_trainer(
    cfg: RunConfig,
    task: Task,
    strategy: Strategy,
    splits: Splits | None = None,
    extra_callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
) -> Trainer:
    """Assemble the trainer a config describes.

    The model is built after seeding with ``cfg.seed``, so every rank starts
    from the same weights. Callbacks run in this order: ``extra_callbacks``
    (energy, tracking, ...), early stopping, checkpointing, progress.
    """
    splits = splits or task.splits()
    seed_everything(cfg.seed)
    model = task.build_model()
    t = cfg.train
    callbacks: list[Callback] = list(extra_callbacks)
    if t.early_stop_patience:
        callbacks.append(EarlyStopping(t.early_stop_patience))
    callbacks.append(Checkpointing(cfg.run_dir / "checkpoints", t.checkpoint_every))
    callbacks.append(ProgressBar(enabled=progress if t.progress else False))
    return Trainer(
        model,
        task.loss,
        optimizer_factory(t.optimizer),
        splits.train,
        splits.val,
        strategy,
        epochs=t.epochs,
        batch_size=t.batch_size,
        seed=cfg.seed,
        scheduler_fn=scheduler_factory(t.scheduler, t.epochs),
        callbacks=callbacks,
        val_every=t.val_every,
        monitor=t.monitor,
        grad_clip=t.grad_clip,
        max_steps_per_epoch=t.max_steps_per_epoch,
        num_workers=t.num_workers,
        config_yaml=to_yaml(cfg),
        train_counts=splits.train_counts,
    )

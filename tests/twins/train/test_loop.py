"""The trainer against a plain torch loop, resume, early stopping and validation cadence."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from twins.config import load_config
from twins.config.schema import OptimizerConfig
from twins.examples.toy import ToyParams, ToyRegression
from twins.task import build_task
from twins.train.build import build_trainer, optimizer_factory, seed_everything
from twins.train.callbacks import Callback
from twins.train.dist import Strategy
from twins.train.loop import Trainer


def toy(**kw: object) -> ToyRegression:
    return ToyRegression(ToyParams(**{"length": 500, "window": 8, "hidden": 16, **kw}), seed=2)


def test_trainer_equals_plain_torch_loop() -> None:
    task = toy()
    splits = task.splits()
    seed_everything(5)
    model = task.build_model()
    trainer = Trainer(
        model,
        task.loss,
        optimizer_factory(OptimizerConfig(lr=1e-2)),
        splits.train,
        None,
        Strategy(),
        epochs=3,
        batch_size=32,
        seed=9,
    )
    trainer.fit()

    # the same training written out by hand: same init, same per-epoch permutation, Adam
    seed_everything(5)
    ref = task.build_model()
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    n = len(splits.train)
    for epoch in range(1, 4):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(9 + epoch))
        for idx in torch.split(order, 32):
            x = torch.stack([splits.train[i][0] for i in idx.tolist()])
            y = torch.stack([splits.train[i][1] for i in idx.tolist()])
            loss = nn.functional.mse_loss(ref(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for (k, a), b in zip(
        trainer.bare_model.state_dict().items(), ref.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k  # identical operations in identical order: bit-equal


class Interrupt(Callback):
    """Kills the run right after the checkpoint of ``epoch`` is written."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _cfg(tmp_path: Path, name: str, **extra: str) -> object:
    over = [
        f"workdir={tmp_path}",
        f"name={name}",
        "train.epochs=5",
        "train.batch_size=16",
        "task.params.length=400",
        "task.params.dropout=0.2",
        "train.scheduler.name=step",
        "train.scheduler.step_size=2",
        "train.early_stop_patience=50",
    ]
    return load_config(None, over + [f"{k}={v}" for k, v in extra.items()])


def test_resume_after_kill_gives_the_same_weights(tmp_path: Path) -> None:
    straight_cfg = _cfg(tmp_path, "straight")
    task = build_task(straight_cfg)
    straight = build_trainer(straight_cfg, task, Strategy(), progress=False)
    straight.fit()

    cut_cfg = _cfg(tmp_path, "cut")
    first = build_trainer(cut_cfg, build_task(cut_cfg), Strategy(), progress=False)
    first.callbacks.insert(len(first.callbacks) - 1, Interrupt(2))
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    torch.manual_seed(12345)  # the process that resumes starts with other RNG states
    resumed = build_trainer(cut_cfg, build_task(cut_cfg), Strategy(), progress=False)
    result = resumed.fit(resume_from=tmp_path / "cut" / "checkpoints" / "last.pt")
    assert result.epochs == 5 and len(result.history) == 5
    for (k, a), b in zip(
        straight.bare_model.state_dict().items(),
        resumed.bare_model.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), k  # dropout, shuffling, Adam moments and LR schedule restored
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]
    assert [h["train_loss"] for h in result.history] == [h["train_loss"] for h in straight.history]


def test_early_stopping_and_best_state(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            f"workdir={tmp_path}",
            "train.epochs=30",
            "train.early_stop_patience=2",
            "train.optimizer.lr=0.5",
            "train.optimizer.name=sgd",
            "task.params.length=300",
        ],
    )
    trainer = build_trainer(cfg, build_task(cfg), Strategy(), progress=False)
    result = trainer.fit()
    assert result.stopped_early and result.epochs < 30
    vals = [h["val_loss"] for h in result.history]
    assert result.best == min(vals)
    trainer.restore_best()
    again = trainer.evaluate(trainer.val_data, "val")["val_loss"]  # type: ignore[arg-type]
    assert math.isclose(again, result.best, rel_tol=1e-6)


def test_validation_every_n_steps_keeps_best_state(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            f"workdir={tmp_path}",
            "train.epochs=2",
            "train.val_every=5",
            "task.params.length=400",
            "train.batch_size=16",
        ],
    )
    seen: list[int] = []

    class Count(Callback):
        def on_validation_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
            seen.append(trainer.step)

    trainer = build_trainer(
        cfg, build_task(cfg), Strategy(), extra_callbacks=[Count()], progress=False
    )
    result = trainer.fit()
    assert seen == list(range(5, result.steps + 1, 5))
    assert result.best_step in seen
    assert "best_val_loss" in result.history[-1]
    # the epoch reports the latest validation too (what Tune's scheduler reads each epoch)
    assert result.history[-1]["val_loss"] == trainer.last_val["val_loss"]


def test_model_learns_toward_the_noise_floor(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            f"workdir={tmp_path}",
            "train.epochs=15",
            "train.optimizer.lr=3.0e-3",
            "task.params.length=3000",
        ],
    )
    task = build_task(cfg)
    trainer = build_trainer(cfg, task, Strategy(), progress=False)
    trainer.fit()
    m = task.evaluate(trainer.restore_best(), "test")
    # truth: the noise floor is 0.01; persistence is far worse (about 0.5 here)
    assert m["test_mse"] < 0.5 * m["test_persistence_mse"]
    assert m["test_mse"] < 5 * m["test_noise_floor_mse"]


def test_a_rank_holding_its_own_shard_draws_its_batches_from_it() -> None:
    """train_counts: the rank's data is its shard; one epoch sees each of its samples once,
    and counts that do not fit the rank's data are refused."""
    task = toy()
    splits = task.splits()
    n = len(splits.train)

    def trainer(counts: tuple[int, ...]) -> Trainer:
        return Trainer(
            task.build_model(),
            task.loss,
            optimizer_factory(OptimizerConfig(lr=1e-2)),
            splits.train,
            None,
            Strategy(),
            epochs=1,
            batch_size=32,
            seed=9,
            train_counts=counts,
        )

    sharded = trainer((n,))
    assert type(sharded.sampler).__name__ == "ShardedBatchSampler"
    assert sorted(i for batch in sharded.sampler for i in batch) == list(range(n))
    assert sharded.fit().steps == len(sharded.sampler)
    with pytest.raises(ValueError, match=rf"train_counts \[{n + 1}\] do not fit rank 0 of 1"):
        trainer((n + 1,))

"""Trainer overhead: the twins trainer against a bare torch loop, same model, data, seed.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_trainer_overhead.py [--repeats 5]``

Both loops train the same MLP on the same in-memory dataset with the same
global batch, read through a DataLoader; the twins side adds its sampler, loss
weighting, callbacks (energy meter, early stopping, per-epoch checkpoint) and
per-epoch validation is switched off so that only the training step is compared.
Prints the median time per step of each and their ratio (goal: <= 1.05).
Runs alternate between the two loops so drifting machine load hits both.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from twins.config.schema import OptimizerConfig
from twins.train.build import optimizer_factory, seed_everything
from twins.train.callbacks import Checkpointing, EarlyStopping
from twins.train.dist import Strategy
from twins.train.energy_cb import EnergyCallback
from twins.train.loop import Trainer


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1)
    )


def mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def bare(ds: TensorDataset, epochs: int, batch: int, seed: int) -> float:
    seed_everything(seed)
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(
        ds, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    steps = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    return (time.perf_counter() - t0) / steps


def ours(ds: TensorDataset, epochs: int, batch: int, seed: int, tmp: Path) -> float:
    seed_everything(seed)
    trainer = Trainer(
        make_model(),
        mse,
        optimizer_factory(OptimizerConfig(lr=1e-3)),
        ds,
        None,
        Strategy(),
        epochs=epochs,
        batch_size=batch,
        seed=seed,
        callbacks=[
            EnergyCallback(Path("/sys/class/powercap")),
            EarlyStopping(5),
            Checkpointing(tmp),
        ],
    )
    result = trainer.fit()
    return result.wall_s / result.steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, 64, generator=g)
    y = x[:, :1] * 0.5 + 0.1 * torch.randn(args.samples, 1, generator=g)
    ds = TensorDataset(x, y)
    b_times, o_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        bare(ds, 1, args.batch, 0)  # warm-up (first-call costs)
        ours(ds, 1, args.batch, 0, Path(tmp))
        for r in range(args.repeats):
            b_times.append(bare(ds, args.epochs, args.batch, r))
            o_times.append(ours(ds, args.epochs, args.batch, r, Path(tmp)))
    b, o = statistics.median(b_times), statistics.median(o_times)
    print(f"bare torch loop : {b * 1e3:.3f} ms/step (median of {args.repeats})")
    print(f"twins trainer   : {o * 1e3:.3f} ms/step (median of {args.repeats})")
    print(f"ratio trainer/bare: {o / b:.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()

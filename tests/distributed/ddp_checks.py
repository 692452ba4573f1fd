"""Run under ``torchrun --standalone --nproc_per_node=2``; each rank writes its findings.

Usage: ``torchrun --standalone --nproc_per_node=2 ddp_checks.py OUTDIR``. Rank ``r``
writes ``OUTDIR/rank{r}.json`` (collective results) and ``OUTDIR/rank{r}.pt``
(gradients after one DDP backward and weights after DDP training); rank 0 also
writes ``OUTDIR/single.pt`` with the weights of the same training in one process.
The pytest side (test_torchrun.py) asserts on them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from twins.config.schema import OptimizerConfig
from twins.examples.toy import ToyParams, ToyRegression
from twins.train.build import optimizer_factory, seed_everything
from twins.train.dist import Strategy, detect_env, make_strategy
from twins.train.loop import Trainer
from twins.train.sampler import GlobalBatchSampler, shard_indices


def train_weights(strategy: Strategy, epochs: int = 2) -> dict[str, torch.Tensor]:
    task = ToyRegression(ToyParams(length=600, window=8, hidden=16), seed=3)
    splits = task.splits()
    seed_everything(11)
    model = task.build_model()
    trainer = Trainer(
        model,
        task.loss,
        optimizer_factory(OptimizerConfig(name="adam", lr=1e-2)),
        splits.train,
        splits.val,
        strategy,
        epochs=epochs,
        batch_size=30,
        seed=5,
    )
    trainer.fit()
    return {k: v.detach().clone() for k, v in trainer.bare_model.state_dict().items()}


def main(out: Path) -> None:
    torch.set_num_threads(1)
    env = detect_env()
    strategy = make_strategy("auto")
    rank, world = strategy.rank, strategy.world_size
    res: dict = {
        "env": env.__dict__,
        "rank": rank,
        "world": world,
        "local_rank": strategy.local_rank,
        "backend": dist.get_backend(),
    }
    res["ranks_gathered"] = strategy.all_gather_object((rank, strategy.local_rank, os.getpid()))
    t = torch.tensor([float(rank + 1)])
    gathered = [torch.zeros(1) for _ in range(world)]
    dist.all_gather(gathered, t)
    res["all_gather"] = [float(g) for g in gathered]
    res["all_reduce"] = float(strategy.all_reduce_sum(torch.tensor([float(rank + 1)])))
    # barrier ordering: rank 1 is late before the barrier; nobody may pass it early
    log = out / "barrier.log"
    if rank == 1:
        time.sleep(0.5)
    with log.open("a") as fh:
        fh.write(f"before {rank} {time.time():.6f}\n")
    strategy.barrier()
    with log.open("a") as fh:
        fh.write(f"after {rank} {time.time():.6f}\n")
    # sampler shards over two epochs
    shards = {}
    for epoch in (0, 1):
        s = GlobalBatchSampler(103, 10, rank, world, shuffle=True, seed=1)
        s.set_epoch(epoch)
        shards[epoch] = [i for b in s for i in b]
    res["train_shards"] = strategy.all_gather_object(shards)
    res["eval_shard"] = strategy.all_gather_object(list(shard_indices(103, rank, world)))
    # gradients after one DDP backward on different data per rank
    seed_everything(11)
    model = ToyRegression(ToyParams(window=8, hidden=16)).build_model()
    ddp = strategy.wrap(model)
    g = torch.Generator().manual_seed(100 + rank)
    x, y = torch.randn(8, 16, generator=g), torch.randn(8, 1, generator=g)
    torch.nn.functional.mse_loss(ddp(x), y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    weights = train_weights(strategy)
    torch.save({"grads": grads, "weights": weights}, out / f"rank{rank}.pt")
    if rank == 0:
        torch.save(train_weights(Strategy()), out / "single.pt")
    (out / f"rank{rank}.json").write_text(json.dumps(res))
    strategy.barrier()
    strategy.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

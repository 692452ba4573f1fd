"""The drought task under torchrun with 2 gloo ranks from a Zarr cube store: each rank
trains on its own chunks of cells (over the training months only), the shards are
disjoint and complete, and the ranks step together through every sample once per epoch."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hydrology.cubestore import open_cube
from hydrology.dataset import DEFAULT_SPLITS, build_cube
from hydrology.samples import CellDataset
from hydrology.sharding import shard_counts, shard_positions
from hydrology.synthetic import generate
from twins.train.sampler import ShardedBatchSampler

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

CONFIG = Path(__file__).resolve().parents[2] / "hydrology" / "configs" / "tiny.yaml"
BATCH = 128


def test_ddp_ranks_train_on_disjoint_chunks_of_the_store(tmp_path: Path) -> None:
    overrides = [
        f"workdir={tmp_path}",
        "name=ddp",
        "tracking.enabled=false",
        "task.params.store=zarr",
        # a chunk of dynamic inputs of ~11 cells (96 months x 12 features x 4 bytes each):
        # the tiny grid's 108 cells in 10 chunks, 5 per rank
        "task.params.chunk_mb=0.05",
        "task.params.members=1",
        "train.epochs=1",
        f"train.batch_size={BATCH}",
        "train.val_every=0",
        "train.progress=false",
    ]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, "-m", "twins", "train", str(CONFIG), *overrides],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["launcher"] == "torchrun"

    stores = [p for p in (tmp_path / "cubes").iterdir() if p.suffix not in (".lock", ".json")]
    assert len(stores) == 1, stores
    ds = open_cube(stores[0])
    n, chunk = ds.sizes["cell"], int(ds["dynamic"].chunks[0][0])
    assert -(-n // chunk) >= 4  # several chunks per rank
    # each rank logged its cells: whole chunks, disjoint, together every cell
    shards = {
        int(m[1]): (int(m[2]), int(m[3]))
        for m in re.finditer(r"rank (\d)/2: cells (\d+)\.\.(\d+)", proc.stderr)
    }
    assert sorted(shards) == [0, 1], proc.stderr[-3000:]
    for r, (first, last) in shards.items():
        expect = shard_positions(n, chunk, r, 2)
        assert (first, last + 1) == (expect.start, expect.stop)
    assert shards[0][1] + 1 == shards[1][0] and shards[1][1] == n - 1
    # each rank held its own samples, together those of the whole training split
    counts = shard_counts(ds, "train", 12, 2)
    held = {
        int(m[2]): int(m[1])
        for m in re.finditer(r"samples: train (\d+) \(rank (\d) of 2\)", proc.stderr)
    }
    assert held == {0: counts[0], 1: counts[1]}
    whole = CellDataset(build_cube(generate("tiny"), DEFAULT_SPLITS["tiny"]), "train", 12)
    assert sum(counts) == len(whole)
    # one epoch: as many steps as spread every sample of every shard once
    assert summary["steps"] == len(ShardedBatchSampler(counts, BATCH, 0))
    assert math.isfinite(summary["test_loss"])

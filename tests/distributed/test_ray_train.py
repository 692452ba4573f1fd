"""The same trainer through Ray Train with 2 workers on a local Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from twins.config import load_config
from twins.train.dist import Strategy
from twins.train.run import train_process

pytestmark = [pytest.mark.distributed, pytest.mark.ray, pytest.mark.slow]


def test_ray_two_workers_match_one_process(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from twins.train.ray_backend import run_on_ray

    common = [
        f"workdir={tmp_path}",
        "train.epochs=2",
        "train.batch_size=32",
        "task.params.length=600",
        "task.params.hidden=16",
        "tracking.experiment=ray",
    ]
    cfg = load_config(
        None, [*common, "name=ray2", "distributed.backend=ray", "distributed.workers=2"]
    )
    summary = run_on_ray(cfg)
    assert summary["world_size"] == 2 and summary["launcher"] == "ray"
    assert summary["epochs"] == 2 and summary["test_loss"] > 0

    single = train_process(
        load_config(None, [*common, "name=one", "tracking.enabled=false"]),
        strategy=Strategy(),
        progress=False,
    )
    a = torch.load(tmp_path / "ray2" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "one" / "model.pt", weights_only=True)["model"]
    for k in a:  # same tolerance and reasoning as the torchrun equivalence test
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)
    assert abs(summary["test_loss"] - single["test_loss"]) < 1e-5

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.tags["twins.launcher"] == "ray"
    assert run.data.tags["twins.world_size"] == "2"
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2

"""The same trainer through Ray Train with 2 workers on a local Ray."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
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
    # The bound of the torchrun equivalence test (test_torchrun.py), for 26 steps (412
    # samples / 32, 2 epochs) at lr 1e-3: <= 26 * 2 * (7 u32) * 7.3 * 1e-3 = 1.6e-7 per
    # weight; atol 1e-5 keeps its margin for second-order effects.
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)
    # The test MSE (about 8: a model trained for 2 epochs) is evaluated the same way from
    # both sets of weights: each float32 batch mean carries <= 7 u32 * 8 = 3e-6 of
    # rounding, and the weights' first-order difference (1.6e-7) moves it by |dL/dw| times
    # that; 1e-5 is 1.3e-6 of the loss, a real difference (one wrong sample) is > 1e-3.
    assert abs(summary["test_loss"] - single["test_loss"]) < 1e-5

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.tags["twins.launcher"] == "ray"
    assert run.data.tags["twins.world_size"] == "2"
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _ray_head(log: Path, port: int) -> Iterator[None]:
    """A Ray head of its own, stopped by its process group alone.

    ``ray stop --force`` would end every Ray process on the machine: the other xdist
    workers' Ray sessions (their drivers die or wait forever on a dead GCS). The head runs
    with ``--block`` in a new session; its GCS, raylet and workers share its process group,
    which is terminated (then killed) at the end.
    """
    ray_bin = Path(sys.executable).parent / "ray"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    start = [
        str(ray_bin),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    with log.open("w") as out:
        head = subprocess.Popen(
            start, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 180
        while "block forever" not in log.read_text():
            assert head.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # whatever of the group is left
        head.wait(timeout=60)


def test_ray_joins_an_existing_cluster_with_address(tmp_path: Path) -> None:
    port = _free_port()
    with _ray_head(tmp_path / "ray-head.log", port):
        from twins.cli import main

        cfg = tmp_path / "run.yaml"
        cfg.write_text(
            f"name: joined\nworkdir: {tmp_path}\ntrain:\n  epochs: 1\n"
            "task:\n  params:\n    length: 300\ntracking:\n  enabled: false\n"
        )
        rc = main(
            [
                "train",
                str(cfg),
                "--backend",
                "ray",
                "--workers",
                "2",
                "--address",
                f"127.0.0.1:{port}",
            ]
        )
        assert rc == 0
        import json

        summary = json.loads((tmp_path / "joined" / "summary.json").read_text())
        assert summary["launcher"] == "ray" and summary["world_size"] == 2
        # the same through RAY_ADDRESS alone (what a KubeRay driver pod gets)
        os.environ["RAY_ADDRESS"] = f"127.0.0.1:{port}"
        try:
            rc = main(["train", str(cfg), "name=joined-env", "--backend", "ray", "--workers", "2"])
        finally:
            del os.environ["RAY_ADDRESS"]
        assert rc == 0
        assert (tmp_path / "joined-env" / "summary.json").is_file()
        # a Tune study joins the same cluster through RAY_ADDRESS (as KubeRay drivers do):
        # its trials run there, the study is written here
        space = Path(__file__).resolve().parents[2] / "twins" / "tune" / "spaces" / "toy.yaml"
        os.environ["RAY_ADDRESS"] = f"127.0.0.1:{port}"
        try:
            rc = main(
                [
                    "tune",
                    str(space),
                    f"workdir={tmp_path}",
                    "name=joined-study",
                    "task.params.length=300",
                    "train.epochs=2",
                    "tune.num_samples=2",
                    "tracking.enabled=false",
                ]
            )
        finally:
            del os.environ["RAY_ADDRESS"]
        assert rc == 0
        study = tmp_path / "joined-study"
        rows = (study / "trials.csv").read_text().strip().splitlines()
        assert len(rows) == 3, rows  # header + 2 trials
        assert (study / "best.yaml").is_file()

"""train_process end to end: outputs on disk, tracking outage, energy figures."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest
import torch

from twins.config import load_config
from twins.train.run import train_process


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_broken_tracking_uri_does_not_stop_training(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri = f"http://127.0.0.1:{_dead_port()}"
    cfg = load_config(
        None,
        [
            f"workdir={tmp_path}",
            "name=dead",
            "train.epochs=2",
            "task.params.length=300",
            f"tracking.uri={uri}",
            "tracking.register_model=never",
        ],
    )
    with caplog.at_level(logging.WARNING):
        summary = train_process(cfg, progress=False)
    assert summary["epochs"] == 2 and summary["model_version"] is None
    assert (tmp_path / "dead" / "model.pt").is_file()
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records if r.levelno >= 30)


def test_outputs_config_and_energy(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            f"workdir={tmp_path}",
            "name=out",
            "train.epochs=2",
            "task.params.length=300",
            "tracking.enabled=false",
            "energy.estimate_watts_per_core=4.0",
        ],
    )
    summary = train_process(cfg, progress=False)
    run = tmp_path / "out"
    assert load_config(run / "config.yaml") == cfg  # the resolved config is stored with the run
    saved = json.loads((run / "summary.json").read_text())
    assert saved["config_hash"] == summary["config_hash"]
    energy = saved["energy"]
    assert energy["energy_cpu_s"] > 0 and "energy_j" not in energy  # no counter here
    # one report: estimated_j = cpu_s * 4.0, one float64 product, stored with repr (exact)
    assert energy["energy_estimated_j"] == pytest.approx(4.0 * energy["energy_cpu_s"], rel=1e-15)
    model = torch.load(run / "model.pt", weights_only=True)
    assert (
        "config" in model
        and load_config(None, base=__import__("yaml").safe_load(model["config"])) == cfg
    )  # the config travels with the model
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["config"] == model["config"]

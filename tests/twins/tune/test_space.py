"""The tune: section of study configs: distributions, loading, clear errors."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from twins.config import load_config, to_yaml
from twins.errors import ConfigError
from twins.tune.space import (
    Choice,
    LogUniform,
    RandInt,
    apply_sample,
    load_study,
    sample_point,
    split_study,
    to_tune_space,
)

SPACES = Path(__file__).resolve().parents[3] / "twins" / "tune" / "spaces"


def _toy() -> dict[str, Any]:
    return yaml.safe_load((SPACES / "toy.yaml").read_text())


def _error(space: dict[str, Any], **tune: Any) -> str:
    data = _toy()
    data["tune"]["space"] = space
    data["tune"].update(tune)
    with pytest.raises(ConfigError) as info:
        split_study(data, "study.yaml")
    return str(info.value)


def test_toy_space_loads_and_samples() -> None:
    cfg, tune_cfg = load_study(SPACES / "toy.yaml")
    assert cfg.task.target == "twins.examples.toy:ToyRegression"
    assert tune_cfg.scheduler.name == "asha" and tune_cfg.searcher == "random"
    space = tune_cfg.space
    assert isinstance(space["train.optimizer.lr"], LogUniform)
    assert isinstance(space["task.params.hidden"], Choice)
    assert isinstance(space["train.batch_size"], RandInt)
    rng = random.Random(0)
    for _ in range(20):
        point = sample_point(space, rng)
        trial = apply_sample(cfg, point)
        assert 1e-4 <= trial.train.optimizer.lr < 3e-2
        assert trial.task.params["hidden"] in (8, 16, 32)
        assert 16 <= trial.train.batch_size <= 64
    # the trial config round-trips through YAML like any run config
    assert load_config(None, base=yaml.safe_load(to_yaml(trial))) == trial


def test_tune_space_is_ray_space() -> None:
    from ray import tune

    _, tune_cfg = load_study(SPACES / "toy.yaml")
    space = to_tune_space(tune_cfg.space)
    assert isinstance(space["train.optimizer.lr"], tune.search.sample.Float)
    assert isinstance(space["train.batch_size"], tune.search.sample.Integer)
    assert space["train.batch_size"].upper == 65  # inclusive high, Tune's bound is exclusive


@pytest.mark.parametrize("name", ["drought", "noise"])
def test_domain_spaces_validate(name: str) -> None:
    cfg, tune_cfg = load_study(SPACES / f"{name}.yaml")  # checks keys and both corners
    rng = random.Random(1)
    for _ in range(5):
        apply_sample(cfg, sample_point(tune_cfg.space, rng))
    if name == "drought":
        assert cfg.task.target == "hydrology.task:DroughtForecast"
        assert {"task.params.hidden", "task.params.dropout", "train.optimizer.lr"} <= set(
            tune_cfg.space
        )
    else:
        assert cfg.task.target == "gravwave.task:NoiseCleaning"


def test_overrides_reach_both_sections() -> None:
    cfg, tune_cfg = load_study(SPACES / "toy.yaml", ["train.epochs=2", "tune.num_samples=3"])
    assert cfg.train.epochs == 2 and tune_cfg.num_samples == 3


def test_unknown_distribution_names_the_key() -> None:
    msg = _error({"train.optimizer.lr": {"dist": "gaussian", "low": 1, "high": 2}})
    assert "study.yaml: tune.space['train.optimizer.lr']" in msg
    assert "unknown distribution 'gaussian'" in msg and "loguniform" in msg


def test_low_above_high_names_the_key() -> None:
    msg = _error({"train.batch_size": {"dist": "randint", "low": 64, "high": 16}})
    assert "tune.space['train.batch_size']" in msg
    assert "low (64) must be less than high (16)" in msg


def test_log_distribution_needs_positive_low() -> None:
    msg = _error({"train.optimizer.lr": {"dist": "loguniform", "low": 0.0, "high": 0.1}})
    assert "tune.space['train.optimizer.lr']" in msg and "> 0" in msg


def test_unknown_dotted_key() -> None:
    msg = _error({"train.optimiser.lr": {"dist": "uniform", "low": 0.1, "high": 0.2}})
    assert "tune.space['train.optimiser.lr']: unknown key" in msg


def test_value_invalid_for_the_run_config() -> None:
    msg = _error({"task.params.hidden": {"dist": "randint", "low": 0, "high": 8}})
    assert "tune.space['task.params.hidden']: value 0 is invalid" in msg


def test_unknown_tune_key_and_missing_section() -> None:
    assert "tune.trials: unknown key" in _error(
        {"train.batch_size": {"dist": "choice", "values": [8]}}, trials=3
    )
    data = _toy()
    del data["tune"]
    with pytest.raises(ConfigError, match="no 'tune:' section"):
        split_study(data, "study.yaml")
    assert "values" in _error({"train.batch_size": {"dist": "choice", "values": []}})


def test_cli_reports_a_bad_space_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from twins.cli import main

    data = _toy()
    data["tune"]["space"]["train.batch_size"] = {"dist": "randint", "low": 64, "high": 16}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert main(["tune", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("twins: error: ") and "tune.space['train.batch_size']" in err[0]
    assert "Traceback" not in "".join(err)


def test_cli_register_adds_both_commands() -> None:
    import argparse

    from twins.tune.cli import cmd_report, cmd_tune, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["tune", "s.yaml", "train.epochs=2", "--resume", "--address", "a"])
    assert args.func is cmd_tune and args.resume and args.address == "a"
    assert args.overrides == ["train.epochs=2"]
    args = parser.parse_args(["report", "hpo", "runs/toy-study", "--seeds", "4"])
    assert args.func is cmd_report and args.seeds == 4 and args.kind == "hpo"


def test_best_yaml_with_long_sampled_values_loads_back(tmp_path: Path) -> None:
    """The header lists every sampled value as a comment, however long (was a YAML bug)."""
    from twins.config import load_config
    from twins.tune.study import best_yaml_text

    cfg = load_config(None, ["name=s-best"])
    overrides = {
        "task.params.dropout": 0.2917986243935994,
        "task.params.hidden": 32,
        "train.batch_size": 128,
        "train.optimizer.lr": 0.002018348701669498,
    }
    path = tmp_path / "best.yaml"
    path.write_text(best_yaml_text(cfg, "best of study s: best_val_loss 0.77242", overrides))
    assert load_config(path) == cfg
    assert path.read_text().startswith("# best of study s")

"""Config: strict validation, overrides, one-line errors naming key and file, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from twins.config import config_hash, load_config, to_yaml
from twins.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


def test_defaults_and_task_params_resolved(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "name: a\ntrain:\n  epochs: 3\n"))
    assert cfg.train.epochs == 3
    assert cfg.task.params["window"] == 16  # task defaults filled in
    again = load_config(write(tmp_path, to_yaml(cfg)))
    assert again == cfg and config_hash(again) == config_hash(cfg)


def test_overrides_are_typed(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, "name: a\n"),
        ["train.epochs=7", "train.optimizer.lr=1.0e-2", "task.params.hidden=8", "seed=3"],
    )
    assert (cfg.train.epochs, cfg.train.optimizer.lr, cfg.seed) == (7, 0.01, 3)
    assert cfg.task.params["hidden"] == 8
    assert config_hash(cfg) != config_hash(load_config(write(tmp_path, "name: a\n")))


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        ("train:\n  epochz: 3\n", [], "run.yaml: train.epochz: unknown key"),
        (
            "train:\n  epochs: three\n",
            [],
            "run.yaml: train.epochs: Input should be a valid integer",
        ),
        ("train:\n  epochs: 0\n", [], "train.epochs: Input should be greater than or equal to 1"),
        ("task:\n  params:\n    windw: 3\n", [], "run.yaml: task.params.windw: unknown key"),
        ("task:\n  target: nowhere.mod:X\n", [], "task.target: cannot import 'nowhere.mod'"),
        (
            "task:\n  target: twins\n",
            [],
            "task.target: Value error, expected 'package.module:Class'",
        ),
        ("[1, 2]\n", [], "expected a mapping of sections"),
        ("train: [\n", [], "not valid YAML"),
        ("name: a\n", ["train.epochs=abc"], "override 'train.epochs=abc': train.epochs"),
        ("name: a\n", ["train.nope=1"], "override 'train.nope=1': train.nope: unknown key"),
        ("name: a\n", ["train.epochs"], "bad override 'train.epochs'"),
        ("name: a\n", ["name.x=1"], "bad override 'name.x=1': name is not a section"),
    ],
)
def test_errors_name_key_and_source(
    tmp_path: Path, text: str, overrides: list[str], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), overrides)
    msg = str(info.value)
    assert expected in msg
    assert "\n" not in msg


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="config file /no/such.yaml not found"):
        load_config("/no/such.yaml")


def test_cli_config_error_is_one_line_exit_2(tmp_path: Path) -> None:
    cfg = write(tmp_path, "train:\n  epochz: 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "twins", "config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"twins: error: {cfg}: train.epochz: unknown key"
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "twins", "train", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "not found" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_config_prints_resolved_yaml(tmp_path: Path) -> None:
    cfg = write(tmp_path, "name: a\n")
    proc = subprocess.run(
        [sys.executable, "-m", "twins", "config", str(cfg), "train.epochs=2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "epochs: 2" in proc.stdout and proc.stdout.startswith("# config hash ")

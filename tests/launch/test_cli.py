"""``twins launch``: preview by default, strict launch section, dry-run-derived resources."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from twins.errors import ConfigError
from twins.launch.cli import register


def _run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="twins")
    register(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(
        f"name: clitest\nworkdir: {tmp_path}\n"
        "train:\n  epochs: 1\n  batch_size: 32\n  progress: false\n"
        "task:\n  params:\n    length: 400\n    hidden: 8\n"
        "tracking:\n  enabled: false\n"
        "launch:\n  slurm:\n    account: proj42\n    modules: [CUDA/12.4]\n"
        "  k8s:\n    image: ghcr.io/x/twins:1.0\n"
    )
    return path


def test_slurm_preview_with_dry_run(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["launch", "slurm", str(cfg), "--tasks-per-node", "2", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --account=proj42" in out and "# dry run:" in out
    assert "--nproc_per_node=2" in out and "module load CUDA/12.4" in out
    assert "#SBATCH --time=00:1" in out  # a tiny projection + 10 min pad


def test_slurm_overrides_and_output_file(cfg: Path, tmp_path: Path) -> None:
    out = tmp_path / "job.sbatch"
    argv = ["launch", "slurm", str(cfg), "launch.slurm.mem=8G", "train.epochs=2"]
    assert _run([*argv, "--time", "00:20:00", "--nodes", "2", "-o", str(out)]) == 0
    text = out.read_text()
    assert "--mem=8G" in text and "--time=00:20:00" in text and "--nodes=2" in text
    assert "# dry run" not in text  # time and mem given: no dry run
    assert "train.epochs=2" in text and "launch.slurm" not in text.split("#SBATCH")[-1]


def test_launch_typo_is_a_config_error(cfg: Path) -> None:
    with pytest.raises(ConfigError, match=r"launch\.slurm\.acount"):
        _run(["launch", "slurm", str(cfg), "launch.slurm.acount=x", "--time", "00:10:00"])
    with pytest.raises(ConfigError, match="time"):
        _run(["launch", "slurm", str(cfg), "--time", "1h"])


def test_twin_update_script(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["launch", "slurm", str(cfg), "launch.slurm.twin_every=30minutes"]
    assert _run([*argv, "--kind", "twin-update", "--twin", "/t"]) == 0
    out = capsys.readouterr().out
    assert "twin update /t" in out and "--begin=now+30minutes" in out


def test_k8s_interlink(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["launch", "k8s", str(cfg), "--interlink", "--nodes", "2"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Service", "Job"]
    pod = docs[2]["spec"]["template"]["spec"]
    assert pod["tolerations"][0]["key"] == "virtual-node.interlink/no-schedule"
    assert pod["containers"][0]["image"] == "ghcr.io/x/twins:1.0"


def test_submit_without_sbatch_is_a_clear_error(cfg: Path, monkeypatch) -> None:  # noqa: ANN001
    from twins.errors import TwinsError

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TwinsError, match="not a Slurm submit host"):
        _run(["launch", "slurm", str(cfg), "--time", "00:10:00", "--submit", "--no-dryrun"])

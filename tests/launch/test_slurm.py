"""Rendering of sbatch scripts: strict config, resources from a dry run, shell validity."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from twins.errors import ConfigError, TwinsError
from twins.launch.models import LaunchConfig, SlurmConfig
from twins.launch.slurm import hms, render_sbatch, submit

REPORT = SimpleNamespace(total_s=3000.0, peak_rss_mib=1000.0, steps_per_epoch=100)
FULL = SlurmConfig(
    account="proj42",
    partition="gpu",
    nodes=2,
    tasks_per_node=4,
    gpus_per_node=4,
    cpus_per_process=8,
    modules=["Stages/2025", "CUDA/12.4"],
    purge_modules=True,
    venv=Path("/opt/venv"),
    container={"image": "docker://ghcr.io/x/twins:1.0", "nv": True, "binds": ["/scratch"]},
    env={"NCCL_DEBUG": "WARN", "ODD": "it's $HOME; rm -rf /"},
    sbatch_extra=["--exclusive", "--constraint=a100"],
    twin_every="1hour",
)


@pytest.mark.parametrize("kind", ["torchrun", "ray", "twin-update"])
@pytest.mark.parametrize("slurm", [SlurmConfig(time="00:30:00"), FULL], ids=["min", "full"])
def test_scripts_are_valid_shell(
    kind: str, slurm: SlurmConfig, check_shell: Callable[[str], None]
) -> None:
    script = render_sbatch(kind, "cfg dir/run.yaml", slurm, REPORT, twin_dir="/twins/t1")
    check_shell(script)
    assert script.startswith("#!/bin/bash\n#SBATCH ")
    assert "--cpus-per-gpu" not in script  # not portable (itwinai #415)


def test_torchrun_recipe() -> None:
    s = render_sbatch("torchrun", "run.yaml", FULL, REPORT, overrides=["train.epochs=3"])
    assert "#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n#SBATCH --cpus-per-task=32" in s
    assert "#SBATCH --gres=gpu:4" in s and "#SBATCH --account=proj42" in s
    assert "srun --ntasks-per-node=1" in s
    assert '--nnodes="$SLURM_NNODES" --nproc_per_node=4 --rdzv_backend=c10d' in s
    assert '--rdzv_id="$SLURM_JOB_ID"' in s and "-m twins train run.yaml train.epochs=3" in s
    assert "apptainer exec --nv --bind /scratch docker://ghcr.io/x/twins:1.0 python3" in s
    assert "module purge\nmodule load Stages/2025\nmodule load CUDA/12.4" in s
    assert "export ODD='it'\"'\"'s $HOME; rm -rf /'" in s  # quoted, not executed
    assert s.index("module load") < s.index("set -u")


def test_ray_recipe() -> None:
    s = render_sbatch("ray", "run.yaml", FULL, REPORT)
    assert 'srun --nodes=1 --ntasks=1 --overlap -w "$head"' in s
    assert "start --head" in s and "--block &" in s and '--exclude="$head"' in s
    assert 'twins train run.yaml --backend ray --address "$RAY_ADDRESS" --workers 8' in s
    tune = render_sbatch(
        "ray", "run.yaml", FULL.model_copy(update={"ray_command": "tune"}), REPORT
    )
    assert '-m twins tune run.yaml --address "$RAY_ADDRESS"' in tune
    # on exit Ray is stopped on every node (a killed head leaves a stale cluster record)
    assert 'srun --nodes="$SLURM_NNODES"' in s and "stop --force" in s


def test_twin_update_recurs_and_ignores_training_projection() -> None:
    s = render_sbatch("twin-update", "run.yaml", FULL, REPORT, twin_dir="/twins/t1")
    assert "#SBATCH --nodes=1" in s and "--gres" not in s
    assert "twin update /twins/t1" in s
    assert "sbatch --begin=now+1hour --dependency=singleton" in s
    assert "#SBATCH --time=01:00:00" in s  # default, not the training projection
    once = render_sbatch("twin-update", "x", SlurmConfig(), twin_dir="/t")
    assert "sbatch --begin" not in once
    with pytest.raises(ConfigError, match="twin directory"):
        render_sbatch("twin-update", "x", SlurmConfig())


def test_resources_from_dry_run() -> None:
    s = render_sbatch("torchrun", "run.yaml", SlurmConfig(tasks_per_node=2), REPORT)
    # 3000 s x 1.5 + 10 min = 5100 s -> 85 min
    assert "#SBATCH --time=01:25:00" in s
    # 1000 MiB x 2 processes x 1.5 + 1024
    assert "#SBATCH --mem=4024M" in s and "#SBATCH --cpus-per-task=2" in s
    given = SlurmConfig(tasks_per_node=2, time="2-00:00:00", mem="64G", cpus_per_task=16)
    s = render_sbatch("torchrun", "run.yaml", given, REPORT)
    assert "--time=2-00:00:00" in s and "--mem=64G" in s and "--cpus-per-task=16" in s
    with pytest.raises(ConfigError, match="no walltime"):
        render_sbatch("torchrun", "run.yaml", SlurmConfig())


def test_hms() -> None:
    assert hms(1) == "00:01:00" and hms(3601) == "01:01:00" and hms(90000) == "1-01:00:00"


@pytest.mark.parametrize(
    "bad",
    [
        {"acount": "x"},
        {"account": "a;b"},
        {"time": "1h"},
        {"time": "10:99:00"},
        {"mem": "4 GB"},
        {"modules": ["CUDA; rm -rf /"]},
        {"sbatch_extra": ["--exclusive; reboot"]},
        {"sbatch_extra": ["--time=01:00:00"]},
        {"sbatch_extra": ["-N 2"]},
        {"env": {"BAD-NAME": "x"}},
        {"container": {"image": "a b.sif"}},
        {"container": {"image": "x.sif", "nvv": True}},
        {"nodes": 0},
        {"twin_every": "hourly"},
    ],
)
def test_strict_config(bad: dict) -> None:
    with pytest.raises(ValidationError):
        SlurmConfig(**bad)


def test_launch_section_rejects_typos() -> None:
    with pytest.raises(ValidationError, match="slrum"):
        LaunchConfig.model_validate({"slrum": {}})
    with pytest.raises(ConfigError, match="unknown launch kind"):
        render_sbatch("mpi", "x", SlurmConfig(time="00:10:00"))


def test_submit_parses_job_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "sbatch"
    fake.write_text('#!/bin/sh\n[ "$1" = --parsable ] && echo "4242;cluster"\n')
    fake.chmod(0o755)
    assert submit("#!/bin/bash\ntrue\n", sbatch=str(fake)) == "4242"
    bad = tmp_path / "sbatch-bad"
    bad.write_text("#!/bin/sh\necho 'sbatch: error: Invalid account' >&2\nexit 1\n")
    bad.chmod(0o755)
    with pytest.raises(TwinsError, match="Invalid account"):
        submit("#!/bin/bash\n", sbatch=str(bad))
    with pytest.raises(TwinsError, match="not a Slurm submit host"):
        submit("#!/bin/bash\n", sbatch="no-such-sbatch-xyz")

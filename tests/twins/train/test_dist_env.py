"""Environment detection for torchrun, srun and plain processes."""

from __future__ import annotations

import pytest

from twins.errors import TwinsError
from twins.train.dist import detect_env, first_host, make_strategy


def test_plain_process_is_local() -> None:
    env = detect_env({})
    assert (env.launcher, env.rank, env.world_size) == ("local", 0, 1)


def test_torchrun_variables() -> None:
    env = detect_env(
        {
            "RANK": "3",
            "WORLD_SIZE": "8",
            "LOCAL_RANK": "1",
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "n1",
            "MASTER_PORT": "1234",
        }
    )
    assert (env.launcher, env.rank, env.world_size, env.local_rank) == ("torchrun", 3, 8, 1)
    assert (env.local_world_size, env.master_addr, env.master_port) == (2, "n1", 1234)


def test_srun_step_is_distributed() -> None:
    env = detect_env(
        {
            "SLURM_PROCID": "5",
            "SLURM_STEP_NUM_TASKS": "8",
            "SLURM_STEP_ID": "0",
            "SLURM_LOCALID": "1",
            "SLURM_STEP_NODELIST": "gpu[003-006]",
            "SLURM_STEP_TASKS_PER_NODE": "2(x4)",
            "SLURM_JOB_ID": "1234567",
        }
    )
    assert (env.launcher, env.rank, env.world_size, env.local_rank) == ("slurm", 5, 8, 1)
    assert env.master_addr == "gpu003" and env.local_world_size == 2
    assert env.master_port == 29500 + 567


def test_batch_script_or_salloc_shell_is_not_distributed() -> None:
    # sbatch sets SLURM_PROCID and SLURM_NTASKS but a plain `python` there is one process
    assert (
        detect_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_JOB_ID": "9"}).world_size == 1
    )
    batch_step = {"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_STEP_ID": "batch"}
    assert detect_env(batch_step).launcher == "local"


def test_torchrun_wins_over_slurm() -> None:
    env = detect_env(
        {
            "RANK": "1",
            "WORLD_SIZE": "2",
            "SLURM_PROCID": "0",
            "SLURM_STEP_NUM_TASKS": "4",
            "SLURM_STEP_ID": "0",
        }
    )
    assert env.launcher == "torchrun" and env.rank == 1


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [("n01", "n01"), ("gpu[003-005,009]", "gpu003"), ("a[7],b[1-2]", "a7"), ("c1,c2", "c1")],
)
def test_first_host(nodelist: str, host: str) -> None:
    assert first_host(nodelist) == host


def test_torchrun_backend_without_launcher_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TwinsError, match="RANK/WORLD_SIZE are not set"):
        make_strategy("torchrun", env=detect_env({}))
    assert make_strategy("auto", env=detect_env({})).world_size == 1

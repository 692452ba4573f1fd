"""compute.mode slurm: dask-jobqueue's SLURMCluster from launch.slurm, on the real local Slurm
(``conftest.py`` starts slurmctld/slurmd/munged per session, or skips with the reason), and
the mapping of launch.slurm onto the worker job, which needs no Slurm."""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

import dask.array as da
import psutil
import pytest
from dask_jobqueue import SLURMCluster

from twins.compute.cluster import dask_client
from twins.compute.config import ComputeConfig, slurm_mem_bytes
from twins.compute.slurm import ENDED, job_states, slurm_cluster_kwargs
from twins.errors import ConfigError
from twins.launch.models import ContainerConfig, SlurmConfig


def _compute(**kw: object) -> ComputeConfig:
    base: dict[str, object] = {
        "mode": "slurm",
        "threads_per_worker": 1,
        "memory_limit": "512MiB",
        "dashboard_address": ":0",
        "min_cluster_bytes": 0,
        "progress_every_s": 0.5,
        "worker_start_timeout_s": 90,
    }
    return ComputeConfig(**{**base, **kw})


def _wait_ended(cluster, job_ids: tuple[str, ...], timeout: float = 30.0) -> dict[str, str]:  # noqa: ANN001
    t_end = time.monotonic() + timeout
    states = job_states(job_ids, env=cluster.env)
    while time.monotonic() < t_end:
        states = job_states(job_ids, env=cluster.env)
        if all(s == "gone" or s.split()[0] in ENDED for s in states.values()):
            break
        time.sleep(0.5)
    return states


def _worker_processes(address: str) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "distributed.cli.dask_worker" in cmd and address in cmd:
            out.append(proc)
    return out


def test_launch_slurm_maps_onto_the_worker_job() -> None:
    slurm = SlurmConfig(
        account="proj1",
        partition="cpu",
        qos="short",
        job_name="prep",
        time="02:00:00",
        mem="16G",
        chdir=Path("/scratch/run"),
        output="/scratch/logs/twins-%j.out",
        modules=["Python/3.11.5", "HDF5/1.14"],
        purge_modules=True,
        venv=Path("/home/u/venv"),
        env={"HDF5_USE_FILE_LOCKING": "FALSE", "NOTE": "a b"},
        python="python3",
        sbatch_extra=["--constraint=fat"],
        nodes=4,  # training-job shape: not used for dask workers
        gpus_per_node=2,
    )
    compute = _compute(
        threads_per_worker=2,
        processes_per_job=4,
        memory_limit="auto",
        interface="ib0",
        local_directory=Path("/local/scratch"),
    )
    kw = slurm_cluster_kwargs(compute, slurm)
    assert kw["cores"] == 8 and kw["processes"] == 4
    assert kw["memory"] == 16 * 2**30  # launch.slurm.mem for the whole job ('G' is GiB)
    assert (kw["account"], kw["queue"], kw["walltime"]) == ("proj1", "cpu", "02:00:00")
    assert kw["job_name"] == "prep" and kw["python"] == "python3"
    assert kw["job_script_prologue"] == [
        "module purge",
        "module load Python/3.11.5",
        "module load HDF5/1.14",
        "source /home/u/venv/bin/activate",
        "export HDF5_USE_FILE_LOCKING=FALSE",
        "export NOTE='a b'",
    ]
    assert kw["job_extra_directives"] == [
        "--qos=short",
        "--chdir=/scratch/run",
        "--constraint=fat",
    ]
    assert kw["log_directory"] == "/scratch/logs" and kw["interface"] == "ib0"
    assert kw["local_directory"] == "/local/scratch"
    kw.pop("interface")  # this machine has no ib0
    with SLURMCluster(**kw) as cluster:
        script = cluster.job_script()
    for line in ("#SBATCH -A proj1", "#SBATCH -p cpu", "#SBATCH -t 02:00:00", "--mem=16G"):
        assert line in script
    assert "--nthreads 2 --memory-limit 4.00GiB --nworkers 4" in script
    assert "gres" not in script and "nodes" not in script
    # A per-worker limit sets the job's memory; no launch.slurm.mem needed.
    per_worker = slurm_cluster_kwargs(_compute(processes_per_job=2), SlurmConfig())
    assert per_worker["memory"] == 2 * 512 * 2**20 and "account" not in per_worker
    assert slurm_mem_bytes("4096") == 4096 * 2**20 and slurm_mem_bytes("2T") == 2 * 2**40


def test_what_cannot_make_a_worker_job_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match=r"launch.slurm.mem is unset") as err:
        slurm_cluster_kwargs(_compute(memory_limit="auto"), SlurmConfig())
    assert "\n" not in str(err.value)
    boxed = SlurmConfig(mem="4G", container=ContainerConfig(image="/img/twins.sif"))
    with pytest.raises(ConfigError, match=r"inside launch.slurm.container \(/img/twins.sif\)"):
        slurm_cluster_kwargs(_compute(), boxed)
    with pytest.raises(ConfigError) as err, dask_client(_compute(interface="nosuch0")):
        pass
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("compute.mode 'slurm': the dask scheduler cannot start: ")
    assert "'nosuch0' is not a valid network interface" in msg


@pytest.mark.timeout(300)
@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.slurm
def test_slurm_cluster_runs_workers_as_jobs_and_cancels_them(
    slurm_cluster,  # noqa: ANN001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    slurm = SlurmConfig(python=sys.executable, output=str(tmp_path / "logs" / "w-%j.out"))
    x = da.arange(400_000, chunks=20_000, dtype="f8")
    with (
        caplog.at_level(logging.INFO, logger="twins.compute"),
        dask_client(_compute(workers=1), slurm=slurm) as session,
    ):
        assert session.mode == "slurm" and len(session.job_ids) == 1
        (job_id,) = session.job_ids
        assert job_states(session.job_ids, env=slurm_cluster.env)[job_id] == "RUNNING"
        # The worker runs inside that Slurm job.
        env = session.client.run(lambda: __import__("os").environ.get("SLURM_JOB_ID"))
        assert list(env.values()) == [job_id]
        # 0 + 1 + ... + (n - 1) in float64: exact below 2**53.
        assert float(x.sum().compute()) == 400_000 * 399_999 / 2
        address = session.client.scheduler.address
    assert f"dask: Slurm worker jobs {job_id} submitted" in caplog.text
    assert "dask: slurm cluster at tcp://" in caplog.text
    states = _wait_ended(slurm_cluster, (job_id,))
    assert states[job_id] == "gone" or states[job_id].split()[0] in ENDED, states
    t_end = time.monotonic() + 20
    while _worker_processes(address) and time.monotonic() < t_end:
        time.sleep(0.5)
    assert not _worker_processes(address)
    assert list((tmp_path / "logs").glob(f"twins-dask-{job_id}.err"))


@pytest.mark.timeout(200)
@pytest.mark.distributed
@pytest.mark.slurm
def test_worker_jobs_that_fail_or_are_refused_are_config_errors(
    slurm_cluster,  # noqa: ANN001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    logs = tmp_path / "logs"
    bad_python = SlurmConfig(python=str(tmp_path / "no-python"), output=f"{logs}/w-%j.out")
    with pytest.raises(ConfigError) as err, dask_client(_compute(workers=1), slurm=bad_python):
        pass
    msg = str(err.value)
    assert "\n" not in msg
    assert re.search(r"every dask worker job ended before a worker joined: Slurm jobs \d+ ", msg)
    assert f"worker logs in {logs}" in msg
    job_id = re.search(r"Slurm jobs (\d+)", msg).group(1)  # type: ignore[union-attr]
    assert _wait_ended(slurm_cluster, (job_id,))[job_id].split()[0] in ENDED | {"gone"}

    # A job Slurm holds (not before an hour from now) never yields a worker: the wait ends
    # at worker_start_timeout_s, naming the job and why it pends, and the job is cancelled.
    held = SlurmConfig(python=sys.executable, sbatch_extra=["--begin=now+3600"])
    with (
        pytest.raises(ConfigError) as err,
        dask_client(_compute(workers=1, worker_start_timeout_s=3), slurm=held),
    ):
        pass
    msg = str(err.value)
    assert "\n" not in msg and "no dask worker joined within 3 s" in msg
    assert re.search(r"Slurm jobs \d+ PENDING \(BeginTime\)", msg), msg
    assert "worker logs in the submission directory" in msg
    job_id = re.search(r"Slurm jobs (\d+)", msg).group(1)  # type: ignore[union-attr]
    assert _wait_ended(slurm_cluster, (job_id,))[job_id].split()[0] in ENDED | {"gone"}

    no_partition = SlurmConfig(python=sys.executable, partition="nosuch")
    with pytest.raises(ConfigError) as err, dask_client(_compute(workers=1), slurm=no_partition):
        pass
    msg = str(err.value)
    assert "\n" not in msg and "Slurm refuses the dask worker job" in msg
    assert "partition" in msg.lower()

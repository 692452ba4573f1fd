"""Real Slurm jobs: sbatch the rendered torchrun (2 tasks) and Ray scripts, check outputs.

Needs slurmctld/slurmd/munged (see ``conftest.py``: installed only as root under CI or
``TWINS_INSTALL_SLURM=1``, otherwise skipped with the reason).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from twins.config import load_config
from twins.launch.models import SlurmConfig
from twins.launch.slurm import render_sbatch, submit

pytestmark = [pytest.mark.distributed, pytest.mark.slurm]

TIMEOUT_S = 120


def _state(cluster, job_id: str) -> tuple[str, str]:  # noqa: ANN001
    r = cluster.run("scontrol", "show", "job", job_id)
    state = re.search(r"JobState=(\S+)", r.stdout)
    run_time = re.search(r"RunTime=(\S+)", r.stdout)
    return (state.group(1) if state else "UNKNOWN", run_time.group(1) if run_time else "")


def _seconds(hms: str) -> int:
    days, _, rest = hms.rpartition("-")
    h, m, s = (int(x) for x in rest.split(":"))
    return (int(days) if days else 0) * 86400 + h * 3600 + m * 60 + s


def _wait(cluster, job_id: str) -> tuple[str, str, float]:  # noqa: ANN001
    t0 = time.perf_counter()
    state, run_time = "PENDING", ""
    while time.perf_counter() - t0 < TIMEOUT_S:
        state, run_time = _state(cluster, job_id)
        if state in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}:
            break
        time.sleep(1)
    return state, run_time, time.perf_counter() - t0


def _toy_run(tmp_path: Path, name: str, tracking: str) -> tuple[Path, Any, Any, float]:
    """A 1-epoch toy run config, loaded, and its 2-worker dry run (and the dry run's time)."""
    from twins.dryrun import dry_run

    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(
        f"name: {name}\nworkdir: {tmp_path}\n"
        "train:\n  epochs: 1\n  batch_size: 32\n  progress: false\n"
        "task:\n  params:\n    length: 600\n    hidden: 16\n"
        f"tracking:\n  {tracking}\n"
    )
    cfg = load_config(cfg_path, [])
    t0 = time.perf_counter()
    report = dry_run(cfg, workers=2, steps=3, nodes=1, config_path=str(cfg_path))
    return cfg_path, cfg, report, time.perf_counter() - t0


@pytest.mark.timeout(400)
def test_torchrun_job_trains_and_logs(slurm_cluster, tmp_path: Path) -> None:  # noqa: ANN001
    from mlflow.tracking import MlflowClient

    cfg_path, cfg, report, dry_s = _toy_run(tmp_path, "slurm2", "experiment: slurm")
    slurm = SlurmConfig(
        tasks_per_node=2,
        python=sys.executable,
        chdir=tmp_path,
        output=str(tmp_path / "job-%j.out"),
        env={"MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    script = render_sbatch("torchrun", cfg_path, slurm, report, run_name=cfg.name)
    (tmp_path / "job.sbatch").write_text(script)
    assert subprocess.run(["bash", "-n", str(tmp_path / "job.sbatch")]).returncode == 0
    if shutil.which("shellcheck"):
        sc = subprocess.run(["shellcheck", str(tmp_path / "job.sbatch")], capture_output=True)
        assert sc.returncode == 0, sc.stdout.decode()

    job_id = submit(script, env=slurm_cluster.env)
    assert job_id.isdigit()
    state, run_time, wall = _wait(slurm_cluster, job_id)
    out = tmp_path / f"job-{job_id}.out"
    log = out.read_text() if out.exists() else "(no job output)"
    assert state == "COMPLETED", f"job {job_id} {state}\n{log[-4000:]}\n{slurm_cluster.logs()}"

    summary = json.loads((tmp_path / "slurm2" / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["launcher"] == "torchrun"  # torchrun wins over the srun step's variables
    assert summary["epochs"] == 1 and summary["test_loss"] > 0
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["twins.world_size"] == "2"
    assert client.get_metric_history(run.info.run_id, "train_loss")

    measured = _seconds(run_time) if run_time else wall
    requested = re.search(r"--time=(\S+)", script)
    print(
        f"\nslurm job {job_id}: projected {report.total_s:.3f} s compute "
        f"(requested {requested.group(1) if requested else '?'}), "
        f"measured {measured:.0f} s in Slurm ({wall:.1f} s submit-to-done), "
        f"ratio measured/projected {measured / max(report.total_s, 1e-9):.1f}; "
        f"dry run {dry_s:.1f} s"
    )


@pytest.mark.timeout(400)
def test_ray_job_starts_its_cluster_and_trains(slurm_cluster, tmp_path: Path) -> None:  # noqa: ANN001
    """The --kind ray script: Ray head in the allocation, then twins train --backend ray."""
    cfg_path, cfg, report, _ = _toy_run(tmp_path, "slurmray", "enabled: false")
    slurm = SlurmConfig(
        tasks_per_node=2,
        python=sys.executable,
        chdir=tmp_path,
        output=str(tmp_path / "job-%j.out"),
        env={"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"},
    )
    script = render_sbatch("ray", cfg_path, slurm, report, run_name=cfg.name)
    job_id = submit(script, env=slurm_cluster.env)
    state, _, wall = _wait(slurm_cluster, job_id)
    out = tmp_path / f"job-{job_id}.out"
    log = out.read_text() if out.exists() else "(no job output)"
    assert state == "COMPLETED", f"job {job_id} {state}\n{log[-4000:]}\n{slurm_cluster.logs()}"
    summary = json.loads((tmp_path / "slurmray" / "summary.json").read_text())
    assert summary["launcher"] == "ray" and summary["world_size"] == 2
    # Ray was stopped, not just killed: no stale record for a later ray.init() to join
    assert not Path("/tmp/ray/ray_current_cluster").exists()
    assert summary["epochs"] == 1 and summary["test_loss"] > 0
    print(f"\nslurm ray job {job_id}: {wall:.1f} s submit-to-done")


@pytest.mark.timeout(400)
def test_twin_update_job_updates_and_queues_its_next_run(
    slurm_cluster,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    """The --kind twin-update script updates the twin and resubmits itself for later."""
    from twins.cli import main

    assert (
        main(["demo", "--domain", "toy", "--workdir", str(tmp_path / "out"), "train.epochs=1"])
        == 0
    )
    twin = tmp_path / "out" / "twin"

    def version() -> int:
        status = slurm_cluster.run(sys.executable, "-m", "twins", "twin", "status", str(twin))
        found = re.search(r"^version\s+(\d+)", status.stdout, re.M)
        assert found, status.stdout + status.stderr
        return int(found.group(1))

    before = version()
    slurm = SlurmConfig(
        python=sys.executable,
        chdir=tmp_path,
        output=str(tmp_path / "upd-%j.out"),
        twin_every="1hour",
        job_name="twins-toy-update",
    )
    script = render_sbatch("twin-update", tmp_path / "run.yaml", slurm, twin_dir=twin)
    job_id = submit(script, env=slurm_cluster.env)
    state, _, _ = _wait(slurm_cluster, job_id)
    out = tmp_path / f"upd-{job_id}.out"
    log = out.read_text() if out.exists() else "(no job output)"
    assert state == "COMPLETED", f"job {job_id} {state}\n{log[-4000:]}\n{slurm_cluster.logs()}"
    assert version() == before + 1
    queued = slurm_cluster.run(
        "squeue", "--noheader", "--name=twins-toy-update", "--format=%i %T %r"
    )
    try:
        rows = [r.split() for r in queued.stdout.splitlines()]
        assert len(rows) == 1 and rows[0][0] != job_id and rows[0][1] == "PENDING", rows
        assert rows[0][2] in {"BeginTime", "Dependency"}, rows
    finally:
        for r in queued.stdout.splitlines():
            slurm_cluster.run("scancel", r.split()[0])

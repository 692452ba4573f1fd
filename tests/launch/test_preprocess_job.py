"""``twins launch slurm --kind preprocess``: the script sized by the preprocessing projection,
the command line, and the job on the real local Slurm."""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hydrology.synthetic import generate, write_netcdf
from twins.cli import main
from twins.compute.buildonce import is_built
from twins.errors import ConfigError
from twins.launch.models import SlurmConfig
from twins.launch.slurm import render_sbatch, submit
from twins.task import PreprocessProjection

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "hydrology" / "configs" / "tiny.yaml"
PROJECTION = PreprocessProjection(
    seconds=5400.0, peak_bytes=3 * 2**30, probed="a probe", probe_s=60.0, cpus=8
)


def _wait(cluster, job_id: str, timeout_s: float = 240) -> tuple[str, float]:  # noqa: ANN001
    """The job's final state and the seconds from submission to it."""
    t0 = time.perf_counter()
    state = "PENDING"
    while time.perf_counter() - t0 < timeout_s:
        found = re.search(r"JobState=(\S+)", cluster.run("scontrol", "show", "job", job_id).stdout)
        state = found.group(1) if found else "UNKNOWN"
        if state in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}:
            break
        time.sleep(1)
    return state, time.perf_counter() - t0


def test_the_job_is_sized_by_the_projection(check_shell: Callable[[str], None]) -> None:
    slurm = SlurmConfig(tasks_per_node=4, gpus_per_node=4, cpus_per_process=8, account="p42")
    s = render_sbatch("preprocess", "run.yaml", slurm, PROJECTION, overrides=["seed=1"])
    check_shell(s)
    m = slurm.margins
    # One process tree on one node: the projected peak x factor + pad (not x tasks_per_node),
    # the projected time x factor + pad, the CPUs the projection's engine ran on, no GPU.
    mem = math.ceil(3 * 1024 * m.mem_factor + m.mem_pad_mib)
    minutes = math.ceil((5400 * m.time_factor + 60 * m.time_pad_min) / 60)
    assert "#SBATCH --job-name=twins-run-preprocess\n#SBATCH --nodes=1\n" in s
    assert "#SBATCH --ntasks-per-node=1\n#SBATCH --cpus-per-task=8\n" in s
    assert f"#SBATCH --mem={mem}M\n" in s
    assert f"#SBATCH --time={minutes // 60:02d}:{minutes % 60:02d}:00\n" in s
    assert "--gres" not in s and "#SBATCH --account=p42" in s
    assert "# preprocessing projected: 5400 s, peak RSS 3072 MiB" in s
    assert s.rstrip().endswith("python3 -m twins preprocess run.yaml seed=1")


def test_the_config_wins_and_a_job_without_time_is_refused() -> None:
    given = SlurmConfig(time="02:00:00", mem="16G", cpus_per_task=4)
    s = render_sbatch("preprocess", "run.yaml", given, PROJECTION)
    assert "--time=02:00:00" in s and "--mem=16G" in s and "--cpus-per-task=4" in s
    with pytest.raises(ConfigError, match="no walltime"):
        render_sbatch("preprocess", "run.yaml", SlurmConfig())


def test_the_command_line_projects_the_drought_cube_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``twins launch slurm CONFIG --kind preprocess``: the task's projection sizes it (no
    training dry run); with time and mem given, nothing is projected."""
    path = write_netcdf(generate("tiny"), tmp_path / "tiny.nc")
    args = [
        "launch",
        "slurm",
        str(CONFIG),
        "--kind",
        "preprocess",
        f"workdir={tmp_path / 'w'}",
        f"task.params.path={path}",
        "task.params.store=zarr",
        "compute.mode=threads",
        "compute.workers=1",
    ]
    assert main(args) == 0
    s = capsys.readouterr().out
    assert "# preprocessing projected: " in s and "on 1 CPU(s)" in s
    assert "#SBATCH --cpus-per-task=1\n" in s
    assert f"-m twins preprocess {CONFIG} workdir={tmp_path / 'w'}" in s
    assert not (tmp_path / "w").exists()  # the projection built nothing
    assert main([*args, "--time", "00:20:00", "--mem", "2G"]) == 0
    s = capsys.readouterr().out
    assert "#SBATCH --mem=2G" in s and "projected" not in s


@pytest.mark.distributed
@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_the_preprocess_job_builds_the_cube_on_slurm(slurm_cluster, tmp_path: Path) -> None:  # noqa: ANN001
    path = write_netcdf(generate("tiny"), tmp_path / "tiny.nc")
    overrides = [
        f"workdir={tmp_path / 'w'}",
        f"task.params.path={path}",
        "task.params.store=zarr",
        "compute.mode=threads",
    ]
    slurm = SlurmConfig(
        time="00:10:00",
        mem="2G",
        python=sys.executable,
        chdir=tmp_path,
        output=str(tmp_path / "job-%j.out"),
    )
    script = render_sbatch("preprocess", CONFIG, slurm, overrides=overrides, run_name="tiny")
    job_id = submit(script, env=slurm_cluster.env)
    state, wall = _wait(slurm_cluster, job_id)
    out = tmp_path / f"job-{job_id}.out"
    log = out.read_text() if out.exists() else "(no job output)"
    assert state == "COMPLETED", f"job {job_id} {state}\n{log[-4000:]}\n{slurm_cluster.logs()}"
    line = [x for x in log.splitlines() if x.startswith("preprocessed drought-tiny in ")]
    assert line, log[-2000:]
    store = Path(line[0].rsplit(" ", 1)[-1])
    assert is_built(store.parent, store.name) and store.parent == tmp_path / "w" / "cubes"
    print(f"\nslurm preprocess job {job_id}: {wall:.1f} s submit-to-done")

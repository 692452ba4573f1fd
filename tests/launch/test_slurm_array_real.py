"""A real Slurm job array: ``twins gravwave clean`` once per segment file, on the local cluster.

Needs slurmctld/slurmd/munged (``conftest.py``: installed only as root under CI or
``TWINS_INSTALL_SLURM=1``, otherwise skipped with the reason).
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from gravwave.batch_run import clean_batch
from twins.cli import main
from twins.launch.slurm import submit

pytestmark = [pytest.mark.distributed, pytest.mark.slurm, pytest.mark.slow]

TIMEOUT_S = 300
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def _stretch_module() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "gravwave" / "_batch_stretch.py"
    spec = importlib.util.spec_from_file_location("_batch_stretch", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _task_states(cluster, job_id: str) -> dict[int, str]:  # noqa: ANN001
    """Array task index -> state, from ``scontrol show job`` (one block per task)."""
    text = cluster.run("scontrol", "show", "job", job_id).stdout
    states: dict[int, str] = {}
    for block in text.split("\n\n"):
        task = re.search(r"ArrayTaskId=(\d+)\b", block)
        state = re.search(r"JobState=(\S+)", block)
        if task and state:
            states[int(task.group(1))] = state.group(1)
    return states


@pytest.mark.timeout(600)
def test_array_job_cleans_each_segment_like_a_serial_run(slurm_cluster, tmp_path: Path) -> None:  # noqa: ANN001
    bs = _stretch_module()
    files = bs.write_stretch(tmp_path / "frames", range(2, 4))
    bad = tmp_path / "frames" / "V-V1_TEST-1262400000-16.h5"
    bad.write_bytes(b"not an HDF5 file")
    cleaner = tmp_path / "cascade.pt"
    bs.make_cleaner(cleaner)
    listing = tmp_path / "segments.txt"
    listing.write_text("\n".join(str(p) for p in [*files, bad]) + "\n")
    site = tmp_path / "site.yaml"
    site.write_text(
        f"name: arraytest\nlaunch:\n  slurm:\n    python: {sys.executable}\n"
        f"    chdir: {tmp_path}\n    output: {tmp_path}/arr-%A_%a.out\n"
        "    env:\n      MLFLOW_DISABLE_TELEMETRY: 'true'\n"
    )
    script = tmp_path / "array.sbatch"
    argv = ["launch", "slurm", str(site), "--kind", "array", "--inputs", str(listing)]
    command = f"gravwave clean --cleaner {cleaner} --out {tmp_path / 'cleaned'}"
    assert main([*argv, "--command", command, "--array-limit", "2", "-o", str(script)]) == 0

    job_id = submit(script.read_text(), env=slurm_cluster.env)
    t0 = time.perf_counter()
    states: dict[int, str] = {}
    while time.perf_counter() - t0 < TIMEOUT_S:
        states = _task_states(slurm_cluster, job_id)
        if len(states) == 3 and set(states.values()) <= DONE:
            break
        time.sleep(1)
    logs = {i: tmp_path / f"arr-{job_id}_{i}.out" for i in range(3)}

    def log(i: int) -> str:
        return logs[i].read_text() if logs[i].exists() else "(no output)"

    shown = "\n".join(f"--- task {i}\n{log(i)[-2000:]}" for i in range(3))
    assert states == {0: "COMPLETED", 1: "COMPLETED", 2: "FAILED"}, (
        f"{states}\n{shown}\n{slurm_cluster.logs()}"
    )
    # the failed task says which file and why, in one line, without a traceback
    assert (
        "twins: error: 1 of 1 segment(s) failed: V-V1_TEST-1262400000-16.h5: not a readable"
        in (log(2))
    )
    assert "Traceback" not in log(2)

    # the array's outputs are the serial run's, byte for byte
    serial = clean_batch([tmp_path / "frames"], cleaner, tmp_path / "serial")
    assert [s.status for s in serial.segments] == ["cleaned", "cleaned", "failed"]

    def listing_of(d: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(d.iterdir())}

    assert listing_of(tmp_path / "cleaned") == listing_of(tmp_path / "serial")
    print(f"\nslurm array job {job_id}: 3 tasks in {time.perf_counter() - t0:.1f} s")

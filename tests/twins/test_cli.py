"""The command line end to end: demo, dryrun, train (incl. torchrun), twin commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def twins(
    *args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "twins", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo through the console entry point; the twin commands after it in-process."""
    from mlflow.tracking import MlflowClient

    from twins.cli import main

    proc = twins("demo", "--domain", "toy", "--workdir", "out", "train.epochs=3", cwd=tmp_path)
    assert "Traceback" not in proc.stderr
    assert "version      2 (2 updates)" in proc.stdout
    summary = json.loads((tmp_path / "out" / "toy-demo" / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["model_version"] == "1"
    client = MlflowClient(f"sqlite:///{tmp_path}/out/mlflow.db")
    assert client.get_model_version("toy-forecaster", "1").run_id == summary["mlflow_run_id"]

    def run(*args: str) -> str:
        assert main(list(args)) == 0
        return capsys.readouterr().out

    twin = str(tmp_path / "out" / "twin")
    status = run("twin", "status", twin)
    assert "kind         toy" in status and "cursor       4175" in status
    upd = json.loads(run("twin", "update", twin, "--steps", "10"))
    assert upd["first"] == 4176 and upd["last"] == 4185 and upd["mse"] < upd["persistence_mse"]
    sim = json.loads(run("twin", "simulate", twin, "--steps", "5"))
    assert sim["difference"] != 0 and sim["scenario"] == {"steps": 5, "driver_scale": 1.5}
    assert "cursor       4185" in run("twin", "status", twin)


@pytest.mark.slow
def test_drought_demo_through_the_cli(tmp_path: Path) -> None:
    proc = twins(
        "demo",
        "--domain",
        "hydrology",
        "--workdir",
        "out",
        "task.params.preset=tiny",
        cwd=tmp_path,
    )
    assert "Traceback" not in proc.stderr
    # the skill table comes from the test scoring train_process already did
    assert "skill table unavailable" not in proc.stderr
    assert "skill (test split" in proc.stdout and "analogue" in proc.stdout
    assert any((tmp_path / "out").glob("*/skill_test.csv"))
    twin = tmp_path / "out" / "drought-twin"
    status = twins("twin", "status", str(twin), cwd=tmp_path).stdout
    assert "hydrology" in status


def test_overrides_need_a_domain(tmp_path: Path) -> None:
    proc = twins("demo", "train.epochs=1", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "--domain" in proc.stderr


def test_twin_status_of_non_twin_is_one_line(tmp_path: Path) -> None:
    proc = twins("twin", "status", str(tmp_path), cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert str(tmp_path) in proc.stderr


def test_dryrun_reports_and_projects(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"name: dr\nworkdir: {tmp_path}\ntrain:\n  epochs: 10\n  batch_size: 64\n")
    out = twins("dryrun", str(cfg), "--workers", "4", "--nodes", "2", cwd=tmp_path).stdout
    assert "inputs        (2, 32) float32 -> output (2, 1) float32" in out
    assert "parameters    2,145 (2,145 trainable)" in out
    assert "local batch 16" in out
    assert "energy        wall" in out  # unavailable here, says so
    assert "torchrun --nnodes=2 --nproc_per_node=2" in out
    assert not (tmp_path / "dr" / "checkpoints").exists()  # a dry run leaves no checkpoint


def test_dryrun_fails_like_the_real_run(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("task:\n  params:\n    length: 64\n    window: 60\n")
    proc = twins("dryrun", str(cfg), f"workdir={tmp_path}", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


def test_resume_without_checkpoint_is_clear(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"workdir: {tmp_path}\ntracking:\n  enabled: false\n")
    proc = twins("train", str(cfg), "--resume", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "cannot resume: no checkpoint" in proc.stderr


@pytest.mark.distributed
def test_torchrun_cli_trains_and_tracks_on_rank0(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"name: tr\nworkdir: {tmp_path}\ntrain:\n  epochs: 2\n  batch_size: 32\n"
        "task:\n  params:\n    length: 600\ntracking:\n  register_model: tr-model\n"
    )
    # the launching process creates the store before ranks start (stack.md: fresh-DB race)
    from twins.track import prepare_store

    prepare_store(f"sqlite:///{tmp_path}/mlflow.db", "twins")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "twins",
            "train",
            str(cfg),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "tr" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["launcher"] == "torchrun"
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("twins").experiment_id])
    assert len(runs) == 1  # only rank 0 tracks
    assert len(client.get_metric_history(runs[0].info.run_id, "val_loss")) == 2
    assert client.get_model_version("tr-model", "1") is not None


def test_help_is_fast_and_env_reports(tmp_path: Path) -> None:
    import time

    t0 = time.perf_counter()
    assert "demo" in twins("--help", cwd=tmp_path).stdout
    assert time.perf_counter() - t0 < 5  # lazy imports: no torch/mlflow/ray for --help
    out = twins("env", cwd=tmp_path).stdout
    assert "launcher      local (rank 0/1" in out
    from twins.energy import available_sources

    if not available_sources():  # as on the development VMs
        assert "energy        unavailable (no RAPL or NVML)" in out


def test_toy_twin_update_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """0 = updated, EXIT_NOTHING_NEW = the same input again (for cron / Slurm / CronJobs);
    the twin made by ``twins twin init`` from the demo's run, taken back by ``rollback``.
    In-process (the console entry point runs in test_demo_runs_end_to_end)."""
    from twins.cli import main
    from twins.twin import EXIT_NOTHING_NEW, TwinStore

    def run(*args: str) -> tuple[int, str, str]:
        rc = main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err

    w = str(tmp_path / "w")
    assert run("demo", "--domain", "toy", "--workdir", w, "train.epochs=1")[0] == 0
    assert run("twin", "update", f"{w}/twin", "--steps", "5")[0] == 0
    fresh = str(tmp_path / "fresh")
    rc, out, _ = run("twin", "init", fresh, "--kind", "toy", "--run", f"{w}/toy-demo")
    assert rc == 0 and json.loads(out)["version"] == 0
    rc, first, _ = run("twin", "update", fresh, "--steps", "5")
    assert rc == 0
    # take the update back: the same steps come again, so they are new again
    rc, out, _ = run("twin", "rollback", fresh, "--to", "0")
    assert rc == 0 and json.loads(out)["undone"] == [1, 1]
    rc, again, err = run("twin", "update", fresh, "--steps", "5")
    assert rc == 0, err
    assert json.loads(again)["first"] == json.loads(first)["first"]
    rc, nxt, _ = run("twin", "update", fresh, "--steps", "5")
    assert rc == 0  # the cursor moved on: these are the next 5 steps (v4)
    rc, out, _ = run("twin", "rollback", fresh, "--to", "3")
    assert json.loads(out)["cursor"] == json.loads(again)["cursor"]
    rc, redo, err = run("twin", "update", fresh, "--steps", "5")
    assert rc == 0, err  # v4 was taken out: its steps are new again
    assert json.loads(redo)["mse"] == json.loads(nxt)["mse"]
    rc, _, err = run("twin", "update", fresh, "--steps", "0")
    assert rc == 2 and "--steps" in err  # ge=1, one line
    store = TwinStore.open(fresh)
    with store.transaction("rewind") as txn:  # move the cursor back: the same steps come again
        txn.update_state(cursor=str(int(store.state.cursor) - 5))
    assert run("twin", "update", fresh, "--steps", "5")[0] == EXIT_NOTHING_NEW
    rc, _, err = run("twin", "init", str(tmp_path / "x"), "--kind", "toy", "--run", "/nope")
    assert rc == 2 and "/nope" in err and "Traceback" not in err


def test_distributed_workers_exit_without_finalisation(monkeypatch, tmp_path: Path) -> None:
    """Ranks leave with os._exit after flushing (gloo threads abort at finalisation)."""
    from twins import cli

    for k in ("WORLD_SIZE", "RANK", "SLURM_PROCID", "SLURM_STEP_ID", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(k, raising=False)
    assert not cli._is_distributed_worker()
    monkeypatch.setenv("SLURM_PROCID", "0")  # a batch script, not a step: stays local
    assert not cli._is_distributed_worker()
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    assert cli._is_distributed_worker()
    monkeypatch.delenv("SLURM_PROCID")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert cli._is_distributed_worker()
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert not cli._is_distributed_worker()
    # a rank's output and exit status survive the early exit
    rank_env = {"WORLD_SIZE": "2", "RANK": "1"}

    def rank(*args: str) -> subprocess.CompletedProcess:
        return twins(*args, cwd=tmp_path, check=False, env=rank_env)

    proc = rank("env")
    assert proc.returncode == 0 and "launcher      torchrun (rank 1/2" in proc.stdout
    bad = rank("train", str(tmp_path / "missing.yaml"))
    assert bad.returncode == 2 and "missing.yaml" in bad.stderr

"""A 4-trial ASHA study on the toy task; resume after SIGKILL of the study process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from twins.config import load_config
from twins.errors import ConfigError, TwinsError
from twins.tune.space import load_study
from twins.tune.study import run_study, study_paths

pytestmark = pytest.mark.ray

HERE = Path(__file__).resolve().parent
SPACE = HERE.parents[2] / "twins" / "tune" / "spaces" / "toy.yaml"
OVERRIDES = ["task.params.length=300", "train.epochs=3"]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    import ray

    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "30")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
    )
    yield
    ray.shutdown()


def _client(workdir: Path) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{workdir.resolve()}/mlflow.db")


def _children(workdir: Path, parent: str) -> list[Any]:
    client = _client(workdir)
    exp = client.get_experiment_by_name("toy-study")
    return client.search_runs(
        [exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )


def test_asha_study_leaves_nested_runs_and_best_config(ray_cluster: None, tmp_path: Path) -> None:
    cfg, tune_cfg = load_study(SPACE, [f"workdir={tmp_path}", *OVERRIDES])
    result = run_study(cfg, tune_cfg)
    assert result.trials == 4 and result.errors == 0
    assert 4 <= result.trial_epochs <= 12
    # nested runs under the study run: one per trial, closed
    runs = _children(tmp_path, result.mlflow_run_id)
    assert len(runs) == 4
    assert {r.info.status for r in runs} <= {"FINISHED", "KILLED"}
    stopped = [r for r in runs if "twins.tune.stopped_at_epoch" in r.data.tags]
    assert all(r.info.status == "KILLED" for r in stopped)
    assert all("val_loss" in r.data.metrics for r in runs)
    # the study run holds the table and the best config
    client = _client(tmp_path)
    study_run = client.get_run(result.mlflow_run_id)
    assert study_run.info.status == "FINISHED"
    assert study_run.data.metrics["trials"] == 4
    artifacts = {a.path for a in client.list_artifacts(result.mlflow_run_id)}
    assert {"trials.csv", "best.yaml", "study.json"} <= artifacts
    # best.yaml is a complete run config with the best point applied
    best = load_config(result.best_config)
    # the lr went through YAML and JSON, which write floats with repr (exact round trip)
    assert best.train.optimizer.lr == pytest.approx(result.best_overrides["train.optimizer.lr"])
    assert best.task.params["hidden"] == result.best_overrides["task.params.hidden"]
    assert best.train.batch_size == result.best_overrides["train.batch_size"]
    assert best.workdir == tmp_path.resolve() and best.name == "toy-study-best"
    # trials that ran to the end evaluated on test and wrote their summary
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert finished and all("test_loss" in r.data.metrics for r in finished)
    # a second study of the same name needs --resume
    with pytest.raises(TwinsError, match="already exists"):
        run_study(cfg, tune_cfg)


def test_resume_without_study_is_an_error(tmp_path: Path) -> None:
    cfg, tune_cfg = load_study(SPACE, [f"workdir={tmp_path}", *OVERRIDES])
    with pytest.raises(TwinsError, match="cannot resume"):
        run_study(cfg, tune_cfg, resume=True)


def test_optuna_searcher_needs_optuna(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray.tune")
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    cfg, tune_cfg = load_study(SPACE, [f"workdir={tmp_path}", "tune.searcher=optuna"])
    with pytest.raises(ConfigError, match="optuna is not installed"):
        run_study(cfg, tune_cfg)
    assert not (tmp_path / cfg.name).exists()


def test_optuna_study_proposes_and_finishes(ray_cluster: None, tmp_path: Path) -> None:
    """TPE (Optuna through Ray Tune) runs the study end to end, seeded."""
    pytest.importorskip("optuna")
    overrides = [f"workdir={tmp_path}", *OVERRIDES, "tune.searcher=optuna", "tune.num_samples=3"]
    cfg, tune_cfg = load_study(SPACE, overrides)
    result = run_study(cfg, tune_cfg)
    assert result.trials == 3 and result.errors == 0
    rows = result.table.read_text().strip().splitlines()
    assert len(rows) == 4  # header + 3 trials
    best = load_config(result.best_config)
    # as above: a repr round trip, exact
    assert best.train.optimizer.lr == pytest.approx(result.best_overrides["train.optimizer.lr"])


def _terminated(experiment: Path) -> bool:
    return any("TERMINATED" in p.read_text() for p in experiment.glob("experiment_state-*.json"))


def test_resume_after_sigkill_keeps_finished_trials(ray_cluster: None, tmp_path: Path) -> None:
    overrides = [f"workdir={tmp_path}", *OVERRIDES, "tune.max_concurrent=1"]
    cfg, tune_cfg = load_study(SPACE, overrides)
    paths = study_paths(cfg)
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[2])}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "study_script.py"), str(tmp_path), "--slow-from", "1"],
        start_new_session=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # a hang guard, not a timing: a toy trial takes seconds; this fails only if none ends
        deadline = time.monotonic() + 60
        while not _terminated(paths["experiment"]):
            assert proc.poll() is None, "the study process ended before it was killed"
            assert time.monotonic() < deadline, "no trial finished within 60 s"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # Ray processes the study started
    done = [p.parent for p in paths["trials"].glob("trial_*/summary.json")]
    assert len(done) == 1, "exactly trial 0 had finished when the study was killed"
    summary_mtime = (done[0] / "summary.json").stat().st_mtime_ns
    first_id = done[0].name.removeprefix("trial_")
    first_rows = _result_rows(paths["experiment"], first_id)
    parent = json.loads(paths["meta"].read_text())["mlflow_run_id"]

    result = run_study(cfg, tune_cfg, resume=True)

    assert result.trials == 4 and result.errors == 0
    assert result.mlflow_run_id == parent
    # the finished trial was not run again: same summary file, same result rows, one run
    assert (done[0] / "summary.json").stat().st_mtime_ns == summary_mtime
    assert _result_rows(paths["experiment"], first_id) == first_rows
    runs = _children(tmp_path, parent)
    names = [r.info.run_name for r in runs]
    assert names.count(f"trial_{first_id}") == 1
    assert len(set(names)) == 4
    assert {r.info.status for r in runs} <= {"FINISHED", "KILLED"}
    assert len(list(paths["trials"].glob("trial_*"))) == 4
    assert load_config(result.best_config).name == "toy-study-best"
    meta = json.loads(paths["meta"].read_text())
    assert meta["sessions"] == 1 and meta["interrupted_sessions"] == 1 and meta["trials"] == 4
    assert "open_session_start" not in meta and meta["wall_s"] > 0


def _result_rows(experiment: Path, trial_id: str) -> list[str]:
    (trial_dir,) = experiment.glob(f"trial_{trial_id}_*")
    return (trial_dir / "result.json").read_text().splitlines()

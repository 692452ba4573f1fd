"""Run a hyper-parameter study with Ray Tune: ASHA, one core trainer per trial.

Layout of a study in ``<workdir>/<name>/``:

- ``study.json``: metadata (MLflow study run id, metric, wall time over all sessions);
- ``default.yaml``: the resolved base config (the "default" of ``twins report hpo``);
- ``tune/study/``: Ray Tune's experiment directory (what ``--resume`` restores);
- ``trials/trial_<id>/``: each trial's run directory (written by ``train_process``);
- ``trials.csv``: the result table, one row per trial;
- ``best.yaml``: the best trial's full config, ready for ``twins train``.

Each trial runs :func:`twins.train.run.train_process` in a Ray worker (one CPU by
default, actors reused between trials) and reports the monitored metric after every
epoch, so ASHA can stop poor trials early. With tracking on, the study is one MLflow
run and every trial a nested run under it (tag ``mlflow.parentRunId``); the study run
holds the result table and the best config. The tracking store is created here, in the
driver, before any trial starts (concurrent first use of a sqlite store corrupts it).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from twins.config import RunConfig, to_yaml
from twins.errors import ConfigError, TwinsError
from twins.train.callbacks import Callback
from twins.tune.space import TuneConfig, apply_sample, to_tune_space

if TYPE_CHECKING:
    from twins.train.loop import Trainer

log = logging.getLogger(__name__)

#: Name of Ray Tune's experiment directory under ``<study>/tune``.
EXPERIMENT = "study"
#: Environment Ray needs to stay quiet and offline (set only where the user has not).
QUIET_RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_AUTH_MODE": "disabled",
}
#: Save Tune's experiment state at least this often (s; Tune's default is 10 s or more), so
#: a killed study loses at most about this much finished work on ``--resume``.
STATE_PERIOD_S = "1"
#: How long a reused trial actor waits for the previous trial's thread to end (Tune's
#: default is 2 s, too short for a stopped trial to close its MLflow run on a busy host).
THREAD_TIMEOUT_S = "30"


@dataclass
class StudyResult:
    """What a finished study produced.

    Attributes:
        study_dir: ``<workdir>/<name>``.
        best_config: Path of ``best.yaml``.
        best_overrides: The best trial's point of the search space.
        best_metric: Its best value of the monitored metric.
        table: Path of ``trials.csv``.
        trials: Number of trials in the table.
        trial_epochs: Epochs run over all trials (the compute spent).
        wall_s: Study wall time, summed over sessions (resumes included).
        mlflow_run_id: The study (parent) run, or ``None`` without tracking.
        errors: Number of trials that ended in an error.
    """

    study_dir: Path
    best_config: Path
    best_overrides: dict[str, Any]
    best_metric: float
    table: Path
    trials: int
    trial_epochs: int
    wall_s: float
    mlflow_run_id: str | None
    errors: int = 0


def study_paths(cfg: RunConfig) -> dict[str, Path]:
    """Absolute paths of a study's files (see the module docstring)."""
    root = cfg.run_dir.resolve()
    return {
        "root": root,
        "meta": root / "study.json",
        "default": root / "default.yaml",
        "tune": root / "tune",
        "experiment": root / "tune" / EXPERIMENT,
        "trials": root / "trials",
        "table": root / "trials.csv",
        "best": root / "best.yaml",
    }


class TuneReport(Callback):
    """Report the monitored metric (and cumulative compute) to Ray Tune after every epoch.

    ASHA decides at each report whether the trial goes on. When Tune stops a trial,
    ``ray.tune.report`` raises ``SystemExit``; the trial's nested MLflow run is then
    ended ``KILLED`` (tagged ``twins.tune.stopped_at_epoch``) and the exit goes on, so
    a stopped trial spends no more compute (no test evaluation). The report of the
    run's last epoch is held back (:attr:`pending`) and sent by the trainable after
    ``train_process`` returned, so a trial that runs to the end is never cut short
    before its test evaluation and summary.

    Args:
        metric: Name of the monitored per-epoch metric (e.g. ``val_loss``).
    """

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.cpu_s = 0.0
        self.energy_j: float | None = None
        self.pending: dict[str, Any] | None = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        from ray import tune

        if self.metric not in metrics:
            raise TwinsError(
                f"tune.metric {self.metric!r} is not among the epoch metrics "
                f"({', '.join(sorted(metrics))})",
                "use a metric computed every epoch, e.g. val_loss (with train.val_every: 0)",
            )
        self.cpu_s += float(metrics.get("energy_cpu_s", 0.0))
        if "energy_j" in metrics:
            self.energy_j = (self.energy_j or 0.0) + float(metrics["energy_j"])
        report: dict[str, Any] = {
            self.metric: float(metrics[self.metric]),
            "epoch": epoch,
            "trial_cpu_s": self.cpu_s,
        }
        if self.energy_j is not None:
            report["trial_energy_j"] = self.energy_j
        if epoch >= trainer.epochs or trainer.should_stop:
            self.pending = report  # the trainable sends it once the run is complete
            return
        try:
            tune.report(report)
        except SystemExit:
            for cb in trainer.callbacks:
                tracker = getattr(cb, "tracker", None)
                if tracker is not None:
                    tracker.set_tags({"twins.tune.stopped_at_epoch": str(epoch)})
                    tracker.end("KILLED")
            raise


def trial_config(
    base: Mapping[str, Any], sample: Mapping[str, Any], name: str, trials_dir: str
) -> RunConfig:
    """The validated config of one trial: base plus the sampled values, its own run dir."""
    cfg = apply_sample(RunConfig.model_validate(base), sample, "<trial>")
    data = cfg.model_dump(mode="json")
    data.update(name=name, workdir=trials_dir)
    data["train"]["progress"] = False
    data["distributed"]["backend"] = "local"
    return RunConfig.model_validate(data)


def _train_nested(cfg: RunConfig, callbacks: tuple[Callback, ...], parent: str | None) -> Any:
    """``train_process`` with tracking nested under ``parent``.

    Uses ``train_process(parent_run_id=...)`` when the core has it; otherwise wraps
    ``twins.train.run.open_tracker`` for this call (same process, trial at a time).
    """
    from twins.train import run as run_mod

    if "parent_run_id" in inspect.signature(run_mod.train_process).parameters:
        return run_mod.train_process(
            cfg, progress=False, extra_callbacks=callbacks, parent_run_id=parent
        )
    original = run_mod.open_tracker

    def nested(c: RunConfig, strategy: Any, tags: dict[str, str] | None = None) -> Any:
        from twins.track import NullTracker, Tracker, resolve_tracking_uri

        if not (c.tracking.enabled and strategy.is_main):
            return NullTracker()
        uri = resolve_tracking_uri(c.tracking.uri, c.workdir)
        tracker = Tracker(uri, c.tracking.experiment, c.name, tags, parent_run_id=parent)
        tracker.start()
        return tracker

    run_mod.open_tracker = nested  # type: ignore[assignment]
    try:
        return run_mod.train_process(cfg, progress=False, extra_callbacks=callbacks)
    finally:
        run_mod.open_tracker = original  # type: ignore[assignment]


def make_trainable(
    base: dict[str, Any], trials_dir: str, metric: str, parent: str | None, threads: int
) -> Callable[[dict[str, Any]], None]:
    """The Tune function trainable: one ``train_process`` per trial.

    Args:
        base: The resolved base config as JSON data (absolute ``workdir`` and tracking URI).
        trials_dir: Absolute directory of the trials' run directories.
        metric: Metric reported each epoch.
        parent: MLflow run id of the study (nested runs), or ``None``.
        threads: torch threads per trial.
    """

    def trial(config: dict[str, Any]) -> None:
        import torch
        from ray import tune

        torch.set_num_threads(threads)
        trial_id = tune.get_context().get_trial_id()
        cfg = trial_config(base, config, f"trial_{trial_id}", trials_dir)
        reporter = TuneReport(metric)
        _train_nested(cfg, (reporter,), parent)
        if reporter.pending is not None:
            tune.report(reporter.pending)

    return trial


# --------------------------------------------------------------------------- driver


def _searcher(tune_cfg: TuneConfig) -> Any:
    if tune_cfg.searcher == "random":
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=tune_cfg.seed)
    try:
        import optuna  # noqa: F401
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:
        raise ConfigError(
            "tune.searcher: optuna is not installed", "pip install optuna, or use random"
        ) from None
    return OptunaSearch(seed=tune_cfg.seed)


def _scheduler(cfg: RunConfig, tune_cfg: TuneConfig) -> Any:
    spec = tune_cfg.scheduler
    if spec.name == "fifo":
        from ray.tune.schedulers import FIFOScheduler

        return FIFOScheduler()
    from ray.tune.schedulers import ASHAScheduler

    max_t = spec.max_t or cfg.train.epochs
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=max_t,
        grace_period=min(spec.grace_period, max_t),
        reduction_factor=spec.reduction_factor,
    )


def _start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Start a quiet local Ray (or join ``address``); ``True`` if this call started it."""
    import ray

    for k, v in QUIET_RAY_ENV.items():
        os.environ.setdefault(k, v)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", STATE_PERIOD_S)
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", THREAD_TIMEOUT_S)
    if ray.is_initialized():
        return False
    # RAY_ADDRESS (set by KubeRay drivers and our Slurm script) means "join this cluster"
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR"}
    if address:
        env = {"TUNE_FUNCTION_THREAD_TIMEOUT_S": os.environ["TUNE_FUNCTION_THREAD_TIMEOUT_S"]}
        ray.init(address=address, runtime_env={"env_vars": env}, **kwargs)
    else:
        # "local": a new Ray even where `ray start` left a cluster to find
        ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            **kwargs,
        )
    return True


def _open_parent(cfg: RunConfig, meta: dict[str, Any], tune_cfg: TuneConfig) -> Any:
    """The study's MLflow run: created, or reopened from ``study.json`` on resume."""
    from twins.track import NullTracker, Tracker, prepare_store, resolve_tracking_uri

    if not cfg.tracking.enabled:
        return NullTracker()
    uri = resolve_tracking_uri(cfg.tracking.uri, cfg.workdir)
    prepare_store(uri, cfg.tracking.experiment)  # create/migrate once, before any trial
    tags = {"twins.study": "true", "twins.task": cfg.task.target}
    tracker = Tracker(uri, cfg.tracking.experiment, run_name=cfg.name, tags=tags)
    if meta.get("mlflow_run_id"):
        tracker.run_id = meta["mlflow_run_id"]  # resume: keep logging to the same run
        tracker.set_tags({"twins.resumed": "true"})
        _close_orphans(tracker)
    else:
        tracker.start()
        tracker.log_params(
            {
                "tune.metric": tune_cfg.metric,
                "tune.mode": tune_cfg.mode,
                "tune.num_samples": tune_cfg.num_samples,
                "tune.scheduler": tune_cfg.scheduler.name,
                "tune.searcher": tune_cfg.searcher,
                **{f"space.{k}": v.model_dump() for k, v in tune_cfg.space.items()},
            }
        )
    return tracker


def _close_orphans(tracker: Any) -> None:
    """Mark the study's nested runs still RUNNING as KILLED (no trial is running now)."""
    if not tracker.run_id:
        return
    try:
        client = tracker._get_client()
        runs = client.search_runs(
            [tracker.experiment_id or client.get_run(tracker.run_id).info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{tracker.run_id}' "
            "and attributes.status = 'RUNNING'",
        )
        for run in runs:
            client.set_terminated(run.info.run_id, "KILLED")
    except Exception as exc:  # noqa: BLE001 - tracking trouble never stops the study
        log.warning("could not close the interrupted trials' MLflow runs: %s", exc)


def best_yaml_text(best_cfg: RunConfig, title: str, overrides: dict[str, Any]) -> str:
    """``best.yaml``: a commented header (title and the sampled values) and the full config."""
    sampled = yaml.safe_dump(overrides, default_flow_style=False).strip().splitlines()
    return "".join(f"# {line}\n" for line in [title, *sampled]) + to_yaml(best_cfg)


def run_study(
    cfg: RunConfig,
    tune_cfg: TuneConfig,
    resume: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
) -> StudyResult:
    """Run (or resume) a study and write its result table and best config.

    Args:
        cfg: Resolved base run config (the "default" configuration).
        tune_cfg: The ``tune:`` section.
        resume: Continue an interrupted study in ``<workdir>/<name>``: finished trials
            are kept, unfinished and errored ones are run again.
        address: Join this Ray cluster instead of starting a local one.
        num_cpus: CPUs of the local Ray (default: all); ignored with ``address``.

    Returns:
        The :class:`StudyResult`.

    Raises:
        TwinsError: ``resume`` without a study to resume, a study already there without
            ``resume``, or no trial reported the metric.
    """
    from ray import tune

    t0 = time.perf_counter()
    search_alg = None if resume else _searcher(tune_cfg)  # fail fast (e.g. no optuna)
    cfg = cfg.model_copy(update={"workdir": cfg.workdir.resolve()})
    if cfg.tracking.enabled:
        from twins.track import resolve_tracking_uri

        uri = resolve_tracking_uri(cfg.tracking.uri, cfg.workdir)
        cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"uri": uri})})
    paths = study_paths(cfg)
    can_restore = paths["experiment"].is_dir() and tune.Tuner.can_restore(str(paths["experiment"]))
    if resume and not can_restore:
        raise TwinsError(
            f"cannot resume: no study in {paths['root']}", "run twins tune without --resume"
        )
    if not resume and paths["experiment"].exists():
        raise TwinsError(
            f"a study already exists in {paths['root']}",
            "add --resume to continue it, or choose another name (name=...)",
        )
    paths["root"].mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = json.loads(paths["meta"].read_text()) if resume else {}
    if "open_session_start" in meta:  # the previous session was killed: count its time
        last = max(p.stat().st_mtime for p in paths["experiment"].iterdir())
        meta["wall_s"] = float(meta.get("wall_s", 0.0)) + max(
            0.0, last - meta.pop("open_session_start")
        )
        meta["interrupted_sessions"] = int(meta.get("interrupted_sessions", 0)) + 1
    meta["open_session_start"] = time.time()
    tracker = _open_parent(cfg, meta, tune_cfg)
    meta.update(
        name=cfg.name,
        metric=tune_cfg.metric,
        mode=tune_cfg.mode,
        mlflow_run_id=tracker.run_id,
        tracking_uri=cfg.tracking.uri if cfg.tracking.enabled else None,
        experiment=cfg.tracking.experiment,
        tune=tune_cfg.model_dump(mode="json"),
    )
    paths["default"].write_text(to_yaml(cfg))
    paths["meta"].write_text(json.dumps(meta, indent=2))

    started = _start_ray(address, num_cpus)
    try:
        threads = max(1, int(tune_cfg.cpus_per_trial))
        trainable = tune.with_resources(
            make_trainable(
                cfg.model_dump(mode="json"),
                str(paths["trials"]),
                tune_cfg.metric,
                tracker.run_id,
                threads,
            ),
            {"cpu": tune_cfg.cpus_per_trial},
        )
        if resume:
            log.info("resuming study %s from %s", cfg.name, paths["experiment"])
            tuner = tune.Tuner.restore(
                str(paths["experiment"]),
                trainable,
                resume_unfinished=True,
                resume_errored=True,
            )
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=to_tune_space(tune_cfg.space),
                tune_config=tune.TuneConfig(
                    metric=tune_cfg.metric,
                    mode=tune_cfg.mode,
                    scheduler=_scheduler(cfg, tune_cfg),
                    search_alg=search_alg,
                    num_samples=tune_cfg.num_samples,
                    max_concurrent_trials=tune_cfg.max_concurrent,
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    name=EXPERIMENT, storage_path=str(paths["tune"]), verbose=0
                ),
            )
        results = tuner.fit()
    except BaseException:
        tracker.end("KILLED")
        raise
    finally:
        if started:
            import ray

            ray.shutdown()
    _close_orphans(tracker)  # trials whose actor ended before their run was closed
    return _finish(cfg, tune_cfg, results, paths, meta, tracker, time.perf_counter() - t0)


def _finish(
    cfg: RunConfig,
    tune_cfg: TuneConfig,
    results: Any,
    paths: dict[str, Path],
    meta: dict[str, Any],
    tracker: Any,
    session_s: float,
) -> StudyResult:
    """Write the table, best config and metadata; log them to the study run; end it."""
    df = results.get_dataframe()
    space_cols = {f"config/{k}": k for k in tune_cfg.space}
    keep = ["trial_id", tune_cfg.metric, "training_iteration", "trial_cpu_s", "trial_energy_j"]
    table = df[[c for c in [*keep, *space_cols] if c in df.columns]].rename(columns=space_cols)
    table.to_csv(paths["table"], index=False)
    errors = sum(1 for r in results if r.error is not None)
    try:
        best = results.get_best_result(tune_cfg.metric, tune_cfg.mode, scope="all")
    except RuntimeError:
        best = None
    if best is None or best.metrics_dataframe is None:
        tracker.end("FAILED")
        raise TwinsError(
            f"no trial of study {cfg.name} reported {tune_cfg.metric!r}",
            f"see the trial logs under {paths['experiment']}",
        )
    series = best.metrics_dataframe[tune_cfg.metric]
    best_metric = float(series.min() if tune_cfg.mode == "min" else series.max())
    overrides = {k: _plain(best.config[k]) for k in tune_cfg.space}
    best_cfg = apply_sample(cfg, overrides, "<best trial>")
    best_cfg = best_cfg.model_copy(update={"name": f"{cfg.name}-best"})
    paths["best"].write_text(
        best_yaml_text(
            best_cfg, f"best of study {cfg.name}: {tune_cfg.metric} {best_metric:.6g}", overrides
        )
    )
    trial_epochs = int(table["training_iteration"].fillna(0).sum()) if len(table) else 0
    wall_s = float(meta.get("wall_s", 0.0)) + session_s
    meta.pop("open_session_start", None)
    meta.update(
        wall_s=wall_s,
        sessions=int(meta.get("sessions", 0)) + 1,
        trials=len(table),
        trial_epochs=trial_epochs,
        trial_cpu_s=float(table["trial_cpu_s"].sum()) if "trial_cpu_s" in table else None,
        trial_energy_j=(
            float(table["trial_energy_j"].sum()) if "trial_energy_j" in table else None
        ),
        errors=errors,
        best_metric=best_metric,
        best_overrides=overrides,
        best_trial_id=best.metrics.get("trial_id"),
    )
    paths["meta"].write_text(json.dumps(meta, indent=2, default=str))
    tracker.log_metrics(
        {
            f"best_{tune_cfg.metric}": best_metric,
            "trials": float(len(table)),
            "trial_epochs": float(trial_epochs),
            "study_wall_s": wall_s,
        },
        0,
    )
    tracker.log_artifact(paths["table"])
    tracker.log_artifact(paths["best"])
    tracker.log_artifact(paths["meta"])
    tracker.end("FINISHED")
    log.info(
        "study %s: %d trials (%d errors), %d trial-epochs, best %s %.4g with %s; wrote %s",
        cfg.name,
        len(table),
        errors,
        trial_epochs,
        tune_cfg.metric,
        best_metric,
        overrides,
        paths["best"],
    )
    return StudyResult(
        study_dir=paths["root"],
        best_config=paths["best"],
        best_overrides=overrides,
        best_metric=best_metric,
        table=paths["table"],
        trials=len(table),
        trial_epochs=trial_epochs,
        wall_s=wall_s,
        mlflow_run_id=meta.get("mlflow_run_id"),
        errors=errors,
    )


def _plain(value: Any) -> Any:
    """numpy scalars and tuples from Tune's config as plain YAML-safe values."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value

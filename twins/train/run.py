"""Run a config end to end in this process: the body of every launcher.

``twins train`` calls :func:`train_process` directly (one process, or one rank
under torchrun / srun); the Ray backend calls it inside each Ray Train worker
(:mod:`twins.train.ray_backend`). Outputs in ``<workdir>/<name>/``:

- ``config.yaml``: the resolved config;
- ``checkpoints/last.pt``: resumable checkpoint;
- ``model.pt``: best model state with the config (``weights_only`` loadable);
- ``summary.json``: metrics, energy, MLflow run id and model version.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from twins.atomic import atomic_write
from twins.config import RunConfig, check_workdir, config_hash, to_dict, to_yaml
from twins.errors import TwinsError
from twins.task import build_task
from twins.train.build import build_trainer
from twins.train.callbacks import Callback
from twins.train.checkpoint import atomic_torch_save
from twins.train.dist import Strategy, make_strategy
from twins.train.energy_cb import EnergyCallback
from twins.train.tracking_cb import TrackingCallback

log = logging.getLogger(__name__)


def _missing_dirs(directory: Path) -> list[Path]:
    """``directory`` and those of its parents that do not exist yet, deepest first."""
    missing: list[Path] = []
    for path in (directory, *directory.parents):
        if path.exists() or path.is_symlink():
            break
        missing.append(path)
    return missing


@contextlib.contextmanager
def removed_if_refused(run_dir: Path, is_main: bool = True) -> Iterator[None]:
    """Undo the directories a failing block created for a run that did not exist.

    If ``run_dir`` did not exist on entry and the block raises, ``run_dir`` (with what
    the block wrote into it) is deleted, then each parent that the block created, only
    while it is empty. Nothing that existed on entry is touched. Only the main rank
    deletes.

    Args:
        run_dir: ``<workdir>/<name>`` of the run.
        is_main: Whether this process is rank 0.
    """
    created = _missing_dirs(run_dir)
    try:
        yield
    except BaseException:
        if is_main and created:
            shutil.rmtree(run_dir, ignore_errors=True)
            for parent in created[1:]:
                with contextlib.suppress(OSError):
                    parent.rmdir()  # only if empty: another run may have written there
        raise


def open_tracker(
    cfg: RunConfig,
    strategy: Strategy,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
) -> Any:
    """A started MLflow tracker on rank 0 (when enabled), a no-op tracker elsewhere; nested
    under ``parent_run_id`` when given (Tune trials under their study run)."""
    from twins.track import NullTracker, Tracker, resolve_tracking_uri

    if not (cfg.tracking.enabled and strategy.is_main):
        return NullTracker()
    uri = resolve_tracking_uri(cfg.tracking.uri, cfg.workdir)
    tracker = Tracker(
        uri, cfg.tracking.experiment, run_name=cfg.name, tags=tags, parent_run_id=parent_run_id
    )
    tracker.start()
    return tracker


def train_process(
    cfg: RunConfig,
    resume: bool = False,
    strategy: Strategy | None = None,
    extra_callbacks: tuple[Callback, ...] = (),
    progress: bool | None = None,
    parent_run_id: str | None = None,
) -> dict[str, Any]:
    """Train, evaluate on the test split, save and track, in this process.

    Args:
        cfg: Resolved config.
        resume: Continue from ``checkpoints/last.pt`` exactly where it stopped.
        strategy: Pre-built strategy (Ray workers pass one); default detects it.
        extra_callbacks: More callbacks (tests use them to interrupt a run).
        progress: Force the progress bar on or off (default: when stderr is a TTY).
        parent_run_id: Nest the MLflow run under this run (Tune trials).

    Returns:
        The summary written to ``summary.json`` (identical on every rank).

    Raises:
        TwinsError: ``resume`` without a checkpoint.
        ConfigError: ``workdir`` (or the run directory) exists and is not a directory, or
            cannot be written.
        DataError: The task refuses its data; a run directory this call would have
            created is then not left behind.
    """
    owns_strategy = strategy is None
    strategy = strategy or make_strategy(
        cfg.distributed.backend, cfg.distributed.use_gpu, cfg.distributed.timeout_s
    )
    try:
        return _train(cfg, strategy, resume, extra_callbacks, progress, parent_run_id)
    finally:
        if owns_strategy:
            # Destroy the process group we created: left to interpreter exit, gloo's threads
            # can abort the process ("terminate called without an active exception").
            strategy.shutdown()


def _train(
    cfg: RunConfig,
    strategy: Strategy,
    resume: bool,
    extra_callbacks: Sequence[Callback],
    progress: bool | None,
    parent_run_id: str | None,
) -> dict[str, Any]:
    """:func:`train_process` with its strategy made."""
    run_dir = cfg.run_dir
    ckpt = run_dir / "checkpoints" / "last.pt"
    if resume and not ckpt.is_file():
        raise TwinsError(f"cannot resume: no checkpoint at {ckpt}", "run without --resume first")
    check_workdir(cfg)
    # The task and its data are built (and refused) before the run writes anything; what a
    # refused task wrote itself (a cache in a new run directory) is removed again.
    with removed_if_refused(run_dir, strategy.is_main):
        task = build_task(cfg)
        task.rank, task.world_size = strategy.rank, strategy.world_size
        splits = task.splits()
        fingerprint = task.fingerprint()
    if strategy.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / "config.yaml", to_yaml(cfg))
    tags = {
        "twins.task": cfg.task.target,
        "twins.config_hash": config_hash(cfg),
        "twins.data_fingerprint": fingerprint,
        "twins.world_size": str(strategy.world_size),
        "twins.launcher": strategy.env.launcher,
        "twins.resumed": str(resume),
    }
    tracker = open_tracker(cfg, strategy, tags, parent_run_id)
    energy = EnergyCallback(cfg.energy.rapl_root, cfg.energy.estimate_watts_per_core)
    callbacks: list[Callback] = [energy] if cfg.energy.enabled else []
    params = {**to_dict(cfg), "data_fingerprint": fingerprint}
    callbacks.append(TrackingCallback(tracker, params))
    callbacks.extend(task.callbacks())
    callbacks.extend(extra_callbacks)
    try:
        trainer = build_trainer(cfg, task, strategy, splits, callbacks, progress=progress)
        result = trainer.fit(ckpt if resume else None)
        model = trainer.restore_best()
        example = None  # (made before the training data is released)
        if cfg.tracking.register_model and strategy.is_main:
            example = task.example_batch(2)
        test_data = splits.test
        del splits  # the training data is not needed past here (the domain evaluation
        trainer.release_data()  # may need the memory)
        task.release_data()
        test = trainer.evaluate(test_data, "test")
        summary: dict[str, Any] = {
            "name": cfg.name,
            "epochs": result.epochs,
            "steps": result.steps,
            "stopped_early": result.stopped_early,
            f"best_{trainer.monitor}": result.best,
            "best_step": result.best_step,
            "train_loss": result.last.get("train_loss"),
            **test,
            "world_size": strategy.world_size,
            "launcher": strategy.env.launcher,
            "fit_wall_s": result.wall_s,
            "config_hash": config_hash(cfg),
            "data_fingerprint": fingerprint,
            "energy": energy.total if cfg.energy.enabled else {},
            "energy_description": energy.description,
        }
        if strategy.is_main:
            domain = task.evaluate(model, "test")
            summary["test_metrics"] = domain
            atomic_torch_save(
                {"format": 1, "model": model.state_dict(), "config": to_yaml(cfg)},
                run_dir / "model.pt",
            )
            tracker.log_metrics({**test, **domain, **summary["energy"]}, result.epochs)
            tracker.log_text(to_yaml(cfg), "config.yaml")
            for fig in task.figures(model, "test", run_dir / "figures"):
                tracker.log_artifact(fig, "figures")
            summary["figures"] = sorted(str(p) for p in (run_dir / "figures").glob("*.png"))
            version = None
            if example is not None:
                version = tracker.log_model(
                    model, cfg.tracking.register_model, input_example=_inputs_of(example)
                )
            summary["mlflow_run_id"] = tracker.run_id
            summary["model_version"] = version
            atomic_write(run_dir / "summary.json", json.dumps(summary, indent=2, default=float))
            log.info(
                "run %s done: best %s %.4g, test_loss %.4g, %s",
                cfg.name,
                trainer.monitor,
                result.best,
                test["test_loss"],
                energy.description or "",
            )
        tracker.end("FINISHED")
    except BaseException:
        tracker.end("FAILED")
        raise
    summary = strategy.broadcast_object(summary if strategy.is_main else None)
    return summary


def _inputs_of(batch: Any) -> Any:
    """The model-input part of an ``(inputs, target)`` batch, as numpy for MLflow."""
    inputs = batch[0] if isinstance(batch, list | tuple) else batch
    return inputs.numpy() if isinstance(inputs, torch.Tensor) else None

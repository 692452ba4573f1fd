"""``twins dryrun``: build everything a run builds, time a few steps, project the run.

The dry run fails on every error the real run would hit before training:
config, task import, data (empty or malformed splits), model build, a forward
and backward pass, validation, the checkpoint round trip, a writable run
directory and a reachable tracking store.

Before it builds the datasets, it asks the task to project its preprocessing
(:meth:`twins.task.Task.preprocessing_projection`, e.g. the drought task's out-of-core
cube build from a probe on a few blocks of the grid) and reports it beside the training
projection.
"""

from __future__ import annotations

import math
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from twins.config import RunConfig, check_workdir
from twins.energy import EnergyMeter
from twins.errors import DataError, TwinsError
from twins.task import PreprocessProjection, build_task
from twins.train.build import build_trainer
from twins.train.callbacks import Callback, Checkpointing, ProgressBar
from twins.train.dist import Strategy
from twins.train.loop import Trainer, move_to
from twins.train.run import removed_if_refused


@dataclass
class DryRunReport:
    """What the dry run measured and projected. Times in seconds, memory in MiB."""

    name: str
    task: str
    input_shapes: list[str]
    output_shape: str
    parameters: int
    trainable: int
    n_train: int
    n_val: int
    n_test: int
    workers: int
    nodes: int
    local_batch: int
    steps_timed: int
    step_s: float
    samples_per_s: float
    val_s_per_sample: float
    peak_rss_mib: float
    peak_cuda_mib: float | None
    energy_per_step_j: float | None
    energy_note: str
    steps_per_epoch: int
    epoch_s: float
    total_s: float
    walltime: str
    launch: list[str] = field(default_factory=list)
    preprocessing: PreprocessProjection | None = None

    def render(self) -> str:
        """The report as aligned text lines."""
        e = (
            f"{self.energy_per_step_j:.3g} J/step"
            if self.energy_per_step_j is not None
            else self.energy_note
        )
        cuda = f", CUDA peak {self.peak_cuda_mib:.0f} MiB" if self.peak_cuda_mib else ""
        lines = [
            f"dry run of {self.name} ({self.task})",
            f"  inputs        {', '.join(self.input_shapes)} -> output {self.output_shape}",
            f"  parameters    {self.parameters:,} ({self.trainable:,} trainable)",
            f"  samples       train {self.n_train:,}, val {self.n_val:,}, test {self.n_test:,}",
            f"  scale         {self.workers} worker(s) on {self.nodes} node(s), "
            f"local batch {self.local_batch}",
            f"  step time     {self.step_s * 1e3:.2f} ms (median of {self.steps_timed}), "
            f"{self.samples_per_s:,.0f} samples/s per worker",
            f"  memory        peak RSS {self.peak_rss_mib:.0f} MiB{cuda}",
            f"  energy        {e}",
            f"  projection    {self.steps_per_epoch} steps/epoch, epoch {_hms(self.epoch_s)}, "
            f"total {_hms(self.total_s)} (compute only; communication not included)",
            f"  walltime      {self.walltime} (projection x 1.5 + 10 min)",
            *(self.preprocessing.render() if self.preprocessing else []),
            "  launch:",
            *[f"    {c}" for c in self.launch],
        ]
        return "\n".join(lines)


def _hms(seconds: float) -> str:
    s = int(math.ceil(seconds))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _shape(x: Any) -> list[str]:
    if isinstance(x, torch.Tensor):
        return [f"{tuple(x.shape)} {str(x.dtype).removeprefix('torch.')}"]
    if isinstance(x, list | tuple):
        return [s for item in x for s in _shape(item)]
    if isinstance(x, dict):
        return [f"{k}: {s}" for k, v in x.items() for s in _shape(v)]
    return [type(x).__name__]


class _StepTimer(Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.stamps.append(time.perf_counter())

    def on_step_end(self, trainer: Trainer, step: int, loss: float | None) -> None:
        self.stamps.append(time.perf_counter())


def probe_shapes(trainer: Trainer, data: Dataset[Any], n: int) -> tuple[list[str], str]:
    """Shapes of one forward pass of the model, driven exactly as the trainer drives it.

    A batch of ``n`` samples goes through the trainer's own path (its ``collate_fn``, the
    move to its device, and its loss function, i.e. the task's :meth:`~twins.task.Task.loss`)
    in evaluation mode; a forward hook on the bare model records what the loss passed to it
    and what it returned. Nothing is assumed about the batch's structure: a task whose
    model takes several tensors (the drought model: dynamic, static and baseline inputs)
    reports them all.

    Args:
        trainer: The dry run's trainer (after its steps).
        data: Dataset to take the first ``n`` samples from.
        n: Samples in the probe batch.

    Returns:
        ``(input shapes, output shape)`` as ``"(batch, ...) dtype"`` strings, keyword inputs
        as ``"name: (...) dtype"``. If the task's loss never calls the model's ``forward``
        (it may call submodules only), the inputs are the batch's tensors and the output
        says so.
    """
    model = trainer.bare_model
    seen: list[tuple[list[str], str]] = []

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        if not seen:  # a loss may call the model more than once: report the first call
            seen.append(([*_shape(list(args)), *_shape(kwargs)], ", ".join(_shape(out))))

    loader = DataLoader(
        Subset(data, range(min(n, len(data)))),  # type: ignore[arg-type]
        batch_size=n,
        collate_fn=trainer.collate_fn,
    )
    batch = move_to(next(iter(loader)), trainer.strategy.device)
    handle = model.register_forward_hook(hook, with_kwargs=True)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            trainer.loss_fn(model, batch)
    finally:
        handle.remove()
        model.train(was_training)
    if not seen:
        return _shape(batch), "not seen (the task's loss does not call the model's forward)"
    return seen[0]


def launch_commands(cfg_path: str, workers: int, nodes: int, backend: str) -> list[str]:
    """The commands that start the real run at the requested scale."""
    if backend == "ray":
        return [f"twins train {cfg_path} --backend ray --workers {workers}"]
    if workers <= 1:
        return [f"twins train {cfg_path}"]
    per_node = max(1, workers // nodes)
    if nodes == 1:
        return [f"torchrun --standalone --nproc_per_node={per_node} -m twins train {cfg_path}"]
    return [
        f"srun --nodes={nodes} --ntasks-per-node=1 torchrun --nnodes={nodes} "
        f"--nproc_per_node={per_node} --rdzv_backend=c10d "
        f"--rdzv_endpoint=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1):29500 "
        f"-m twins train {cfg_path}"
    ]


def dry_run(
    cfg: RunConfig, workers: int = 1, steps: int = 5, nodes: int = 1, config_path: str = "CONFIG"
) -> DryRunReport:
    """Dry-run a config at the scale of ``workers`` ranks on ``nodes`` nodes.

    The run directory is checked before anything is written; a dry run that fails removes
    the run directory it created (a task's data cache), as a refused real run does. A dry
    run that succeeds leaves only what the real run would reuse (the cache).

    Args:
        cfg: Resolved config.
        workers: Ranks (or Ray workers) of the projected run.
        steps: Optimizer steps to time, after one warm-up step.
        nodes: Nodes of the projected run.
        config_path: How to name the config in the launch command.

    Returns:
        The :class:`DryRunReport`.

    Raises:
        TwinsError: Whatever the real run would fail on first.
    """
    check_workdir(cfg)
    with removed_if_refused(cfg.run_dir):
        return _dry_run(cfg, workers, steps, nodes, config_path)


def project_preprocessing(cfg: RunConfig) -> PreprocessProjection | None:
    """The task's preprocessing projection alone (no training steps), for a job of its own.

    Args:
        cfg: Resolved config.

    Returns:
        :meth:`twins.task.Task.preprocessing_projection` of the config's task (None when
        the task projects none).

    Raises:
        TwinsError: The config, the task or its data are refused (as the real run would).
    """
    check_workdir(cfg)
    return build_task(cfg).preprocessing_projection()


def _dry_run(
    cfg: RunConfig, workers: int, steps: int, nodes: int, config_path: str
) -> DryRunReport:
    if cfg.tracking.enabled:
        from twins.track import prepare_store, resolve_tracking_uri

        prepare_store(resolve_tracking_uri(cfg.tracking.uri, cfg.workdir), cfg.tracking.experiment)
    task = build_task(cfg)
    preprocessing = task.preprocessing_projection()
    splits = task.splits()
    n_train, n_val, n_test = (len(s) for s in (splits.train, splits.val, splits.test))  # type: ignore[arg-type]
    for split, n in (("train", n_train), ("validation", n_val), ("test", n_test)):
        if n == 0:
            raise DataError(f"task {cfg.task.target}: the {split} split is empty")
    b = cfg.train.batch_size
    if b < workers:
        raise TwinsError(f"train.batch_size {b} is smaller than {workers} workers")
    local = math.ceil(b / workers)
    n_slice = min(n_train, local * (steps + 1))
    # The timed steps draw their samples from the whole training set, as an epoch does: the
    # first samples of a set laid out by place and time sit together in memory, and steps
    # on them alone can run faster than an epoch's.
    drawn = torch.randperm(n_train, generator=torch.Generator().manual_seed(cfg.seed))
    sliced = type(splits)(
        Subset(splits.train, drawn[:n_slice].tolist()),
        Subset(splits.val, range(min(n_val, 2 * local))),
        splits.test,
    )
    dry = cfg.model_copy(deep=True)
    dry.train.batch_size = local
    dry.train.epochs = 1
    dry.train.max_steps_per_epoch = steps + 1
    timer = _StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        dry.workdir = Path(tmp)
        # The task's callbacks as the real run has them (they may validate more, e.g. a
        # per-output selection's own pass over the validation set).
        callbacks = [timer, *task.callbacks()]
        trainer = build_trainer(dry, task, Strategy(), sliced, callbacks, progress=False)
        trainer.callbacks = [
            c for c in trainer.callbacks if not isinstance(c, Checkpointing | ProgressBar)
        ]
        meter = EnergyMeter(rapl_root=cfg.energy.rapl_root)
        meter.start()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        trainer.fit()
        energy = meter.stop()
        t0 = time.perf_counter()
        val = trainer.validate()  # the loss and the callbacks' validation work
        val_s = (time.perf_counter() - t0) / max(1, len(sliced.val))  # type: ignore[arg-type]
        if not math.isfinite(val["val_loss"]):
            raise TwinsError(f"dry run of {cfg.name}: validation loss is {val['val_loss']}")
        ck = Path(tmp) / "ck.pt"
        trainer.save_checkpoint(ck)
        trainer.load_checkpoint(ck)
    durations = [b2 - a for a, b2 in zip(timer.stamps[1:], timer.stamps[2:], strict=False)]
    durations = durations or [timer.stamps[-1] - timer.stamps[0]]
    step_s = statistics.median(durations)
    model = trainer.bare_model
    input_shapes, output_shape = probe_shapes(trainer, sliced.train, min(local, 2))
    steps_per_epoch = n_train // b + (1 if n_train % b >= workers else 0)
    if cfg.train.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.train.max_steps_per_epoch)
    # Validations in an epoch: every val_every steps, else (or when the epoch is shorter)
    # once at its end.
    every = cfg.train.val_every
    n_validations = max(1, steps_per_epoch // every) if every else 1
    epoch_s = steps_per_epoch * step_s + n_validations * val_s * n_val / workers
    total_s = cfg.train.epochs * epoch_s
    n_steps_measured = len(durations) + 1
    energy_step = energy.total_j / n_steps_measured if energy.total_j is not None else None
    return DryRunReport(
        name=cfg.name,
        task=cfg.task.target,
        input_shapes=input_shapes,
        output_shape=output_shape,
        parameters=sum(p.numel() for p in model.parameters()),
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        workers=workers,
        nodes=nodes,
        local_batch=local,
        steps_timed=len(durations),
        step_s=step_s,
        samples_per_s=local / step_s if step_s > 0 else math.inf,
        val_s_per_sample=val_s,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        peak_cuda_mib=(
            torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        ),
        energy_per_step_j=energy_step,
        energy_note=energy.describe(),
        steps_per_epoch=steps_per_epoch,
        epoch_s=epoch_s,
        total_s=total_s,
        walltime=_hms(total_s * 1.5 + 600),
        launch=launch_commands(config_path, workers, nodes, cfg.distributed.backend),
        preprocessing=preprocessing,
    )

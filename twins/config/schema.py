"""Pydantic models of a run config. Every model forbids unknown keys.

A run config names a task (``task.target``, a ``module:Class`` reference) whose
own ``Params`` model validates ``task.params``; everything else (training,
distribution, tracking, energy) is domain-free and lives here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from twins.compute.config import ComputeConfig
from twins.launch.models import LaunchConfig

MAX_SEED = 2**62
"""Largest run seed: torch seeds are 64-bit and the trainer adds the epoch to the seed."""


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment,
    and a float is never infinite or NaN (``lr: .inf`` is refused, not trained on)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class TaskRef(StrictModel):
    """Which task to train and its parameters.

    Attributes:
        target: ``"package.module:Class"`` of a :class:`twins.task.Task` subclass.
        params: Task parameters, validated by the task's own ``Params`` model.
    """

    target: str = "twins.examples.toy:ToyRegression"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("target")
    @classmethod
    def _has_colon(cls, v: str) -> str:
        mod, sep, attr = v.partition(":")
        if not sep or not mod or not attr:
            raise ValueError(f"expected 'package.module:Class', got {v!r}")
        return v


class OptimizerConfig(StrictModel):
    """Optimizer. ``lr`` is the learning rate for the global batch."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)


class SchedulerConfig(StrictModel):
    """Learning-rate schedule, stepped once per epoch (``plateau`` on the monitored metric)."""

    name: Literal["none", "step", "cosine", "plateau"] = "none"
    step_size: int = Field(10, ge=1)
    gamma: float = Field(0.5, gt=0, le=1)
    patience: int = Field(5, ge=0)


class TrainConfig(StrictModel):
    """The training loop.

    Attributes:
        epochs: Number of passes over the training split.
        batch_size: Global batch size (summed over all ranks).
        val_every: Validate every this many optimizer steps; 0 means once per epoch.
        early_stop_patience: Stop after this many validations without improvement.
        monitor: Validation metric that selects the best state (lower is better); the
            trainer validates ``val_loss`` only, so any other name is refused rather than
            never selecting a state.
        checkpoint_every: Write a resumable checkpoint every this many epochs.
        max_steps_per_epoch: Cap on steps per epoch (smoke runs); ``None`` for all.
        grad_clip: Clip the global gradient norm to this value; ``None`` disables.
        num_workers: DataLoader worker processes per rank.
        progress: Show a progress bar on rank 0.
    """

    epochs: int = Field(5, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    grad_clip: float | None = Field(None, gt=0)
    val_every: int = Field(0, ge=0)
    early_stop_patience: int | None = Field(None, ge=1)
    monitor: Literal["val_loss"] = "val_loss"
    checkpoint_every: int = Field(1, ge=1)
    max_steps_per_epoch: int | None = Field(None, ge=1)
    num_workers: int = Field(0, ge=0)
    progress: bool = True


class DistributedConfig(StrictModel):
    """How the trainer is run.

    Attributes:
        backend: ``auto`` uses DDP when launched by torchrun or srun, else one process;
            ``ray`` runs the same loop on Ray Train workers.
        workers: Number of Ray Train workers (``backend: ray``).
        address: Address of an existing Ray cluster; ``None`` starts a local one.
        cpus_per_worker: CPUs reserved per Ray worker.
        use_gpu: Give each Ray worker a GPU.
        timeout_s: Collective-operation timeout in seconds.
    """

    backend: Literal["auto", "local", "torchrun", "ray"] = "auto"
    workers: int = Field(1, ge=1)
    address: str | None = None
    cpus_per_worker: float = Field(1.0, gt=0)
    use_gpu: bool = False
    timeout_s: int = Field(600, ge=10)


class TrackingConfig(StrictModel):
    """MLflow tracking.

    Attributes:
        enabled: Log to MLflow at all.
        uri: Tracking URI; ``None`` uses ``$MLFLOW_TRACKING_URI`` or
            ``sqlite:///<workdir>/mlflow.db``.
        experiment: Experiment name.
        register_model: Registered-model name; ``None`` skips registration.
    """

    enabled: bool = True
    uri: str | None = None
    experiment: str = "twins"
    register_model: str | None = None


class EnergyConfig(StrictModel):
    """Energy metering.

    Attributes:
        enabled: Meter the run.
        estimate_watts_per_core: If set, also report an *estimate* of CPU energy as
            CPU-seconds times this power (W); always labelled as an estimate.
        rapl_root: Where the powercap (RAPL) tree lives.
    """

    enabled: bool = True
    estimate_watts_per_core: float | None = Field(None, gt=0)
    rapl_root: Path = Path("/sys/class/powercap")


class RunConfig(StrictModel):
    """A complete run: what to train and how.

    Attributes:
        name: Run name (used for the run directory and the MLflow run); letters, digits,
            ``_``, ``.`` and ``-``, not ``.`` or ``..``, at most 200 characters (a directory
            name is at most 255 bytes).
        seed: Global seed (weights, shuffling, dropout), in ``[0, MAX_SEED]``.
        workdir: Directory for checkpoints, the default MLflow store and reports.
        compute: Where dask runs the array work (threads, a local cluster, a running
            scheduler or Slurm jobs), see :class:`twins.compute.config.ComputeConfig`.
        launch: Slurm / Kubernetes settings for ``twins launch``.
    """

    name: str = Field("run", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    workdir: Path = Path("runs")
    task: TaskRef = Field(default_factory=TaskRef)
    train: TrainConfig = Field(default_factory=TrainConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    energy: EnergyConfig = Field(default_factory=EnergyConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)

    @field_validator("name")
    @classmethod
    def _not_a_parent(cls, v: str) -> str:
        if set(v) == {"."}:
            raise ValueError(f"{v!r} would put the run outside workdir; give a run name")
        return v

    @property
    def run_dir(self) -> Path:
        """Directory of this run: ``<workdir>/<name>``."""
        return self.workdir / self.name

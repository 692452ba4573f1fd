"""The contract between the core and a domain: a :class:`Task`.

A task builds datasets, a model and a loss from its own validated parameters.
The core never looks inside the data: batches are whatever the task's datasets
yield, and :meth:`Task.loss` turns one into a scalar.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn
from torch.utils.data import Dataset

from twins.compute.config import ComputeConfig
from twins.config import RunConfig, resolve_target
from twins.launch.models import SlurmConfig


@dataclass(frozen=True)
class Splits:
    """Time-ordered train / validation / test datasets (map-style, lazily indexed).

    Attributes:
        train: Training samples: all of them, or, with ``train_counts``, this rank's shard.
        val: Validation samples (all; the trainer shards evaluation itself).
        test: Test samples (likewise).
        train_counts: None when ``train`` holds every training sample; else the number of
            samples in every rank's shard (:attr:`Task.rank` of :attr:`Task.world_size`),
            for a task that reads only its rank's part of the data.
    """

    train: Dataset[Any]
    val: Dataset[Any]
    test: Dataset[Any]
    train_counts: tuple[int, ...] | None = None


@dataclass(frozen=True)
class PreprocessProjection:
    """What a task's preprocessing (e.g. an out-of-core cube build) will cost, projected
    from a probe on part of the data (:meth:`Task.preprocessing_projection`).

    Attributes:
        seconds: Projected wall time of the whole preprocessing [s].
        peak_bytes: Projected peak resident memory of the preprocessing process and its
            children (dask workers) [bytes].
        probed: What was measured, in words (e.g. the sub-grid and the record).
        probe_s: Wall time the probe took [s].
        phases: Projected wall time per phase [s], in order.
        cpus: CPUs (threads of the engine, all workers) the projection holds for.
        note: Anything the reader should know (e.g. the product exists already).
    """

    seconds: float
    peak_bytes: int
    probed: str
    probe_s: float
    phases: dict[str, float] = field(default_factory=dict)
    cpus: int = 1
    note: str = ""

    @property
    def total_s(self) -> float:
        """The projected wall time [s] (the name a training projection gives it)."""
        return self.seconds

    @property
    def peak_rss_mib(self) -> float:
        """The projected peak in MiB (as :class:`twins.dryrun.DryRunReport` reports it)."""
        return self.peak_bytes / 2**20

    def render(self) -> list[str]:
        """Report lines, aligned with :meth:`twins.dryrun.DryRunReport.render`'s."""
        phases = ", ".join(f"{k} {_hms(v)}" for k, v in self.phases.items())
        lines = [
            f"  preprocessing {_hms(self.seconds)}, peak RSS {self.peak_rss_mib:.0f} MiB "
            f"on {self.cpus} CPU(s) (projected from a {self.probe_s:.0f} s probe)",
            f"    probed      {self.probed}",
        ]
        if phases:
            lines.append(f"    phases      {phases}")
        if self.note:
            lines.append(f"    note        {self.note}")
        return lines


def _hms(seconds: float) -> str:
    s = int(math.ceil(seconds))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Task(ABC):
    """What a domain provides to be trained by the core.

    Subclasses declare ``Params`` (a pydantic model with ``extra="forbid"``) and
    implement :meth:`splits`, :meth:`build_model` and, unless batches are
    ``(inputs, target)`` pairs for a mean-squared-error fit, :meth:`loss`.

    Attributes:
        Params: Pydantic model that validates ``task.params``.
        params: The validated parameters.
        seed: Global seed of the run.
        workdir: Directory where the task may cache generated data.
        compute: Where the task's dask work runs (the run config's ``compute:``;
            :func:`build_task` sets it).
        slurm: The run config's ``launch.slurm`` (for ``compute.mode: slurm``).
        rank: This process's rank in the training (:func:`twins.train.run.train_process`
            sets it before :meth:`splits`); a task may then read only its rank's shard of
            the training data (see :attr:`Splits.train_counts`).
        world_size: Number of training ranks.
    """

    Params: ClassVar[type[BaseModel]]
    compute: ComputeConfig = ComputeConfig()
    slurm: SlurmConfig | None = None
    rank: int = 0
    world_size: int = 1

    def __init__(self, params: BaseModel, *, seed: int = 0, workdir: Path | None = None) -> None:
        self.params = params
        self.seed = seed
        self.workdir = workdir or Path(".")

    @abstractmethod
    def splits(self) -> Splits:
        """Build (or open) the train, validation and test datasets."""

    @abstractmethod
    def build_model(self) -> nn.Module:
        """Build a freshly initialised model (the caller seeds torch first)."""

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Mean loss over a batch; it must be a mean over samples so that the
        trainer can weight it by the local batch size under DDP.

        Args:
            model: The (possibly DDP-wrapped) model.
            batch: One collated batch; by default ``(inputs, target)``.

        Returns:
            Scalar tensor.
        """
        inputs, target = batch
        return nn.functional.mse_loss(model(inputs), target)

    def example_batch(self, n: int = 2) -> Any:
        """A small collated training batch, for shapes, the dry run and the model signature."""
        from torch.utils.data import default_collate

        train = self.splits().train
        return default_collate([train[i] for i in range(min(n, len(train)))])  # type: ignore[arg-type]

    def fingerprint(self) -> str:
        """Identifies the data a run trained on (default: hash of the task params)."""
        blob = json.dumps(self.params.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def callbacks(self) -> list[Any]:
        """Trainer callbacks the task contributes (default: none), e.g. per-output model
        selection; :func:`twins.train.run.train_process` appends them."""
        return []

    def figures(self, model: nn.Module, split: str, out_dir: Path) -> list[Path]:
        """Write the domain's diagnostic figures (PNG) of a trained model on ``split``
        into ``out_dir``; :func:`twins.train.run.train_process` logs them to MLflow.
        The default writes none."""
        return []

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Domain metrics of a trained model on ``split``; the default has none."""
        return {}

    def release_data(self) -> None:
        """Drop the datasets the task keeps from :meth:`splits` (the trainer calls it after
        training, before the final evaluation, so that the evaluation does not hold the
        training data too). The default keeps nothing."""
        return None

    def preprocess(self) -> str | None:
        """Prepare what training reads (e.g. build a cached data cube) and say what was
        done in one line; ``twins preprocess`` runs it, e.g. as a job of its own before the
        training jobs. The default has nothing to prepare (None): :meth:`splits` builds
        everything."""
        return None

    def preprocessing_projection(self) -> PreprocessProjection | None:
        """Project :meth:`preprocess`'s wall time and peak memory without running it
        whole (``twins dryrun`` reports it; ``twins launch slurm --kind preprocess`` sizes
        its job by it). The default projects nothing (None)."""
        return None


def build_task(cfg: RunConfig) -> Task:
    """Instantiate the task a resolved config names."""
    task_cls = resolve_target(cfg.task.target)
    params = task_cls.Params.model_validate(cfg.task.params)
    task = task_cls(params, seed=cfg.seed, workdir=cfg.run_dir)
    task.compute = cfg.compute
    task.slurm = cfg.launch.slurm
    return task

"""The contract between the core and a domain: a :class:`Task`.

A task builds datasets, a model and a loss from its own validated parameters.
The core never looks inside the data: batches are whatever the task's datasets
yield, and :meth:`Task.loss` turns one into a scalar.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn
from torch.utils.data import Dataset

from twins.config import RunConfig, resolve_target


@dataclass(frozen=True)
class Splits:
    """Time-ordered train / validation / test datasets (map-style, lazily indexed)."""

    train: Dataset[Any]
    val: Dataset[Any]
    test: Dataset[Any]


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
    """

    Params: ClassVar[type[BaseModel]]

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


def build_task(cfg: RunConfig) -> Task:
    """Instantiate the task a resolved config names."""
    task_cls = resolve_target(cfg.task.target)
    params = task_cls.Params.model_validate(cfg.task.params)
    return task_cls(params, seed=cfg.seed, workdir=cfg.run_dir)

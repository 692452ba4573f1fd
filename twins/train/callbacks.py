"""Small callbacks for cross-cutting work: checkpoints, early stopping, progress.

Tracking and energy callbacks live beside the modules they wrap
(:mod:`twins.train.tracking_cb`, :mod:`twins.train.energy_cb`). Every hook
runs on every rank; a callback that should act on rank 0 only checks
``trainer.strategy.is_main`` itself, and one that communicates must do so on
all ranks.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twins.train.loop import FitResult, Trainer

log = logging.getLogger(__name__)


class Callback:
    """Base class: every hook does nothing."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch (after a resume has been applied)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before each epoch (epochs count from 1)."""

    def on_step_end(self, trainer: Trainer, step: int, loss: float | None) -> None:
        """After each optimizer step; ``loss`` is the local loss when cheaply known, else None."""

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """After each validation pass; metrics are global (reduced over ranks)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """After each epoch; callbacks may add entries to ``metrics``."""

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        """After training (also after early stopping)."""

    def state_dict(self) -> dict[str, Any]:
        """State saved in checkpoints (plain numbers and strings)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` on resume."""


class EarlyStopping(Callback):
    """Stop when the monitored metric has not improved for ``patience`` validations.

    Args:
        patience: Validations without improvement before stopping.
        min_delta: Improvement smaller than this does not count.
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best = float("inf")
        self.bad = 0

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        value = metrics.get(trainer.monitor)
        if value is None:
            return
        if value < self.best - self.min_delta:
            self.best, self.bad = value, 0
        else:
            self.bad += 1
            if self.bad >= self.patience:
                trainer.should_stop = True
                if trainer.strategy.is_main:
                    log.info(
                        "early stop: %s did not improve for %d validations",
                        trainer.monitor,
                        self.bad,
                    )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad = float(state["best"]), int(state["bad"])


class Checkpointing(Callback):
    """Write ``<dir>/last.pt`` every ``every`` epochs and at the end (rank 0 writes).

    Args:
        directory: Where checkpoints go.
        every: Epoch interval.
    """

    def __init__(self, directory: Path, every: int = 1) -> None:
        self.directory, self.every = Path(directory), every

    @property
    def last(self) -> Path:
        """Path of the most recent checkpoint."""
        return self.directory / "last.pt"

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if epoch % self.every == 0 or trainer.should_stop or epoch == trainer.epochs:
            trainer.save_checkpoint(self.last)


class ProgressBar(Callback):
    """A tqdm bar per epoch on rank 0, showing the running loss; silent elsewhere."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if self.enabled and trainer.strategy.is_main:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=trainer.steps_in_epoch, desc=f"epoch {epoch}", leave=False)

    def on_step_end(self, trainer: Trainer, step: int, loss: float | None) -> None:
        if self._bar is not None:
            self._bar.update(1)
            if loss is not None:
                self._bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if trainer.strategy.is_main:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "epoch")
            log.info("epoch %d: %s", epoch, shown)

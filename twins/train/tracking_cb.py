"""Callback that logs a run to MLflow from rank 0 (other ranks hold a no-op tracker)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from twins.train.callbacks import Callback

if TYPE_CHECKING:
    from twins.track import NullTracker, Tracker
    from twins.train.loop import FitResult, Trainer

log = logging.getLogger(__name__)


class TrackingCallback(Callback):
    """Log params once, metrics per epoch (and per validation), and the fit summary.

    Args:
        tracker: A started :class:`~twins.track.Tracker` on rank 0, a
            :class:`~twins.track.NullTracker` elsewhere.
        params: Flat or nested parameters to log at fit start.
    """

    def __init__(self, tracker: Tracker | NullTracker, params: dict[str, Any] | None = None):
        self.tracker = tracker
        self.params = params or {}

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.strategy.is_main and self.params and trainer.epoch == 0:
            self.tracker.log_params(self.params)

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if trainer.strategy.is_main and trainer.val_every:
            self.tracker.log_metrics({f"step_{k}": v for k, v in metrics.items()}, trainer.step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if trainer.strategy.is_main:
            self.tracker.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, epoch)
            self.tracker.flush()

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        if trainer.strategy.is_main:
            self.tracker.log_metrics(
                {
                    "best_" + trainer.monitor: result.best,
                    "best_step": float(result.best_step),
                    "fit_wall_s": result.wall_s,
                },
                result.epochs,
            )
            self.tracker.flush()

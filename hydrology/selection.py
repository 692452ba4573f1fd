"""Per-output selection that also weighs the state before training.

The hybrid forecaster starts as its baseline (ESP for SPI, climatology otherwise: the
correction head and the skip path are zero at initialisation). On real precipitation the
baseline is hard to beat (``benchmarks/drought_gpcc_skill.py``): an output that training
never improves on the validation period should keep it. :class:`PerOutputBestFromStart`
scores the untrained state on the validation split before the first step, so it competes
with every later validation state in :class:`hydrology.callbacks.PerOutputBest`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hydrology.callbacks import PerOutputBest

if TYPE_CHECKING:
    from twins.train.loop import Trainer


class PerOutputBestFromStart(PerOutputBest):
    """:class:`~hydrology.callbacks.PerOutputBest` with the state at step 0 as a candidate
    (a resumed run has scored it before it was interrupted)."""

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.step == 0 and trainer.val_data is not None:
            self.on_validation_end(trainer, {})

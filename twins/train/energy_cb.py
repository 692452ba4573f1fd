"""Callback that meters energy per epoch and per sample.

Every rank meters its own CPU-seconds; hardware counters (RAPL packages, NVML
GPUs) are node-wide, so only the first rank of each node reads them. Figures
are summed over ranks (CPU-seconds) and nodes (joules).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from twins.energy import EnergyMeter, EnergyReport
from twins.train.callbacks import Callback

if TYPE_CHECKING:
    from twins.train.loop import FitResult, Trainer


class EnergyCallback(Callback):
    """Adds ``energy_*`` entries to each epoch's metrics and keeps the run total.

    Args:
        rapl_root: powercap tree to read.
        estimate_watts_per_core: If set, also report a labelled CPU-energy estimate.
    """

    def __init__(self, rapl_root: Path, estimate_watts_per_core: float | None = None) -> None:
        self.rapl_root = rapl_root
        self.estimate = estimate_watts_per_core
        self.meter: EnergyMeter | None = None
        self.total: dict[str, float] = {}
        self.description = ""

    def on_fit_start(self, trainer: Trainer) -> None:
        node_first = trainer.strategy.local_rank == 0
        self.meter = EnergyMeter(
            rapl_root=self.rapl_root if node_first else Path("/nonexistent"),
            use_nvml=node_first,
            estimate_watts_per_core=self.estimate,
        )
        self.meter.start()

    def _reduce(self, trainer: Trainer, rep: EnergyReport) -> dict[str, float]:
        measured = rep.total_j is not None
        vec = torch.tensor(
            [rep.cpu_s, rep.total_j or 0.0, 1.0 if measured else 0.0, rep.estimated_j or 0.0],
            dtype=torch.float64,
            device=trainer.strategy.device,
        )
        trainer.strategy.all_reduce_sum(vec)
        out = {"energy_wall_s": rep.wall_s, "energy_cpu_s": float(vec[0])}
        if vec[2] > 0:
            out["energy_j"] = float(vec[1])
        if self.estimate is not None:
            out["energy_estimated_j"] = float(vec[3])
        return out

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        assert self.meter is not None
        self.meter.poll()
        red = self._reduce(trainer, self.meter.lap())
        samples = metrics.get("samples", math.nan)
        if "energy_j" in red and samples > 0:
            red["energy_j_per_sample"] = red["energy_j"] / samples
        if "energy_estimated_j" in red and samples > 0:
            red["energy_estimated_j_per_sample"] = red["energy_estimated_j"] / samples
        metrics.update(red)

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        assert self.meter is not None
        rep = self.meter.stop()
        self.total = self._reduce(trainer, rep)
        self.description = rep.describe()

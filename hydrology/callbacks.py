"""Trainer callback keeping the best validation state per output (lead x target).

A joint early stop trades lead-1 skill against the overfitting of other outputs; a
separate best state per output avoids it (``reference/feasibility-hydrology.md`` s4).
:class:`PerOutputBest` computes the per-output validation RMSE at every validation (every
``train.val_every`` steps), keeps the best state of each output, and at the end of
training installs the selection in the :class:`~hydrology.models.ensemble.PerOutputSelect`
model and makes it the trainer's best state, so ``restore_best``, the test evaluation and
``model.pt`` all use it.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Subset

from hydrology.models.ensemble import PerOutputSelect
from twins.train.batching import collate
from twins.train.callbacks import Callback
from twins.train.loop import move_to
from twins.train.sampler import shard_indices

if TYPE_CHECKING:
    from twins.train.loop import FitResult, Trainer

log = logging.getLogger(__name__)


@torch.no_grad()
def per_output_rmse(
    model: torch.nn.Module, data: Any, batch_size: int, trainer: Trainer | None = None
) -> list[float]:
    """RMSE of each output over a dataset of ``((inputs...), target)`` samples.

    Outputs are dim 1 of the target (any trailing spatial dims are pooled); NaN targets
    are skipped. With a trainer, each rank scores a contiguous shard and the sums are
    reduced over ranks.

    Returns:
        One RMSE per output (NaN when an output has no valid target).
    """
    was = model.training
    model.eval()
    device = trainer.strategy.device if trainer is not None else torch.device("cpu")
    if trainer is not None:
        data = Subset(
            data,
            list(shard_indices(len(data), trainer.strategy.rank, trainer.strategy.world_size)),
        )
    acc: torch.Tensor | None = None
    for inputs, target in DataLoader(data, batch_size=batch_size, collate_fn=collate):
        inputs, target = move_to(inputs, device), move_to(target, device)
        pred = model(*inputs)
        valid = torch.isfinite(target)
        err = torch.where(valid, pred - torch.nan_to_num(target), torch.zeros_like(pred)) ** 2
        dims = [0, *range(2, target.dim())]
        part = torch.stack([err.sum(dims), valid.sum(dims).to(err.dtype)]).double()
        acc = part if acc is None else acc + part
    model.train(was)
    if acc is None:
        return []
    if trainer is not None:
        trainer.strategy.all_reduce_sum(acc)
    return [
        math.sqrt(float(s / c)) if c > 0 else math.nan for s, c in zip(acc[0], acc[1], strict=True)
    ]


class PerOutputBest(Callback):
    """Keep the best validation state of every output; select them at the end.

    Args:
        names: Output names (for logging and metrics), length ``n_outputs``.
        batch_size: Batch size of the validation pass (default: the trainer's).
        patience: Stop training when no output has improved for this many validations
            (0: never stop).

    Attributes:
        best: Best validation RMSE per output.
        best_step: Step of each output's best state.
        history: ``(step, [rmse per output])`` of every validation.
    """

    def __init__(self, names: list[str], batch_size: int | None = None, patience: int = 0) -> None:
        self.names = list(names)
        self.batch_size = batch_size
        self.patience = patience
        self.bad = 0
        self.best = [math.inf] * len(names)
        self.best_step = [0] * len(names)
        self.states: list[dict[str, torch.Tensor] | None] = [None] * len(names)
        self.history: list[tuple[int, list[float]]] = []

    def _wrapper(self, trainer: Trainer) -> PerOutputSelect:
        model = trainer.bare_model
        if not isinstance(model, PerOutputSelect):
            raise TypeError("PerOutputBest needs a PerOutputSelect model")
        return model

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if trainer.val_data is None:
            return
        model = self._wrapper(trainer)
        rmse = per_output_rmse(
            model, trainer.val_data, self.batch_size or trainer.batch_size, trainer
        )
        self.history.append((trainer.step, rmse))
        state: dict[str, torch.Tensor] | None = None
        improved = False
        for i, r in enumerate(rmse):
            metrics[f"val_rmse_{self.names[i]}"] = r
            if r < self.best[i]:
                if state is None:
                    state = {
                        k: v.detach().cpu().clone() for k, v in model.net.state_dict().items()
                    }
                self.best[i], self.best_step[i], self.states[i] = r, trainer.step, state
                improved = True
        self.bad = 0 if improved else self.bad + 1
        if self.patience and self.bad >= self.patience:
            trainer.should_stop = True
            if trainer.strategy.is_main:
                log.info("PerOutputBest: no output improved for %d validations", self.bad)

    def selection(self) -> tuple[list[dict[str, torch.Tensor]], list[int]]:
        """Distinct selected states and the member index of each output."""
        steps = sorted(set(self.best_step))
        states: list[dict[str, torch.Tensor]] = []
        for s in steps:
            i = self.best_step.index(s)
            st = self.states[i]
            assert st is not None
            states.append(st)
        return states, [steps.index(s) for s in self.best_step]

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        if any(s is None for s in self.states):
            log.warning("PerOutputBest: some outputs were never validated; keeping joint best")
            return
        model = self._wrapper(trainer)
        states, sel = self.selection()
        trainer.restore_best()  # the net keeps the joint best state; members carry the rest
        model.set_members(states, sel)
        trainer.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if trainer.strategy.is_main:
            log.info(
                "per-output best: %s",
                ", ".join(
                    f"{n} {b:.4g}@{s}"
                    for n, b, s in zip(self.names, self.best, self.best_step, strict=True)
                ),
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": list(self.best),
            "best_step": list(self.best_step),
            "states": list(self.states),
            "bad": self.bad,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = [float(x) for x in state["best"]]
        self.best_step = [int(x) for x in state["best_step"]]
        self.states = list(state["states"])
        self.bad = int(state.get("bad", 0))

"""A synthetic forecasting task with known ground truth.

The series is an AR(1) process with a seasonal cycle and an exogenous driver::

    x[t] = a * x[t-1] + b * sin(2 pi t / period) + c * u[t-1] + noise[t],  noise ~ N(0, sigma^2)

and the task is to forecast ``x[t]`` from the previous ``window`` values of
``x`` and ``u``. The best possible mean squared error is ``sigma^2`` (the
noise floor), so a trained model can be judged against the truth as well as
against persistence (``x[t-1]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.utils.data import Dataset

from twins.task import Splits, Task


class ToyParams(BaseModel):
    """Parameters of the toy task.

    Attributes:
        length: Number of time steps in the whole series.
        window: Past steps fed to the model.
        ar: AR(1) coefficient ``a``.
        seasonal: Seasonal amplitude ``b``.
        period: Seasonal period in steps.
        driver: Coupling ``c`` of the exogenous driver.
        noise: Noise standard deviation ``sigma``.
        hidden: Hidden width of the MLP.
        dropout: Dropout probability in the MLP.
        val_fraction: Share of the series (after training) used for validation.
        test_fraction: Share of the series (at the end) used for testing.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    length: int = Field(4096, ge=64)
    window: int = Field(16, ge=1)
    ar: float = Field(0.8, gt=-1, lt=1)
    seasonal: float = 1.0
    period: float = Field(50.0, gt=1)
    driver: float = 0.5
    noise: float = Field(0.1, gt=0)
    hidden: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)

    @model_validator(mode="after")
    def _splits_not_empty(self) -> ToyParams:
        train = int(self.length * (1 - self.test_fraction - self.val_fraction)) - self.window
        if train < 1 or min(self.val_fraction, self.test_fraction) * self.length < 1:
            raise ValueError(
                f"length {self.length} leaves no training samples after a window of {self.window}"
            )
        return self


def generate_series(p: ToyParams, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Generate the driver ``u`` and the series ``x``.

    Returns:
        ``(x, u)``, each float32 of shape ``(length,)``.
    """
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(p.length).astype(np.float64)
    eps = rng.normal(0.0, p.noise, p.length)
    x = np.zeros(p.length)
    t = np.arange(p.length)
    season = p.seasonal * np.sin(2 * np.pi * t / p.period)
    for i in range(1, p.length):
        x[i] = p.ar * x[i - 1] + season[i] + p.driver * u[i - 1] + eps[i]
    return x.astype(np.float32), u.astype(np.float32)


class WindowDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Windows over a span of the series, built on access (nothing materialised).

    Sample ``i`` predicts ``x[start + i]`` from ``x`` and ``u`` over the
    ``window`` steps before it.

    Args:
        x: Series, shape ``(T,)``.
        u: Driver, shape ``(T,)``.
        start: First target index (``>= window``).
        stop: One past the last target index.
        window: Number of past steps.
    """

    def __init__(self, x: torch.Tensor, u: torch.Tensor, start: int, stop: int, window: int):
        if start < window or stop <= start:
            raise ValueError(f"bad span [{start}, {stop}) for window {window}")
        self.x, self.u, self.start, self.stop, self.window = x, u, start, stop, window

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.start + i
        past = slice(t - self.window, t)
        inputs = torch.cat([self.x[past], self.u[past]])
        return inputs, self.x[t : t + 1]


class ToyRegression(Task):
    """Forecast the next value of the toy series with a small MLP."""

    Params = ToyParams
    params: ToyParams

    def _series(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not hasattr(self, "_cache"):
            x, u = generate_series(self.params, self.seed)
            self._cache = (torch.from_numpy(x), torch.from_numpy(u))
        return self._cache

    def bounds(self) -> tuple[int, int, int, int]:
        """Split boundaries ``(train_start, val_start, test_start, end)`` in steps."""
        p = self.params
        n = p.length
        test_start = int(n * (1 - p.test_fraction))
        val_start = int(n * (1 - p.test_fraction - p.val_fraction))
        return p.window, val_start, test_start, n

    def splits(self) -> Splits:
        x, u = self._series()
        a, b, c, d = self.bounds()
        w = self.params.window
        return Splits(
            WindowDataset(x, u, a, b, w),
            WindowDataset(x, u, b, c, w),
            WindowDataset(x, u, c, d, w),
        )

    def build_model(self) -> nn.Module:
        p = self.params
        return nn.Sequential(
            nn.Linear(2 * p.window, p.hidden),
            nn.Tanh(),
            nn.Dropout(p.dropout),
            nn.Linear(p.hidden, p.hidden),
            nn.Tanh(),
            nn.Linear(p.hidden, 1),
        )

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """MSE of the model, of persistence and the noise floor on a split."""
        ds: Any = getattr(self.splits(), split)
        inputs = torch.stack([ds[i][0] for i in range(len(ds))])
        target = torch.stack([ds[i][1] for i in range(len(ds))])
        model.eval()
        with torch.no_grad():
            mse = float(nn.functional.mse_loss(model(inputs), target))
        w = self.params.window
        persistence = float(nn.functional.mse_loss(inputs[:, w - 1 : w], target))
        return {
            f"{split}_mse": mse,
            f"{split}_persistence_mse": persistence,
            f"{split}_noise_floor_mse": self.params.noise**2,
        }


def default_config() -> dict[str, Any]:
    """Raw config of the core demo (validated by :func:`twins.config.validate`)."""
    return {
        "name": "toy-demo",
        "seed": 7,
        "task": {"target": "twins.examples.toy:ToyRegression", "params": {}},
        "train": {
            "epochs": 8,
            "batch_size": 64,
            "optimizer": {"name": "adam", "lr": 3.0e-3},
            "early_stop_patience": 4,
        },
        "tracking": {"experiment": "twins-demo", "register_model": "toy-forecaster"},
    }

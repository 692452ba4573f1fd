"""Per-cell LSTM surrogate: monthly forcings plus static attributes -> indices at several leads."""

from __future__ import annotations

import torch
from torch import nn


class CellLSTM(nn.Module):
    """LSTM over a cell's recent months, with static attributes appended to every step.

    ``forward`` maps ``dynamic (batch, seq, n_dynamic)`` and ``static (batch, n_static)``
    to ``(batch, n_outputs)`` (for example SPI-3 and SMI at leads 1, 2, 3: six outputs,
    ordered target-major). With ``residual=True`` the network receives a baseline forecast
    ``(batch, n_outputs)`` (the overlap-aware analogue forecast) both as input and as the
    starting point, and learns only the correction: ``out = baseline + head(h)``.

    Args:
        n_dynamic: Dynamic features per month (standardised anomalies, indices, ...).
        n_static: Static attributes per cell (standardised orography, land fraction, ...).
        n_outputs: Number of outputs (targets x leads).
        hidden: LSTM hidden size.
        dropout: Dropout before the head.
        residual: Learn a correction to a baseline forecast passed to ``forward``.
    """

    def __init__(
        self,
        n_dynamic: int,
        n_static: int,
        n_outputs: int,
        hidden: int = 64,
        dropout: float = 0.2,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.residual = residual
        extra = n_outputs if residual else 0
        self.embed = nn.Linear(n_dynamic + n_static + extra, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_outputs)
        if residual:  # start as the baseline: the correction is zero at initialisation
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(
        self, dynamic: torch.Tensor, static: torch.Tensor, baseline: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Forecast from a cell's history.

        Args:
            dynamic: ``(batch, seq, n_dynamic)``.
            static: ``(batch, n_static)``.
            baseline: ``(batch, n_outputs)``, required when ``residual``.

        Returns:
            ``(batch, n_outputs)``.
        """
        seq = dynamic.shape[1]
        parts = [dynamic, static.unsqueeze(1).expand(-1, seq, -1)]
        if self.residual:
            if baseline is None:
                raise ValueError("CellLSTM(residual=True) needs a baseline forecast")
            parts.append(baseline.unsqueeze(1).expand(-1, seq, -1))
        h, _ = self.lstm(torch.tanh(self.embed(torch.cat(parts, dim=-1))))
        out = self.head(self.drop(h[:, -1]))
        return out + baseline if self.residual and baseline is not None else out

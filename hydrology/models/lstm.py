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
        members: Independently initialised copies trained side by side on the same batches
            (a seed ensemble in one module). With ``members > 1`` the forward pass returns
            the member mean, except while training with gradients, when it returns every
            member's forecast ``(batch, n_outputs, members)`` so that each member is fitted
            on its own loss (see :meth:`hydrology.task.DroughtForecast.loss`).
        skip: Add a linear map of the issue month's inputs to the outputs, zero at
            initialisation (a ridge-like path beside the LSTM).
    """

    def __init__(
        self,
        n_dynamic: int,
        n_static: int,
        n_outputs: int,
        hidden: int = 64,
        dropout: float = 0.2,
        residual: bool = False,
        members: int = 1,
        skip: bool = False,
    ) -> None:
        super().__init__()
        self.residual = residual
        self.n_members = int(members)
        self.skip_linear = skip
        self._args = (n_dynamic, n_static, n_outputs, hidden, dropout, residual)
        if self.n_members > 1:
            self.nets = nn.ModuleList(
                CellLSTM(*self._args, skip=skip) for _ in range(self.n_members)
            )
            return
        extra = n_outputs if residual else 0
        self.embed = nn.Linear(n_dynamic + n_static + extra, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_outputs)
        if residual:  # start as the baseline: the correction is zero at initialisation
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        if skip:  # linear path from the issue month's inputs, zero at initialisation
            self.skip = nn.Linear(n_dynamic + n_static + extra, n_outputs)
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)

    def forward(
        self, dynamic: torch.Tensor, static: torch.Tensor, baseline: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Forecast from a cell's history.

        Args:
            dynamic: ``(batch, seq, n_dynamic)``.
            static: ``(batch, n_static)``.
            baseline: ``(batch, n_outputs)``, required when ``residual``.

        Returns:
            ``(batch, n_outputs)`` (``(batch, n_outputs, members)`` for an ensemble in
            training mode with gradients enabled).
        """
        if self.n_members > 1:
            out = torch.stack([m(dynamic, static, baseline) for m in self.nets], dim=-1)
            return out if self.training and torch.is_grad_enabled() else out.mean(-1)
        seq = dynamic.shape[1]
        parts = [dynamic, static.unsqueeze(1).expand(-1, seq, -1)]
        if self.residual:
            if baseline is None:
                raise ValueError("CellLSTM(residual=True) needs a baseline forecast")
            parts.append(baseline.unsqueeze(1).expand(-1, seq, -1))
        x = torch.cat(parts, dim=-1)
        h, _ = self.lstm(torch.tanh(self.embed(x)))
        out = self.head(self.drop(h[:, -1]))
        if self.skip_linear:
            out = out + self.skip(x[:, -1])
        return out + baseline if self.residual and baseline is not None else out

    def resized(self, members: int, skip: bool | None = None) -> CellLSTM:
        """A fresh network of the same architecture with ``members`` members (and ``skip``)."""
        return CellLSTM(
            *self._args, members=members, skip=self.skip_linear if skip is None else skip
        )

"""ConvLSTM over space-time tiles: a month sequence of maps -> maps of indices at several leads."""

from __future__ import annotations

import torch
from torch import nn


class ConvLSTMCell(nn.Module):
    """One convolutional LSTM cell (Shi et al. 2015): the gates are 2-D convolutions.

    Args:
        in_channels: Input channels per step.
        hidden: Hidden channels.
        kernel: Odd kernel size of the gate convolution.
    """

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {kernel}")
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance one step.

        Args:
            x: ``(batch, in_channels, H, W)``.
            state: ``(h, c)``, each ``(batch, hidden, H, W)``.

        Returns:
            The new ``(h, c)``.
        """
        h, c = state
        i, f, o, g = torch.chunk(self.gates(torch.cat([x, h], dim=1)), 4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ConvLSTMForecaster(nn.Module):
    """Encode a tile's monthly history with a ConvLSTM and map the last state to forecasts.

    ``forward`` maps ``(batch, seq, channels, H, W)`` (dynamic maps, with static maps
    repeated over time as extra channels) to ``(batch, n_outputs, H, W)``. Sea cells
    should be filled (e.g. with 0) by the caller and masked in the loss.

    Args:
        in_channels: Channels per month (dynamic + static).
        n_outputs: Output maps (targets x leads).
        hidden: Hidden channels.
        kernel: Gate kernel size (odd).
    """

    def __init__(
        self, in_channels: int, n_outputs: int, hidden: int = 16, kernel: int = 3
    ) -> None:
        super().__init__()
        self.cell = ConvLSTMCell(in_channels, hidden, kernel)
        self.head = nn.Conv2d(hidden, n_outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forecast maps.

        Args:
            x: ``(batch, seq, channels, H, W)``.

        Returns:
            ``(batch, n_outputs, H, W)``.
        """
        b, t, _, hgt, wid = x.shape
        h = x.new_zeros(b, self.cell.hidden, hgt, wid)
        c = torch.zeros_like(h)
        for step in range(t):
            h, c = self.cell(x[:, step], (h, c))
        return self.head(h)

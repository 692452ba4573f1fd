"""DeepClean-style 1-D convolutional autoencoder: witnesses -> predicted strain noise.

Layout (after the DeepClean papers, reference/gravwave.md section 1; own implementation):

* input block: ``Conv1d(C -> C, k, stride 1)`` + BatchNorm + Tanh;
* encoder: one block per width in ``widths`` (default 8, 16, 32, 64), each
  ``Conv1d(k, stride 2)`` + BatchNorm + Tanh, so time is downsampled ``2 ** len(widths)``;
* bottleneck (the addition): residual blocks ``x + BN(Conv1x1(Tanh(BN(Conv_d(x)))))``
  with dilated kernels (dilations ``1, 2, 4, 8, 16`` by default) at the downsampled rate.
  The plain DeepClean layout sees only +/-96 samples (+/-23 ms at 4096 Hz), too short
  for a band-limited coupling with ~40 ms group delay (reference/feasibility-gravwave.md);
  each block adds ``(res_kernel - 1) / 2 * dilation * 2 ** len(widths)`` samples on each
  side, so the defaults reach +/-592 samples (+/-145 ms at 4096 Hz). Use
  :meth:`DeepClean.receptive_field` to size it;
* decoder: mirrored ``ConvTranspose1d(k, stride 2, output_padding 1)`` + BatchNorm + Tanh
  back to ``C`` channels, and a linear ``Conv1d(C -> 1, k)`` output.

Inputs are standardised witnesses ``(batch, channel, time)``; the output ``(batch, time)``
is the band-passed strain noise scaled to unit variance on the training span (the
scaling the feasibility study needed for training not to stall). The time length must be
divisible by ``2 ** len(widths)`` (16 by default; 8 s at 4096 Hz is fine).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def _same(kernel_size: int, dilation: int = 1) -> int:
    return dilation * (kernel_size - 1) // 2


class _ResidualBlock(nn.Module):
    """``x + BN(Conv1x1(Tanh(BN(Conv_dilated(x)))))`` at constant width and length."""

    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(
                channels,
                channels,
                kernel_size,
                padding=_same(kernel_size, dilation),
                dilation=dilation,
            ),
            nn.BatchNorm1d(channels),
            nn.Tanh(),
            nn.Conv1d(channels, channels, 1),
            nn.BatchNorm1d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DeepClean(nn.Module):
    """Convolutional autoencoder predicting strain noise from witness channels.

    Args:
        in_channels: Number of witness channels ``C``.
        widths: Encoder channel widths; each adds one stride-2 stage.
        kernel_size: Odd kernel of the input, encoder, decoder and output convolutions.
        dilations: One bottleneck residual block per entry; empty gives the plain
            DeepClean layout.
        res_kernel_size: Odd kernel of the dilated bottleneck convolutions.

    Shapes:
        ``forward(x)``: ``x`` is ``(batch, C, time)`` with ``time % total_stride == 0``;
        returns ``(batch, time)``.
    """

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int] = (8, 16, 32, 64),
        kernel_size: int = 7,
        dilations: Sequence[int] = (1, 2, 4, 8, 16),
        res_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty list of positive ints, got {widths}")
        for name, k in (("kernel_size", kernel_size), ("res_kernel_size", res_kernel_size)):
            if k < 1 or k % 2 == 0:
                raise ValueError(f"{name} must be odd and positive, got {k}")
        if any(d < 1 for d in dilations):
            raise ValueError(f"dilations must be positive, got {dilations}")
        self.in_channels = int(in_channels)
        self.widths = tuple(int(w) for w in widths)
        self.kernel_size = int(kernel_size)
        self.dilations = tuple(int(d) for d in dilations)
        self.res_kernel_size = int(res_kernel_size)
        k, pad = self.kernel_size, _same(self.kernel_size)

        def block(layer: nn.Module, width: int) -> nn.Sequential:
            return nn.Sequential(layer, nn.BatchNorm1d(width), nn.Tanh())

        self.input = block(nn.Conv1d(in_channels, in_channels, k, padding=pad), in_channels)
        enc, prev = [], in_channels
        for w in self.widths:
            enc.append(block(nn.Conv1d(prev, w, k, stride=2, padding=pad), w))
            prev = w
        self.encoder = nn.Sequential(*enc)
        self.bottleneck = nn.Sequential(
            *(_ResidualBlock(prev, self.res_kernel_size, d) for d in self.dilations)
        )
        dec = []
        for w in [*self.widths[-2::-1], in_channels]:
            up = nn.ConvTranspose1d(prev, w, k, stride=2, padding=pad, output_padding=1)
            dec.append(block(up, w))
            prev = w
        self.decoder = nn.Sequential(*dec)
        self.output = nn.Conv1d(in_channels, 1, k, padding=pad)

    @property
    def total_stride(self) -> int:
        """Downsampling factor of the encoder; input lengths must be multiples of it."""
        return 2 ** len(self.widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict ``(batch, time)`` strain noise from ``(batch, channel, time)`` witnesses."""
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected (batch, {self.in_channels}, time) witnesses, got {tuple(x.shape)}"
            )
        if x.shape[-1] % self.total_stride:
            raise ValueError(
                f"input length {x.shape[-1]} must be divisible by the total stride "
                f"{self.total_stride} (2 ** {len(self.widths)} encoder stages)"
            )
        h = self.input(x)
        h = self.encoder(h)
        h = self.bottleneck(h)
        h = self.decoder(h)
        return self.output(h).squeeze(1)

    def _layers(self) -> list[nn.Module]:
        """Time-mixing layers in forward order (BatchNorm and Tanh act pointwise)."""
        layers: list[nn.Module] = [self.input[0]]
        layers += [b[0] for b in self.encoder]
        layers += [b.body[0] for b in self.bottleneck]  # the 1x1 conv and skip add nothing
        layers += [b[0] for b in self.decoder]
        layers.append(self.output)
        return layers

    def receptive_field(self) -> tuple[int, int]:
        """Reach of one output sample into the input, away from the edges.

        An output sample at ``n`` depends on inputs ``n - past .. n + future``; both vary
        with ``n mod total_stride`` and the maxima over those phases are returned. Computed
        by propagating index intervals backwards through every convolution (a convolution
        with stride ``s``, kernel ``k``, dilation ``d``, padding ``p`` maps outputs
        ``[lo, hi]`` to inputs ``[s lo - p, s hi - p + d (k - 1)]``; a transposed one to
        ``[ceil((lo + p - k + 1) / s), floor((hi + p) / s)]``).

        Returns:
            ``(past, future)`` in samples.
        """
        layers = self._layers()
        past = future = 0
        origin = 1000 * self.total_stride * (1 + sum(self.dilations))  # far from any edge
        for phase in range(self.total_stride):
            n = origin + phase
            lo, hi = n, n
            for layer in reversed(layers):
                assert isinstance(layer, nn.Conv1d | nn.ConvTranspose1d)
                (k,), (s,), (p,), (d,) = (
                    layer.kernel_size,
                    layer.stride,
                    layer.padding,
                    layer.dilation,
                )
                if isinstance(layer, nn.ConvTranspose1d):
                    lo, hi = math.ceil((lo + p - d * (k - 1)) / s), (hi + p) // s
                else:
                    lo, hi = s * lo - p, s * hi - p + d * (k - 1)
            past, future = max(past, n - lo), max(future, hi - n)
        return past, future

    def receptive_field_s(self, sample_rate: float) -> float:
        """One-sided reach in s: the network sees ``+/-`` this much witness data.

        Args:
            sample_rate: Sampling rate in Hz.

        Returns:
            ``max(past, future) / sample_rate`` from :meth:`receptive_field`.
        """
        return max(self.receptive_field()) / float(sample_rate)

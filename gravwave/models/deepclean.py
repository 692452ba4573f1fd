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
divisible by :attr:`DeepClean.total_stride` (16 by default; 8 s at 4096 Hz is fine).

**Reduced rate** (``decimation=q``): a network whose band is low need not run at the data's
rate. The witnesses pass a fixed anti-alias low-pass and every ``q``-th sample is kept
(:func:`decimation_filter`: Kaiser, 80 dB from the reduced rate's Nyquist frequency on,
flat to ``0.29 fs / q``); the layout above runs at ``fs / q``; its output is brought back
to ``fs`` by the same filter (zero-stuffed, gain ``q``). The network then costs about
``1 / q`` of the full-rate one and its reach in seconds grows ``q`` times.
:func:`decimation_for` derives ``q`` from the band. The filters are fixed (not trained,
not in the state dict): ``decimation`` in the model's settings rebuilds them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from scipy import signal
from torch import nn

#: Stop-band attenuation [dB] of the decimation filter.
DECIMATION_ATTENUATION = 80.0
#: Half length of the decimation filter in reduced-rate samples (``12 q`` input samples).
DECIMATION_HALF = 12


def decimation_edges(q: int) -> tuple[float, float]:
    """``(pass edge, stop edge)`` of :func:`decimation_filter` in cycles per input sample.

    The stop band starts at the reduced rate's Nyquist frequency ``1 / (2 q)`` (nothing
    aliases); Kaiser's transition width ``(A - 7.95) / (2.285 * 2 pi * 2 h)`` for
    ``A = 80`` dB and ``h = 12 q`` taps on each side is ``0.209 / q``, so the filter is flat
    to ``0.291 / q`` (e.g. 298 Hz for ``q = 4`` at 4096 Hz).
    """
    width = (DECIMATION_ATTENUATION - 7.95) / (2.285 * 2 * math.pi * 2 * DECIMATION_HALF * q)
    stop = 0.5 / q
    return stop - width, stop


def decimation_filter(q: int) -> np.ndarray:
    """``(24 q + 1,)`` float64 taps of the anti-alias low-pass of a ``q``-fold decimation
    (unit gain at 0 Hz; see :func:`decimation_edges`).

    Raises:
        ValueError: ``q < 2``.
    """
    if q < 2:
        raise ValueError(f"a decimation filter needs q >= 2, got {q}")
    pass_edge, stop_edge = decimation_edges(q)
    beta = signal.kaiser_beta(DECIMATION_ATTENUATION)
    taps = 2 * DECIMATION_HALF * q + 1
    return signal.firwin(taps, (pass_edge + stop_edge) / 2, window=("kaiser", beta), fs=1.0)


def decimation_for(band_high: float, sample_rate: float, factor: float = 4.0) -> int:
    """The largest power-of-two decimation whose filter is flat up to ``factor`` times the
    top of the network's band.

    With the default ``factor`` 4 the network sees its witnesses flat to four times its
    band's top, so products and differences of witness components up to there (a mains
    line and its first harmonics, for a band around 50 Hz) reach it as at the full rate:
    a 43-57 Hz training band at 4096 Hz gives ``q = 4`` (1024 Hz, flat to 298 Hz). A
    larger ``q`` also lengthens the reach ``q`` times, so the 8-s cleaning windows
    recompute more of each other: ``q = 4`` cleaned fastest there
    (``benchmarks/bench_cleaning.py``).

    Args:
        band_high: Top of the band the network is trained over [Hz].
        sample_rate: Data rate [Hz].
        factor: How far above the band the witnesses must be seen flat.

    Raises:
        ValueError: A band that is not below Nyquist or a factor below 1.
    """
    if not 0 < band_high < sample_rate / 2 or factor < 1:
        raise ValueError(
            f"expected 0 < band_high < {sample_rate / 2:g} Hz and factor >= 1, got "
            f"{band_high:g} Hz and {factor:g}"
        )
    q = 1
    while decimation_edges(2 * q)[0] * sample_rate >= factor * band_high:
        q *= 2
    return q


def encoder_widths_for(widths: Sequence[int], rate: float, band_high: float) -> tuple[int, ...]:
    """The last stages of ``widths`` that keep the bottleneck's Nyquist frequency above the
    network's band.

    Each encoder stage halves the rate; the bottleneck's residual blocks run at
    ``rate / 2 ** n``. Where that rate's Nyquist frequency falls below the top of the band the
    latent carries the band only aliased: the default four stages at a quarter of 4096 Hz put
    the bottleneck at 64 Hz (Nyquist 32 Hz) below a 43-57 Hz trained band, and that network
    left 5-10 % more noise in its band than the full-rate one (acceptance recipe, seeds 7 and
    11); the last three (bottleneck at 128 Hz) matched it (``gravwave.training``). Dropping
    the first stages keeps the bottleneck's widths.

    Args:
        widths: Encoder widths, first stage first.
        rate: The rate the layout runs at [Hz] (the data's rate over the decimation).
        band_high: Top of the trained band [Hz].

    Returns:
        The most stages ``n <= len(widths)`` (at least one) with ``rate / 2 ** n`` above
        ``2 band_high``: ``widths[-n:]``.
    """
    n = len(widths)
    while n > 1 and rate / 2**n <= 2 * band_high:
        n -= 1
    return tuple(int(w) for w in widths[-n:])


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
        decimation: Run the layout at ``1 / decimation`` of the data's rate behind fixed
            anti-alias filters (module doc); 1 runs it at the data's rate.

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
        decimation: int = 1,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if int(decimation) != decimation or decimation < 1:
            raise ValueError(f"decimation must be a positive integer, got {decimation}")
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
        self.decimation = int(decimation)
        if self.decimation > 1:
            taps = torch.from_numpy(decimation_filter(self.decimation)).float()
            # fixed, rebuilt from ``decimation``: buffers outside the state dict
            self.register_buffer("down_taps", taps.repeat(in_channels, 1, 1), persistent=False)
            self.register_buffer("up_taps", taps[None, None] * self.decimation, persistent=False)

    @property
    def total_stride(self) -> int:
        """Decimation times the encoder's downsampling; input lengths must be multiples."""
        return self.decimation * 2 ** len(self.widths)

    def _down(self, x: torch.Tensor) -> torch.Tensor:
        """Anti-alias low-pass and keep every ``decimation``-th sample (per channel)."""
        taps = self.down_taps
        half = taps.shape[-1] // 2
        return F.conv1d(x, taps, stride=self.decimation, padding=half, groups=x.shape[1])

    def _up(self, y: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, time / q)`` back to ``(batch, 1, time)``: zero-stuffed, low-passed."""
        q, taps = self.decimation, self.up_taps
        half = taps.shape[-1] // 2
        return F.conv_transpose1d(y, taps, stride=q, padding=half, output_padding=q - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict ``(batch, time)`` strain noise from ``(batch, channel, time)`` witnesses."""
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected (batch, {self.in_channels}, time) witnesses, got {tuple(x.shape)}"
            )
        if x.shape[-1] % self.total_stride:
            raise ValueError(
                f"input length {x.shape[-1]} must be divisible by the total stride "
                f"{self.total_stride} (decimation {self.decimation} x 2 ** {len(self.widths)}"
                " encoder stages)"
            )
        h = self._down(x) if self.decimation > 1 else x
        h = self.input(h)
        h = self.encoder(h)
        h = self.bottleneck(h)
        h = self.decoder(h)
        y = self.output(h)
        return (self._up(y) if self.decimation > 1 else y).squeeze(1)

    def _layers(self) -> list[tuple[bool, int, int, int, int]]:
        """Time-mixing layers in forward order as ``(transposed, kernel, stride, padding,
        dilation)`` (BatchNorm and Tanh act pointwise)."""
        convs: list[nn.Module] = [self.input[0]]
        convs += [b[0] for b in self.encoder]
        convs += [b.body[0] for b in self.bottleneck]  # the 1x1 conv and skip add nothing
        convs += [b[0] for b in self.decoder]
        convs.append(self.output)
        layers = []
        for c in convs:
            assert isinstance(c, nn.Conv1d | nn.ConvTranspose1d)
            (k,), (s,), (d,) = c.kernel_size, c.stride, c.dilation
            (p,) = c.padding  # type: ignore[misc]
            layers.append((isinstance(c, nn.ConvTranspose1d), k, s, int(p), d))
        q = self.decimation
        if q > 1:
            k = 2 * DECIMATION_HALF * q + 1
            layers = [(False, k, q, k // 2, 1), *layers, (True, k, q, k // 2, 1)]
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
            for transposed, k, s, p, d in reversed(layers):
                if transposed:
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

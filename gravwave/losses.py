"""Spectral losses for noise subtraction: a differentiable Welch PSD and the ASD-ratio loss.

The DeepClean loss (reference/gravwave.md, section 1) compares the amplitude spectral
density of the residual ``target - pred`` with that of the target, inside the bands
where noise is subtracted::

    loss = mean over in-band bins f of sqrt(PSD_res(f) / PSD_target(f))

It is 1 for a zero prediction, 0 for a perfect one, and it is what the papers report as
the in-band ASD ratio. PSDs are Welch estimates (Hann window, 2-s segments, 1-s overlap,
median average by default) written in torch so gradients flow to the prediction.

Skirts (issue 12): the cleaner's finishing band-pass passes the prediction a transition width
beyond the band, where the network has nothing to remove. Optional ``skirts`` bands add
``skirt_weight * mean over skirt bins f of (sqrt(1 + PSD_pred(f) / PSD_target(f)) - 1)``:
the rise of the ASD there were the prediction subtracted from independent noise of the
target's PSD. It has no cross term, so fitting the target's unpredictable noise there
(overfitting it through chance witness correlations) earns nothing and every output costs;
it is quadratic near zero output (a square root of the power ratio alone pulls the whole
output to exactly zero: measured, the network then learned nothing in band either).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch
from scipy import signal
from torch import nn

from gravwave.preprocess import check_bands

log = logging.getLogger(__name__)


def median_bias(n_segments: int) -> float:
    """Bias of the median of ``n`` exponential variables relative to their mean.

    Same correction as :func:`scipy.signal.welch` with ``average="median"``
    (``1 + sum_{k=1}^{(n-1)//2} (1 / (2k + 1) - 1 / (2k))``); the median-averaged
    periodogram is divided by it.
    """
    k = 2.0 * np.arange(1, (n_segments - 1) // 2 + 1)
    return float(1.0 + np.sum(1.0 / (k + 1.0) - 1.0 / k))


@lru_cache(maxsize=32)
def _window(name: str, length: int) -> np.ndarray:
    return signal.get_window(name, length, fftbins=True).astype(np.float64)


def welch_psd(
    x: torch.Tensor,
    fftlength_samples: int,
    overlap: int,
    window: str | torch.Tensor = "hann",
    average: str = "median",
    *,
    sample_rate: float = 1.0,
    detrend: bool = True,
) -> torch.Tensor:
    """One-sided Welch power spectral density, differentiable, batched over rows.

    Matches ``scipy.signal.welch(x, fs=sample_rate, window=window, nperseg=fftlength_samples,
    noverlap=overlap, detrend="constant" if detrend else False, scaling="density",
    average=average)`` along the last axis.

    Args:
        x: ``(batch, time)`` (or ``(time,)``) real tensor.
        fftlength_samples: Segment length in samples.
        overlap: Overlap of consecutive segments in samples, ``0 <= overlap < fftlength``.
        window: A :func:`scipy.signal.get_window` name or a ``(fftlength_samples,)`` tensor.
        average: ``"median"`` (with scipy's bias correction; robust to glitches and lines
            spilling into few segments) or ``"mean"``.
        sample_rate: Sampling rate in Hz; the PSD is in ``unit**2 / Hz``.
        detrend: Remove each segment's mean before the FFT (scipy's default).

    Returns:
        ``(batch, fftlength_samples // 2 + 1)`` PSD at ``rfftfreq(fftlength_samples,
        1 / sample_rate)``, in the dtype of ``x``.

    Raises:
        ValueError: On a bad segmenting, an unknown average, or fewer samples than one
            segment.
    """
    nperseg, noverlap = int(fftlength_samples), int(overlap)
    if nperseg < 2 or not 0 <= noverlap < nperseg:
        raise ValueError(
            f"need fftlength_samples >= 2 and 0 <= overlap < fftlength_samples, got "
            f"{fftlength_samples}, {overlap}"
        )
    if average not in ("median", "mean"):
        raise ValueError(f"average must be 'median' or 'mean', got {average!r}")
    if x.shape[-1] < nperseg:
        raise ValueError(f"{x.shape[-1]} samples are fewer than one segment of {nperseg}")
    if isinstance(window, str):
        win = torch.as_tensor(_window(window, nperseg), dtype=x.dtype, device=x.device)
    else:
        win = window.to(dtype=x.dtype, device=x.device)
        if win.shape != (nperseg,):
            raise ValueError(f"window must have shape ({nperseg},), got {tuple(win.shape)}")
    segments = x.unfold(-1, nperseg, nperseg - noverlap)  # (..., n_segments, nperseg)
    if detrend:
        segments = segments - segments.mean(dim=-1, keepdim=True)
    spec = torch.fft.rfft(segments * win, dim=-1)
    power = spec.real.square() + spec.imag.square()
    scale = torch.full((power.shape[-1],), 2.0, dtype=x.dtype, device=x.device)
    scale[0] = 1.0
    if nperseg % 2 == 0:
        scale[-1] = 1.0  # Nyquist bin is not doubled
    power = power * (scale / (sample_rate * win.square().sum()))
    n_seg = power.shape[-2]
    if average == "mean":
        return power.mean(dim=-2)
    ordered = power.sort(dim=-2).values
    mid = n_seg // 2
    med = (
        ordered[..., mid, :]
        if n_seg % 2
        else 0.5 * (ordered[..., mid - 1, :] + ordered[..., mid, :])
    )
    return med / median_bias(n_seg)


class ASDRatioLoss(nn.Module):
    """In-band mean ratio of residual to target amplitude spectral density.

    ``loss = (1 - mse_weight) * mean_{batch, in-band f} sqrt(PSD(target - pred) /
    PSD(target)) + mse_weight * mean((target - pred)**2)
    + skirt_weight * mean_{batch, skirt f} (sqrt(1 + PSD(pred) / PSD(target)) - 1)``.
    In-band bins
    are those with ``low <= f < high`` for any band, all weighted equally (a wider band
    counts more); skirt bins likewise for the ``skirts`` bands, minus in-band bins.

    Args:
        sample_rate: Sampling rate in Hz.
        bands: ``(low, high)`` pairs in Hz.
        fftlength: Welch segment length in s (frequency resolution ``1 / fftlength`` Hz).
        overlap: Segment overlap in s.
        average: ``"median"`` or ``"mean"`` Welch averaging.
        mse_weight: Weight of the time-domain MSE in ``[0, 1]`` (0: pure spectral loss, as
            in the LIGO and Virgo configurations). The MSE is meaningful on a unit-variance
            target.
        eps: Added to the PSD ratio under the square root so the gradient stays finite
            for a perfect prediction (the loss is then ``sqrt(eps)``).
        skirts: ``(low, high)`` pairs in Hz where the prediction's power is penalised (the
            finishing filter's transitions beside the bands); ``None``: no skirt term.
        skirt_weight: Weight of the skirt term (>= 0).

    Shapes:
        ``forward(pred, target)``: both ``(batch, time)`` with ``time >= fftlength *
        sample_rate``; returns a scalar.
    """

    mask: torch.Tensor
    skirt: torch.Tensor
    window: torch.Tensor

    def __init__(
        self,
        sample_rate: float,
        bands: Sequence[Sequence[float]],
        fftlength: float = 2.0,
        overlap: float = 1.0,
        *,
        average: str = "median",
        mse_weight: float = 0.0,
        eps: float = 1e-12,
        skirts: Sequence[Sequence[float]] | None = None,
        skirt_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.sample_rate = float(sample_rate)
        self.bands = check_bands(bands, self.sample_rate)
        self.nperseg = round(fftlength * self.sample_rate)
        self.noverlap = round(overlap * self.sample_rate)
        if not 0 <= self.noverlap < self.nperseg:
            raise ValueError(f"need 0 <= overlap < fftlength, got {overlap} s, {fftlength} s")
        if average not in ("median", "mean"):
            raise ValueError(f"average must be 'median' or 'mean', got {average!r}")
        if not 0.0 <= mse_weight <= 1.0:
            raise ValueError(f"mse_weight must be in [0, 1], got {mse_weight}")
        self.average = average
        self.mse_weight = float(mse_weight)
        self.eps = float(eps)
        freqs = np.fft.rfftfreq(self.nperseg, 1.0 / self.sample_rate)
        mask = np.zeros(freqs.shape, dtype=bool)
        for low, high in self.bands:
            mask |= (freqs >= low) & (freqs < high)
        if not mask.any():
            raise ValueError(
                f"no frequency bin of resolution {1 / fftlength} Hz falls in bands {self.bands}"
            )
        self.register_buffer("mask", torch.from_numpy(mask), persistent=False)
        if not skirt_weight >= 0:
            raise ValueError(f"skirt_weight must be >= 0, got {skirt_weight}")
        self.skirt_weight = float(skirt_weight)
        self.skirts = None if skirts is None else check_bands(skirts, self.sample_rate)
        skirt = np.zeros(freqs.shape, dtype=bool)
        for low, high in self.skirts or ():
            skirt |= (freqs >= low) & (freqs < high)
        skirt &= ~mask
        if self.skirts is not None and not skirt.any():
            raise ValueError(
                f"no frequency bin of resolution {1 / fftlength} Hz falls in the skirts "
                f"{self.skirts} outside the bands {self.bands}"
            )
        self.register_buffer("skirt", torch.from_numpy(skirt), persistent=False)
        window = torch.from_numpy(_window("hann", self.nperseg))
        self.register_buffer("window", window, persistent=False)

    @property
    def frequencies(self) -> np.ndarray:
        """In-band frequencies in Hz of the bins the loss averages over."""
        freqs = np.fft.rfftfreq(self.nperseg, 1.0 / self.sample_rate)
        return freqs[self.mask.cpu().numpy()]

    def psd(self, x: torch.Tensor) -> torch.Tensor:
        """Welch PSD ``(batch, freq)`` of ``(batch, time)`` with the loss's settings."""
        return welch_psd(
            x,
            self.nperseg,
            self.noverlap,
            self.window,
            self.average,
            sample_rate=self.sample_rate,
        )

    def asd_ratio(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-example in-band mean ASD ratio, shape ``(batch,)``."""
        if pred.shape != target.shape or pred.ndim != 2:
            raise ValueError(
                f"pred and target must both be (batch, time), got {tuple(pred.shape)} "
                f"and {tuple(target.shape)}"
            )
        mask = self.mask.to(pred.device)
        psd_res = self.psd(target - pred)[..., mask]
        psd_tgt = self.psd(target)[..., mask]
        ratio = psd_res / psd_tgt.clamp_min(torch.finfo(psd_tgt.dtype).tiny)
        return torch.sqrt(ratio + self.eps).mean(dim=-1)

    def skirt_rise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-example skirt mean of ``sqrt(1 + PSD(pred) / PSD(target)) - 1``, shape
        ``(batch,)`` (zeros without skirts)."""
        if self.skirts is None:
            return pred.new_zeros(pred.shape[:-1])
        skirt = self.skirt.to(pred.device)
        psd_pred = self.psd(pred)[..., skirt]
        psd_tgt = self.psd(target)[..., skirt]
        ratio = psd_pred / psd_tgt.clamp_min(torch.finfo(psd_tgt.dtype).tiny)
        return (torch.sqrt(1.0 + ratio) - 1.0).mean(dim=-1)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss for ``pred`` and ``target`` of shape ``(batch, time)``."""
        loss = self.asd_ratio(pred, target).mean()
        if self.mse_weight > 0:
            mse = nn.functional.mse_loss(pred, target)
            loss = (1.0 - self.mse_weight) * loss + self.mse_weight * mse
        if self.skirts is not None and self.skirt_weight > 0:
            loss = loss + self.skirt_weight * self.skirt_rise(pred, target).mean()
        return loss

    def batch_loss(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        batch: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """``loss_fn(model, batch)`` form for the core trainer.

        Args:
            model: Module (or callable) mapping witnesses ``(batch, channel, time)``
                to ``(batch, time)``.
            batch: ``(witnesses (batch, channel, time), target (batch, time))``.

        Returns:
            Scalar loss (a mean over examples, as the trainer expects under DDP).
        """
        witnesses, target = batch
        return self(model(witnesses), target)

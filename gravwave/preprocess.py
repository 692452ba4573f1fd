"""Preprocessing shared by the noise-subtraction models: band-passes and per-channel scaling.

DeepClean-style conventions (reference/gravwave.md, section 1):

* the strain target and, for the Wiener filter, the witnesses are band-passed with an
  order-8 Butterworth filter run forwards and backwards (zero phase); several bands are
  the *sum* of per-band filtered copies, so each band keeps unit gain and zero phase;
* witnesses are standardised per channel with a mean and standard deviation fitted on the
  training span only; the fitted scaler is saved beside the model (plain floats).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from scipy import signal

log = logging.getLogger(__name__)

Band = tuple[float, float]
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def check_bands(bands: Sequence[Sequence[float]], sample_rate: float) -> list[Band]:
    """Validate frequency bands and return them as a list of ``(low, high)`` tuples.

    Args:
        bands: One or more ``(low, high)`` pairs in Hz.
        sample_rate: Sampling rate in Hz.

    Returns:
        The bands as floats, in the order given.

    Raises:
        ValueError: If there is no band, a band is not ``0 < low < high < sample_rate / 2``,
            or ``sample_rate`` is not positive.
    """
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    out: list[Band] = []
    for band in bands:
        if len(band) != 2:
            raise ValueError(f"a band is a (low, high) pair in Hz, got {band!r}")
        low, high = float(band[0]), float(band[1])
        if not 0.0 < low < high < sample_rate / 2:
            raise ValueError(
                f"band ({low}, {high}) Hz must satisfy 0 < low < high < Nyquist "
                f"({sample_rate / 2} Hz)"
            )
        out.append((low, high))
    if not out:
        raise ValueError("at least one (low, high) band is required")
    return out


def bandpass_sos(
    bands: Sequence[Sequence[float]], sample_rate: float, order: int = 8
) -> list[np.ndarray]:
    """Butterworth band-pass filters, one second-order-section array per band.

    Args:
        bands: ``(low, high)`` edges in Hz (the -3 dB points of each single pass).
        sample_rate: Sampling rate in Hz.
        order: Butterworth order as passed to :func:`scipy.signal.butter` (a band-pass of
            order ``N`` has ``2 N`` poles; forward-backward filtering doubles the roll-off).

    Returns:
        One ``(n_sections, 6)`` float64 array per band.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    return [
        signal.butter(order, band, btype="bandpass", output="sos", fs=sample_rate)
        for band in check_bands(bands, sample_rate)
    ]


def bandpass(
    x: np.ndarray,
    bands: Sequence[Sequence[float]],
    sample_rate: float,
    order: int = 8,
    axis: int = -1,
) -> np.ndarray:
    """Zero-phase band-pass (``sosfiltfilt``); several bands are summed per-band copies.

    Args:
        x: Array with time along ``axis``, e.g. ``(time,)`` or ``(channel, time)``.
        bands: ``(low, high)`` pairs in Hz.
        sample_rate: Sampling rate in Hz.
        order: Butterworth order of each band (see :func:`bandpass_sos`).
        axis: Time axis.

    Returns:
        float64 array of the same shape as ``x``.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    for sos in bandpass_sos(bands, sample_rate, order):
        out += signal.sosfiltfilt(sos, x, axis=axis)
    return out


class Standardizer:
    """Per-channel standardisation ``(x - mean) / std`` fitted on training data.

    Works on numpy arrays and torch tensors with channels on axis ``-2``, i.e.
    ``(channel, time)`` or ``(batch, channel, time)``; a scaler fitted on a 1-D series
    (one channel) also transforms 1-D series ``(time,)``.

    Attributes:
        mean: Per-channel mean, float64 of shape ``(channel,)`` (``None`` before fitting).
        std: Per-channel standard deviation, same shape (``None`` before fitting).
    """

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    @property
    def n_channels(self) -> int:
        """Number of channels the scaler was fitted on."""
        self._check_fitted()
        assert self.mean is not None
        return int(self.mean.shape[0])

    def fit(self, x: np.ndarray | torch.Tensor) -> Standardizer:
        """Fit mean and standard deviation per channel.

        Args:
            x: Training data ``(channel, time)`` or one series ``(time,)``.

        Returns:
            ``self``.

        Raises:
            ValueError: On a wrong shape, non-finite values or a constant channel (it would
                be divided by zero; drop it from the channel list instead).
        """
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        arr = arr.astype(np.float64, copy=False)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise ValueError(f"fit expects (channel, time) with time >= 2, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("cannot fit a Standardizer on data with NaN or inf")
        mean = arr.mean(axis=1)
        std = arr.std(axis=1)
        scale = np.maximum(np.abs(mean), 1.0)
        dead = np.flatnonzero(std <= 1e-12 * scale)
        if dead.size:
            raise ValueError(f"channel(s) {dead.tolist()} are constant over the training data")
        self.mean, self.std = mean, std
        return self

    def _check_fitted(self) -> None:
        if self.mean is None or self.std is None:
            raise RuntimeError("Standardizer is not fitted: call fit() or from_state_dict()")

    def _params(self, x: ArrayT) -> tuple[Any, Any]:
        self._check_fitted()
        assert self.mean is not None and self.std is not None
        n = self.n_channels
        if x.ndim == 1:
            if n != 1:
                raise ValueError(f"a 1-D series needs a 1-channel scaler, this one has {n}")
            mean, std = self.mean, self.std
        else:
            if x.shape[-2] != n:
                raise ValueError(f"expected {n} channels on axis -2, got shape {tuple(x.shape)}")
            mean, std = self.mean[:, None], self.std[:, None]
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
            return (
                torch.as_tensor(mean, dtype=dtype, device=x.device),
                torch.as_tensor(std, dtype=dtype, device=x.device),
            )
        return mean, std

    def transform(self, x: ArrayT) -> ArrayT:
        """Standardise ``x`` (``(channel, time)``, ``(batch, channel, time)`` or ``(time,)``).

        numpy input gives float64 output; a tensor keeps its floating dtype and device.
        """
        mean, std = self._params(x)
        return (x - mean) / std

    def inverse_transform(self, x: ArrayT) -> ArrayT:
        """Undo :meth:`transform`: ``x * std + mean``."""
        mean, std = self._params(x)
        return x * std + mean

    def state_dict(self) -> dict[str, list[float]]:
        """Plain lists of floats, safe for JSON and ``torch.load(weights_only=True)``."""
        self._check_fitted()
        assert self.mean is not None and self.std is not None
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Standardizer:
        """Rebuild a fitted scaler from :meth:`state_dict` output.

        Raises:
            ValueError: If keys are missing or unknown, lengths differ, or a std is not
                positive and finite.
        """
        if set(state) != {"mean", "std"}:
            raise ValueError(f"Standardizer state needs keys mean and std, got {sorted(state)}")
        mean = np.asarray(state["mean"], dtype=np.float64).reshape(-1)
        std = np.asarray(state["std"], dtype=np.float64).reshape(-1)
        if mean.shape != std.shape or mean.size == 0:
            raise ValueError(f"mean and std lengths differ or are empty: {mean.size}, {std.size}")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError("Standardizer state has a non-finite mean or a non-positive std")
        out = cls()
        out.mean, out.std = mean, std
        return out

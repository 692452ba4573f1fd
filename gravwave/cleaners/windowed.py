"""Window machinery of the cleaners: Hann overlap-add, zero-phase FIR band-passes.

Offline (reference/gravwave.md, section 1): a span is cut into windows (8 s, 50 % overlap by
default) aligned on a grid that starts one hop before the first sample; the span is padded by
reflection at both ends so every sample is covered by full windows. Each window's prediction
is weighted by a periodic Hann window and the overlapping predictions are added and divided by
the sum of the weights (exactly 1 for 50 % overlap), so a predictor that returns the same
value in every window returns it unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import signal

from twins.errors import ConfigError, DataError

__all__ = [
    "apply_fir",
    "fir_bandpass",
    "fitted_bands",
    "hann",
    "overlap_add",
    "transition_width",
]


def hann(n: int) -> np.ndarray:
    """Periodic Hann window of ``n`` samples (overlapping copies at ``n / 2`` sum to 1)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def transition_width(sample_rate: float, half_length: int, attenuation: float) -> float:
    """Transition width [Hz] of :func:`fir_bandpass`: flat to ``-attenuation`` dB.

    Kaiser's estimate ``(A - 7.95) fs / (2.285 * 2 pi * 2 h)``: about 6.0 Hz for a 0.3-s half
    length at 60 dB, 10.7 Hz at 100 dB, whatever the rate.

    Args:
        sample_rate: Sampling rate [Hz].
        half_length: ``h``; the filter has ``2 h + 1`` taps.
        attenuation: Stop-band attenuation [dB].
    """
    if half_length < 1:
        raise ValueError(f"half_length must be >= 1 sample, got {half_length}")
    return (attenuation - 7.95) * sample_rate / (2.285 * 2 * np.pi * 2 * half_length)


def fitted_bands(
    bands: Sequence[Sequence[float]], sample_rate: float, half_length: int, attenuation: float
) -> tuple[tuple[float, float], ...]:
    """The bands a stage finished by :func:`fir_bandpass` must be fitted or trained over.

    The finishing filter is flat inside each band and falls to ``-attenuation`` dB one
    transition width (:func:`transition_width`) outside, so it passes whatever the stage
    predicts up to that width beyond the band edges. A stage fitted only inside the band
    predicts unconstrained noise there, which the filter lets through (a cleaned/raw ASD
    of 1.14 next to the linear band, 1.04-1.06 next to the network's, issue 12). Fitted
    over each band widened by the transition width, the stage predicts there what it
    learned. Overlapping widened bands are merged.

    Args:
        bands: ``(low, high)`` pairs [Hz] the filter passes flat.
        sample_rate: Sampling rate [Hz].
        half_length: Half length of the finishing filter [samples].
        attenuation: Its stop-band attenuation [dB].

    Returns:
        The widened bands ``(low, high)`` [Hz] in increasing order.

    Raises:
        ConfigError: A widened band reaches 0 Hz or the Nyquist frequency (there is no room
            to fit the filter's transition).
    """
    width = transition_width(sample_rate, half_length, attenuation)
    nyq = sample_rate / 2
    out: list[tuple[float, float]] = []
    for low, high in sorted((float(lo), float(hi)) for lo, hi in bands):
        lo, hi = low - width, high + width
        if not 0 < lo < hi < nyq:
            raise ConfigError(
                f"band {low:g}-{high:g} Hz widened by the finishing filter's transition "
                f"({width:.1f} Hz) is {lo:.1f}-{hi:.1f} Hz, outside 0-{nyq:g} Hz (Nyquist)",
                hint="move the band away from 0 Hz and Nyquist, or lengthen finish_length",
            )
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def fir_bandpass(
    bands: Sequence[Sequence[float]],
    sample_rate: float,
    half_length: int,
    attenuation: float = 40.0,
) -> np.ndarray:
    """Zero-phase linear-phase FIR band-pass (Kaiser window) with a flat pass band.

    The cut-offs are placed half a transition width outside each band, so the response
    is flat inside ``[low, high]`` and reaches ``-attenuation`` dB one transition width
    (:func:`transition_width`, about 3.7 Hz for 0.3 s at 40 dB) outside: a stage it
    finishes is fitted over :func:`fitted_bands`. Several bands are summed per-band filters.

    Args:
        bands: ``(low, high)`` pairs in Hz.
        sample_rate: Sampling rate in Hz.
        half_length: ``h``; the filter has ``2 h + 1`` taps and reaches ``h`` samples.
        attenuation: Stop-band attenuation in dB.

    Returns:
        ``(2 h + 1,)`` float64 taps, centred.
    """
    if half_length < 1:
        raise ValueError(f"half_length must be >= 1 sample, got {half_length}")
    numtaps = 2 * half_length + 1
    beta = signal.kaiser_beta(attenuation)
    width = transition_width(sample_rate, half_length, attenuation)
    taps = np.zeros(numtaps)
    nyq = sample_rate / 2
    for low, high in bands:
        lo, hi = max(low - width / 2, 1e-3), min(high + width / 2, nyq * 0.999)
        taps += signal.firwin(
            numtaps, [lo, hi], window=("kaiser", beta), pass_zero=False, fs=sample_rate
        )
    return taps


def apply_fir(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Zero-phase filtering ``(..., time) -> (..., time)`` with centred taps (zeros outside)."""
    return signal.oaconvolve(x, taps.reshape((1,) * (x.ndim - 1) + (-1,)), mode="same", axes=-1)


def _geometry(window: int, overlap: float, multiple: int) -> tuple[int, int]:
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    hop = round(window * (1.0 - overlap))
    if window % multiple or hop % multiple or hop < 1:
        raise ValueError(
            f"window {window} and hop {hop} samples must be positive multiples of {multiple}"
        )
    return window, hop


def overlap_add(
    predict: Callable[[np.ndarray], np.ndarray],
    witnesses: np.ndarray,
    window: int,
    overlap: float = 0.5,
    *,
    multiple: int = 1,
    batch: int = 4,
) -> np.ndarray:
    """Hann overlap-add of per-window predictions over a long span.

    Windows start at ``-hop + k * hop`` (``hop = window * (1 - overlap)``); the span is
    padded by reflection by ``hop`` at the start and up to a whole window at the end.

    Args:
        predict: Maps windows ``(batch, channel, window)`` to ``(batch, rows, window)``.
        witnesses: ``(channel, time)``.
        window: Window length in samples.
        overlap: Fraction of a window shared by consecutive windows.
        multiple: ``window`` and the hop must be multiples of this.
        batch: Windows per ``predict`` call.

    Returns:
        ``(rows, time)`` float64 stitched predictions; the weights sum to 1 at every sample.
    """
    x = np.asarray(witnesses)
    if x.ndim != 2:
        raise DataError(f"witnesses must be (channel, time), got shape {x.shape}")
    total = x.shape[1]
    window, hop = _geometry(window, overlap, multiple)
    # windows from -hop until one starts past the last sample: full coverage at both ends
    n_win = max(2, math.ceil((total + hop - window) / hop) + 2)
    padded_len = (n_win - 1) * hop + window
    pad_right = padded_len - hop - total
    xp = np.pad(x, ((0, 0), (hop, pad_right)), mode="reflect" if total > 1 else "edge")
    w = hann(window)
    out: np.ndarray | None = None
    weight = np.zeros(padded_len)
    for first in range(0, n_win, batch):
        starts = [k * hop for k in range(first, min(first + batch, n_win))]
        block = np.stack([xp[:, s : s + window] for s in starts])
        pred = np.asarray(predict(block), dtype=np.float64)
        if pred.ndim != 3 or pred.shape[0] != len(starts) or pred.shape[2] != window:
            raise ValueError(f"predict returned shape {pred.shape} for windows {block.shape}")
        if out is None:
            out = np.zeros((pred.shape[1], padded_len))
        for s, p in zip(starts, pred, strict=True):
            out[:, s : s + window] += p * w
            weight[s : s + window] += w
    assert out is not None
    return out[:, hop : hop + total] / weight[hop : hop + total]

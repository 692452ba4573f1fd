"""Offline and online cleaning with any :class:`~gravwave.cleaner.Cleaner`.

Offline (reference/gravwave.md, section 1): the span is cut into windows (8 s, 50 %
overlap by default) aligned on a grid that starts one hop before the first sample; the
span is padded by reflection at both ends so every sample is covered by full windows.
Each window's prediction is weighted by a periodic Hann window and the overlapping
predictions are added and divided by the sum of the weights (which is exactly 1 for
50 % overlap), so a cleaner that predicts the same value in every window returns it
unchanged.

Cleaners that follow the :class:`WindowedCleaner` protocol split their work in two:
``raw`` (per window, e.g. the network forward pass) and ``finish`` (once, on the
stitched series: a zero-phase FIR band-pass of bounded length and the de-scaling).
Because both have a bounded reach, online cleaning (:class:`OnlineCleaner`: 1-s frames,
a look-ahead, a memory of past samples) reproduces offline cleaning away from the span
edges: the raw prediction of a sample does not depend on the window it is computed in
once the window holds its receptive field, and the FIR needs only ``finish_reach``
samples on each side. The only difference is the Hann-weighted share of the offline
windows whose edge falls within the reach of a sample (weight at most
``sin^2(pi * reach / window)``, about 0.3 % for the default network and 8-s windows).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from gwpy.timeseries import TimeSeries, TimeSeriesDict
from scipy import signal

from gravwave.cleaner import Cleaner
from twins.errors import DataError

log = logging.getLogger(__name__)

Band = tuple[float, float]


@runtime_checkable
class WindowedCleaner(Protocol):
    """A cleaner whose prediction is a per-window ``raw`` step and a global ``finish``.

    Attributes:
        sample_rate: Working rate in Hz.
        witness_channels: Witness channel names, in the order of the rows.
        reach: ``(past, future)`` witness samples one raw output sample depends on.
        finish_reach: Half length in samples of the ``finish`` filter.
        multiple: Window lengths must be multiples of this (network stride).
        n_raw: Number of raw rows (one per stage).
    """

    sample_rate: float
    witness_channels: tuple[str, ...]
    reach: tuple[int, int]
    finish_reach: int
    multiple: int
    n_raw: int

    def raw(self, witnesses: np.ndarray) -> np.ndarray:
        """Raw predictions ``(batch, n_raw, time)`` of windows ``(batch, channel, time)``."""
        ...

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """Strain noise ``(time,)`` from stitched raw predictions ``(n_raw, time)``."""
        ...


def hann(n: int) -> np.ndarray:
    """Periodic Hann window of ``n`` samples (overlapping copies at ``n / 2`` sum to 1)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def fir_bandpass(
    bands: Sequence[Sequence[float]],
    sample_rate: float,
    half_length: int,
    attenuation: float = 40.0,
) -> np.ndarray:
    """Zero-phase linear-phase FIR band-pass (Kaiser window) with a flat pass band.

    The cut-offs are placed half a transition width outside each band, so the response
    is flat inside ``[low, high]`` and reaches ``-attenuation`` dB one transition width
    (``(A - 7.95) fs / (14.36 (2 h))`` Hz, about 3.7 Hz for 0.3 s at 40 dB) outside.
    Several bands are summed per-band filters.

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
    width = (attenuation - 7.95) * sample_rate / (2.285 * 2 * np.pi * (numtaps - 1))
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


def stack_witnesses(witnesses: TimeSeriesDict | dict, channels: Sequence[str]) -> np.ndarray:
    """``(channel, time)`` array of the named channels (in that order) of a dict of series."""
    missing = [c for c in channels if c not in witnesses]
    if missing:
        raise DataError(f"witness channel(s) {missing} missing; have {list(witnesses)}")
    arrays = [np.asarray(getattr(witnesses[c], "value", witnesses[c])) for c in channels]
    if len({a.shape for a in arrays}) != 1:
        raise DataError("witness channels differ in length; run gravwave.io.prepare first")
    return np.stack(arrays).astype(np.float64, copy=False)


def predict_noise(
    cleaner: Cleaner, witnesses: np.ndarray, window: int, overlap: float = 0.5, batch: int = 4
) -> np.ndarray:
    """Stitched noise prediction ``(time,)`` of any cleaner over ``witnesses (channel, time)``.

    A :class:`WindowedCleaner` is stitched on its raw output and finished once; any other
    cleaner's ``noise`` is called per window and stitched.
    """
    if isinstance(cleaner, WindowedCleaner):
        raw = overlap_add(
            cleaner.raw, witnesses, window, overlap, multiple=cleaner.multiple, batch=batch
        )
        return cleaner.finish(raw)

    def per_window(block: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(cleaner.noise(b))[None] for b in block])

    return overlap_add(per_window, witnesses, window, overlap, batch=batch)[0]


def clean_offline(
    cleaner: Cleaner,
    strain: TimeSeries,
    witnesses: TimeSeriesDict,
    window: float = 8.0,
    overlap: float = 0.5,
    batch: int = 4,
) -> TimeSeries:
    """Clean a long span: strain minus the Hann overlap-added noise prediction.

    Args:
        cleaner: Any cleaner; its ``witness_channels`` are taken from ``witnesses``.
        strain: Strain at ``cleaner.sample_rate`` [strain].
        witnesses: Witness series over the same samples.
        window: Window length in s.
        overlap: Fraction of overlap of consecutive windows (0.5: 50 %).
        batch: Windows per forward pass.

    Returns:
        Cleaned strain, same epoch and rate, channel ``<strain>_DC``.

    Raises:
        DataError: Missing channels, mismatched lengths or rates.
    """
    fs = float(strain.sample_rate.value)
    if abs(fs - cleaner.sample_rate) > 1e-6:
        raise DataError(f"strain at {fs} Hz, cleaner works at {cleaner.sample_rate} Hz")
    w = stack_witnesses(witnesses, cleaner.witness_channels)
    if w.shape[1] != len(strain):
        raise DataError(f"witnesses have {w.shape[1]} samples, strain {len(strain)}")
    n = round(window * fs)
    noise = predict_noise(cleaner, w, n, overlap, batch)
    name = f"{strain.name or cleaner.strain_channel}_DC"
    return TimeSeries(
        strain.value - noise,
        t0=strain.t0,
        sample_rate=strain.sample_rate,
        unit=strain.unit,
        name=name,
        channel=name,
    )


class OnlineCleaner:
    """Frame-by-frame cleaning with a bounded look-ahead, equal to offline in the interior.

    Each call to :meth:`push` appends one frame of strain and witnesses. A frame is
    released once ``lookahead`` s of later data are buffered: the cleaner runs on
    ``memory + frame + lookahead`` s of witnesses ending at the newest sample and the
    frame's part of the finished prediction is subtracted. Latency from the frame's last
    sample to its release is ``lookahead`` plus the processing time.

    Args:
        cleaner: A :class:`WindowedCleaner` (a plain cleaner is run on the block too, but
            its online output then has no offline-equality guarantee).
        frame: Frame length in s.
        lookahead: Future data in s a frame waits for (bounded by construction).
        memory: Past data in s kept before each frame; default the cleaner's past reach
            plus its finishing filter, rounded up to the window multiple.

    Attributes:
        latencies: Processing wall time in s of every released frame.
    """

    def __init__(
        self,
        cleaner: Cleaner,
        frame: float = 1.0,
        lookahead: float = 0.5,
        memory: float | None = None,
    ) -> None:
        self.cleaner = cleaner
        fs = cleaner.sample_rate
        self.frame_n = round(frame * fs)
        self.lookahead_n = round(lookahead * fs)
        windowed = isinstance(cleaner, WindowedCleaner)
        self.multiple = cleaner.multiple if windowed else 1
        past, future = cleaner.reach if windowed else (0, 0)
        fr = cleaner.finish_reach if windowed else 0
        if windowed and self.lookahead_n < future + fr:
            log.warning(
                "look-ahead %.3f s is shorter than the cleaner's reach %.3f s: online output "
                "will differ from offline near each frame end",
                lookahead,
                (future + fr) / fs,
            )
        mem = round(memory * fs) if memory is not None else past + fr
        span = self.frame_n + self.lookahead_n
        self.memory_n = mem + (-(mem + span)) % self.multiple
        if self.frame_n % self.multiple:
            raise ValueError(
                f"frame of {self.frame_n} samples is not a multiple of {self.multiple}"
            )
        self._w = np.zeros((len(cleaner.witness_channels), 0))
        self._s = np.zeros(0)
        self._base = 0  # stream index of the first buffered sample
        self._next = 0  # stream index of the next sample to release
        self.latencies: list[float] = []

    @property
    def delay(self) -> float:
        """Data delay in s of a released frame's last sample (the look-ahead)."""
        return self.lookahead_n / self.cleaner.sample_rate

    def _block(self, w: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Buffered witnesses over stream samples ``[start, stop)``, reflected outside."""
        lo, hi = start - self._base, stop - self._base
        pad_lo, pad_hi = max(0, -lo), max(0, hi - w.shape[1])
        block = w[:, max(lo, 0) : min(hi, w.shape[1])]
        if pad_lo or pad_hi:
            block = np.pad(block, ((0, 0), (pad_lo, pad_hi)), mode="reflect")
        return block

    def _release(self, w: np.ndarray, s: np.ndarray, n_out: int) -> np.ndarray:
        tic = time.perf_counter()
        start = self._next - self.memory_n
        stop = self._next + self.frame_n + self.lookahead_n
        block = self._block(w, start, stop)
        if isinstance(self.cleaner, WindowedCleaner):
            noise = self.cleaner.finish(self.cleaner.raw(block[None])[0])
        else:
            noise = np.asarray(self.cleaner.noise(block))
        i0 = self._next - self._base
        cleaned = s[i0 : i0 + n_out] - noise[self.memory_n : self.memory_n + n_out]
        self.latencies.append(time.perf_counter() - tic)
        self._next += n_out
        return cleaned

    def _trim(self) -> None:
        keep = self._next - self.memory_n - self._base
        if keep > 0:
            self._w, self._s = self._w[:, keep:], self._s[keep:]
            self._base += keep

    def push(self, strain: np.ndarray, witnesses: np.ndarray) -> list[np.ndarray]:
        """Add one frame; return the cleaned frames now complete (0 or more).

        Args:
            strain: ``(time,)`` strain samples [strain].
            witnesses: ``(channel, time)`` witness samples (channels in the cleaner's order).

        Returns:
            Cleaned frames ``(frame,)`` in order.
        """
        w = np.asarray(witnesses, dtype=np.float64)
        s = np.asarray(strain, dtype=np.float64)
        if w.ndim != 2 or w.shape != (self._w.shape[0], s.shape[0]):
            raise DataError(
                f"expected witnesses ({self._w.shape[0]}, {s.shape[0]}), got {w.shape}"
            )
        self._w = np.concatenate([self._w, w], axis=1)
        self._s = np.concatenate([self._s, s])
        out = []
        end = self._base + self._s.shape[0]
        while end - self._next >= self.frame_n + self.lookahead_n:
            out.append(self._release(self._w, self._s, self.frame_n))
            self._trim()
        return out

    def flush(self) -> list[np.ndarray]:
        """Release what is left at the end of the stream (the look-ahead is reflected)."""
        out = []
        end = self._base + self._s.shape[0]
        while self._next < end:
            out.append(self._release(self._w, self._s, min(self.frame_n, end - self._next)))
        self._trim()
        return out

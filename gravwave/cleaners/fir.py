"""A multi-channel FIR on windows, by overlap-save FFT blocks: the Wiener stage's raw output.

The Wiener stage predicts ``y[t] = sum_c sum_k h_c[k] (x_c[t - k - lag0] - m_c)`` on each
window, the witnesses taken as zero outside it. :func:`fir_whole_window` computes it with one
FFT of the whole window plus the taps per channel (what
:meth:`gravwave.cleaners.WienerCleaner.raw` did before; kept as the reference the tests
compare with). :class:`BlockFIR`, what the Wiener stage uses, computes the same sum with less
memory traffic, which is what that costs on a CPU (the Wiener stage alone 2.4 times as fast
on 8-s windows of 21 channels at 4096 Hz, ``benchmarks/bench_cleaning.py``):

* the window is cut into output blocks of ``block`` samples; each block's inputs (the block
  and the ``n_taps - 1`` samples before it, shifted by ``lag0``) are transformed with an
  FFT that fits the cache, the channels summed in the frequency domain;
* the means are not subtracted from the witnesses (a pass over all of them): their share,
  ``sum_c m_c h_c`` convolved with the block's support, is one spectrum per block length,
  computed once and subtracted from the summed spectrum.

Linear convolution throughout (each FFT covers its block plus the taps), so the result
equals the whole-window computation up to float64 rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import numpy as np
import scipy.fft
import torch

__all__ = ["BlockFIR", "fft_workers", "fir_whole_window"]

_WORKERS: ContextVar[int | None] = ContextVar("fir_fft_workers", default=None)


@contextlib.contextmanager
def fft_workers(n: int) -> Iterator[None]:
    """Run the FFTs of :class:`BlockFIR` calls in this thread (and context) on ``n`` workers
    instead of torch's intra-op thread count: a stage run beside the network in a thread of
    its own takes one core, not the network's (:class:`gravwave.cleaners.CascadeCleaner`).
    The results do not depend on it (pocketfft splits the channels across its workers)."""
    token = _WORKERS.set(max(1, int(n)))
    try:
        yield
    finally:
        _WORKERS.reset(token)


class BlockFIR:
    """Multi-channel FIR ``(batch, channel, time) -> (batch, 1, time)`` by FFT blocks.

    Args:
        taps: ``(channel, n_taps)`` float64; ``taps[c, k]`` multiplies ``x_c[t - k - lag0]``.
        mean: ``(channel,)`` subtracted from each witness first.
        lag0: Lag of the first tap in samples (0 causal, negative: sees the future).
        block: Output samples per FFT block.

    Raises:
        ValueError: Taps not 2-D, a mean of another length, or ``block < 1``.
    """

    def __init__(
        self, taps: np.ndarray, mean: np.ndarray, lag0: int = 0, block: int = 8192
    ) -> None:
        self.taps = np.asarray(taps, dtype=np.float64)
        self.mean = np.asarray(mean, dtype=np.float64)
        if self.taps.ndim != 2 or self.mean.shape != (self.taps.shape[0],) or block < 1:
            raise ValueError(
                f"expected taps (channel, n_taps), mean (channel,) and block >= 1, got "
                f"{self.taps.shape}, {self.mean.shape} and {block}"
            )
        self.lag0, self.block = int(lag0), int(block)
        self.n_taps = self.taps.shape[1]
        self._mean_taps = (self.mean[:, None] * self.taps).sum(axis=0)  # (n_taps,)
        # witnesses whose taps are all zero (not selected) add nothing: not transformed
        used = np.flatnonzero(np.any(self.taps != 0, axis=1))
        self._used = None if used.size == self.taps.shape[0] else used
        self._taps = self.taps if self._used is None else self.taps[self._used]
        self._spectra: dict[int, np.ndarray] = {}
        self._corrections: dict[tuple[int, int], np.ndarray] = {}

    def _spectrum(self, nfft: int) -> np.ndarray:
        if nfft not in self._spectra:
            self._spectra[nfft] = scipy.fft.rfft(self._taps, nfft, axis=-1)
        return self._spectra[nfft]

    def _correction(self, length: int, nfft: int) -> np.ndarray:
        """Spectrum of the means' share over an input segment of ``length`` samples."""
        key = (length, nfft)
        if key not in self._corrections:
            support = scipy.fft.rfft(np.ones(length), nfft)
            self._corrections[key] = scipy.fft.rfft(self._mean_taps, nfft) * support
        return self._corrections[key]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``(batch, 1, time)`` float64 FIR output of windows ``x (batch, channel, time)``.

        Raises:
            ValueError: ``x`` not 3-D with the taps' channel count.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 3 or x.shape[1] != self.taps.shape[0]:
            raise ValueError(
                f"expected windows (batch, {self.taps.shape[0]}, time), got {x.shape}"
            )
        if self._used is not None:
            x = x[:, self._used]
        n, taps_n, lag0 = x.shape[-1], self.n_taps, self.lag0
        out = np.empty((x.shape[0], 1, n))
        nfft = scipy.fft.next_fast_len(min(self.block, n) + taps_n - 1 + abs(lag0), real=True)
        spec = self._spectrum(nfft)
        # as the network's (one per batch worker), unless fft_workers says otherwise
        threads = _WORKERS.get() or torch.get_num_threads()
        for s in range(0, n, self.block):
            e = min(n, s + self.block)
            # y[t] for t in [s, e) needs x[t - lag0 - (n_taps - 1) .. t - lag0], zeros outside
            a, b = max(0, s - lag0 - (taps_n - 1)), min(n, e - lag0)
            if a >= b:  # every input this block needs is outside the window
                out[:, 0, s:e] = 0.0
                continue
            seg = scipy.fft.rfft(x[:, :, a:b], nfft, axis=-1, workers=threads)
            summed = np.einsum("bcf,cf->bf", seg, spec) - self._correction(b - a, nfft)
            full = scipy.fft.irfft(summed, nfft, axis=-1, workers=threads)
            off = s - lag0 - a  # full[j] is y at t = a + lag0 + j
            out[:, 0, s:e] = full[:, off : off + e - s]
        return out


def fir_whole_window(
    x: np.ndarray, taps: np.ndarray, mean: np.ndarray, lag0: int = 0
) -> np.ndarray:
    """The same FIR as :class:`BlockFIR` by one FFT of each whole window (the reference).

    One FFT per channel of the window minus its mean, the sum over channels in the frequency
    domain, one inverse FFT (linear convolution: the FFT length covers the window plus the
    taps).

    Args:
        x: Windows ``(batch, channel, time)``.
        taps: ``(channel, n_taps)``; ``taps[c, k]`` multiplies ``x_c[t - k - lag0]``.
        mean: ``(channel,)`` subtracted from each witness first.
        lag0: Lag of the first tap in samples.

    Returns:
        ``(batch, 1, time)`` float64.
    """
    xm = np.asarray(x, dtype=np.float64) - np.asarray(mean, dtype=np.float64)[None, :, None]
    n, n_taps = xm.shape[-1], taps.shape[-1]
    nfft = scipy.fft.next_fast_len(n + n_taps - 1, real=True)
    threads = torch.get_num_threads()
    spec = scipy.fft.rfft(xm, nfft, axis=-1, workers=threads) * scipy.fft.rfft(
        np.asarray(taps, dtype=np.float64)[None], nfft, axis=-1
    )
    full = scipy.fft.irfft(spec.sum(axis=1), nfft, axis=-1, workers=threads)
    return full[:, None, -lag0 : -lag0 + n]

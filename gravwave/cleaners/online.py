"""Online cleaning: frame by frame with a bounded look-ahead, equal to offline in the interior.

See :mod:`gravwave.cleaners.base` for why a cleaner with a bounded reach cleans a frame
online as it does offline once the frame's look-ahead covers the reach.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from gravwave.cleaners.base import Cleaner
from twins.errors import DataError

__all__ = ["OnlineCleaner"]

log = logging.getLogger(__name__)


class OnlineCleaner:
    """Frame-by-frame cleaning with a bounded look-ahead, equal to offline in the interior.

    Each call to :meth:`push` appends one frame of strain and witnesses. A frame is
    released once ``lookahead`` s of later data are buffered: the cleaner runs on
    ``memory + frame + lookahead`` s of witnesses ending at the newest sample and the
    frame's part of the finished prediction is subtracted. Latency from the frame's last
    sample to its release is ``lookahead`` plus the processing time.

    Args:
        cleaner: Any cleaner.
        frame: Frame length [s].
        lookahead: Future data [s] a frame waits for (bounded by construction); default
            the cleaner's future reach plus its finishing filter's, the shortest with which
            the output equals offline cleaning in the interior (a cascade whose network runs
            at a reduced rate reaches further than one at the full rate).
        memory: Past data [s] kept before each frame; default the cleaner's past reach
            plus its finishing filter, rounded up to the window multiple.

    Attributes:
        latencies: Processing wall time [s] of every released frame.
    """

    def __init__(
        self,
        cleaner: Cleaner,
        frame: float = 1.0,
        lookahead: float | None = None,
        memory: float | None = None,
    ) -> None:
        self.cleaner = cleaner
        fs = cleaner.sample_rate
        self.frame_n = round(frame * fs)
        self.multiple = cleaner.multiple
        past, future = cleaner.reach
        fr = cleaner.finish_reach
        self.lookahead_n = future + fr if lookahead is None else round(lookahead * fs)
        if self.lookahead_n < future + fr:
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
        """Data delay [s] of a released frame's last sample (the look-ahead)."""
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
        noise = self.cleaner.finish(self.cleaner.raw(block[None])[0])
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

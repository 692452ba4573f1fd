"""Exact stitching of a long span from windows that overlap by the predictor's reach.

A cleaner's raw prediction of a sample depends only on the witnesses within its reach
``(past, future)`` samples (:attr:`gravwave.cleaners.base.Cleaner.reach`; for the network,
:meth:`gravwave.models.DeepClean.receptive_field`). A window therefore predicts every sample
whose whole reach it holds exactly as one window over the whole span would. Windows of
``window`` samples that overlap by the reach (rounded up to the network stride), each
keeping only its central ``core`` samples, reproduce the one-window prediction up to
floating-point rounding, and compute each sample ``window / core`` times (1.04 for the
default cascade and 8-s windows) where a 50 % Hann overlap-add
(:func:`gravwave.cleaners.windowed.overlap_add`) computes it twice and blends in the edges
of windows (weight up to ``sin^2(pi * reach / window)``).

The span is extended by reflection at both ends, as for the overlap-add, and windows start
at multiples of the stride ``multiple`` counted from the first sample, as the overlap-add's
do, so both see the same data in the same stride phase.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from twins.errors import DataError

__all__ = ["stack_channel_minor", "stitch_geometry", "stitch_span", "stitch_windows"]


def stitch_geometry(window: int, reach: tuple[int, int], multiple: int = 1) -> tuple[int, int]:
    """``(lead, core)`` samples of exact stitching.

    Window ``k`` starts at ``k * core - lead`` and keeps samples ``[k * core, (k + 1) *
    core)``: ``lead`` is the past reach rounded up to ``multiple`` and ``core`` the largest
    multiple of ``multiple`` with ``lead + core + future <= window``.

    Args:
        window: Window length [samples], a multiple of ``multiple``.
        reach: ``(past, future)`` [samples] of one predicted sample into the witnesses.
        multiple: Stride [samples] window starts must be multiples of.

    Raises:
        ValueError: ``window`` not a positive multiple of ``multiple``, a negative reach,
            or a window too short to hold the reach and one stride of core.
    """
    past, future = (int(r) for r in reach)
    if multiple < 1 or window < 1 or window % multiple:
        raise ValueError(f"window {window} samples must be a positive multiple of {multiple}")
    if past < 0 or future < 0:
        raise ValueError(f"reach must be non-negative samples, got {reach}")
    lead = -(-past // multiple) * multiple
    core = (window - lead - future) // multiple * multiple
    if core < multiple:
        raise ValueError(
            f"window of {window} samples cannot hold the reach {past}+{future} samples and "
            f"one stride of {multiple}: use a window of at least "
            f"{lead + future + multiple} samples"
        )
    return lead, core


def stack_channel_minor(windows: list[np.ndarray]) -> np.ndarray:
    """``(batch, time, channel)`` from windows ``(channel, time)``: a ``stack`` for
    :func:`stitch_windows` over a channel-minor span (the transposed view of a ``(time,
    channel)`` array, whose windows' ``.T`` are contiguous), for a predictor that computes
    channel-minor."""
    return np.stack([w.T for w in windows])


class _Extended:
    """Windows of ``x`` extended by reflection (``lead`` samples before it, ``pad_right``
    after), as ``np.pad(x, (lead, pad_right), "reflect")`` would give them, without copying
    a long span whole: a window inside ``x`` is a slice of it, one that reaches past an end
    is a piece of ``x`` padded, the piece long enough to hold the samples the padding
    reflects (``x[1 .. left]`` at the start, ``x[-1 - right .. -2]`` at the end); the whole
    span is padded only when it is shorter than that."""

    def __init__(self, x: np.ndarray, lead: int, pad_right: int) -> None:
        self.x, self.lead, self.pad_right = x, lead, pad_right
        self.mode = "reflect" if x.shape[1] > 1 else "edge"
        self._whole: np.ndarray | None = None

    def window(self, start: int, length: int) -> np.ndarray:
        """Samples ``[start, start + length)`` of the extended span, ``(channel, length)``."""
        x, stop, total = self.x, start + length, self.x.shape[1]
        if start >= 0 and stop <= total:
            return x[:, start:stop]
        left, right = max(0, -start), max(0, stop - total)
        lo = max(0, min(start, total - 1 - right)) if right else max(0, start)
        hi = max(min(stop, total), min(total, left + 1)) if left else min(stop, total)
        if max(left, right) < hi - lo and self.mode == "reflect":
            padded = np.pad(x[:, lo:hi], ((0, 0), (left, right)), mode="reflect")
            first = start - lo + left  # padded[:, 0] is sample lo - left
            return padded[:, first : first + length]
        if self._whole is None:
            pads = ((0, 0), (self.lead, self.pad_right))
            self._whole = np.pad(x, pads, mode=self.mode)
        return self._whole[:, start + self.lead : stop + self.lead]


def stitch_windows(
    predict: Callable[[np.ndarray], np.ndarray],
    witnesses: np.ndarray,
    window: int,
    reach: tuple[int, int],
    *,
    multiple: int = 1,
    batch: int = 4,
    stack: Callable[[list[np.ndarray]], np.ndarray] = np.stack,
) -> np.ndarray:
    """Predictions over a long span from windows overlapping by the reach, each sample
    taken from the one window that holds its whole reach.

    Equal, up to rounding, to ``predict`` on one window over the whole span extended by
    reflection (``lead`` samples before it, see :func:`stitch_geometry`).

    Args:
        predict: Maps windows ``(batch, channel, window)`` to ``(batch, rows, window)``.
        witnesses: ``(channel, time)``.
        window: Window length [samples] (a multiple of ``multiple``).
        reach: ``(past, future)`` [samples] of one predicted sample into the witnesses.
        multiple: Window starts and lengths are multiples of this (network stride).
        batch: Windows per ``predict`` call.
        stack: Makes what ``predict`` receives from a list of windows ``(channel, window)``
            (views of ``witnesses`` where they lie inside it); default ``np.stack``, i.e.
            ``(batch, channel, window)``.

    Returns:
        ``(rows, time)`` float64 predictions.

    Raises:
        DataError: ``witnesses`` not 2-D.
        ValueError: A window too short for the reach (:func:`stitch_geometry`), or
            ``predict`` returning another shape.
    """
    x = np.asarray(witnesses)
    if x.ndim != 2:
        raise DataError(f"witnesses must be (channel, time), got shape {x.shape}")
    total = x.shape[1]
    lead, core = stitch_geometry(window, reach, multiple)
    n_win = max(1, math.ceil(total / core))
    pad_right = (n_win - 1) * core + window - lead - total
    ext = _Extended(x, lead, pad_right)
    out: np.ndarray | None = None
    for first in range(0, n_win, max(1, batch)):
        ks = range(first, min(first + max(1, batch), n_win))
        block = stack([ext.window(k * core - lead, window) for k in ks])
        pred = np.asarray(predict(block))
        if pred.ndim != 3 or pred.shape[0] != len(ks) or pred.shape[2] != window:
            raise ValueError(
                f"predict returned shape {pred.shape} for {len(ks)} windows of {window}"
            )
        if out is None:
            out = np.empty((pred.shape[1], n_win * core))
        for k, p in zip(ks, pred, strict=True):
            out[:, k * core : (k + 1) * core] = p[:, lead : lead + core]
    assert out is not None
    return out[:, :total]


def stitch_span(
    predict: Callable[[np.ndarray], np.ndarray],
    witnesses: np.ndarray,
    reach: tuple[int, int],
) -> np.ndarray:
    """What :func:`stitch_windows` gives, from one call of ``predict`` over the whole span,
    for a predictor that takes a window of any length at a cost linear in it (an FIR by
    overlap-save blocks): no windows cut, stacked or computed twice.

    ``predict`` sees the span with zeros outside it, which is right for every sample whose
    whole reach lies inside; the first ``past`` and the last ``future`` samples are
    predicted again from short windows of the span extended by reflection, as the stitched
    windows see them. Equal to :func:`stitch_windows` up to rounding.

    Args:
        predict: Maps windows ``(1, channel, n)`` to ``(1, rows, n)`` for any ``n``.
        witnesses: ``(channel, time)``.
        reach: ``(past, future)`` [samples] of one predicted sample into the witnesses.

    Returns:
        ``(rows, time)`` float64 predictions.

    Raises:
        DataError: ``witnesses`` not 2-D.
    """
    x = np.asarray(witnesses)
    if x.ndim != 2:
        raise DataError(f"witnesses must be (channel, time), got shape {x.shape}")
    total = x.shape[1]
    past, future = (int(r) for r in reach)
    ext = _Extended(x, past, future)
    edge = 2 * (past + future) + 1  # an edge window: longer than the reflection it holds
    if total < edge:  # one window over the whole extended span
        one = predict(ext.window(-past, past + total + future)[None])[0]
        return np.asarray(one, dtype=np.float64)[:, past : past + total]
    out = np.array(predict(x[None])[0], dtype=np.float64)
    if past:  # samples [0, past) from the window [-past, edge - past)
        left = predict(ext.window(-past, edge)[None])[0]
        out[:, :past] = left[:, past : 2 * past]
    if future:  # samples [total - future, total) from the window ending at total + future
        start = total + future - edge
        right = predict(ext.window(start, edge)[None])[0]
        first = total - future - start
        out[:, total - future :] = right[:, first : first + future]
    return out

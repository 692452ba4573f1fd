"""The abstract noise cleaner: fit on gwpy series, clean into a gwpy series, save and load.

A cleaner predicts the noise that witness channels explain in the strain channel; cleaning
subtracts it. The twin (:mod:`gravwave.twin`), offline cleaning (:meth:`Cleaner.clean`) and
online cleaning (:class:`gravwave.cleaners.online.OnlineCleaner`) only talk to this class, so
the linear stage alone, the network alone or their cascade are interchangeable.

A prediction has two steps with a bounded reach: :meth:`Cleaner.raw` per window (e.g. the
network's forward pass) and :meth:`Cleaner.finish` once, on the stitched series (a zero-phase
FIR band-pass of bounded length, the de-scaling). Offline, a long span is cut into windows
that overlap by the reach, each keeping the samples whose whole reach it holds
(:func:`gravwave.cleaners.stitch.stitch_windows`): equal to one window over the whole span up
to rounding, each sample computed ``window / core`` times (1.04 for the default cascade).
A Hann overlap-add (:func:`gravwave.cleaners.windowed.overlap_add`) is kept on request
(``overlap=``): it computes each sample twice at 50 % overlap and blends in window edges
(weight at most ``sin^2(pi * reach / window)``, about 0.3 % for the default network and 8-s
windows). Because both steps have a bounded reach, online cleaning (1-s frames, a
look-ahead, a memory) reproduces offline cleaning away from the span edges up to rounding:
the raw prediction of a sample does not depend on the window it is computed in once the
window holds its receptive field, and the finishing FIR needs only
:attr:`Cleaner.finish_reach` samples on each side.

Cleaners are saved as one ``torch.save`` file of plain tensors, numbers and strings (loadable
with ``weights_only=True``) whose ``"kind"`` selects the class in the registry
(:mod:`gravwave.cleaners.registry`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from gwpy.timeseries import TimeSeries

from gravwave.cleaners.stitch import stitch_windows
from gravwave.cleaners.windowed import overlap_add
from twins.atomic import atomic_write
from twins.errors import DataError

__all__ = ["Band", "Cleaner", "check_witnesses"]

#: A frequency band ``(low, high)`` [Hz].
Band = tuple[float, float]


def check_witnesses(witnesses: np.ndarray, channels: Sequence[str]) -> np.ndarray:
    """``witnesses`` as float64 ``(channel, time)``, checked against the expected channels.

    Raises:
        DataError: Not 2-D, or a channel count other than ``len(channels)``.
    """
    arr = np.asarray(witnesses, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != len(channels):
        raise DataError(
            f"witnesses have shape {arr.shape}; expected ({len(channels)}, time) for "
            f"channels {list(channels)}"
        )
    return arr


def _rate(ts: Any) -> float:
    return float(getattr(ts.sample_rate, "value", ts.sample_rate))


class Cleaner(ABC):
    """Predicts strain noise from witness channels; subclasses fix how.

    Attributes:
        kind: The ``"kind"`` of the cleaner's file (its registry key).
        n_raw: Rows of :meth:`raw`'s output (one per stage).
        strain_channel: Name of the strain channel it cleans.
        witness_channels: Witness channel names, in the order of the rows of ``witnesses``.
        sample_rate: Working rate [Hz] of the series it takes.
        bands: Frequency bands [Hz] in which it subtracts noise (its finishing filter is flat
            there).
        fit_bands: The bands widened by the finishing filter's transition [Hz]: where its
            output is passed at all, so where it is fitted or trained
            (:func:`gravwave.cleaners.windowed.fitted_bands`).
        window: Offline window [s].
        overlap: Overlap (fraction of a window shared by neighbours) of the Hann overlap-add
            offered by :meth:`clean` on request (``overlap=``); by default windows overlap
            by :attr:`reach` and are stitched exactly.
        multiple: Window lengths in samples must be multiples of this (network stride).
        reach: ``(past, future)`` witness samples one raw output sample depends on.
        finish_reach: Half length in samples of the :meth:`finish` filter.
    """

    kind: ClassVar[str]
    n_raw: ClassVar[int] = 1

    strain_channel: str
    witness_channels: tuple[str, ...]
    sample_rate: float
    bands: tuple[Band, ...]
    fit_bands: tuple[Band, ...]
    window: float = 8.0
    overlap: float = 0.5
    multiple: int = 1
    reach: tuple[int, int] = (0, 0)
    finish_reach: int = 0

    # -- what a cleaner implements ---------------------------------------------------------

    @abstractmethod
    def fit(self, strain: TimeSeries, witnesses: Mapping[str, TimeSeries]) -> Self:
        """Fit in place on a span: ``strain`` and its ``witnesses`` at :attr:`sample_rate`.

        Fits what is fitted in process (least squares); trained stages (networks) are trained
        by :mod:`gravwave.training` and kept.

        Returns:
            ``self``.
        """

    @abstractmethod
    def raw(self, witnesses: np.ndarray) -> np.ndarray:
        """Raw predictions ``(batch, n_raw, time)`` of windows ``(batch, channel, time)``."""

    @abstractmethod
    def finish(self, raw: np.ndarray) -> np.ndarray:
        """Strain noise ``(time,)`` [strain] from stitched raw predictions ``(n_raw, time)``."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the cleaner: tensors, numbers, strings; ``"kind"``."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild from :meth:`state`."""

    # -- shared ----------------------------------------------------------------------------

    def copy(self) -> Self:
        """An independent copy (through :meth:`state`)."""
        return type(self).from_state(self.state())

    def refit(self, strain: TimeSeries, witnesses: Mapping[str, TimeSeries]) -> Self:
        """A new cleaner of the same configuration fitted on a span; ``self`` is unchanged."""
        return self.copy().fit(strain, witnesses)

    def witness_array(self, witnesses: Mapping[str, TimeSeries]) -> np.ndarray:
        """``(channel, time)`` float64 array of :attr:`witness_channels`, in order.

        Raises:
            DataError: A channel missing, at another rate, or channels of unequal length.
        """
        missing = [c for c in self.witness_channels if c not in witnesses]
        if missing:
            raise DataError(f"witness channel(s) {missing} missing; have {list(witnesses)}")
        for c in self.witness_channels:
            fs = _rate(witnesses[c])
            if abs(fs - self.sample_rate) > 1e-6:
                raise DataError(
                    f"witness {c} at {fs:g} Hz; the cleaner works at {self.sample_rate:g} Hz",
                    hint="resample explicitly with gravwave.io.prepare(sample_rate=...)",
                )
        arrays = [np.asarray(witnesses[c].value) for c in self.witness_channels]
        if len({a.shape for a in arrays}) != 1:
            raise DataError("witness channels differ in length; run gravwave.io.prepare first")
        return np.stack(arrays).astype(np.float64, copy=False)

    def span_arrays(
        self, strain: TimeSeries, witnesses: Mapping[str, TimeSeries]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(witnesses (channel, time), strain (time,))`` float64 of one span.

        Raises:
            DataError: Another rate, a missing witness, or lengths that differ.
        """
        fs = _rate(strain)
        if abs(fs - self.sample_rate) > 1e-6:
            raise DataError(
                f"strain at {fs:g} Hz, the cleaner works at {self.sample_rate:g} Hz",
                hint="resample explicitly with gravwave.io.prepare(sample_rate=...)",
            )
        w = self.witness_array(witnesses)
        s = np.asarray(strain.value, dtype=np.float64)
        if w.shape[1] != s.shape[0]:
            raise DataError(f"witnesses have {w.shape[1]} samples, strain {s.shape[0]}")
        return w, s

    def predict(
        self, witnesses: np.ndarray, window: int, overlap: float | None = None, batch: int = 4
    ) -> np.ndarray:
        """Stitched noise ``(time,)`` [strain]: :meth:`raw` over windows of ``window``
        samples, stitched, then :meth:`finish` once.

        Args:
            witnesses: ``(channel, time)``.
            window: Window length in samples (a multiple of :attr:`multiple`).
            overlap: ``None``: windows overlap by :attr:`reach` and each sample comes from
                the window holding its whole reach (:func:`~gravwave.cleaners.stitch.
                stitch_windows`, equal to one window over the span up to rounding); a
                fraction: Hann overlap-add with that overlap.
            batch: Windows per :meth:`raw` call.
        """
        w = check_witnesses(witnesses, self.witness_channels)
        if overlap is None:
            raw = stitch_windows(
                self.raw, w, window, self.reach, multiple=self.multiple, batch=batch
            )
        else:
            raw = overlap_add(self.raw, w, window, overlap, multiple=self.multiple, batch=batch)
        return self.finish(raw)

    def noise(self, witnesses: np.ndarray) -> np.ndarray:
        """Predicted strain noise ``(time,)`` [strain] from witnesses ``(channel, time)``.

        Long spans are stitched from :attr:`window`-s windows (:meth:`predict`); a span no
        longer than one window is one window (padded by reflection to the stride).
        """
        w = check_witnesses(witnesses, self.witness_channels)
        n = round(self.window * self.sample_rate)
        if w.shape[1] <= n:
            n = max(self.multiple, -(-w.shape[1] // self.multiple) * self.multiple)
            pad = n - w.shape[1]
            wp = np.pad(w, ((0, 0), (0, pad)), mode="reflect") if pad else w
            return self.finish(self.raw(wp[None])[0])[: w.shape[1]]
        return self.predict(w, n)

    def clean(
        self,
        strain: TimeSeries,
        witnesses: Mapping[str, TimeSeries],
        *,
        window: float | None = None,
        overlap: float | None = None,
        batch: int = 4,
        name: str | None = None,
    ) -> TimeSeries:
        """Clean a span offline: strain minus the stitched noise prediction (:meth:`predict`).

        Args:
            strain: Strain at :attr:`sample_rate` [strain].
            witnesses: Witness series over the same samples (a ``TimeSeriesDict``).
            window: Window length [s]; default :attr:`window`.
            overlap: ``None`` (default): windows overlap by :attr:`reach`, stitched exactly;
                a fraction: Hann overlap-add with that overlap (see :meth:`predict`).
            batch: Windows per forward pass.
            name: Channel name of the output; default ``<strain>_DC``.

        Returns:
            Cleaned strain, same epoch, rate and unit.

        Raises:
            DataError: Missing channels, mismatched lengths or rates.
        """
        w, s = self.span_arrays(strain, witnesses)
        n = round((self.window if window is None else window) * self.sample_rate)
        noise = self.predict(w, n, overlap, batch)
        out = name or f"{strain.name or self.strain_channel}_DC"
        return TimeSeries(
            s - noise, t0=strain.t0, sample_rate=strain.sample_rate, unit=strain.unit,
            name=out, channel=out,
        )  # fmt: skip

    def save(self, path: str | Path) -> Path:
        """Write :meth:`state` with ``torch.save`` (``weights_only`` loadable), replacing
        ``path`` atomically (:func:`twins.atomic.atomic_write`); returns the path."""
        state = self.state()
        return atomic_write(path, lambda tmp: torch.save(state, tmp))

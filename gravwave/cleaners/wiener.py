"""The linear cleaner: an in-band multi-channel Wiener filter in windowed form.

:meth:`WienerCleaner.fit` solves the least-squares FIR of
:class:`gravwave.models.wiener.WienerFilter` on witnesses and strain band-passed to the
bands widened by the finishing filter's transition (:attr:`WienerCleaner.fit_bands`, e.g.
114-191 Hz for 125-180 Hz): the filter passes the FIR's output up to there, so the FIR is
fitted up to there, and adds no noise beside the band (issue 12). The
prediction applies those taps to the raw witnesses (:class:`gravwave.cleaners.fir.BlockFIR`:
overlap-save FFT blocks, the sum over channels in the frequency domain; the band-pass commutes
with the FIR) and then a zero-phase FIR
band-pass to the linear bands, both of bounded reach, so a long span is cleaned by one pass
of the block FIR over it (equal to exactly stitched windows, see
:func:`gravwave.cleaners.stitch.stitch_span`) and online cleaning equals offline away from the
edges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import torch
from gwpy.timeseries import TimeSeries

from gravwave.cleaners.base import Band, Cleaner, check_witnesses
from gravwave.cleaners.fir import BlockFIR
from gravwave.cleaners.stitch import stitch_geometry, stitch_span
from gravwave.cleaners.windowed import apply_fir, fir_bandpass, fitted_bands
from gravwave.models.wiener import WienerFilter
from twins.errors import DataError

__all__ = ["WienerCleaner"]


class WienerCleaner(Cleaner):
    """The linear stage: a causal multi-channel FIR fitted in band, finished by a band-pass.

    Args:
        strain_channel: Strain channel name.
        witness_channels: Witness channel names (order of the rows of ``witnesses``).
        sample_rate: Working rate [Hz].
        bands: Bands [Hz] to subtract in (the finishing band-pass is flat there); the FIR is
            fitted over them widened by its transition width (:attr:`fit_bands`).
        n_taps: FIR taps per witness.
        window: Offline window [s].
        overlap: Offline overlap fraction.
        finish_length: Half length [s] of the finishing FIR band-pass.
        attenuation: Its stop-band attenuation [dB] (high: the FIR output of raw witnesses
            carries huge out-of-band lines, e.g. the mains).
        select_channels: Fit only the witnesses that lower the residual on a held-out part
            of the span (:class:`~gravwave.models.wiener.WienerFilter`); the others' taps are
            zero and the block FIR skips them.

    Raises:
        ConfigError: A band widened by the transition reaches 0 Hz or Nyquist.
    """

    kind: ClassVar[str] = "wiener"

    def __init__(
        self,
        strain_channel: str,
        witness_channels: Sequence[str],
        sample_rate: float,
        bands: Sequence[Band],
        n_taps: int = 256,
        *,
        window: float = 8.0,
        overlap: float = 0.5,
        finish_length: float = 0.3,
        attenuation: float = 100.0,
        select_channels: bool = False,
    ) -> None:
        self.strain_channel = strain_channel
        self.witness_channels = tuple(witness_channels)
        self.sample_rate = float(sample_rate)
        self.bands = tuple((float(lo), float(hi)) for lo, hi in bands)
        self.window, self.overlap = float(window), float(overlap)
        self.finish_length, self.attenuation = float(finish_length), float(attenuation)
        self.finish_reach = round(self.finish_length * self.sample_rate)
        self._fir = fir_bandpass(self.bands, self.sample_rate, self.finish_reach, attenuation)
        self.fit_bands = fitted_bands(
            self.bands, self.sample_rate, self.finish_reach, self.attenuation
        )
        self._block: BlockFIR | None = None
        self.select_channels = bool(select_channels)
        self.filter = WienerFilter(
            n_taps, self.sample_rate, self.fit_bands, select_channels=self.select_channels
        )

    @property
    def filter(self) -> WienerFilter:
        """The least-squares filter (its taps once fitted)."""
        return self._filter

    @filter.setter
    def filter(self, value: WienerFilter) -> None:
        self._filter = value
        self._block = None
        self.reach = (value.n_taps - 1 + value.lag0, max(0, -value.lag0))

    def fit(self, strain: TimeSeries, witnesses: Mapping[str, TimeSeries]) -> Self:
        """Fit the taps on a span over :attr:`fit_bands` (see
        :class:`~gravwave.models.wiener.WienerFilter`).

        A filter loaded from an earlier file fitted over the bands alone is refitted over
        :attr:`fit_bands`, with its number of taps.
        """
        w, s = self.span_arrays(strain, witnesses)
        if self.filter.bands != list(self.fit_bands):
            old = self.filter
            self.filter = WienerFilter(
                old.n_taps,
                self.sample_rate,
                self.fit_bands,
                ridge=old.ridge,
                centred=old.centred,
                order=old.order,
            )
        self.filter.select_channels = self.select_channels
        self.filter.fit(w, s)
        self._block = None
        return self

    def raw(self, witnesses: np.ndarray) -> np.ndarray:
        """FIR output ``(batch, 1, time)`` of witness windows ``(batch, channel, time)``,
        the witnesses taken as zero outside each window.

        Computed by :class:`~gravwave.cleaners.fir.BlockFIR` (overlap-save FFT blocks that
        fit the cache; its FFTs use torch's intra-op thread count, so a batch worker pinned
        to one thread runs them on one), equal to the whole-window FFT convolution
        (:func:`~gravwave.cleaners.fir.fir_whole_window`) up to float64 rounding.

        Raises:
            DataError: The cleaner is not fitted.
        """
        if self._block is None:
            filt = self.filter
            if filt.taps is None or filt.witness_mean is None:
                raise DataError("the Wiener cleaner is not fitted: call fit() first")
            self._block = BlockFIR(filt.taps, filt.witness_mean, filt.lag0)
        return self._block(witnesses)

    def predict(
        self, witnesses: np.ndarray, window: int, overlap: float | None = None, batch: int = 4
    ) -> np.ndarray:
        """Stitched noise ``(time,)`` [strain] (:meth:`Cleaner.predict`). With exact
        stitching (``overlap=None``) the block FIR runs over the whole span at once
        (:func:`~gravwave.cleaners.stitch.stitch_span`: equal to stitching windows up to
        float64 rounding, without cutting or stacking them); ``window`` must still hold
        the reach, as for the other stages.
        """
        if overlap is not None:
            return super().predict(witnesses, window, overlap, batch)
        stitch_geometry(window, self.reach, self.multiple)  # ValueError: too short
        w = check_witnesses(witnesses, self.witness_channels)
        return self.finish(stitch_span(self.raw, w, self.reach))

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """Band-limited noise ``(time,)`` from the stitched FIR output ``(1, time)``."""
        return apply_fir(np.asarray(raw)[0], self._fir)

    def state(self) -> dict[str, Any]:
        """Channels, bands, window settings and the filter's taps (tensors)."""
        filt = {
            k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
            for k, v in self.filter.state_dict().items()
        }
        return {
            "kind": self.kind,
            "strain_channel": self.strain_channel,
            "witness_channels": list(self.witness_channels),
            "sample_rate": self.sample_rate,
            "bands": [list(b) for b in self.bands],
            "filter": filt,
            "window": self.window,
            "overlap": self.overlap,
            "finish_length": self.finish_length,
            "attenuation": self.attenuation,
            "select_channels": self.select_channels,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild from :meth:`state`.

        Also reads the two earlier layouts: ``kind="wiener"`` without window settings (the
        defaults apply) and ``kind="wiener-stage"`` (the settings beside a nested
        ``"wiener"`` state).
        """
        inner = state.get("wiener", state)
        filt = {
            k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in inner["filter"].items()
        }
        settings = {
            k: float(state[k])
            for k in ("window", "overlap", "finish_length", "attenuation")
            if k in state
        }
        obj = cls(
            inner["strain_channel"],
            inner["witness_channels"],
            inner["sample_rate"],
            [(float(lo), float(hi)) for lo, hi in inner["bands"]],
            n_taps=int(filt["n_taps"]),
            select_channels=bool(state.get("select_channels", False)),
            **settings,
        )
        obj.filter = WienerFilter.from_state_dict(filt)
        obj.filter.select_channels = obj.select_channels
        return obj

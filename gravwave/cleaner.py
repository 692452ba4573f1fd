"""Earlier import path of the Wiener cleaner, kept only while tests/corpus/conftest.py fits one
here with arrays: the cleaner is :class:`gravwave.cleaners.WienerCleaner`, fitted on gwpy
series. Delete this module once that file imports from :mod:`gravwave.cleaners`."""

from __future__ import annotations

from typing import Self

import numpy as np
from gwpy.timeseries import TimeSeries, TimeSeriesDict

from gravwave.cleaners import WienerCleaner as _WienerCleaner
from gravwave.cleaners.base import check_witnesses

__all__ = ["WienerCleaner"]


class WienerCleaner(_WienerCleaner):
    """:class:`gravwave.cleaners.WienerCleaner` whose :meth:`fit` takes arrays."""

    def fit(self, witnesses: np.ndarray, strain: np.ndarray) -> Self:  # type: ignore[override]
        """Fit on ``witnesses (channel, time)`` and ``strain (time,)`` at the cleaner's rate."""
        w = check_witnesses(witnesses, self.witness_channels)
        fs = self.sample_rate
        wit = TimeSeriesDict(
            (c, TimeSeries(w[i], sample_rate=fs)) for i, c in enumerate(self.witness_channels)
        )
        return super().fit(TimeSeries(np.asarray(strain), sample_rate=fs), wit)

"""The Wiener + DeepClean cascade: linear couplings first, the network for what is left.

Stages (reference/feasibility-gravwave.md: the cascade recovered ~74 % of the oracle range
gain, each stage alone far less): the linear :class:`~gravwave.cleaners.wiener.WienerCleaner`
in its bands, and the :class:`~gravwave.cleaners.network.NetworkCleaner` trained on the
Wiener residual in its band. The bands do not overlap in the default setup, so the stages add.
The whole cascade is trained by :func:`gravwave.training.fit_cascade`.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Self

import numpy as np
import torch
from gwpy.timeseries import TimeSeries

from gravwave.cleaners.base import Cleaner
from gravwave.cleaners.fir import fft_workers
from gravwave.cleaners.network import NetworkCleaner
from gravwave.cleaners.wiener import WienerCleaner
from twins.errors import DataError

__all__ = ["CascadeCleaner"]


class CascadeCleaner(Cleaner):
    """Wiener stage (linear bands) followed by the network (non-linear band).

    Args:
        wiener: The linear stage.
        network: The network stage (same witness channels in the same order).

    Raises:
        DataError: The stages differ in witness channels or rate.
    """

    kind: ClassVar[str] = "cascade"
    n_raw: ClassVar[int] = 2

    def __init__(self, wiener: WienerCleaner, network: NetworkCleaner) -> None:
        if wiener.witness_channels != network.witness_channels:
            raise DataError("the Wiener and network stages must use the same witness channels")
        if abs(wiener.sample_rate - network.sample_rate) > 1e-9:
            raise DataError("the Wiener and network stages work at different rates")
        self.wiener, self.network = wiener, network
        self.strain_channel = network.strain_channel
        self.witness_channels = network.witness_channels
        self.sample_rate = network.sample_rate
        self.bands = (*wiener.bands, *network.bands)
        self.fit_bands = (*wiener.fit_bands, *network.fit_bands)
        self.window, self.overlap = network.window, network.overlap
        self.multiple = network.multiple
        self.reach = (
            max(wiener.reach[0], network.reach[0]),
            max(wiener.reach[1], network.reach[1]),
        )
        self.finish_reach = max(wiener.finish_reach, network.finish_reach)

    def stages(self) -> dict[str, Cleaner]:
        """Each stage alone, as a cleaner: ``{"wiener": ..., "network": ...}``."""
        return {"wiener": self.wiener, "network": self.network}

    def fit(self, strain: TimeSeries, witnesses: Mapping[str, TimeSeries]) -> Self:
        """Refit the Wiener stage on a span; the trained network stays.

        Retraining the network too is :func:`gravwave.training.retrain_cascade`.
        """
        self.wiener.fit(strain, witnesses)
        return self

    def predict(
        self, witnesses: np.ndarray, window: int, overlap: float | None = None, batch: int = 4
    ) -> np.ndarray:
        """Stitched noise ``(time,)`` [strain] (:meth:`Cleaner.predict`). With exact stitching
        (``overlap=None``) each stage is stitched from windows overlapping by its own reach
        (383 samples for 384 Wiener taps, 1280 for the default network at a quarter of
        4096 Hz), which equals stitching their joint :meth:`raw` output up to rounding; with
        an overlap fraction their joint raw output is overlap-added as before.

        With exact stitching and more than one torch thread the Wiener stage runs in a
        thread of its own (its FFTs on one worker) while the network's standardisation and
        forward pass run here: the same values as one stage after the other, bit for bit;
        about a third of the cores sat idle in the sequential cascade (its single-threaded
        parts: the standardisation, window stacking, finishing filters). A process pinned
        to one thread (a batch worker) runs the stages one after the other."""
        if overlap is not None:
            return super().predict(witnesses, window, overlap, batch)
        if torch.get_num_threads() < 2:  # a worker pinned to one core: one stage at a time
            linear = self.wiener.predict(witnesses, window, None, batch)
            return linear + self.network.predict(witnesses, window, None, batch)
        with ThreadPoolExecutor(1, thread_name_prefix="wiener-stage") as pool:
            linear = pool.submit(self._wiener_on_one_core, witnesses, window, batch)
            nonlinear = self.network.predict(witnesses, window, None, batch)
            return linear.result() + nonlinear

    def _wiener_on_one_core(self, witnesses: np.ndarray, window: int, batch: int) -> np.ndarray:
        """The Wiener stage's stitched noise with its FFTs on one worker (run in a thread
        beside the network, whose forward pass keeps torch's threads)."""
        with fft_workers(1):
            return self.wiener.predict(witnesses, window, None, batch)

    def raw(self, witnesses: np.ndarray) -> np.ndarray:
        """``(batch, 2, time)``: Wiener FIR output and network output."""
        return np.concatenate([self.wiener.raw(witnesses), self.network.raw(witnesses)], 1)

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """Sum of both stages' finished noise ``(time,)`` [strain]."""
        raw = np.asarray(raw)
        return self.wiener.finish(raw[:1]) + self.network.finish(raw[1:])

    def state(self) -> dict[str, Any]:
        """Both stages' states."""
        return {"kind": self.kind, "wiener": self.wiener.state(), "network": self.network.state()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild from :meth:`state` (also files whose Wiener stage is a ``"wiener-stage"``)."""
        return cls(
            WienerCleaner.from_state(state["wiener"]),
            NetworkCleaner.from_state(state["network"]),
        )

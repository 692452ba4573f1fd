"""The network cleaner: DeepClean on standardised witnesses, finished in its band.

The network is trained by the core trainer on the :class:`gravwave.task.NoiseCleaning` task
(``twins train`` or :func:`gravwave.training.fit_cascade`); a finished run directory holds the
weights (``model.pt``) and what the cleaner needs beside them (``normalisation.pt``: channels,
rate, band, witness scaler, target scale, model settings). :meth:`NetworkCleaner.from_run`
builds the cleaner from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

import numpy as np
import torch
from gwpy.timeseries import TimeSeries
from pydantic import BaseModel, ConfigDict, Field

from gravwave.cleaners.base import Band, Cleaner
from gravwave.cleaners.windowed import apply_fir, fir_bandpass
from gravwave.models import DeepClean
from gravwave.preprocess import Standardizer
from twins.errors import ConfigError, DataError

__all__ = ["NORMALISATION_FILE", "NetworkCleaner", "NetworkConfig"]

#: What a training run stores beside ``model.pt`` for the cleaner (plain values).
NORMALISATION_FILE = "normalisation.pt"

_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class NetworkConfig(BaseModel):
    """Everything a :class:`NetworkCleaner` needs besides the model and the witness scaler.

    Attributes:
        strain_channel: Strain channel name.
        witness_channels: Witness names in the model's input order.
        sample_rate: Working rate [Hz].
        bands: The network's band(s) [Hz].
        target_scale: Std [strain] of the band-passed training target; the network predicts
            the target divided by it.
        window: Offline window [s] (a multiple of the network's stride in samples).
        overlap: Offline overlap fraction.
        finish_length: Half length [s] of the finishing FIR band-pass.
        attenuation: Its stop-band attenuation [dB].
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    strain_channel: str
    witness_channels: tuple[str, ...] = Field(min_length=1)
    sample_rate: _Positive
    bands: tuple[tuple[float, float], ...] = Field(min_length=1)
    target_scale: _Positive
    window: _Positive = 8.0
    overlap: float = Field(0.5, ge=0, lt=1)
    finish_length: _Positive = 0.3
    attenuation: _Positive = 60.0


class NetworkCleaner(Cleaner):
    """The network alone (kind ``"deepclean"``).

    Args:
        model: Trained :class:`~gravwave.models.DeepClean` (put in eval mode here).
        standardizer: Witness scaler fitted on the training part.
        config: Channels, rate, band, target scale and window settings.

    Raises:
        DataError: The model's or the scaler's channel count differs from the witnesses'.
    """

    kind: ClassVar[str] = "deepclean"

    def __init__(self, model: DeepClean, standardizer: Standardizer, config: NetworkConfig):
        n = len(config.witness_channels)
        if standardizer.n_channels != n or model.in_channels != n:
            raise DataError(
                f"model ({model.in_channels}) / scaler ({standardizer.n_channels}) channels "
                f"differ from the {n} witness channels"
            )
        self.model = model.eval()
        self.standardizer = standardizer
        self.config = config
        self.strain_channel = config.strain_channel
        self.witness_channels = config.witness_channels
        self.sample_rate = float(config.sample_rate)
        self.bands: tuple[Band, ...] = tuple((float(lo), float(hi)) for lo, hi in config.bands)
        self.window, self.overlap = float(config.window), float(config.overlap)
        self.target_scale = float(config.target_scale)
        self.multiple = model.total_stride
        self.reach = model.receptive_field()
        self.finish_reach = round(config.finish_length * self.sample_rate)
        self._fir = fir_bandpass(
            self.bands, self.sample_rate, self.finish_reach, config.attenuation
        )
        assert standardizer.mean is not None and standardizer.std is not None
        self._mean = standardizer.mean[None, :, None]
        self._inv_std = 1.0 / standardizer.std[None, :, None]

    @classmethod
    def from_run(cls, run_dir: str | Path, window: float = 8.0, overlap: float = 0.5) -> Self:
        """The cleaner of a finished :class:`gravwave.task.NoiseCleaning` training run.

        Args:
            run_dir: ``<workdir>/<name>`` of the run (holds ``model.pt`` and
                ``normalisation.pt``).
            window: Offline cleaning window [s].
            overlap: Offline overlap fraction.

        Raises:
            DataError: A file missing (the run did not finish).
        """
        run_dir = Path(run_dir)
        for name in ("model.pt", NORMALISATION_FILE):
            if not (run_dir / name).is_file():
                raise DataError(f"{run_dir / name} not found: did the training run finish?")
        best = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
        norm = torch.load(run_dir / NORMALISATION_FILE, map_location="cpu", weights_only=True)
        model = DeepClean(**norm["model_kwargs"])
        model.load_state_dict(best["model"])
        config = NetworkConfig(
            strain_channel=norm["strain_channel"],
            witness_channels=tuple(norm["witness_channels"]),
            sample_rate=norm["sample_rate"],
            bands=tuple(tuple(b) for b in norm["bands"]),
            target_scale=norm["target_scale"],
            window=window,
            overlap=overlap,
        )
        return cls(model, Standardizer.from_state_dict(norm["standardizer"]), config)

    def fit(self, strain: TimeSeries, witnesses: Mapping[str, TimeSeries]) -> Self:
        """Refuse: a network is trained by the core trainer, not fitted in process.

        Raises:
            ConfigError: Always, naming the way to train one.
        """
        raise ConfigError(
            "a NetworkCleaner is trained, not fitted in process",
            hint="train it with gravwave.training.fit_cascade (or twins train with "
            "gravwave.task:NoiseCleaning) and load it with NetworkCleaner.from_run",
        )

    def raw(self, witnesses: np.ndarray) -> np.ndarray:
        """Network output ``(batch, 1, time)`` (unit-variance target scale)."""
        x = ((np.asarray(witnesses) - self._mean) * self._inv_std).astype(np.float32)
        with torch.inference_mode():
            y = self.model(torch.from_numpy(x))
        return y.numpy().astype(np.float64)[:, None]

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """Band-passed, de-scaled noise ``(time,)`` [strain] from ``(1, time)``."""
        return apply_fir(np.asarray(raw)[0], self._fir) * self.target_scale

    def state(self) -> dict[str, Any]:
        """Model weights and settings, scaler and the config."""
        m = self.model
        return {
            "kind": self.kind,
            "model_kwargs": {
                "in_channels": m.in_channels,
                "widths": list(m.widths),
                "kernel_size": m.kernel_size,
                "dilations": list(m.dilations),
                "res_kernel_size": m.res_kernel_size,
            },
            "model": {k: v.detach().clone() for k, v in m.state_dict().items()},
            "standardizer": self.standardizer.state_dict(),
            **self.config.model_dump(mode="json"),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild from :meth:`state`."""
        model = DeepClean(**dict(state["model_kwargs"]))
        model.load_state_dict(state["model"])
        config = NetworkConfig.model_validate(
            {k: state[k] for k in NetworkConfig.model_fields if k in state}
        )
        return cls(model, Standardizer.from_state_dict(state["standardizer"]), config)

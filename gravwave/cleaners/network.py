"""The network cleaner: DeepClean on standardised witnesses, finished in its band.

The network is trained by the core trainer on the :class:`gravwave.task.NoiseCleaning` task
(``twins train`` or :func:`gravwave.training.fit_cascade`); a finished run directory holds the
weights (``model.pt``) and what the cleaner needs beside them (``normalisation.pt``: channels,
rate, band, witness scaler, target scale, model settings). :meth:`NetworkCleaner.from_run`
builds the cleaner from it.

The finishing band-pass is flat in the cleaner's bands and passes the network's output up to
one transition width beyond them (:func:`gravwave.cleaners.windowed.fitted_bands`, 6 Hz for
the default 0.3 s at 60 dB), so the network must have been trained over those widened bands:
an output nobody trained there is noise added beside the band (issue 12). A cleaner refuses
a network whose training band does not cover them.

**Reduced rate.** A network whose band is low runs at ``sample_rate / decimation``
(:class:`~gravwave.models.DeepClean` ``decimation=q``: the standardised witnesses pass its fixed
anti-alias low-pass and every ``q``-th sample is kept, the layout runs at the reduced rate, its
output is brought back to the full rate by the same low-pass). The training target stays at the
full rate: the network's output is band-limited to ``0.29 fs / q`` by that filter and the loss
is taken in its band far below that, so the target needs no anti-alias filter of its own.
:func:`network_decimation` derives ``q`` from the band (``q = 4`` for 49-51 Hz at 4096 Hz:
the forward pass 1.9-2.3 times as fast, ``benchmarks/bench_cleaning.py``);
:class:`gravwave.training.CascadeParams` ``decimation`` sets it (default: derived, for the
cleaning speed, with an encoder fitted to that rate; see :mod:`gravwave.training`). The
cleaner records it in :attr:`NetworkConfig.decimation`;
cleaners saved before it load at ``q = 1``, as they were trained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

import numpy as np
import torch
from gwpy.timeseries import TimeSeries
from pydantic import BaseModel, ConfigDict, Field

from gravwave.cleaners.base import Band, Cleaner, check_witnesses
from gravwave.cleaners.stitch import stack_channel_minor, stitch_windows
from gravwave.cleaners.windowed import apply_fir, fir_bandpass, fitted_bands, transition_width
from gravwave.models import DeepClean
from gravwave.models.deepclean import decimation_for
from gravwave.models.deepclean_fast import FastForward
from gravwave.preprocess import Standardizer
from twins.errors import ConfigError, DataError

__all__ = [
    "NORMALISATION_FILE",
    "NetworkCleaner",
    "NetworkConfig",
    "network_decimation",
    "network_fit_bands",
]

#: What a training run stores beside ``model.pt`` for the cleaner (plain values).
NORMALISATION_FILE = "normalisation.pt"

_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]

#: Samples per chunk of :meth:`NetworkCleaner.standardise` (21 float64 channels: 350 kB).
_CHUNK = 2048


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
        trained_bands: The band(s) [Hz] the network was trained over (its target's band-pass
            and its loss); ``None`` for a file written before they were recorded (unchecked).
        decimation: The network runs at ``sample_rate / decimation`` (module doc); must be
            the model's; ``None``: the model's (files written before it was recorded hold
            full-rate models, 1).
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
    trained_bands: tuple[tuple[float, float], ...] | None = None
    decimation: int | None = Field(None, ge=1)


def _finish_width(sample_rate: float) -> tuple[int, float, float]:
    """``(half length [samples], attenuation [dB], transition width [Hz])`` of the default
    finishing filter at ``sample_rate``."""
    fields = NetworkConfig.model_fields
    half = round(fields["finish_length"].default * sample_rate)
    att = fields["attenuation"].default
    return half, att, transition_width(sample_rate, half, att)


def network_fit_bands(
    bands: Sequence[Sequence[float]], sample_rate: float
) -> tuple[tuple[float, float], ...]:
    """The band(s) [Hz] to train a network over for a cleaner in ``bands`` [Hz] with the
    default finishing filter: each band widened by its transition width (6.0 Hz), merged.

    Raises:
        ConfigError: A widened band reaches 0 Hz or Nyquist.
    """
    half, att, _ = _finish_width(sample_rate)
    return fitted_bands(bands, sample_rate, half, att)


def network_decimation(
    bands: Sequence[Sequence[float]],
    sample_rate: float,
    window: float | None = None,
    stride: int = 16,
) -> int:
    """The decimation a network in ``bands`` [Hz] runs at: :func:`~gravwave.models.deepclean.
    decimation_for` of the top of its trained band (:func:`network_fit_bands`), halved until
    a window of ``window`` s is a whole number of the network's total strides.

    Args:
        bands: The cleaner's band(s) [Hz].
        sample_rate: Working rate [Hz].
        window: Training and cleaning window [s]; ``None``: no window constraint.
        stride: The layout's own stride (``2 ** len(widths)``) [samples at the reduced rate].

    Raises:
        ConfigError: A widened band reaches 0 Hz or Nyquist.
    """
    top = max(hi for _, hi in network_fit_bands(bands, sample_rate))
    q = decimation_for(top, sample_rate)
    if window is not None:
        n = round(window * sample_rate)
        while q > 1 and n % (q * stride):
            q //= 2
    return q


def _check_covered(
    needed: tuple[tuple[float, float], ...], trained: tuple[tuple[float, float], ...]
) -> None:
    """Refuse a network whose training band(s) miss part of the finishing filter's span."""
    for lo, hi in needed:
        if not any(a <= lo + 1e-9 and hi - 1e-9 <= b for a, b in trained):
            raise DataError(
                f"the finishing filter passes {lo:.1f}-{hi:.1f} Hz but the network was trained "
                f"on {[tuple(b) for b in trained]} Hz only: it would add untrained output "
                "beside its band",
                hint=f"train it over {lo:.1f}-{hi:.1f} Hz (gravwave.training.fit_cascade does)",
            )


class NetworkCleaner(Cleaner):
    """The network alone (kind ``"deepclean"``).

    Args:
        model: Trained :class:`~gravwave.models.DeepClean` (put in eval mode here).
        standardizer: Witness scaler fitted on the training part.
        config: Channels, rate, band, target scale and window settings.

    Raises:
        DataError: The model's or the scaler's channel count differs from the witnesses',
            the config's decimation from the model's, or the network was not trained over
            :attr:`fit_bands`.
    """

    kind: ClassVar[str] = "deepclean"

    def __init__(self, model: DeepClean, standardizer: Standardizer, config: NetworkConfig):
        n = len(config.witness_channels)
        if standardizer.n_channels != n or model.in_channels != n:
            raise DataError(
                f"model ({model.in_channels}) / scaler ({standardizer.n_channels}) channels "
                f"differ from the {n} witness channels"
            )
        if config.decimation is not None and config.decimation != model.decimation:
            raise DataError(
                f"the network config says decimation {config.decimation} but the model runs "
                f"at 1/{model.decimation} of {config.sample_rate:g} Hz",
                hint="build the DeepClean with decimation= as configured, or leave it None",
            )
        self.model = model.eval()
        self.decimation = model.decimation
        self._forward = FastForward(self.model)  # equal up to float32 rounding, faster
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
        self.fit_bands = fitted_bands(
            self.bands, self.sample_rate, self.finish_reach, config.attenuation
        )
        if config.trained_bands is not None:
            _check_covered(self.fit_bands, config.trained_bands)
        assert standardizer.mean is not None and standardizer.std is not None
        self._mean = standardizer.mean[None, :, None]
        self._inv_std = 1.0 / standardizer.std[None, :, None]
        self._mean_t = torch.from_numpy(np.asarray(self._mean, dtype=np.float64))[..., None]
        self._inv_std_t = torch.from_numpy(np.asarray(self._inv_std, dtype=np.float64))[..., None]

    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        window: float = 8.0,
        overlap: float = 0.5,
        bands: list[tuple[float, float]] | None = None,
    ) -> Self:
        """The cleaner of a finished :class:`gravwave.task.NoiseCleaning` training run.

        Args:
            run_dir: ``<workdir>/<name>`` of the run (holds ``model.pt`` and
                ``normalisation.pt``).
            window: Offline cleaning window [s].
            overlap: Offline overlap fraction.
            bands: The cleaner's bands [Hz]; default the trained band(s) narrowed by the
                finishing filter's transition width (6 Hz), so that the filter passes
                nothing the network was not trained on.

        Raises:
            DataError: A file missing (the run did not finish), a trained band narrower
                than two transition widths (nothing left once narrowed), or ``bands`` whose
                widened span the training did not cover.
        """
        run_dir = Path(run_dir)
        for name in ("model.pt", NORMALISATION_FILE):
            if not (run_dir / name).is_file():
                raise DataError(f"{run_dir / name} not found: did the training run finish?")
        best = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
        norm = torch.load(run_dir / NORMALISATION_FILE, map_location="cpu", weights_only=True)
        model = DeepClean(**norm["model_kwargs"])
        model.load_state_dict(best["model"])
        trained = tuple((float(lo), float(hi)) for lo, hi in norm["bands"])
        fs = float(norm["sample_rate"])
        if bands is None:
            width = _finish_width(fs)[2]
            narrow = [(lo + width, hi - width) for lo, hi in trained]
            if any(lo >= hi for lo, hi in narrow):
                raise DataError(
                    f"{run_dir / NORMALISATION_FILE}: trained band(s) {list(trained)} Hz are "
                    f"narrower than the finishing filter's two transitions (2 x {width:.1f} "
                    "Hz): the filter would pass noise the network was not trained on",
                    hint=f"train on each band widened by {width:.1f} Hz, or pass bands=",
                )
            bands = narrow
        config = NetworkConfig(
            strain_channel=norm["strain_channel"],
            witness_channels=tuple(norm["witness_channels"]),
            sample_rate=fs,
            bands=tuple((float(lo), float(hi)) for lo, hi in bands),
            target_scale=norm["target_scale"],
            window=window,
            overlap=overlap,
            trained_bands=trained,
            decimation=model.decimation,
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

    def standardise(self, witnesses: np.ndarray) -> np.ndarray:
        """The network's float32 input from witnesses ``(channel, time)``: standardised in
        float64 (the values :meth:`raw` feeds the network), then rounded.

        Returns:
            ``(channel, time)`` float32, a transposed view of a channel-minor ``(time,
            channel)`` array: the layout the fast copy computes in
            (:class:`~gravwave.models.deepclean_fast.FastForward`), so its windows need no
            reordering. Written in chunks that stay in the cache.
        """
        w = np.asarray(witnesses)
        out = np.empty((w.shape[1], w.shape[0]), dtype=np.float32)
        mean, inv = self._mean[0], self._inv_std[0]
        for a in range(0, w.shape[1], _CHUNK):
            chunk = np.subtract(w[:, a : a + _CHUNK], mean)
            np.multiply(chunk, inv, out=chunk)
            out[a : a + _CHUNK] = chunk.T
        return out.T

    def _forward_windows(self, x: np.ndarray) -> np.ndarray:
        """Network output ``(batch, 1, time)`` float32 of standardised float32 windows
        ``(batch, time, channel)`` (channel-minor, see :meth:`standardise`)."""
        return self._forward(torch.from_numpy(x).permute(0, 2, 1)).numpy()[:, None]

    def predict(
        self, witnesses: np.ndarray, window: int, overlap: float | None = None, batch: int = 4
    ) -> np.ndarray:
        """Stitched noise ``(time,)`` [strain] (:meth:`Cleaner.predict`); with exact
        stitching (``overlap=None``) the span is standardised once (:meth:`standardise`)
        rather than each window, which gives the network the same input values, and the
        windows are stacked channel-minor."""
        if overlap is not None:
            return super().predict(witnesses, window, overlap, batch)
        xs = self.standardise(check_witnesses(witnesses, self.witness_channels))
        raw = stitch_windows(
            self._forward_windows,
            xs,
            window,
            self.reach,
            multiple=self.multiple,
            batch=batch,
            stack=stack_channel_minor,
        )
        return self.finish(raw)

    def raw(self, witnesses: np.ndarray) -> np.ndarray:
        """Network output ``(batch, 1, time)`` (unit-variance target scale)."""
        w = torch.from_numpy(np.asarray(witnesses, dtype=np.float64))[:, :, None]
        # standardised in float64 as before, then float32 in the network's channels-last
        # layout in the same pass (no reorder in the network)
        x = ((w - self._mean_t) * self._inv_std_t).to(
            torch.float32, memory_format=torch.channels_last
        )
        return self._forward(x[:, :, 0]).numpy().astype(np.float64)[:, None]

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
                "decimation": m.decimation,
            },
            "model": {k: v.detach().clone() for k, v in m.state_dict().items()},
            "standardizer": self.standardizer.state_dict(),
            **self.config.model_dump(mode="json"),
            "decimation": self.decimation,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild from :meth:`state` (a state saved before the decimation was recorded
        rebuilds its full-rate model: ``decimation`` 1)."""
        model = DeepClean(**dict(state["model_kwargs"]))
        model.load_state_dict(state["model"])
        config = NetworkConfig.model_validate(
            {k: state[k] for k in NetworkConfig.model_fields if k in state}
        )
        return cls(model, Standardizer.from_state_dict(state["standardizer"]), config)

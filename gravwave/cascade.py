"""The Wiener + DeepClean cascade: linear couplings first, the network for what is left.

Stages (reference/feasibility-gravwave.md: the cascade recovered ~74 % of the oracle
range gain, each stage alone far less):

* the **Wiener stage** (:class:`WienerStage`): the in-band multi-channel FIR of a fitted
  :class:`~gravwave.cleaner.WienerCleaner`, applied to the raw witnesses (the band-pass
  commutes with the FIR), then a zero-phase FIR band-pass to the linear bands;
* the **network** (:class:`NetworkCleaner`, kind ``"deepclean"``): standardised witnesses
  through :class:`~gravwave.models.DeepClean`, a zero-phase FIR band-pass to the
  network's band and the target scale back to strain units.

Both follow :class:`gravwave.clean.WindowedCleaner`, so long spans are cleaned by Hann
overlap-add of 8-s windows and online cleaning equals offline away from the edges.
:func:`fit_cascade` fits the Wiener stage, then trains the network on the Wiener residual
through the core trainer (:func:`twins.train.run.train_process`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
import torch
from gwpy.timeseries import TimeSeries, TimeSeriesDict
from pydantic import BaseModel, ConfigDict, Field

from gravwave.clean import apply_fir, fir_bandpass, predict_noise
from gravwave.cleaner import Band, WienerCleaner, check_witnesses, register_cleaner
from gravwave.models import DeepClean
from gravwave.preprocess import Standardizer
from twins.errors import DataError

log = logging.getLogger(__name__)


class _Windowed:
    """Shared offline path: ``noise`` = finish(Hann overlap-add of ``raw``)."""

    sample_rate: float
    witness_channels: tuple[str, ...]
    window: float
    overlap: float
    multiple: int

    def raw(self, witnesses: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self, raw: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def noise(self, witnesses: np.ndarray) -> np.ndarray:
        """Predicted strain noise ``(time,)`` [strain] from witnesses ``(channel, time)``.

        Long spans go through the offline overlap-add path (``window`` s, ``overlap``);
        a span shorter than one window is one window.
        """
        w = check_witnesses(witnesses, self.witness_channels)
        n = round(self.window * self.sample_rate)
        if w.shape[1] <= n:
            n = max(self.multiple, -(-w.shape[1] // self.multiple) * self.multiple)
            pad = n - w.shape[1]
            wp = np.pad(w, ((0, 0), (0, pad)), mode="reflect") if pad else w
            return self.finish(self.raw(wp[None])[0])[: w.shape[1]]
        return predict_noise(self, w, n, self.overlap)  # type: ignore[arg-type]

    def save(self, path: Path) -> Path:
        """Write ``self.state()`` with ``torch.save`` (``weights_only`` loadable)."""
        path = Path(path)
        torch.save(self.state(), path)  # type: ignore[attr-defined]
        return path


class WienerStage(_Windowed):
    """The linear stage in windowed form: causal multi-channel FIR + FIR band-pass.

    Args:
        wiener: A fitted :class:`WienerCleaner`.
        window: Offline window in s.
        overlap: Offline overlap fraction.
        finish_length: Half length in s of the finishing FIR band-pass.
        attenuation: Its stop-band attenuation in dB (high: the FIR output of raw
            witnesses carries huge out-of-band lines, e.g. the mains).
    """

    n_raw = 1
    multiple = 1

    def __init__(
        self,
        wiener: WienerCleaner,
        window: float = 8.0,
        overlap: float = 0.5,
        finish_length: float = 0.3,
        attenuation: float = 100.0,
    ) -> None:
        filt = wiener.filter
        if filt.taps is None or filt.witness_mean is None:
            raise DataError("the Wiener stage needs a fitted WienerCleaner")
        self.wiener = wiener
        self.strain_channel = wiener.strain_channel
        self.witness_channels = wiener.witness_channels
        self.sample_rate = wiener.sample_rate
        self.bands = wiener.bands
        self.window, self.overlap = float(window), float(overlap)
        self.finish_length, self.attenuation = float(finish_length), float(attenuation)
        self._taps = filt.taps[None]  # (1, channel, n_taps)
        self._mean = filt.witness_mean[None, :, None]
        self._lag0 = filt.lag0
        self._spectra: dict[int, np.ndarray] = {}
        self.finish_reach = round(self.finish_length * self.sample_rate)
        self._fir = fir_bandpass(self.bands, self.sample_rate, self.finish_reach, attenuation)
        n_taps = filt.n_taps
        self.reach = (n_taps - 1 + self._lag0, max(0, -self._lag0))

    def raw(self, witnesses: np.ndarray) -> np.ndarray:
        """FIR output ``(batch, 1, time)`` of witness windows ``(batch, channel, time)``.

        One FFT per channel, the sum over channels in the frequency domain, one inverse
        FFT (linear convolution: the FFT length covers the window plus the taps).
        """
        x = np.asarray(witnesses, dtype=np.float64) - self._mean
        n, n_taps = x.shape[-1], self._taps.shape[-1]
        nfft = scipy.fft.next_fast_len(n + n_taps - 1, real=True)
        if nfft not in self._spectra:
            self._spectra = {nfft: scipy.fft.rfft(self._taps, nfft, axis=-1)}
        spec = (scipy.fft.rfft(x, nfft, axis=-1, workers=-1) * self._spectra[nfft]).sum(axis=1)
        full = scipy.fft.irfft(spec, nfft, axis=-1)
        start = -self._lag0
        return full[:, None, start : start + n]

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """Band-limited noise ``(time,)`` from the stitched FIR output ``(1, time)``."""
        return apply_fir(np.asarray(raw)[0], self._fir)

    def state(self) -> dict[str, Any]:
        """The wrapped Wiener cleaner's state plus the stage settings."""
        return {
            "kind": "wiener-stage",
            "wiener": self.wiener.state(),
            "window": self.window,
            "overlap": self.overlap,
            "finish_length": self.finish_length,
            "attenuation": self.attenuation,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WienerStage:
        """Rebuild from :meth:`state`."""
        return cls(
            WienerCleaner.from_state(state["wiener"]),
            state["window"],
            state["overlap"],
            state["finish_length"],
            state["attenuation"],
        )


register_cleaner("wiener-stage")(WienerStage)


def _model_kwargs(model: DeepClean) -> dict[str, Any]:
    return {
        "in_channels": model.in_channels,
        "widths": list(model.widths),
        "kernel_size": model.kernel_size,
        "dilations": list(model.dilations),
        "res_kernel_size": model.res_kernel_size,
    }


@register_cleaner("deepclean")
class NetworkCleaner(_Windowed):
    """The network alone: DeepClean on standardised witnesses, finished in its band.

    Args:
        model: Trained :class:`DeepClean` (put in eval mode here).
        standardizer: Witness scaler fitted on the training part.
        target_scale: Std [strain] of the band-passed training target; the network
            predicts the target divided by it.
        strain_channel: Strain channel name.
        witness_channels: Witness names in the model's input order.
        sample_rate: Working rate in Hz.
        bands: The network's band(s) in Hz.
        window: Offline window in s (a multiple of the network's stride in samples).
        overlap: Offline overlap fraction.
        finish_length: Half length in s of the finishing FIR band-pass.
        attenuation: Its stop-band attenuation in dB.
    """

    n_raw = 1

    def __init__(
        self,
        model: DeepClean,
        standardizer: Standardizer,
        target_scale: float,
        strain_channel: str,
        witness_channels: Sequence[str],
        sample_rate: float,
        bands: Sequence[Band],
        window: float = 8.0,
        overlap: float = 0.5,
        finish_length: float = 0.3,
        attenuation: float = 60.0,
    ) -> None:
        if standardizer.n_channels != len(witness_channels) or model.in_channels != len(
            witness_channels
        ):
            raise DataError(
                f"model ({model.in_channels}) / scaler ({standardizer.n_channels}) channels "
                f"differ from the {len(witness_channels)} witness channels"
            )
        self.model = model.eval()
        self.standardizer = standardizer
        self.target_scale = float(target_scale)
        self.strain_channel = strain_channel
        self.witness_channels = tuple(witness_channels)
        self.sample_rate = float(sample_rate)
        self.bands = tuple((float(lo), float(hi)) for lo, hi in bands)
        self.window, self.overlap = float(window), float(overlap)
        self.finish_length, self.attenuation = float(finish_length), float(attenuation)
        self.multiple = model.total_stride
        self.reach = model.receptive_field()
        self.finish_reach = round(self.finish_length * self.sample_rate)
        self._fir = fir_bandpass(self.bands, self.sample_rate, self.finish_reach, attenuation)
        assert self.standardizer.mean is not None and self.standardizer.std is not None
        self._mean = self.standardizer.mean[None, :, None]
        self._inv_std = 1.0 / self.standardizer.std[None, :, None]

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
        """Model weights and kwargs, scaler, scale, channels and settings."""
        return {
            "kind": "deepclean",
            "model_kwargs": _model_kwargs(self.model),
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "standardizer": self.standardizer.state_dict(),
            "target_scale": self.target_scale,
            "strain_channel": self.strain_channel,
            "witness_channels": list(self.witness_channels),
            "sample_rate": self.sample_rate,
            "bands": [list(b) for b in self.bands],
            "window": self.window,
            "overlap": self.overlap,
            "finish_length": self.finish_length,
            "attenuation": self.attenuation,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NetworkCleaner:
        """Rebuild from :meth:`state`."""
        kw = dict(state["model_kwargs"])
        model = DeepClean(**kw)
        model.load_state_dict(state["model"])
        return cls(
            model,
            Standardizer.from_state_dict(state["standardizer"]),
            state["target_scale"],
            state["strain_channel"],
            state["witness_channels"],
            state["sample_rate"],
            [tuple(b) for b in state["bands"]],
            state["window"],
            state["overlap"],
            state["finish_length"],
            state["attenuation"],
        )


@register_cleaner("cascade")
class CascadeCleaner(_Windowed):
    """Wiener stage (linear bands) followed by the network (non-linear band).

    The network was trained on the strain minus the Wiener prediction; the bands do not
    overlap in the default setup, so the stages add.

    Args:
        wiener: The linear stage.
        network: The network stage (same witness channels in the same order).
    """

    n_raw = 2

    def __init__(self, wiener: WienerStage, network: NetworkCleaner) -> None:
        if wiener.witness_channels != network.witness_channels:
            raise DataError("the Wiener and network stages must use the same witness channels")
        if abs(wiener.sample_rate - network.sample_rate) > 1e-9:
            raise DataError("the Wiener and network stages work at different rates")
        self.wiener, self.network = wiener, network
        self.strain_channel = network.strain_channel
        self.witness_channels = network.witness_channels
        self.sample_rate = network.sample_rate
        self.bands = (*wiener.bands, *network.bands)
        self.window, self.overlap = network.window, network.overlap
        self.multiple = network.multiple
        self.reach = (
            max(wiener.reach[0], network.reach[0]),
            max(wiener.reach[1], network.reach[1]),
        )
        self.finish_reach = max(wiener.finish_reach, network.finish_reach)

    def stages(self) -> dict[str, _Windowed]:
        """Each stage alone, as a cleaner: ``{"wiener": ..., "network": ...}``."""
        return {"wiener": self.wiener, "network": self.network}

    def raw(self, witnesses: np.ndarray) -> np.ndarray:
        """``(batch, 2, time)``: Wiener FIR output and network output."""
        return np.concatenate([self.wiener.raw(witnesses), self.network.raw(witnesses)], 1)

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """Sum of both stages' finished noise ``(time,)`` [strain]."""
        raw = np.asarray(raw)
        return self.wiener.finish(raw[:1]) + self.network.finish(raw[1:])

    def state(self) -> dict[str, Any]:
        """Both stages' states."""
        return {
            "kind": "cascade",
            "wiener": self.wiener.state(),
            "network": self.network.state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CascadeCleaner:
        """Rebuild from :meth:`state`."""
        return cls(
            WienerStage.from_state(state["wiener"]), NetworkCleaner.from_state(state["network"])
        )


class CascadeParams(BaseModel):
    """Settings of :func:`fit_cascade`.

    Attributes:
        linear_bands: Bands in Hz of the Wiener stage.
        network_band: Band in Hz of the network.
        n_taps: Wiener FIR taps per witness.
        window: Training and cleaning window in s.
        stride: Training window stride in s.
        val_fraction: Share of the span (at its end) used for validation.
        network: Extra :class:`gravwave.task.NoiseCleaningParams` fields (DeepClean
            hyper-parameters, loss settings, ...).
        epochs: Training epochs.
        max_steps_per_epoch: Cap on steps per epoch (the CPU training budget).
        batch_size: Global batch size.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        val_every: Validate every this many steps (0: once per epoch).
        tracking: Log the run to MLflow.
        seed: Seed of the training run.
        name: Run name (directory under ``workdir``).
    """

    model_config = ConfigDict(extra="forbid")

    linear_bands: list[tuple[float, float]] = [(142.0, 162.0)]
    network_band: tuple[float, float] = (49.0, 51.0)
    n_taps: int = Field(192, ge=1)
    window: float = Field(8.0, gt=0)
    stride: float = Field(0.25, gt=0)
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    network: dict[str, Any] = Field(default_factory=dict)
    epochs: int = Field(10, ge=1)
    max_steps_per_epoch: int | None = Field(16, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    val_every: int = Field(0, ge=0)
    tracking: bool = False
    seed: int = 0
    name: str = "deepclean"


def fit_cascade(
    strain: TimeSeries,
    witnesses: TimeSeriesDict,
    params: CascadeParams | None = None,
    workdir: str | Path = "runs",
) -> CascadeCleaner:
    """Fit the Wiener stage, then train the network on its residual with the core trainer.

    The data are written to ``<workdir>/<name>-data.h5`` (float32) so that every rank
    (torchrun, Ray) reads the same span; the Wiener stage goes to
    ``<workdir>/<name>-wiener.pt`` and the network run to ``<workdir>/<name>/``.

    Args:
        strain: Training strain at the working rate [strain].
        witnesses: Witness series over the same samples.
        params: Settings; default :class:`CascadeParams`.
        workdir: Output directory.

    Returns:
        The fitted cascade.
    """
    from gravwave.io import write_multichannel_hdf5
    from gravwave.task import load_network
    from twins.config import load_config
    from twins.train.run import train_process

    p = params or CascadeParams()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    fs = float(strain.sample_rate.value)
    channels = list(witnesses)
    w = np.stack([np.asarray(witnesses[c].value, dtype=np.float64) for c in channels])
    n_fit = int(len(strain) * (1 - p.val_fraction))
    wiener = WienerCleaner(strain.name, channels, fs, p.linear_bands, n_taps=p.n_taps)
    wiener.fit(w[:, :n_fit], np.asarray(strain.value[:n_fit], dtype=np.float64))
    wiener_path = wiener.save(workdir / f"{p.name}-wiener.pt")
    log.info("Wiener stage fitted on %.0f s (%d taps)", n_fit / fs, p.n_taps)

    data = TimeSeriesDict()
    for name, ts in [(strain.name, strain), *((c, witnesses[c]) for c in channels)]:
        data[name] = TimeSeries(
            np.asarray(ts.value, dtype=np.float32), t0=ts.t0, sample_rate=fs, name=name
        )
    data_path = write_multichannel_hdf5(workdir / f"{p.name}-data.h5", data)
    del data
    task_params = {
        "path": str(data_path),
        "channels": [strain.name, *channels],
        "sample_rate": fs,
        "window": p.window,
        "stride": p.stride,
        "val_fraction": p.val_fraction,
        "band": [list(p.network_band)],
        "wiener": str(wiener_path),
        **p.network,
    }
    cfg = load_config(
        None,
        base={
            "name": p.name,
            "seed": p.seed,
            "workdir": str(workdir),
            "task": {"target": "gravwave.task:NoiseCleaning", "params": task_params},
            "train": {
                "epochs": p.epochs,
                "batch_size": p.batch_size,
                "optimizer": {"name": "adam", "lr": p.lr, "weight_decay": p.weight_decay},
                "scheduler": {"name": "plateau", "gamma": 0.2, "patience": 2},
                "val_every": p.val_every,
                "max_steps_per_epoch": p.max_steps_per_epoch,
                "progress": False,
            },
            "distributed": {"backend": "local"},
            "tracking": {"enabled": p.tracking, "experiment": "gravwave-cascade"},
            "energy": {"enabled": False},
        },
    )
    summary = train_process(cfg)
    log.info(
        "network trained: %s steps, best val_loss %.4f, %.0f s",
        summary["steps"],
        summary.get("best_val_loss", math.nan),
        summary["fit_wall_s"],
    )
    network = load_network(cfg.run_dir, window=p.window)
    return CascadeCleaner(WienerStage(wiener, window=p.window), network)

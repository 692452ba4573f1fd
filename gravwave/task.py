"""The noise-cleaning network as a core :class:`~twins.task.Task` (trained by ``twins train``).

Data: a synthetic span (:mod:`gravwave.synthetic`) or a multi-channel HDF5 file
(:func:`gravwave.io.read_multichannel_hdf5`, strain first in ``channels``) whose channels pass
the ingest gates (:func:`gravwave.gates.check_segment`, bounds ``ingest``) before anything is
trained on them. Optionally a fitted Wiener cleaner's prediction is subtracted from the strain
first (cascade: the network learns the residual). The target is the strain band-passed to the
network's band (zero-phase order-8 Butterworth) divided by its standard deviation on the
training part; witnesses are standardised with statistics of the training part only. Both
travel with the model in ``<run_dir>/normalisation.pt``, from which
:meth:`gravwave.cleaners.NetworkCleaner.from_run` builds the cleaner.

Splits are time-ordered: training windows from the start of the span, validation windows
from its last ``val_fraction``; the test split is a separate synthetic segment or
``test_span`` of the file (else the validation windows). Samples are windows indexed by
``(segment, offset)`` over in-memory arrays, built on access.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from gwpy.timeseries import TimeSeries
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from torch import nn
from torch.utils.data import Dataset

from gravwave.cleaners import NORMALISATION_FILE, load_cleaner
from gravwave.gates import IngestBounds, check_segment
from gravwave.io import read_multichannel_hdf5
from gravwave.losses import ASDRatioLoss
from gravwave.metrics import plot_asd
from gravwave.models import DeepClean
from gravwave.preprocess import Standardizer, bandpass, check_bands
from gravwave.synthetic import SyntheticParams, generate
from twins.atomic import atomic_write
from twins.errors import DataError
from twins.task import Splits, Task

log = logging.getLogger(__name__)


class NetworkSettings(BaseModel):
    """The network's and its loss's settings (shared by the task and the cascade training).

    Attributes:
        widths: DeepClean encoder widths.
        kernel_size: DeepClean kernel (odd).
        dilations: DeepClean bottleneck dilations.
        res_kernel_size: DeepClean bottleneck kernel (odd).
        val_stride: Stride of validation and test windows [s].
        loss_fftlength: Welch segment of the loss [s].
        loss_overlap: Welch overlap of the loss [s] (below ``loss_fftlength``).
        loss_average: ``"mean"`` or ``"median"`` Welch.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    widths: list[Annotated[int, Field(ge=1)]] = Field([8, 16, 32, 64], min_length=1)
    kernel_size: int = Field(7, ge=1)
    dilations: list[Annotated[int, Field(ge=1)]] = [1, 2, 4, 8, 16]
    res_kernel_size: int = Field(3, ge=1)
    val_stride: float = Field(4.0, gt=0)
    loss_fftlength: float = Field(2.0, gt=0)
    loss_overlap: float = Field(1.0, ge=0)
    loss_average: Literal["mean", "median"] = "mean"

    @field_validator("kernel_size", "res_kernel_size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"expected an odd kernel (the output keeps its length), got {v}")
        return v

    @field_validator("loss_overlap")
    @classmethod
    def _overlap_below_fftlength(cls, v: float, info: ValidationInfo) -> float:
        fft = info.data.get("loss_fftlength")
        if fft is not None and not v < fft:
            raise ValueError(f"expected loss_overlap < loss_fftlength ({fft} s), got {v} s")
        return v


class NoiseCleaningParams(NetworkSettings):
    """Parameters of :class:`NoiseCleaning`: the data, the windows, the band, and the
    network and loss settings of :class:`NetworkSettings`.

    Attributes:
        synthetic: Settings of the generator, validated as strictly as the rest (a
            misspelt key is refused as ``task.params.synthetic.<key>``; exclusive with
            ``path``).
        segment: Synthetic segment for training and validation.
        test_segment: Synthetic segment for the test split.
        path: Multi-channel HDF5 file (exclusive with ``synthetic``).
        channels: Strain first, then witnesses; default all channels of the source.
        span: ``(start, end)`` in s from the start of the data used for training and
            validation; default everything.
        test_span: ``(start, end)`` in s of a file's test span (default: the validation part).
        ingest: Plausibility bounds every channel of the file must pass
            (:func:`gravwave.gates.check_segment`); widen one with a key, e.g.
            ``task.params.ingest.max_robust_sigma=20``.
        sample_rate: Working rate in Hz (the data must already be at it).
        window: Window length in s (samples a multiple of the network stride).
        stride: Stride of training windows in s.
        val_fraction: Share of the span, at its end, used for validation.
        band: The network's band(s) in Hz.
        wiener: Path of a fitted Wiener cleaner whose prediction is subtracted first.
    """

    synthetic: SyntheticParams | None = None
    segment: int = Field(0, ge=0)
    test_segment: int = Field(1, ge=0)
    path: str | None = None
    channels: list[str] | None = None
    span: tuple[float, float] | None = None
    test_span: tuple[float, float] | None = None
    ingest: IngestBounds = Field(default_factory=IngestBounds)
    sample_rate: float = Field(4096.0, gt=0)
    window: float = Field(8.0, gt=0)
    stride: float = Field(0.25, gt=0)
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    band: list[tuple[float, float]] = Field([(49.0, 51.0)], min_length=1)
    wiener: str | None = None

    @field_validator("channels")
    @classmethod
    def _strain_and_witnesses(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (len(v) < 2 or len(set(v)) != len(v)):
            raise ValueError(f"expected the strain then at least one witness, each once, got {v}")
        return v

    @field_validator("band")
    @classmethod
    def _bands_below_nyquist(
        cls, v: list[tuple[float, float]], info: ValidationInfo
    ) -> list[tuple[float, float]]:
        if "sample_rate" in info.data:
            check_bands(v, info.data["sample_rate"])  # ValueError: 0 < low < high < Nyquist
        return v

    @model_validator(mode="after")
    def _one_source(self) -> NoiseCleaningParams:
        if (self.synthetic is None) == (self.path is None):
            raise ValueError("give exactly one data source: synthetic or path")
        if self.synthetic is not None and self.segment == self.test_segment:
            raise ValueError("segment and test_segment must differ (separate test span)")
        if self.synthetic is not None and self.synthetic.sample_rate != self.sample_rate:
            raise ValueError(
                f"synthetic.sample_rate {self.synthetic.sample_rate} Hz differs from "
                f"sample_rate {self.sample_rate} Hz (the data must be at the working rate)"
            )
        return self

    @model_validator(mode="after")
    def _whole_samples(self) -> NoiseCleaningParams:
        """Window, strides and the loss's Welch segments in whole samples the network and
        the loss accept."""
        fs, stride = self.sample_rate, 2 ** len(self.widths)
        n = self.window * fs
        if abs(n - round(n)) > 1e-6 or round(n) % stride:
            raise ValueError(
                f"window {self.window} s is {n:g} samples at {fs:g} Hz; expected a whole "
                f"multiple of the network stride 2**len(widths) = {stride} samples"
            )
        for name in ("stride", "val_stride"):
            if round(getattr(self, name) * fs) < 1:
                raise ValueError(
                    f"{name} {getattr(self, name)} s is under one sample at {fs:g} Hz"
                )
        nperseg = round(self.loss_fftlength * fs)
        if not 2 <= nperseg <= round(n):
            raise ValueError(
                f"loss_fftlength {self.loss_fftlength} s is {nperseg} samples; expected 2 to "
                f"the window's {round(n)}"
            )
        if not round(self.loss_overlap * fs) < nperseg:
            raise ValueError("loss_overlap rounds to loss_fftlength samples; make it shorter")
        freqs = np.fft.rfftfreq(nperseg, 1.0 / fs)
        if not any(((freqs >= lo) & (freqs < hi)).any() for lo, hi in self.band):
            raise ValueError(
                f"no frequency bin of the loss ({fs / nperseg:g} Hz apart, loss_fftlength "
                f"{self.loss_fftlength} s) falls in band {self.band}; lengthen loss_fftlength"
            )
        return self


class WindowDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Windows ``(witnesses (channel, window), target (window,))`` over in-memory segments.

    Sample ``i`` maps to ``(segment, offset)``; nothing is copied until it is accessed.

    Args:
        segments: ``(witnesses (channel, time), target (time,), start, stop)`` tuples;
            windows lie inside ``[start, stop)`` samples of each.
        window: Window length in samples.
        stride: Stride in samples.
    """

    def __init__(
        self,
        segments: list[tuple[torch.Tensor, torch.Tensor, int, int]],
        window: int,
        stride: int,
    ) -> None:
        self.segments, self.window, self.stride = segments, window, stride
        counts = [max(0, (stop - start - window) // stride + 1) for _, _, start, stop in segments]
        self.offsets = np.cumsum([0, *counts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def index(self, i: int) -> tuple[int, int]:
        """``(segment, first sample)`` of sample ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        seg = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return seg, self.segments[seg][2] + (i - int(self.offsets[seg])) * self.stride

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        seg, o = self.index(i)
        w, t, _, _ = self.segments[seg]
        return w[:, o : o + self.window], t[o : o + self.window]


class NoiseCleaning(Task):
    """Train a DeepClean network on the (Wiener-residual) strain in one band."""

    Params = NoiseCleaningParams
    params: NoiseCleaningParams

    # -- data ---------------------------------------------------------------------------
    def _load(self, which: str) -> tuple[str, list[str], np.ndarray, np.ndarray]:
        """``(strain name, witness names, witnesses (C, T), strain (T,))`` float64."""
        p = self.params
        if p.synthetic is not None:
            seg = generate(p.synthetic, p.segment if which == "train" else p.test_segment)
            data = {seg.strain.name: seg.strain, **seg.witnesses}
            names = p.channels or [seg.strain.name, *seg.witnesses]
            span = p.span if which == "train" else None
        else:
            assert p.path is not None  # one source: the model validator
            data = read_multichannel_hdf5(p.path, p.channels)
            names = p.channels or list(data)
            span = p.span if which == "train" else p.test_span
        missing = [c for c in names if c not in data]
        if missing:
            raise DataError(f"channel(s) {missing} not in the data; have {list(data)}")
        fs = float(data[names[0]].sample_rate.value)
        if abs(fs - p.sample_rate) > 1e-6:
            raise DataError(
                f"data at {fs} Hz, task expects {p.sample_rate} Hz",
                hint="resample with gravwave.io.prepare first",
            )
        n = len(data[names[0]])
        a, b = (0, n) if span is None else (round(span[0] * fs), round(span[1] * fs))
        if not 0 <= a < b <= n:
            raise DataError(f"span {span} s is outside the {n / fs} s of data")
        if p.path is not None:  # the span trained on passes the ingest gates, as in prepare()
            check_segment({c: data[c][a:b] for c in names}, Path(p.path).name, p.ingest)
        arrs = np.stack([np.asarray(data[c].value[a:b], dtype=np.float64) for c in names])
        return names[0], names[1:], arrs[1:], arrs[0]

    def _target(
        self, witnesses: np.ndarray, strain: np.ndarray, cut: int | None = None
    ) -> np.ndarray:
        """Strain minus the Wiener prediction (if any), band-passed to the network band.

        With ``cut``, ``[0, cut)`` and ``[cut, end)`` are processed separately so that no
        validation sample reaches the training target through the zero-phase filters.
        """
        if cut is not None:
            return np.concatenate(
                [
                    self._target(witnesses[:, :cut], strain[:cut]),
                    self._target(witnesses[:, cut:], strain[cut:]),
                ]
            )
        p = self.params
        resid = strain
        if p.wiener:
            resid = strain - load_cleaner(p.wiener).noise(witnesses)
        return bandpass(resid, p.band, p.sample_rate)

    def prepare(self) -> dict[str, Any]:
        """Load, normalise (training part only) and cache everything the splits need."""
        if hasattr(self, "_cache"):
            return self._cache
        p = self.params
        strain_name, chans, w, s = self._load("train")
        n = w.shape[1]
        n_val_start = int(n * (1 - p.val_fraction))
        y = self._target(w, s, n_val_start)
        scaler = Standardizer().fit(w[:, :n_val_start])
        scale = float(np.std(y[:n_val_start]))
        if not scale > 0:
            raise DataError("the band-passed training target is zero; check band and data")
        segs = {
            "train": (
                torch.from_numpy(scaler.transform(w).astype(np.float32)),
                torch.from_numpy((y / scale).astype(np.float32)),
            )
        }
        if p.synthetic is not None or p.test_span is not None:
            _, _, wt, st = self._load("test")
            yt = self._target(wt, st)
            segs["test"] = (
                torch.from_numpy(scaler.transform(wt).astype(np.float32)),
                torch.from_numpy((yt / scale).astype(np.float32)),
            )
        self._cache = {
            "strain_channel": strain_name,
            "witness_channels": chans,
            "standardizer": scaler,
            "target_scale": scale,
            "val_start": n_val_start,
            "n": n,
            "segments": segs,
        }
        self._save_normalisation()
        return self._cache

    def normalisation(self) -> dict[str, Any]:
        """What a cleaner needs beside the weights (plain values, ``weights_only`` safe)."""
        c, p = self.prepare(), self.params
        return {
            "format": 1,
            "strain_channel": c["strain_channel"],
            "witness_channels": list(c["witness_channels"]),
            "standardizer": c["standardizer"].state_dict(),
            "target_scale": c["target_scale"],
            "sample_rate": p.sample_rate,
            "bands": [list(b) for b in p.band],
            "model_kwargs": self._model_kwargs(len(c["witness_channels"])),
        }

    def _save_normalisation(self) -> None:
        path = Path(self.workdir) / NORMALISATION_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        norm = self.normalisation()
        atomic_write(path, lambda tmp: torch.save(norm, tmp))

    def splits(self) -> Splits:
        c, p = self.prepare(), self.params
        fs = p.sample_rate
        win = round(p.window * fs)
        stride, vstride = round(p.stride * fs), round(p.val_stride * fs)
        w, y = c["segments"]["train"]
        train = WindowDataset([(w, y, 0, c["val_start"])], win, stride)
        val = WindowDataset([(w, y, c["val_start"], c["n"])], win, vstride)
        if "test" in c["segments"]:
            wt, yt = c["segments"]["test"]
            test = WindowDataset([(wt, yt, 0, wt.shape[1])], win, vstride)
        else:
            test = val
        if len(train) == 0 or len(val) == 0:
            raise DataError(
                f"the span holds no training or validation window of {p.window} s "
                f"(val_fraction {p.val_fraction})"
            )
        return Splits(train, val, test)

    # -- model and loss -------------------------------------------------------------------
    def _model_kwargs(self, n_channels: int) -> dict[str, Any]:
        p = self.params
        return {
            "in_channels": n_channels,
            "widths": list(p.widths),
            "kernel_size": p.kernel_size,
            "dilations": list(p.dilations),
            "res_kernel_size": p.res_kernel_size,
        }

    def build_model(self) -> nn.Module:
        return DeepClean(**self._model_kwargs(len(self.prepare()["witness_channels"])))

    def figures(self, model: nn.Module, split: str, out_dir: Path) -> list[Path]:
        """ASD of the network's target ("raw") and of what it leaves ("cleaned": target minus
        the band-passed prediction) on up to eight windows of ``split``; one PNG."""
        data = getattr(self.splits(), split)
        n = min(len(data), 8)
        if n == 0:
            return []
        model.eval()
        targets, preds = [], []
        with torch.no_grad():
            for i in range(0, len(data), max(1, len(data) // n))[:n]:
                x, y = data[i]
                targets.append(y.numpy())
                preds.append(model(x[None].float())[0].numpy())
        fs = self.params.sample_rate
        # the cleaner band-passes the prediction before subtracting it; so does the figure
        pred = np.concatenate([bandpass(q, self.params.band, fs) for q in preds])
        target = TimeSeries(np.concatenate(targets), sample_rate=fs)
        resid = TimeSeries(np.concatenate(targets) - pred, sample_rate=fs)
        fig = plot_asd(
            target,
            cleaned=resid,
            bands=self.params.band,
            title=f"network target vs residual ({split}, scaled units)",
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"asd_{split}.png"
        fig.savefig(path, dpi=90)
        return [path]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """In-band ASD-ratio loss (a mean over the batch's windows)."""
        if not hasattr(self, "_loss"):
            p = self.params
            self._loss = ASDRatioLoss(
                p.sample_rate,
                p.band,
                p.loss_fftlength,
                p.loss_overlap,
                average=p.loss_average,
            )
        return self._loss.batch_loss(model, batch)

"""A trained drought forecaster behind the twin's :class:`~hydrology.forecast.Forecaster`
protocol.

:class:`ModelForecaster` holds everything a forecast needs in one ``weights_only``-loadable
file: the model state (per-output selection included), the architecture, the scaler of
the training period, the static inputs, the SPI gamma parameters and the training years'
monthly precipitation (for the analogue / ESP baseline the hybrid model corrects), the
land mask and the clipping policy. ``forecast`` turns the last ``seq_len`` months of a
monthly history (the inputs the model was trained on, among ``pr, wb, sm, t2m``, and the
target indices, as the twin keeps them) into maps at every lead. Gaps in the history (NaN)
enter as the model saw them in training: 0, with observation masks when it was trained
with them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from hydrology.baselines import spi_from_window_mean
from hydrology.dataset import DroughtCube, output_names
from hydrology.features import Scaler, dynamic_features
from hydrology.forecast import forecast_dataset
from hydrology.indices import CLIP, IndexSpec
from hydrology.models.ensemble import PerOutputSelect, TileConvLSTM, load_selected
from hydrology.models.lstm import CellLSTM
from hydrology.pet import PetSource
from twins.config import load_config
from twins.errors import DataError
from twins.task import build_task
from twins.train.checkpoint import atomic_torch_save

log = logging.getLogger(__name__)

FORMAT = 1


def esp_forecast(
    pr_known: np.ndarray,
    issue: pd.Timestamp,
    lead: int,
    window: int,
    train_pr: np.ndarray,
    train_years: list[int],
    gamma: np.ndarray,
    p0: np.ndarray,
) -> np.ndarray:
    """Overlap-aware analogue (ESP) forecast of SPI-``window`` issued at one month.

    Same estimator as :func:`hydrology.baselines.overlap_analogue` for a target outside the
    analogue years: the observed ``window - lead`` months plus, for each training year, the
    ``lead`` months ending at the target's calendar month, through the target month's
    gamma and Phi^-1, averaged over years; a missing observed month is taken from each
    analogue year as well.

    Args:
        pr_known: Monthly precipitation rate (mm/d) of the last months up to the issue
            month, ``(>= window - lead, cell)``, NaN where missing.
        issue: Issue month.
        lead: Lead in months.
        window: SPI accumulation in months.
        train_pr: Training years' monthly precipitation, ``(year, 12, cell)`` (NaN if absent).
        train_years: Calendar years of ``train_pr``.
        gamma: Gamma ``(a, loc, scale)`` per calendar month, ``(12, 3, cell)``.
        p0: Probability of zero per calendar month, ``(12, cell)``.

    Returns:
        ``(cell,)`` forecast, clipped to +/-3.09.
    """
    n_known = max(window - lead, 0)
    n_unknown = window - n_known
    obs = pr_known[pr_known.shape[0] - n_known :]
    known = obs.sum(axis=0) if n_known else 0.0
    gaps = np.isnan(obs) if n_known else np.zeros((0, 1), bool)
    target = issue + pd.DateOffset(months=lead)
    m = target.month - 1
    flat = train_pr.reshape(-1, train_pr.shape[-1])  # (year*12, cell)
    y0 = train_years[0]
    members = []
    for y in train_years:
        end = (y - y0) * 12 + m
        start = end - n_unknown + 1
        if start < 0:
            continue
        block = flat[start : end + 1].sum(axis=0)
        part = known
        if gaps.any():  # a missing observed month is drawn from the analogue year too
            idx = np.arange(end - window + 1, end - window + 1 + n_known)
            ana = np.full(obs.shape, np.nan)
            ana[idx >= 0] = flat[idx[idx >= 0]]
            part = np.where(np.isnan(known), np.where(gaps, ana, obs).sum(axis=0), known)
        members.append(spi_from_window_mean((part + block) / window, gamma[m], p0[m]))
    ens = np.asarray(members)
    with np.errstate(invalid="ignore"):
        n = np.isfinite(ens).sum(0)
        out = np.where(n > 0, np.nansum(ens, 0) / np.maximum(n, 1), np.nan)
    return np.clip(out, -CLIP, CLIP)


class ModelForecaster:
    """Forecast drought-index maps with a trained network (the twin's model).

    Attributes:
        targets: Target index names.
        leads: Lead times in months.
        history_months: Months of history :meth:`forecast` needs (``seq_len``).
        pet: Where the training water balance's PET came from (``pev``, ``hargreaves``,
            ``thornthwaite``; None when the model read no water balance): a twin derives
            its new months' the same way.
    """

    def __init__(self, blob: dict[str, Any]) -> None:
        if int(blob.get("format", -1)) != FORMAT:
            raise DataError(f"unsupported forecaster file format {blob.get('format')}")
        self.blob = blob
        self.targets = tuple(blob["targets"])
        self.leads = tuple(int(k) for k in blob["leads"])
        self.history_months = int(blob["seq_len"])
        self.kind = str(blob["kind"])
        self.scaler = Scaler.from_state(blob["scaler"])
        self.cells = blob["cells"].numpy()
        self.lat = blob["lat"].numpy()
        self.lon = blob["lon"].numpy()
        self.static = blob["static"].numpy()
        self.regional = tuple(float(x) for x in blob.get("regional", ()))
        self.masks = bool(blob.get("input_masks", False))
        self.pet: PetSource | None = blob.get("pet")
        self.model = self._build(blob)
        self.model.eval()

    # -- construction -------------------------------------------------------------------
    @staticmethod
    def _build(blob: dict[str, Any]) -> PerOutputSelect:
        a = blob["arch"]
        n_out = len(blob["targets"]) * len(blob["leads"])
        net: nn.Module
        if blob["kind"] == "convlstm":
            net = TileConvLSTM(a["n_dynamic"], a["n_static"], n_out, a["hidden"], a["residual"])
        else:
            net = CellLSTM(
                a["n_dynamic"], a["n_static"], n_out, a["hidden"], a["dropout"], a["residual"]
            )
        return load_selected(PerOutputSelect(net, n_out), blob["state"])

    @classmethod
    def from_model(
        cls, model: nn.Module, cube: DroughtCube, seq_len: int, kind: str, arch: dict[str, Any]
    ) -> ModelForecaster:
        """Bundle a trained model with its cube's normalisation and baseline data.

        Args:
            model: Trained :class:`PerOutputSelect` model.
            cube: The cube it was trained on.
            seq_len: Months of input history.
            kind: ``"lstm"`` or ``"convlstm"``.
            arch: ``n_dynamic, n_static, hidden, dropout, residual``.
        """
        ty0, ty1 = cube.meta["train_years"]
        years = list(range(int(ty0), int(ty1) + 1))
        train_pr = np.full((len(years), 12, cube.cells.size), np.nan, np.float32)
        for j, t in enumerate(cube.times):
            if ty0 <= t.year <= ty1:
                train_pr[t.year - ty0, t.month - 1] = cube.pr[:, j]
        spi = {
            t: {"gamma": torch.from_numpy(p["gamma"]), "p0": torch.from_numpy(p["p0"])}
            for t, p in cube.spi_params.items()
        }
        blob = {
            "format": FORMAT,
            "kind": kind,
            "seq_len": int(seq_len),
            "targets": list(cube.targets),
            "leads": list(cube.leads),
            "arch": dict(arch),
            "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "scaler": {  # tensors, not arrays: torch.load(weights_only=True) reads them
                k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                for k, v in cube.scaler.state().items()
            },
            "cells": torch.from_numpy(cube.cells.astype(np.int64)),
            "lat": torch.from_numpy(np.asarray(cube.lat, np.float64)),
            "lon": torch.from_numpy(np.asarray(cube.lon, np.float64)),
            "static": torch.from_numpy(cube.static),
            "train_years": years,
            "train_pr": torch.from_numpy(train_pr),
            "spi": spi,
            "clipping": cube.meta["clipping"]["indices"],
            "regional": [float(x) for x in cube.meta.get("regional_sigmas", [])],
            "input_masks": bool(cube.meta.get("input_masks", False)),
            "pet": cube.meta.get("pet"),
            "splits": cube.meta["splits"],
        }
        return cls(blob)

    @classmethod
    def from_run(cls, run_dir: str | Path) -> ModelForecaster:
        """Load a run written by ``twins train`` (``config.yaml``, ``model.pt``, cached cube)."""
        run_dir = Path(run_dir)
        cfg = load_config(run_dir / "config.yaml")
        cfg = cfg.model_copy(update={"workdir": run_dir.parent, "name": run_dir.name})
        task: Any = build_task(cfg)
        p = task.params
        model = task.build_model()
        load_selected(model, torch.load(run_dir / "model.pt", weights_only=True)["model"])
        meta = task.cube().meta
        arch = {
            "n_dynamic": len(meta["dynamic_features"]),
            "n_static": len(meta["static_features"]),
            "hidden": p.hidden,
            "dropout": p.dropout,
            "residual": p.hybrid,
        }
        return cls.from_model(model, task.cube(), p.seq_len, p.model, arch)

    def save(self, path: str | Path) -> Path:
        """Write one ``torch.load(weights_only=True)``-loadable file, atomically."""
        path = Path(path)
        atomic_torch_save(self.blob, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelForecaster:
        """Read a file written by :meth:`save`."""
        return cls(torch.load(Path(path), weights_only=True))

    # -- forecasting ----------------------------------------------------------------------
    def _baseline(self, monthly: xr.Dataset, issue: pd.Timestamp) -> np.ndarray:
        n_out = len(self.targets) * len(self.leads)
        base = np.zeros((n_out, self.cells.size), np.float32)
        if not self.blob["arch"]["residual"]:
            return base
        train_pr = self.blob["train_pr"].numpy()
        for i, t in enumerate(self.targets):
            spec = IndexSpec.parse(t)
            if spec.kind != "spi":
                continue
            g = self.blob["spi"][t]
            pr = monthly["pr"].transpose("time", ...).values.reshape(monthly.sizes["time"], -1)
            pr = pr[-spec.window :, self.cells].astype(float)
            for j, k in enumerate(self.leads):
                e = esp_forecast(
                    pr,
                    issue,
                    k,
                    spec.window,
                    train_pr,
                    self.blob["train_years"],
                    g["gamma"].numpy(),
                    g["p0"].numpy(),
                )
                base[i * len(self.leads) + j] = np.nan_to_num(e)
        return base

    @torch.no_grad()
    def forecast(self, monthly: xr.Dataset) -> xr.Dataset:
        """Forecast maps from a monthly history whose last step is the issue month.

        Args:
            monthly: Dataset ``(time, lat, lon)`` on the training grid with the inputs the
                model was trained on (``scaler.variables`` among ``pr, wb, sm, t2m``, in
                :func:`hydrology.forecast.monthly_inputs` units) and the target indices, at
                least :attr:`history_months` months.

        Returns:
            :func:`hydrology.forecast.forecast_dataset` with one variable per target,
            ``(lead, lat, lon)``, NaN over sea, clipped to +/-3.09.

        Raises:
            DataError: Missing variables, too short a history, or another grid.
        """
        need = [*self.scaler.variables, *self.targets]
        missing = [v for v in need if v not in monthly]
        if missing:
            raise DataError(f"model forecast needs {missing} in the monthly history")
        if monthly.sizes["time"] < self.history_months:
            raise DataError(
                f"model forecast needs {self.history_months} months of history, "
                f"got {monthly.sizes['time']}"
            )
        if (monthly.sizes.get("lat"), monthly.sizes.get("lon")) != (self.lat.size, self.lon.size):
            raise DataError("monthly history is not on the grid the model was trained on")
        hist = monthly.isel(time=slice(-self.history_months, None))
        issue = pd.Timestamp(hist.time.values[-1])
        dyn = dynamic_features(
            hist, hist, self.targets, self.cells, self.scaler, self.regional, self.masks
        )
        base = self._baseline(hist, issue)
        n_out = base.shape[0]
        if self.kind == "convlstm":
            ny, nx = self.lat.size, self.lon.size

            def grid(v: np.ndarray) -> torch.Tensor:  # (..., cell) -> (..., ny, nx)
                g = np.zeros((*v.shape[:-1], ny * nx), np.float32)
                g[..., self.cells] = v
                return torch.from_numpy(g.reshape(*v.shape[:-1], ny, nx))

            y = self.model(
                grid(dyn.transpose(1, 2, 0))[None], grid(self.static.T)[None], grid(base)[None]
            )[0]
            pred = y.reshape(n_out, -1)[:, self.cells].numpy()
        else:
            y = self.model(
                torch.from_numpy(dyn), torch.from_numpy(self.static), torch.from_numpy(base.T)
            )
            pred = y.numpy().T  # (n_out, cell)
        pred = np.clip(pred, -CLIP, CLIP)
        maps = np.full((n_out, self.lat.size * self.lon.size), np.nan, np.float32)
        maps[:, self.cells] = pred
        maps = maps.reshape(len(self.targets), len(self.leads), self.lat.size, self.lon.size)
        like = xr.DataArray(
            np.zeros((self.lat.size, self.lon.size)),
            dims=("lat", "lon"),
            coords={"lat": self.lat, "lon": self.lon},
        )
        ds = forecast_dataset(
            {t: maps[i] for i, t in enumerate(self.targets)}, self.leads, issue, like
        )
        how = "hybrid on ESP" if self.blob["arch"]["residual"] else "plain"
        ds.attrs.update(
            clipping=self.blob["clipping"],
            forecaster=f"{self.kind} ({how})",
            outputs=",".join(output_names(self.targets, self.leads)),
        )
        return ds

"""Model inputs of the drought forecaster, from what a monthly record holds.

The monthly inputs (:func:`hydrology.forecast.monthly_inputs`) always hold precipitation
``pr``; the water balance ``wb``, soil moisture ``sm`` and temperature ``t2m`` only where the
record gives them (a gauge grid such as GPCC holds precipitation alone). Everything here
works on the variables present, in the order of :data:`INPUT_VARS`:

* :func:`input_cells`: the cells a model serves: ``lsm > 0.5`` where a land-sea mask is
  given, and every present input observed in at least :data:`MIN_VALID_SHARE` of the
  training months (ocean is missing throughout in gauge grids; a land cell may miss months);
* :class:`Scaler`: per-calendar-month means and standard deviations of the training period;
* :func:`dynamic_features` ``(cell, month, feature)``: z-scores of the inputs, the current
  target indices, their regional means, optional observation masks and sin/cos of the
  calendar month;
* :func:`static_features` ``(cell, feature)``: standardised orography ``z`` and ``lsm``,
  each only when the record gives it.

Missing values (a gap in a gauge record, an index whose window holds a gap) enter as 0, the
climatological value of a z-score and of a standardised index. With ``masks`` a 1/0 feature
per input and per index says whether the value was observed: without it a filled gap looks
exactly like an observed normal month, with it the network can discount the month (and
learns from the training gaps how much to). Targets stay NaN and are masked in the loss.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy.ndimage import gaussian_filter

from hydrology.indices import CLIP
from hydrology.units import to_units
from twins.errors import DataError

INPUT_VARS: tuple[str, ...] = ("pr", "wb", "sm", "t2m")
"""Monthly inputs that are z-scored per calendar month, in feature order (those present)."""

Z_CLIP: float = 5.0
"""Input z-scores are clipped to ``[-Z_CLIP, Z_CLIP]``."""

STD_FLOOR: float = 1e-3
"""Per-calendar-month standard deviations are floored at this (absolute, input units)."""

MIN_VALID_SHARE: float = 0.5
"""A cell is served when each present input is observed in at least this share of the
training months: below half a record, a calendar month's gamma fit rests on fewer than
half the training years."""
#: Bytes of one float64 grid per group of months in :func:`regional_mean` (its temporaries
#: are about six such grids): 4 MiB is 13 months of a 200 x 200 grid.
REGIONAL_SLAB_BYTES: int = 4 << 20


def input_vars(monthly: xr.Dataset) -> tuple[str, ...]:
    """The monthly inputs of :data:`INPUT_VARS` that ``monthly`` holds, in that order."""
    return tuple(v for v in INPUT_VARS if v in monthly)


def time_by_cell(da: xr.DataArray) -> np.ndarray:
    """``(time, lat, lon)`` -> ``(time, lat*lon)`` array (the grid flattened row-major)."""
    v = da.transpose("time", ...).values
    return v.reshape(v.shape[0], -1)


def input_cells(monthly: xr.Dataset, train: tuple[Any, Any]) -> np.ndarray:
    """Flat indices (into ``lat * lon``) of the cells the model serves.

    Args:
        monthly: Monthly inputs, dims ``(time, lat, lon)``, with statics ``lsm``/``z`` if given.
        train: ``(first, last)`` month of the training period.

    Returns:
        ``(cell,)`` int64: ``lsm > 0.5`` (when given) and each present input observed in at
        least :data:`MIN_VALID_SHARE` of the training months.
    """
    sel = monthly.sel(time=slice(train[0], train[1]))
    ok = np.ones(monthly.sizes["lat"] * monthly.sizes["lon"], bool)
    if "lsm" in monthly:
        ok &= (to_units(monthly["lsm"], "1").values > 0.5).ravel()
    for v in input_vars(monthly):
        ok &= np.isfinite(time_by_cell(sel[v])).mean(axis=0) >= MIN_VALID_SHARE
    return np.flatnonzero(ok)


def has_gaps(monthly: xr.Dataset, cells: np.ndarray) -> bool:
    """True when a present input misses a month at one of ``cells`` (a gappy record)."""
    return any(
        not np.isfinite(time_by_cell(monthly[v])[:, cells]).all() for v in input_vars(monthly)
    )


# ---------------------------------------------------------------------------------- scaler


@dataclass
class Scaler:
    """Normalisation statistics from the training period; travels with the model.

    Attributes:
        mean: Per calendar month, input variable and cell, ``(12, len(variables), cell)``,
            in input units (mm/d, m3 m-3, K); NaN where a cell never saw that month.
        std: Same shape, floored at :data:`STD_FLOOR`.
        z_mean: Mean orography over the training-period land cells (m2 s-2; 0 without ``z``).
        z_std: Its standard deviation (1 without ``z``).
        clip: Clip of the input z-scores.
        variables: The inputs scaled, a subsequence of :data:`INPUT_VARS`.
    """

    mean: np.ndarray
    std: np.ndarray
    z_mean: float
    z_std: float
    clip: float = Z_CLIP
    variables: tuple[str, ...] = INPUT_VARS

    @classmethod
    def fit(
        cls,
        monthly: xr.Dataset,
        cells: np.ndarray,
        train: tuple[Any, Any],
        variables: Sequence[str] | None = None,
    ) -> Scaler:
        """Fit on the training period, skipping missing months.

        Args:
            monthly: :func:`hydrology.forecast.monthly_inputs` output, dims ``(time, lat, lon)``.
            cells: Flat indices of land cells into ``lat * lon``, shape ``(cell,)``.
            train: ``(first, last)`` month of the training period.
            variables: Inputs to scale (default: those of :data:`INPUT_VARS` present).
        """
        names = tuple(variables) if variables is not None else input_vars(monthly)
        sel = monthly.sel(time=slice(train[0], train[1]))
        months = sel.time.dt.month.values
        mean = np.zeros((12, len(names), cells.size), np.float32)
        std = np.ones_like(mean)
        for j, v in enumerate(names):
            x = time_by_cell(sel[v])[:, cells]
            for m in range(12):
                xm = x[months == m + 1]
                if xm.shape[0] == 0:
                    raise DataError(f"training period has no month {m + 1}")
                with warnings.catch_warnings():  # a cell without this month: NaN, filled later
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean[m, j] = np.nanmean(xm, axis=0)
                    sd = np.nanstd(xm, axis=0, ddof=1 if xm.shape[0] > 1 else 0)
                std[m, j] = np.maximum(sd, STD_FLOOR)
        z = (
            monthly["z"].values.ravel()[cells].astype(float)
            if "z" in monthly
            else np.zeros(cells.size)
        )
        return cls(mean, std, float(z.mean()), float(max(z.std(), 1e-6)), Z_CLIP, names)

    def transform(self, x: np.ndarray, months: np.ndarray) -> np.ndarray:
        """z-score inputs.

        Args:
            x: ``(time, len(variables), cell)`` in input units.
            months: Calendar month (1-12) of each time step, ``(time,)``.

        Returns:
            Clipped z-scores, float32, same shape; NaN stays NaN.
        """
        m = months - 1
        z = (x - self.mean[m]) / self.std[m]
        return np.clip(z, -self.clip, self.clip).astype(np.float32)

    def state(self) -> dict[str, Any]:
        """Plain arrays, floats and strings (a model file stores the arrays as tensors:
        :mod:`hydrology.model_forecaster`)."""
        return {
            "mean": np.ascontiguousarray(self.mean),
            "std": np.ascontiguousarray(self.std),
            "z_mean": self.z_mean,
            "z_std": self.z_std,
            "clip": self.clip,
            "variables": list(self.variables),
        }

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> Scaler:
        """Inverse of :meth:`state` (a state without ``variables`` scaled all four inputs)."""
        return cls(
            np.asarray(st["mean"]),
            np.asarray(st["std"]),
            float(st["z_mean"]),
            float(st["z_std"]),
            float(st["clip"]),
            tuple(st.get("variables", INPUT_VARS)),
        )


# -------------------------------------------------------------------------------- features


def month_features(months: np.ndarray) -> np.ndarray:
    """sin/cos of the calendar month, ``(time, 2)`` float32."""
    ang = 2 * np.pi * (np.asarray(months) - 1) / 12.0
    return np.stack([np.sin(ang), np.cos(ang)], axis=-1).astype(np.float32)


def regional_mean(
    values: np.ndarray, cells: np.ndarray, shape: tuple[int, int], sigma: float
) -> np.ndarray:
    """Gaussian-weighted mean over land cells of a ``(time, cell)`` field.

    A large-scale drought state: the weather decorrelates over ~``corr_length`` cells while a
    drought's footprint is wider, so a regional mean of an index separates the two better
    than a single cell can. Each month is filtered on its own, so the months go through in
    groups whose grids take about :data:`REGIONAL_SLAB_BYTES` each (the filter's
    temporaries are a few such grids, whatever the record's length); the result is the same
    bit for bit as filtering every month at once.

    Args:
        values: ``(time, cell)`` field (e.g. SPI-3), NaN where unknown.
        cells: Flat land-cell indices into ``lat * lon``, ``(cell,)``.
        shape: ``(lat, lon)`` grid shape.
        sigma: Kernel standard deviation [cells]; sea and NaN cells carry no weight.

    Returns:
        ``(time, cell)`` float32 regional means (NaN where no finite land is in reach).
    """
    nt = values.shape[0]
    out = np.empty((nt, cells.size), np.float32)
    step = max(1, REGIONAL_SLAB_BYTES // (8 * shape[0] * shape[1]))
    for t0 in range(0, nt, step):
        part = values[t0 : t0 + step]
        n = part.shape[0]
        ok = np.isfinite(part)
        grid = np.zeros((n, shape[0] * shape[1]), np.float64)
        weight = np.zeros_like(grid)
        grid[:, cells] = np.where(ok, part, 0.0)
        weight[:, cells] = ok
        k = (0, sigma, sigma)  # (no filtering across months: scipy skips a zero sigma)
        num = gaussian_filter(grid.reshape(n, *shape), k, mode="constant", truncate=3.0)
        den = gaussian_filter(weight.reshape(n, *shape), k, mode="constant", truncate=3.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[t0 : t0 + n] = np.where(den > 1e-6, num / den, np.nan).reshape(n, -1)[:, cells]
    return out


def dynamic_names(
    variables: Sequence[str],
    targets: Sequence[str],
    regional: Sequence[float] = (),
    masks: bool = False,
) -> list[str]:
    """Names of the :func:`dynamic_features` columns, in order."""
    return [
        *[f"{v}_z" for v in variables],
        *targets,
        *[f"{t}_r{s:g}" for s in regional for t in targets],
        *([f"{v}_ok" for v in [*variables, *targets]] if masks else []),
        "month_sin",
        "month_cos",
    ]


def dynamic_features(
    monthly: xr.Dataset,
    indices: xr.Dataset,
    targets: Sequence[str],
    cells: np.ndarray,
    scaler: Scaler,
    regional: Sequence[float] = (),
    masks: bool = False,
) -> np.ndarray:
    """Dynamic model inputs for the land cells (columns named by :func:`dynamic_names`).

    Args:
        monthly: Monthly inputs holding ``scaler.variables``, dims ``(time, lat, lon)``.
        indices: Index dataset holding ``targets`` on the same months.
        targets: Index names used as inputs.
        cells: Flat land-cell indices, ``(cell,)``.
        scaler: Training-period statistics.
        regional: Kernel widths [cells] of regional means of every target index
            (:func:`regional_mean`), appended after the indices.
        masks: Append a 1/0 "observed" feature per input and per index.

    Returns:
        ``(cell, time, F)`` float32, ``F = V + len(targets) * (1 + len(regional)) + 2`` with
        ``V = len(scaler.variables)``, plus ``V + len(targets)`` with ``masks``; NaN -> 0.

    Raises:
        DataError: ``monthly`` lacks an input the scaler was fitted on.
    """
    missing = [v for v in scaler.variables if v not in monthly]
    if missing:
        raise DataError(f"monthly inputs lack {missing}, which the model was trained on")
    months = monthly.time.dt.month.values
    x = np.stack([time_by_cell(monthly[v])[:, cells] for v in scaler.variables], axis=1)
    z = scaler.transform(x, months)  # (time, V, cell)
    idx = np.stack([time_by_cell(indices[t])[:, cells] for t in targets], axis=1)
    idx = np.clip(idx, -CLIP, CLIP).astype(np.float32)
    shape = (monthly.sizes["lat"], monthly.sizes["lon"])
    n_t = len(targets)
    reg = [regional_mean(idx[:, j], cells, shape, s) for s in regional for j in range(n_t)]
    reg_arr = np.stack(reg, axis=1) if reg else np.zeros((len(months), 0, cells.size), np.float32)
    parts = [z, idx, reg_arr]
    if masks:
        parts += [np.isfinite(x).astype(np.float32), np.isfinite(idx).astype(np.float32)]
    mf = np.broadcast_to(month_features(months)[:, :, None], (len(months), 2, cells.size))
    feats = np.concatenate([*parts, mf], axis=1)  # (time, F, cell)
    return np.nan_to_num(np.ascontiguousarray(feats.transpose(2, 0, 1)), nan=0.0)


def static_names(monthly: xr.Dataset) -> list[str]:
    """Names of the :func:`static_features` columns: ``z_std`` and ``lsm`` where given."""
    return [n for n, v in (("z_std", "z"), ("lsm", "lsm")) if v in monthly]


def static_features(monthly: xr.Dataset, cells: np.ndarray, scaler: Scaler) -> np.ndarray:
    """``(cell, S)`` float32: standardised ``z`` and ``lsm``, each where the record gives it
    (``S`` = 0 for a record without statics)."""
    cols = []
    if "z" in monthly:
        z = np.asarray(monthly["z"].values.ravel()[cells], float)
        cols.append((z - scaler.z_mean) / scaler.z_std)
    if "lsm" in monthly:
        cols.append(np.asarray(to_units(monthly["lsm"], "1").values.ravel()[cells], float))
    return (
        np.stack(cols, axis=-1).astype(np.float32)
        if cols
        else np.zeros((cells.size, 0), np.float32)
    )

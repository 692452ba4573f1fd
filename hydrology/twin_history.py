"""The drought twin's monthly history: what an update appends to and a scenario modifies.

``history.nc`` (in a twin version's products) holds the monthly inputs ``pr``/``wb`` [mm/d],
``sm`` [m3 m-3] and ``t2m`` [K] where available, the drought indices (dimensionless) and the
statics ``lsm``/``z``, for the last ``N`` months (``max(indices.history_months,
forecaster.history_months) + HISTORY_MARGIN``), dims ``(time, lat, lon)``. Indices of new
months are transformed with the stored parameters (:func:`transform_tail`); the earlier months
fill the accumulation windows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from hydrology.indices import DroughtIndices
from hydrology.ingest import SOURCE_VARIABLE
from twins.errors import DataError

__all__ = [
    "HISTORY_MARGIN",
    "INPUT_VARS",
    "MIN_TRANSFORM_MONTHS",
    "STATICS",
    "append_months",
    "history_dataset",
    "next_month",
    "to_index_input",
    "transform_tail",
    "write_nc",
]

#: Extra months kept in the history beyond what indices and forecaster need (room for
#: scenarios over the last months: their indices are recomputed with full windows).
HISTORY_MARGIN = 12
#: Fewest months handed to one xclim transform (it infers the frequency from 3 steps).
MIN_TRANSFORM_MONTHS = 3
#: Monthly inputs the history keeps, where available.
INPUT_VARS = ("pr", "wb", "sm", "t2m")
#: Static fields the history keeps, where available.
STATICS = ("lsm", "z")


def next_month(month: str) -> str:
    """The month after ``month`` (``"YYYY-MM"``)."""
    return (pd.Timestamp(month + "-01") + pd.DateOffset(months=1)).strftime("%Y-%m")


def to_index_input(monthly: xr.Dataset) -> xr.Dataset:
    """Monthly inputs -> the canonical variables DroughtIndices reads, as rates.

    ``tp`` = ``pr`` and ``pev`` = ``wb - pr`` in mm/d (fluxes: DroughtIndices takes their
    monthly mean, the identity on monthly data, and P - PET = ``tp + pev`` = ``wb``), ``swvl1``
    = ``sm``.
    """
    out = {}
    if "pr" in monthly:
        out["tp"] = monthly["pr"].assign_attrs(units="mm/d")
        if "wb" in monthly:
            out["pev"] = (monthly["wb"] - monthly["pr"]).assign_attrs(units="mm/d")
    if "sm" in monthly:
        out["swvl1"] = monthly["sm"].assign_attrs(units="m3 m-3")
    return xr.Dataset(out)


def transform_tail(indices: DroughtIndices, monthly: xr.Dataset, n_tail: int) -> xr.Dataset:
    """Indices of the last ``n_tail`` months of ``monthly`` with the stored parameters.

    The earlier months of ``monthly`` fill the accumulation windows. At least
    ``MIN_TRANSFORM_MONTHS`` months are transformed (xclim infers the frequency of its input,
    which needs three time steps) and the extra ones dropped: with fixed parameters each
    month's value does not depend on which months are transformed together.

    Args:
        indices: Fitted indices.
        monthly: Monthly inputs (``pr``, ``wb``, ``sm``), dims ``(time, lat, lon)``.
        n_tail: Number of final months wanted.

    Returns:
        Indices for the last ``n_tail`` months, dims ``(time, lat, lon)``.
    """
    inputs = to_index_input(monthly)
    n = inputs.sizes["time"]
    start = max(0, n - max(n_tail, MIN_TRANSFORM_MONTHS))
    out = indices.transform(inputs.isel(time=slice(start, None)), history=inputs)
    return out.isel(time=slice(-n_tail, None))


def write_nc(ds: xr.Dataset, path: Path) -> None:
    """Write ``ds`` as NetCDF-4, zlib level 1, deterministic (no timestamps in attributes)."""
    enc: dict[str, dict[str, Any]] = {}
    for name, da in ds.data_vars.items():
        if da.ndim:
            enc[str(name)] = {"zlib": True, "complevel": 1}
    for name in ds.coords:
        if ds[name].dtype.kind == "f" and name in ds.dims:
            enc[str(name)] = {"_FillValue": None}
    ds.to_netcdf(path, engine="netcdf4", format="NETCDF4", encoding=enc)


def history_dataset(monthly: xr.Dataset, idx: xr.Dataset, n_keep: int) -> xr.Dataset:
    """The history a twin starts from: the last ``n_keep`` months of inputs and indices.

    Args:
        monthly: Monthly inputs and statics (:func:`hydrology.ingest.monthly_standard`).
        idx: Indices of the same months, dims ``(time, lat, lon)``.
        n_keep: Months to keep.

    Returns:
        The history (see the module docstring).
    """
    dyn = [v for v in INPUT_VARS if v in monthly]
    hist = xr.merge([monthly[dyn], idx], combine_attrs="drop").isel(time=slice(-n_keep, None))
    for v in dyn + list(idx.data_vars):
        src = monthly if v in monthly else idx
        hist[v] = hist[v].astype(np.float64).assign_attrs(src[v].attrs)
    for s in STATICS:
        if s in monthly:
            hist[s] = monthly[s].astype(np.float32)
    hist.attrs = {"Conventions": "CF-1.10", "source": "hydrology.twin monthly history"}
    if "clipping" in idx.attrs:
        hist.attrs["index_clipping"] = idx.attrs["clipping"]
    return hist


def append_months(
    history: xr.Dataset, monthly: xr.Dataset, indices: DroughtIndices, extra: dict[str, Any]
) -> xr.Dataset:
    """History + new monthly inputs, indices transformed with the stored parameters.

    Args:
        history: The twin's monthly history.
        monthly: New monthly inputs (without statics), dims ``(time, lat, lon)``.
        indices: The twin's fitted indices.
        extra: The twin's state (``history_months``: months to keep).

    Returns:
        The new history, the oldest months dropped to keep ``history_months``.

    Raises:
        DataError: The new months lack an input the history holds.
    """
    dyn = [v for v in INPUT_VARS if v in history]
    missing = [v for v in dyn if v not in monthly]
    if missing:
        raise DataError(f"new data lack {[SOURCE_VARIABLE[v] for v in missing]}")
    new = monthly[dyn]
    combined = xr.concat([history[dyn], new], dim="time")
    idx = transform_tail(indices, combined, new.sizes["time"])
    merged = xr.merge([new, idx], combine_attrs="drop")
    statics = [s for s in STATICS if s in history]
    body = history.drop_vars(statics)
    both = xr.concat([body, merged[list(body.data_vars)]], dim="time", combine_attrs="override")
    n_keep = int(extra.get("history_months", both.sizes["time"]))
    both = both.isel(time=slice(-n_keep, None))
    for v in both.data_vars:
        both[v] = both[v].astype(np.float64).assign_attrs(history[v].attrs)
    for s in statics:
        both[s] = history[s]
    both.attrs = dict(history.attrs)
    return both

"""What gets into a model or a twin: read, check, gate and convert climate grids.

Two paths ingest data, and both go through here:

* training (:meth:`hydrology.task.DroughtForecast.load_dataset`): :func:`read_training`;
* the drought twin (:mod:`hydrology.twin`): :func:`read_init` for the record a twin starts
  from, :func:`prepare_months` for each monthly update.

Order of the checks: files complete and readable (:func:`hydrology.ncheader.check_complete`,
every variable read in full), names/units/time axis (:func:`hydrology.io.validate`), whole
months (twin), the twin's grid, then the plausibility gates
(:func:`hydrology.gates.check_gates`), all before anything is computed or written. Declared
units are then converted to the canonical ones (:func:`canonical_units`: temperatures in K,
soil water in m3 m-3, ``lsm`` as a fraction, ``z`` as geopotential), so a file in ``degC``
and the same file in K give the same history, indices and alerts. Model calendars
(``noleap``, ``360_day``) are aggregated to months in their own calendar and relabelled to
standard month starts (:func:`hydrology.timeaxis.month_starts`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from hydrology.aggregate import monthly_mean
from hydrology.forecast import monthly_inputs
from hydrology.gates import Gates, check_gates
from hydrology.io import DYNAMIC, STATIC, load_checked, normalise, open_grids, validate
from hydrology.pet import PetMethod
from hydrology.timeaxis import calendar, is_monthly, is_standard, month_starts, whole_months
from hydrology.units import to_units
from twins.errors import DataError

__all__ = [
    "CANONICAL_UNITS",
    "TRAINING_REQUIRED",
    "DataInput",
    "canonical_units",
    "content_key",
    "history_land",
    "monthly_standard",
    "prepare_months",
    "read_init",
    "read_training",
    "standard_months",
]

log = logging.getLogger(__name__)

#: Units every path converts to before monthly aggregation (water is converted there).
CANONICAL_UNITS = {
    "t2m": "K",
    "mn2t": "K",
    "mx2t": "K",
    "swvl1": "m3 m-3",
    "lsm": "1",
    "z": "m2 s-2",
}
#: Canonical variables every training file set must hold (the indices and the baselines
#: start from precipitation).
TRAINING_REQUIRED = ("tp",)
#: Daily canonical variable each monthly twin input comes from.
SOURCE_VARIABLE = {"pr": "tp", "wb": "pev", "sm": "swvl1", "t2m": "t2m"}
_WATER = ("tp", "e", "pev")

DataInput = xr.Dataset | str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def canonical_units(ds: xr.Dataset) -> xr.Dataset:
    """Convert temperatures, soil water and statics to :data:`CANONICAL_UNITS`.

    Water variables keep their declared units: the monthly aggregation converts them
    (amounts per step or fluxes to mm/d). Variables without units (a fraction written
    without a ``units`` attribute) are left alone.

    Args:
        ds: Canonical dataset.

    Returns:
        A dataset whose converted variables carry the target ``units`` attribute.
    """
    out = ds.copy()
    for name, unit in CANONICAL_UNITS.items():
        if name not in ds.data_vars:
            continue
        declared = str(ds[name].attrs.get("units", "")).strip()
        if not declared or declared == unit:
            continue
        out[name] = to_units(ds[name], unit)
    return out


def standard_months(ds: xr.Dataset) -> xr.Dataset:
    """Monthly means of a dataset on a model calendar, at standard month starts.

    Water variables become mean rates in mm/day first (a rate does not depend on how many
    days the calendar gives the month); other dynamic variables are averaged; statics are
    kept.

    Args:
        ds: Canonical dataset with a cftime ``time`` axis (``noleap``, ``360_day``, ...).

    Returns:
        Monthly dataset, ``time`` as ``datetime64`` month starts.
    """
    out = {}
    for name, da in ds.data_vars.items():
        if "time" not in da.dims:
            out[name] = da
            continue
        src = to_units(da, "mm/day") if name in _WATER else da
        monthly = monthly_mean(src)
        monthly.attrs = dict(src.attrs)
        out[name] = monthly
    return month_starts(xr.Dataset(out, attrs=ds.attrs))


def _require_time(ds: xr.Dataset, source: str, names: Sequence[str]) -> None:
    """Refuse a dynamic variable without the ``time`` dimension (e.g. one map of ``tp``)."""
    for name in names:
        if name in DYNAMIC and name in ds.data_vars and "time" not in ds[name].dims:
            dims = ", ".join(str(d) for d in ds[name].dims) or "none"
            raise DataError(
                f"{source}: variable '{name}' has no 'time' dimension (dims: {dims}); "
                "expected (time, lat, lon)",
                hint="give the daily fields, one map per time step",
            )


def read_training(paths: Sequence[str], gates: Gates) -> xr.Dataset:
    """The training dataset of the configured files: checked, gated, canonical units.

    One file is read into memory at once (the cube loads everything anyway; no dask graph);
    many files are opened with dask and gated file by file.

    Args:
        paths: NetCDF/Zarr paths or glob patterns.
        gates: Plausibility bounds (``task.params.gates``).

    Returns:
        Canonical dataset; on a model calendar, monthly means at standard month starts.

    Raises:
        DataError: A missing, truncated or unreadable file, no ``tp`` (:data:`TRAINING_REQUIRED`),
            invalid content, or a value outside the gates.
    """
    if len(paths) > 1:
        ds = open_grids(list(paths), gates=gates)
        label = f"{paths[0]} ... {paths[-1]}"
        validate(ds, label, TRAINING_REQUIRED, check_values=False)
    else:
        label = str(paths[0])
        opened = open_grids(paths[0], chunks=None, gates=None)
        validate(opened, label, TRAINING_REQUIRED, check_values=False)  # before reading it all
        ds = load_checked(opened, label)
        check_gates(ds, label, gates)
    _require_time(ds, label, [str(v) for v in ds.data_vars])
    ds = canonical_units(ds)
    if not is_standard(ds):
        cal = calendar(ds.indexes["time"])
        log.info("%s: %s calendar: training on monthly means at month starts", label, cal)
        ds = standard_months(ds)
    return ds


def monthly_standard(
    ds: xr.Dataset, pet: PetMethod = "pev", before: xr.Dataset | None = None
) -> xr.Dataset:
    """:func:`hydrology.forecast.monthly_inputs` in canonical units, at standard month starts.

    A monthly record (GPCC, ERA5 monthly means; :func:`hydrology.timeaxis.is_monthly`) has
    its water amounts turned into daily mean rates first, each month by its own length, so
    a single new month (one step, declared monthly) converts like a long record.

    Args:
        ds: Canonical daily, sub-daily or monthly dataset (any calendar), loaded.
        pet: Where the water balance's PET comes from (:func:`hydrology.pet.pet_source`).
        before: Monthly inputs of the months before ``ds`` (a twin's history): their
            ``t2m`` completes a Thornthwaite PET's 12 months (:func:`hydrology.pet.monthly_pet`).

    Returns:
        Monthly inputs ``pr, wb, sm, t2m`` (mm/d, mm/d, m3 m-3, K) and the statics.
    """
    ds = canonical_units(ds)
    if is_monthly(ds):
        ds = ds.copy()
        for name in _WATER:
            if name in ds.data_vars and "time" in ds[name].dims:
                ds[name] = to_units(ds[name], "mm/d")
    tas = before["t2m"] if before is not None and "t2m" in before else None
    return month_starts(monthly_inputs(ds, pet, tas).load())


def _read(data: DataInput) -> tuple[xr.Dataset, str, list[Path]]:
    """Open ``data`` as a loaded canonical dataset (names, units, time axis checked)."""
    if isinstance(data, xr.Dataset):
        ds = normalise(data, "<dataset>")
        return validate(ds, "<dataset>").load(), "<dataset>", []
    paths = [Path(data)] if isinstance(data, str | os.PathLike) else [Path(p) for p in data]
    if not paths:
        raise DataError("no new-data files given")
    label = str(paths[0]) if len(paths) == 1 else f"{paths[0]} ... {paths[-1]}"
    ds = open_grids(paths if len(paths) > 1 else paths[0], chunks=None, gates=None)
    return load_checked(ds, label), label, paths


def _gate(
    ds: xr.Dataset,
    label: str,
    paths: list[Path],
    gates: Gates,
    land: xr.DataArray | None,
    variables: list[str] | None,
) -> None:
    """Gates on the loaded ``ds``; when it comes from several files and is refused, the files
    are read again one by one only to name the one at fault (the accepted path reads once).
    Missing shares are per month of the whole record, so a month split over files is judged
    as a month."""
    try:
        check_gates(ds, label, gates, land=land, variables=variables)
    except DataError:
        if len(paths) <= 1:
            raise
        for p in paths:
            part = load_checked(open_grids(p, chunks=None, gates=None), str(p))
            check_gates(part, str(p), gates, land=land, variables=variables)
        raise  # no single file fails alone: the record as a whole does


def read_init(
    data: DataInput, gates: Gates, pet: PetMethod = "pev"
) -> tuple[xr.Dataset, list[str], xr.Dataset, str]:
    """The daily record a twin starts from: checked, gated and aggregated to months.

    Args:
        data: Daily canonical dataset or NetCDF path(s), whole months.
        gates: Plausibility bounds.
        pet: Where the water balance's PET comes from (the forecaster's, as trained).

    Returns:
        ``(daily, months, monthly, source)``: the loaded daily dataset, its months
        ``"YYYY-MM"``, the monthly inputs (:func:`monthly_standard`) and the source label.

    Raises:
        DataError: Bad data (one line naming the file and the variable).
    """
    ds, source, paths = _read(data)
    _require_time(ds, source, [str(v) for v in ds.data_vars])
    months = whole_months(ds, source)
    _gate(ds, source, paths, gates, None, None)
    return ds, months, monthly_standard(ds, pet), source


def history_land(history: xr.Dataset) -> xr.DataArray:
    """Land cells of a twin history: ``lsm > 0.5``, else cells with precipitation."""
    if "lsm" in history:
        return history["lsm"] > 0.5
    return np.isfinite(history["pr"]).any("time")


def content_key(monthly: xr.Dataset, months: list[str]) -> str:
    """Idempotency key of an update: the months and a hash of the monthly inputs."""
    h = hashlib.sha256()
    for name in sorted(str(v) for v in monthly.data_vars):
        arr = np.ascontiguousarray(monthly[name].values, dtype=np.float64)
        h.update(name.encode())
        h.update(arr.tobytes())
    return f"hydrology:{months[0]}..{months[-1]}:sha256:{h.hexdigest()[:32]}"


def prepare_months(
    data: DataInput,
    history: xr.Dataset,
    required: list[str],
    gates: Gates,
    pet: PetMethod = "pev",
) -> tuple[xr.Dataset, list[str], str, str]:
    """Read, check and aggregate the new months of a twin update; nothing is written.

    Args:
        data: Daily dataset or NetCDF file(s) of whole months.
        history: The twin's monthly history (its grid and land are the reference; its
            temperatures complete a Thornthwaite PET's 12 months).
        required: Canonical variables the twin was built from.
        gates: Plausibility bounds in force for this update.
        pet: Where the water balance's PET comes from (the twin's, as initialised).

    Returns:
        ``(monthly, months, key, source)``: monthly inputs without statics, the months, the
        idempotency key and the source label.

    Raises:
        DataError: Unreadable or truncated file, missing variable, bad units or time axis,
            not whole months, another grid, an implausible value, no data over land.
    """
    ds, source, paths = _read(data)
    validate(ds, source, required, check_values=True)
    _require_time(ds, source, required)
    months = whole_months(ds, source)
    for axis in ("lat", "lon"):
        a, b = np.asarray(history[axis].values), np.asarray(ds[axis].values)
        if a.shape != b.shape or not np.allclose(a, b, atol=1e-6):
            raise DataError(
                f"{source}: grid does not match the twin (variable '{axis}': {b.size} "
                f"values {b.min():g}..{b.max():g}, twin has {a.size} values "
                f"{a.min():g}..{a.max():g})",
                hint="regrid the new data to the twin's grid",
            )
    land = history_land(history)
    statics = [s for s in STATIC if s in ds.data_vars]
    _gate(ds, source, paths, gates, land, [*required, *statics])
    monthly = monthly_standard(ds[required], pet, history)
    monthly = monthly.drop_vars([s for s in STATIC if s in monthly])
    for name in monthly.data_vars:
        per_month = monthly[name].where(land)
        for i, month in enumerate(months):
            if not bool(np.isfinite(per_month.values[i]).any()):
                raise DataError(
                    f"{source}: variable '{SOURCE_VARIABLE.get(str(name), name)}' is entirely "
                    f"NaN over land in {month}",
                    hint="check the download of that month",
                )
    return monthly, months, content_key(monthly, months), source

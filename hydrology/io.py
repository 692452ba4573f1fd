"""Lazy ingest of climate grids (ERA5, ERA5-Land, E-OBS, CF/CMOR, GPCC, CPC, CHIRPS, CRU) into
one canonical form.

Canonical form (``reference/hydrology.md`` section 10):

- dims ``(time, lat, lon)`` with ``lat`` and ``lon`` ascending and ``lon`` in -180..180 (a
  gridded file), or ``(time, <points>)`` for station/city files whose ``lat``/``lon`` are 1-D
  coordinates along one points dimension (e.g. ``location``); statics (``lsm``, ``z``) have
  no time dimension;
- ``latitude/longitude/valid_time`` renamed to ``lat/lon/time``; CDS ``number`` dropped,
  ``expver`` combined (final over preliminary) or dropped, cfgrib's reference time x step put
  on the valid time, a scalar time made a length-1 dimension (:mod:`hydrology.layouts`);
- a monthly record (one step per calendar month: GPCC, ERA5 monthly means) stamped at month
  starts with ``ds.attrs["time_step"] == "month"`` (:func:`hydrology.timeaxis.align_months`);
- variables under ERA5 short names, whatever the product (``tp``, ``t2m``, ``mn2t``,
  ``mx2t``, ``e``, ``pev``, ``swvl1``, ``lsm``, ``z``; the table of product names is in
  :mod:`hydrology.names`: ``precip``, ``prcp``, ``pr``, ``rr``, ``pre`` are all ``tp``);
- **units are kept as the source wrote them** (only spellings pint cannot read, such as
  ``m of water equivalent`` or ``degrees Celsius``, are rewritten, and a per-month amount on
  monthly steps becomes an amount per step) and converted at use with :func:`to_units`:
  ERA5 ``tp`` is an amount in m per step, E-OBS ``rr`` and GPCC ``precip`` amounts in mm per
  step (a day, a month), CF ``pr`` a flux in kg m-2 s-1, an ERA5 monthly mean of ``tp``
  (stepType ``avgad``) an amount per day (``m d-1``);
- ERA5 hourly accumulations (stamped at the end of their hour) are labelled at the start of
  their hour, so daily and monthly means cover their own hours (``attrs["time_stamp"]``);
- **evaporation sign is kept as well**: ERA5 ``e``/``pev`` are negative for evaporation, CF
  ``evspsbl``/``evspsblpot`` and CRU ``pet`` positive. Each variable records
  ``attrs["evaporation_sign"]``; :func:`evaporation_positive` returns evaporation as a
  positive quantity;
- every renamed variable records ``attrs["source_name"]`` and ``attrs["source_convention"]``.

Formats (:mod:`hydrology.formats`): netCDF 3/4, Zarr, GRIB through cfgrib (no ``.idx`` file is
written next to the data), and the ``.zip`` a CDS request is delivered as.

Every problem with the input is a :class:`twins.errors.DataError` whose one-line message names
the file and the variable: a NetCDF-3 file shorter than its header declares
(:mod:`hydrology.ncheader`), any reader exception while opening or reading ("file truncated or
unreadable"), a time axis without CF units, an extra dimension such as an ensemble ``number``
of size > 1, data that cannot give a monthly total (an hourly accumulation once a month), and
values outside the plausibility gates (:mod:`hydrology.gates`, run by :func:`open_grids` unless
``gates=None``). Unit conversions live in :mod:`hydrology.units` (re-exported here), time-axis
checks in :mod:`hydrology.timeaxis`.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from xclim.core.units import units2pint

from hydrology.formats import engine, expand_archives, open_one, relabel
from hydrology.gates import Gates, check_gates
from hydrology.layouts import (
    combine_expver,
    grib_valid_time,
    interval_start,
    scalar_time,
    step_types,
    wrap_longitude,
)
from hydrology.names import canonical_names, canonical_units
from hydrology.ncheader import check_complete
from hydrology.timeaxis import align_months, check_time, is_monthly, time_problem
from hydrology.units import DIMENSIONALITIES, evaporation_positive, to_units
from twins.errors import DataError

__all__ = [
    "CANONICAL",
    "DYNAMIC",
    "STATIC",
    "evaporation_positive",
    "land_mask",
    "load_checked",
    "normalise",
    "open_grids",
    "to_units",
    "validate",
]

logger = logging.getLogger(__name__)

DYNAMIC = ("tp", "t2m", "mn2t", "mx2t", "e", "pev", "swvl1")
STATIC = ("lsm", "z")
CANONICAL = DYNAMIC + STATIC

_DEFAULT_GATES = Gates()
_DIM_RENAMES = {"latitude": "lat", "longitude": "lon", "valid_time": "time"}
# CDS ensemble member (scalar) and cfgrib's scalar level coordinates
_DROP = ("number", "surface", "heightAboveGround", "depthBelowLandLayer", "entireAtmosphere")

# --------------------------------------------------------------------------- normalise


def normalise(
    ds: xr.Dataset,
    source: str = "<dataset>",
    whole: bool = True,
    variables: Sequence[str] | None = None,
) -> xr.Dataset:
    """Rename, reorder and sort a raw dataset into the canonical form (lazy, no data read).

    Layouts (:mod:`hydrology.layouts`): cfgrib's reference time x step put on
    ``valid_time``, a legacy ``expver`` dimension combined (final over preliminary), a scalar
    time made a length-1 dimension, longitudes 0..360 converted to -180..180 and sorted,
    ECMWF step types read as units. Names and unit spellings: :mod:`hydrology.names`.
    Monthly records are stamped at month starts (:func:`hydrology.timeaxis.align_months`).

    Args:
        ds: dataset as opened from disk (ERA5, ERA5-Land, E-OBS, CF/CMOR, GPCC, CPC, CHIRPS,
            CRU or NOAA PSL naming).
        source: file name used in error messages.
        whole: ``ds`` is the whole record (not one file of a set): end-stamped hourly
            accumulations are moved to the start of their hour
            (:func:`hydrology.layouts.interval_start`). :func:`open_grids` does that after
            combining the files of a set.
        variables: canonical names to keep (with the statics ``lsm``/``z``); None keeps
            every variable. The layout checks see only these, so a variable nobody asked
            for cannot refuse the file.

    Returns:
        Dataset with dims ``(time, lat, lon)`` (lat ascending, lon ascending in -180..180)
        or ``(time, <points>)``, canonical variable names and CF unit spellings.

    Raises:
        DataError: no recognisable lat/lon, a non-monotonic latitude axis, a repeated
            longitude, a per-month unit on steps that are not months, data that cannot give
            a monthly total or mean (:func:`hydrology.layouts.step_types`).
    """
    ds = ds.copy()
    ds = grib_valid_time(ds, source)
    ds = combine_expver(ds, source)
    ds = scalar_time(ds)
    ds = ds.drop_vars([n for n in _DROP if n in ds.coords and ds[n].ndim == 0])
    ds = ds.rename({k: v for k, v in _DIM_RENAMES.items() if k in ds.variables or k in ds.dims})
    ds = _select(canonical_names(ds, source, CANONICAL), variables)

    # Statics sometimes come with a length-1 time axis (ERA5 invariants).
    for name in STATIC:
        if name in ds.data_vars and "time" in ds[name].dims and ds.sizes["time"] == 1:
            ds[name] = ds[name].isel(time=0, drop=True)
    if (
        "time" in ds.dims
        and ds.sizes["time"] == 1
        and all("time" not in ds[v].dims for v in ds.data_vars)
    ):
        ds = ds.isel(time=0, drop=True)

    if "lat" not in ds.variables or "lon" not in ds.variables:
        raise DataError(
            f"{source}: no latitude/longitude coordinates (variable 'lat')",
            hint="Expected dims (time, lat|latitude, lon|longitude) or a points dim with "
            "lat/lon coordinates.",
        )
    if "lat" in ds.dims:
        lat = ds["lat"].values
        if lat.size > 1:
            d = np.diff(lat)
            if np.all(d < 0):
                ds = ds.isel(lat=slice(None, None, -1))
            elif not np.all(d > 0):
                raise DataError(f"{source}: latitude is not monotonic (variable 'lat')")
        order = ("time", "lat", "lon")
    else:
        order = ("time", *ds["lat"].dims)
    ds = wrap_longitude(ds, source)
    ds = _squeeze_extra_dims(ds, source, {*order, "lat", "lon"})
    for name in ds.data_vars:
        dims = ds[name].dims
        want = [d for d in order if d in dims] + [d for d in dims if d not in order]
        if list(dims) != want:
            ds[name] = ds[name].transpose(*want)
    ds = canonical_units(ds, source, is_monthly(ds))
    ds = step_types(ds, source)  # before align_months: messages give the stamps as stored
    if "time" in ds.dims and isinstance(ds.indexes["time"], pd.DatetimeIndex | xr.CFTimeIndex):
        ds = align_months(ds, source)
    return interval_start(ds, source) if whole else ds


def _squeeze_extra_dims(ds: xr.Dataset, source: str, known: set[str]) -> xr.Dataset:
    """Drop length-1 extra dimensions of the canonical variables; refuse longer ones.

    An ensemble (``number``), a level or a bounds dimension of size > 1 has no canonical
    meaning: a member would be picked silently, or every member averaged into a climate
    that no member had.
    """
    for name in [str(v) for v in ds.data_vars if v in CANONICAL]:
        for dim in ds[name].dims:
            if dim in known:
                continue
            n = int(ds.sizes[dim])
            if n == 1:
                ds[name] = ds[name].isel({dim: 0}, drop=True)
                continue
            what = " (ensemble members)" if dim == "number" else ""
            raise DataError(
                f"{source}: variable '{name}' has an extra dimension '{dim}' of size {n}{what}; "
                "expected dims (time, lat, lon) or (time, <points>)",
                hint=f"select one {dim} before ingest, e.g. ds.isel({dim}=0), or reduce it "
                "(an ensemble mean is a different climate from any member)",
            )
    return ds


# --------------------------------------------------------------------------- validate


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _read_error(source: str, name: str, exc: BaseException) -> DataError:
    return DataError(
        f"{source}: file truncated or unreadable: cannot read variable '{name}' "
        f"({_one_line(exc)})",
        hint="download the file again",
    )


def _all_nan(da: xr.DataArray) -> bool:
    """True if ``da`` has no finite value; reads a few time steps first, all only if needed."""
    if "time" in da.dims and da.sizes["time"] > 3:
        n = da.sizes["time"]
        sample = da.isel(time=[0, n // 2, n - 1])
        if bool(np.isfinite(sample).any().compute()):
            return False
    return not bool(np.isfinite(da).any().compute())


def validate(
    ds: xr.Dataset,
    source: str = "<dataset>",
    variables: Sequence[str] | None = None,
    check_values: bool = True,
) -> xr.Dataset:
    """Check a canonical dataset; raise on the first problem.

    Checks, in order: every requested variable is present; each checked variable has units
    that pint understands and that fit the variable (e.g. a water amount or flux for ``tp``);
    the time axis has no duplicates, is increasing and has no gaps (the step is inferred:
    fixed steps such as daily, or calendar months); no checked variable is entirely NaN.

    Args:
        ds: dataset in canonical form (see :func:`normalise`).
        source: file name(s) for the error messages.
        variables: canonical names that must be present; ``None`` checks the canonical
            variables that are present.
        check_values: run the all-NaN check. It reads three time steps per variable (first,
            middle, last) and the whole variable only when those are all NaN.

    Returns:
        ``ds`` unchanged.

    Raises:
        DataError: one line naming ``source`` and the variable.
    """
    present = [str(v) for v in ds.data_vars]
    if variables is None:
        names = [v for v in CANONICAL if v in ds.data_vars]
    else:
        names = list(variables)
        for v in names:
            if v not in ds.data_vars:
                raise DataError(
                    f"{source}: variable '{v}' is missing (found: {', '.join(present) or 'none'})",
                    hint="Ask for variables the file has, or add a file that has this one.",
                )
    for v in names:
        u = ds[v].attrs.get("units")
        if u is None or (isinstance(u, str) and not u.strip() and v not in ("lsm", "swvl1")):
            raise DataError(f"{source}: variable '{v}' has no units attribute")
        try:
            q = units2pint(str(u))
        except Exception:  # pint raises many kinds
            raise DataError(f"{source}: variable '{v}' has unknown units '{u}'") from None
        expected = DIMENSIONALITIES.get(v)
        if expected is not None and q.dimensionality not in expected:
            raise DataError(f"{source}: variable '{v}' has units '{u}' that do not fit it")
    check_time(ds, source)
    if check_values:
        for v in names:
            try:
                empty = _all_nan(ds[v])
            except Exception as exc:  # a reader error (HDF5, netCDF-C, zarr, OS)
                raise _read_error(source, v, exc) from None
            if empty:
                raise DataError(f"{source}: variable '{v}' is entirely NaN")
    return ds


# --------------------------------------------------------------------------- open


def _as_paths(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    out: list[Path] = []
    for item in items:
        s = str(item)
        if any(c in s for c in "*?["):
            hits = sorted(glob.glob(s))
            if not hits:
                raise DataError(f"{s}: no file matches the pattern")
            out.extend(Path(h) for h in hits)
        else:
            out.append(Path(s))
    if not out:
        raise DataError("no input files given")
    for p in out:
        if not p.exists():
            raise DataError(f"{p}: file not found")
    return out


def _select(ds: xr.Dataset, variables: Sequence[str] | None) -> xr.Dataset:
    if variables is None:
        return ds
    keep = {*variables, *STATIC}
    return ds.drop_vars([v for v in ds.data_vars if v not in keep])


def _grid(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(ds["lat"].values), np.asarray(ds["lon"].values)


def _open_error(f: Path, exc: BaseException) -> DataError:
    return DataError(
        f"{f}: cannot open: file truncated or unreadable ({_one_line(exc)})",
        hint="check that the file is a complete NetCDF/Zarr file (download it again)",
    )


def load_checked(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Read every variable of ``ds`` into memory; a reader error names the variable.

    Args:
        ds: Lazily opened dataset (backend arrays or dask).
        source: File name(s) for the messages.

    Returns:
        ``ds``, loaded.

    Raises:
        DataError: ``"<source>: file truncated or unreadable: cannot read variable ..."``.
    """
    for name in list(ds.variables):
        try:
            ds[name].load()
        except Exception as exc:  # netCDF-C, HDF5, zarr and OS errors of every kind
            raise _read_error(source, str(name), exc) from None
    return ds


def open_grids(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    variables: Sequence[str] | None = None,
    chunks: dict[str, int] | str | None = "auto",
    parallel: bool = False,
    check_values: bool = True,
    gates: Gates | None = _DEFAULT_GATES,
) -> xr.Dataset:
    """Open one or many NetCDF, Zarr or GRIB files (or CDS zips) as one canonical dataset.

    Many files (a list or a glob pattern) go through ``xr.open_mfdataset`` with
    ``combine="by_coords", data_vars="minimal", coords="minimal", compat="override",
    join="exact"`` (reference/hydrology.md s6); GRIB files are opened one by one with cfgrib
    and combined the same way. Files holding different variables over the same months (the
    stepType files of one CDS request) are merged; files holding the same variable are
    joined in time and must not overlap. Each file is normalised, validated and gated on its
    own first, so errors name the file. A NetCDF-3 file shorter than its header declares is
    refused before it is opened (:func:`hydrology.ncheader.check_complete`). A ``.zip`` (a
    CDS request as delivered) is unpacked to a temporary folder and its members read into
    memory; messages name them ``request.zip!member.nc``.

    Args:
        paths: a path, a glob pattern, or a sequence of them.
        variables: canonical names to keep and require (statics ``lsm``/``z`` are kept when
            present); ``None`` keeps everything and checks the canonical variables present.
        chunks: dask chunks; ``"auto"`` groups whole storage chunks (avoids the task
            explosion of one-map-per-chunk CDS files), ``{}`` uses the storage chunks.
            Zip members are read into memory whatever ``chunks`` says.
        parallel: open files in parallel with dask (``open_mfdataset(parallel=...)``).
        check_values: check values: reject all-NaN variables (reads a few time steps per
            variable) and run the plausibility ``gates`` (reads every value once).
            False skips both.
        gates: plausibility bounds (:class:`hydrology.gates.Gates`); None skips them.

    Returns:
        Dataset (dask-backed, or loaded for zips), dims ``(time, lat, lon)`` with lat and lon
        ascending, lon in -180..180 (or ``(time, <points>)``), units as in the source files
        (CF spellings). A monthly record is stamped at month starts and carries
        ``attrs["time_step"] == "month"`` (:func:`hydrology.timeaxis.is_monthly`).

    Raises:
        DataError: missing, truncated or unreadable file, missing variable, unknown units,
            non-monotonic, duplicated or gappy time, grids that differ between files, an
            all-NaN variable, an implausible value (see :func:`hydrology.gates.check_gates`),
            data that cannot give a monthly total (:func:`hydrology.layouts.step_types`).
    """
    given = _as_paths(paths)
    with expand_archives(given) as (files, names):
        if not names:
            return _open_files(files, variables, chunks, parallel, check_values, gates)
        try:
            ds = _open_files(files, variables, None, False, check_values, gates)
            label = f"{given[0]}" if len(given) == 1 else f"{given[0]} ... {given[-1]}"
            ds = load_checked(ds, label)
        except DataError as exc:
            raise DataError(relabel(str(exc), names), hint=exc.hint) from None
        ds.close()  # every value is in memory; the unpacked members go with the block
        return ds


def _open_files(
    files: list[Path],
    variables: Sequence[str] | None,
    chunks: dict[str, int] | str | None,
    parallel: bool,
    check_values: bool,
    gates: Gates | None,
) -> xr.Dataset:
    """:func:`open_grids` on plain files (no archives)."""
    for f in files:
        check_complete(f)

    def _prepare(raw: xr.Dataset, src: str, whole: bool) -> xr.Dataset:
        try:
            ds = normalise(raw, src, whole=whole, variables=variables)
            # a file of a set holds some of the variables (the stepType files of a CDS
            # request); the set as a whole must hold them all (checked after combining)
            need = variables if whole or variables is None else [v for v in variables if v in ds]
            validate(ds, src, need, check_values=check_values)
        except DataError:
            raise
        except Exception as exc:  # a reader error while decoding or reading values
            raise _open_error(Path(src), exc) from None
        if check_values and gates is not None:
            check_gates(ds, src, gates, variables=_gated(ds, variables))
        return ds

    if len(files) == 1:
        f = files[0]
        try:
            raw = open_one(f, chunks)
        except Exception as exc:  # netCDF-C / HDF5 / zarr / ecCodes / decoding errors
            raise _open_error(f, exc) from None
        return _prepare(raw, str(f), whole=True)

    records: dict[str, dict[str, Any]] = {}

    def _pre(raw: xr.Dataset, src: str | None = None) -> xr.Dataset:
        src = src or str(raw.encoding.get("source", "<file>"))
        ds = _prepare(raw, src, whole=False)
        rec: dict[str, Any] = {"grid": _grid(ds), "names": {str(v) for v in ds.data_vars}}
        if "time" in ds.dims:
            rec["first"], rec["last"] = ds.indexes["time"][0], ds.indexes["time"][-1]
            rec["vars"] = {str(v) for v in ds.data_vars if "time" in ds[v].dims}
        records[os.path.abspath(src)] = rec
        return ds

    kinds = {engine(f) for f in files}
    try:
        if kinds == {"cfgrib"} or len(kinds) > 1:
            ds = _combine_one_by_one(files, chunks, _pre)
        else:
            ds = xr.open_mfdataset(
                [str(f) for f in files],
                engine=kinds.pop(),
                chunks=chunks,
                preprocess=_pre,
                combine="by_coords",
                parallel=parallel,
                data_vars="minimal",
                coords="minimal",
                compat="override",
                join="exact",
            )
    except DataError:
        raise
    except (ValueError, KeyError) as exc:
        _check_across(files, records)
        _check_missing(files, records, variables)
        raise DataError(
            f"{files[0]} ... {files[-1]}: cannot combine files ({_one_line(exc)})"
        ) from None
    except Exception as exc:  # a file that cannot be opened: find and name it
        for f in files:
            try:
                open_one(f, chunks).close()
            except Exception as one:
                raise _open_error(f, one) from None
        raise DataError(f"{files[0]} ... {files[-1]}: cannot open ({_one_line(exc)})") from None
    _check_across(files, records)
    label = f"{files[0]} ... {files[-1]} ({len(files)} files)"
    # per-file checks passed; check the combined time axis (gaps between files)
    _check_time_across(ds, files, records, label)
    validate(ds, label, variables, check_values=False)  # every variable asked for is there
    ds = step_types(ds, label)  # the steps of the whole record
    if "time" in ds.dims:
        ds = align_months(ds, label)
    return interval_start(ds, label)


def _combine_one_by_one(
    files: Sequence[Path],
    chunks: dict[str, int] | str | None,
    pre: Callable[[xr.Dataset, str], xr.Dataset],
) -> xr.Dataset:
    """``open_mfdataset`` for GRIB (or mixed formats): open, prepare, combine by coords."""
    parts = []
    for f in files:
        try:
            raw = open_one(f, chunks)
        except Exception as exc:  # ecCodes / netCDF-C errors of every kind
            raise _open_error(f, exc) from None
        parts.append(pre(raw, str(f)))
    return xr.combine_by_coords(
        parts,
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="exact",
        combine_attrs="override",
    )  # type: ignore[return-value]


def _gated(ds: xr.Dataset, variables: Sequence[str] | None) -> list[str] | None:
    """Variables the gates check: the requested ones and the statics, or all (None)."""
    if variables is None:
        return None
    return [*variables, *[s for s in STATIC if s in ds.data_vars]]


def _check_across(files: Sequence[Path], records: dict[str, dict[str, Any]]) -> None:
    """Grids must match exactly; files sharing a variable must not overlap in time (files
    of different variables over the same months, e.g. CDS stepType files, are merged)."""
    recs = [(f, records.get(os.path.abspath(f))) for f in files]
    recs = [(f, r) for f, r in recs if r is not None]
    if not recs:
        return
    f0, r0 = recs[0]
    for f, r in recs[1:]:
        for axis, a, b in (
            ("lat", r0["grid"][0], r["grid"][0]),
            ("lon", r0["grid"][1], r["grid"][1]),
        ):
            if a.shape != b.shape or not np.array_equal(a, b):
                raise DataError(
                    f"{f}: grid does not match {f0} (variable '{axis}': "
                    f"{a.size} values {a.min():g}..{a.max():g} vs {b.size} values "
                    f"{b.min():g}..{b.max():g})",
                    hint="Regrid the files to one grid before opening them together.",
                )
    timed = sorted(
        ((r["first"], r["last"], f, r["vars"]) for f, r in recs if "first" in r),
        key=lambda x: x[0],
    )
    for i, (b0, _b1, fb, vb) in enumerate(timed):
        for _a0, a1, fa, va in timed[:i]:
            shared = sorted(va & vb)
            if shared and b0 <= a1:
                raise DataError(
                    f"{fb}: time overlaps {fa} ({b0} <= {a1}; variable 'time' duplicated "
                    f"for '{shared[0]}')",
                    hint="Remove the duplicated file or period.",
                )


def _check_missing(
    files: Sequence[Path], records: dict[str, dict[str, Any]], variables: Sequence[str] | None
) -> None:
    """Refuse a set in which no file holds a requested variable."""
    found = set().union(*(r["names"] for r in records.values())) if records else set()
    for v in variables or ():
        if v not in found:
            raise DataError(
                f"{files[0]} ... {files[-1]}: variable '{v}' is missing from every file "
                f"(found: {', '.join(sorted(found)) or 'none'})",
                hint="Ask for variables the files have, or add a file that has this one.",
            )


def _check_time_across(
    ds: xr.Dataset, files: Sequence[Path], records: dict[str, dict[str, Any]], label: str
) -> None:
    """Check the combined time axis; a gap between two files names both."""
    if "time" not in ds.dims:
        return
    index = ds.indexes["time"]
    problem = time_problem(index)
    if problem is None:
        return
    msg, k, hint = problem
    before = after = None
    for f in files:
        rec = records.get(os.path.abspath(f), {})
        if rec.get("last") == index[k]:
            before = f
        if rec.get("first") == index[k + 1]:
            after = f
    if before is not None and after is not None:
        raise DataError(f"{after}: {msg} after {before} (variable 'time')", hint=hint)
    raise DataError(f"{label}: {msg} (variable 'time')", hint=hint)


# --------------------------------------------------------------------------- mask


def land_mask(ds: xr.Dataset, variables: Sequence[str] | None = None) -> xr.DataArray:
    """Land cells: ``lsm > 0.5`` (when present) and finite at every time step.

    Args:
        ds: canonical dataset.
        variables: dynamic variables whose finiteness defines land; default: the canonical
            dynamic variables present.

    Returns:
        Boolean DataArray named ``land_mask`` on ``(lat, lon)`` (or the points dim); lazy when
        ``ds`` is dask-backed.
    """
    mask: xr.DataArray | None = None
    if "lsm" in ds.data_vars:
        mask = to_units(ds["lsm"], "1") > 0.5
    names = list(variables) if variables is not None else [v for v in DYNAMIC if v in ds]
    for v in names:
        da = ds[v]
        fin = np.isfinite(da).all("time") if "time" in da.dims else np.isfinite(da)
        mask = fin if mask is None else mask & fin
    if mask is None:
        raise DataError("land_mask: neither 'lsm' nor a dynamic variable in the dataset")
    mask = mask.rename("land_mask")
    mask.attrs = {"long_name": "land cells (lsm > 0.5 and finite over time)"}
    return mask

"""Lazy ingest of climate grids (ERA5, ERA5-Land, E-OBS, CF/CMOR) into one canonical form.

Canonical form (``reference/hydrology.md`` section 10):

- dims ``(time, lat, lon)`` with ``lat`` ascending (a gridded file), or ``(time, <points>)`` for
  station/city files whose ``lat``/``lon`` are 1-D coordinates along one points dimension
  (e.g. ``location``); statics (``lsm``, ``z``) have no time dimension;
- ``latitude/longitude/valid_time`` renamed to ``lat/lon/time``; CDS ``number``/``expver``
  dropped;
- variables under ERA5 short names, whatever the source::

      canonical  ERA5     E-OBS      CF/CMOR      meaning
      tp         tp       rr         pr           precipitation (amount or flux)
      t2m        t2m      tg         tas          daily mean 2 m temperature
      mn2t/mx2t  mn2t/..  tn/tx      tasmin/max   daily min / max 2 m temperature
      e          e        -          evspsbl      evaporation
      pev        pev      -          evspsblpot   potential evaporation
      swvl1      swvl1    -          -            volumetric soil water, layer 1
      lsm        lsm      -          sftlf        land-sea mask (fraction or %)
      z          z        elevation  orog         surface geopotential [m2 s-2] or height [m]

- **units are kept as the source wrote them** (only GRIB-style spellings such as
  ``m of water equivalent`` or ``m**3 m**-3`` are rewritten to CF spelling) and converted at
  use with :func:`to_units`: ERA5 ``tp`` is an amount in m per step, E-OBS ``rr`` an amount in
  mm, CF ``pr`` a flux in kg m-2 s-1;
- **evaporation sign is kept as well**: ERA5 ``e``/``pev`` are negative for evaporation, CF
  ``evspsbl``/``evspsblpot`` positive. Each variable records ``attrs["evaporation_sign"]``;
  :func:`evaporation_positive` returns evaporation as a positive quantity;
- every renamed variable records ``attrs["source_name"]`` and ``attrs["source_convention"]``.

Every problem with the input is a :class:`twins.errors.DataError` whose one-line message names
the file and the variable: a NetCDF-3 file shorter than its header declares
(:mod:`hydrology.ncheader`), any reader exception while opening or reading ("file truncated or
unreadable"), a time axis without CF units, an extra dimension such as an ensemble ``number``
of size > 1, and values outside the plausibility gates (:mod:`hydrology.gates`, run by
:func:`open_grids` unless ``gates=None``). Unit conversions live in :mod:`hydrology.units`
(re-exported here), time-axis checks in :mod:`hydrology.timeaxis`.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from xclim.core.units import units2pint

from hydrology.gates import Gates, check_gates
from hydrology.ncheader import check_complete
from hydrology.timeaxis import check_time, time_problem
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

# source name -> (canonical name, convention)
_ALIASES: dict[str, tuple[str, str]] = {
    # E-OBS
    "rr": ("tp", "eobs"),
    "tg": ("t2m", "eobs"),
    "tn": ("mn2t", "eobs"),
    "tx": ("mx2t", "eobs"),
    "elevation": ("z", "eobs"),
    # CF / CMOR (e.g. the xclim ERA5 city file)
    "pr": ("tp", "cf"),
    "tas": ("t2m", "cf"),
    "tasmin": ("mn2t", "cf"),
    "tasmax": ("mx2t", "cf"),
    "evspsbl": ("e", "cf"),
    "evspsblpot": ("pev", "cf"),
    "sftlf": ("lsm", "cf"),
    "orog": ("z", "cf"),
}
_DEFAULT_GATES = Gates()
_DIM_RENAMES = {"latitude": "lat", "longitude": "lon", "valid_time": "time"}
_DROP = ("number", "expver")

# GRIB / CDS spellings that pint cannot parse -> CF spelling.
_UNIT_SPELLINGS = {
    "m of water equivalent": "m",
    "(0 - 1)": "1",
    "0-1": "1",
    "~": "1",
    "fraction": "1",
    "degrees C": "degC",
}

# --------------------------------------------------------------------------- normalise


def normalise(ds: xr.Dataset, source: str = "<dataset>") -> xr.Dataset:
    """Rename, reorder and sort a raw dataset into the canonical form (lazy, no data read).

    Args:
        ds: dataset as opened from disk (ERA5, ERA5-Land, E-OBS or CF/CMOR naming).
        source: file name used in error messages.

    Returns:
        Dataset with dims ``(time, lat, lon)`` (lat ascending) or ``(time, <points>)``,
        canonical variable names and CF unit spellings.

    Raises:
        DataError: no recognisable lat/lon, or a non-monotonic latitude axis.
    """
    ds = ds.drop_vars([n for n in _DROP if n in ds.variables])
    ds = ds.rename({k: v for k, v in _DIM_RENAMES.items() if k in ds.variables or k in ds.dims})

    renames: dict[str, str] = {}
    for name in list(ds.data_vars):
        alias = _ALIASES.get(str(name))
        if alias is None:
            continue
        target, convention = alias
        if target in ds.data_vars or target in renames.values():
            logger.warning("%s: both %r and %r present; keeping %r", source, name, target, target)
            continue
        renames[str(name)] = target
    ds = ds.rename(renames)
    back = {v: k for k, v in renames.items()}
    for name in ds.data_vars:
        da = ds[name]
        if name in CANONICAL:
            src = back.get(str(name), str(name))
            convention = _ALIASES[src][1] if src in _ALIASES else "era5"
            da.attrs.setdefault("source_name", src)
            da.attrs.setdefault("source_convention", convention)
            if name in ("e", "pev"):
                sign = "negative" if convention == "era5" else "positive"
                da.attrs.setdefault("evaporation_sign", sign)
        u = da.attrs.get("units")
        if isinstance(u, str) and u.strip() in _UNIT_SPELLINGS:
            da.attrs["units"] = _UNIT_SPELLINGS[u.strip()]

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
    ds = _squeeze_extra_dims(ds, source, {*order, "lat", "lon"})
    for name in ds.data_vars:
        dims = ds[name].dims
        want = [d for d in order if d in dims] + [d for d in dims if d not in order]
        if list(dims) != want:
            ds[name] = ds[name].transpose(*want)
    return ds


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


def _engine(path: Path) -> str:
    """``"zarr"`` for a Zarr store (``.zarr`` suffix, or v2 ``.zgroup`` / v3 ``zarr.json``
    metadata inside a directory), else ``"netcdf4"``."""
    if path.suffix == ".zarr" or (path / ".zgroup").exists() or (path / "zarr.json").exists():
        return "zarr"
    return "netcdf4"


def _select(ds: xr.Dataset, variables: Sequence[str] | None) -> xr.Dataset:
    if variables is None:
        return ds
    keep = list(dict.fromkeys([*variables, *[s for s in STATIC if s in ds.data_vars]]))
    return ds[[v for v in keep if v in ds.data_vars]]


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
    """Open one or many NetCDF (or Zarr) files lazily as one canonical, validated dataset.

    Many files (a list or a glob pattern) go through ``xr.open_mfdataset`` with
    ``combine="by_coords", data_vars="minimal", coords="minimal", compat="override",
    join="exact"`` (reference/hydrology.md s6); each file is normalised, validated and gated
    on its own first, so errors name the file. A NetCDF-3 file shorter than its header
    declares is refused before it is opened (:func:`hydrology.ncheader.check_complete`).

    Args:
        paths: a path, a glob pattern, or a sequence of them.
        variables: canonical names to keep and require (statics ``lsm``/``z`` are kept when
            present); ``None`` keeps everything and checks the canonical variables present.
        chunks: dask chunks; ``"auto"`` groups whole storage chunks (avoids the task
            explosion of one-map-per-chunk CDS files), ``{}`` uses the storage chunks.
        parallel: open files in parallel with dask (``open_mfdataset(parallel=...)``).
        check_values: check values: reject all-NaN variables (reads a few time steps per
            variable) and run the plausibility ``gates`` (reads every value once).
            False skips both.
        gates: plausibility bounds (:class:`hydrology.gates.Gates`); None skips them.

    Returns:
        Dask-backed dataset, dims ``(time, lat, lon)`` with lat ascending (or
        ``(time, <points>)``), units as in the source files.

    Raises:
        DataError: missing, truncated or unreadable file, missing variable, unknown units,
            non-monotonic, duplicated or gappy time, grids that differ between files, an
            all-NaN variable, an implausible value (see :func:`hydrology.gates.check_gates`).
    """
    files = _as_paths(paths)
    for f in files:
        check_complete(f)

    def _prepare(raw: xr.Dataset, src: str) -> xr.Dataset:
        try:
            ds = _select(normalise(raw, src), variables)
            validate(ds, src, variables, check_values=check_values)
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
            raw = xr.open_dataset(f, engine=_engine(f), chunks=chunks)
        except Exception as exc:  # netCDF-C / HDF5 / zarr / decoding errors of every kind
            raise _open_error(f, exc) from None
        return _prepare(raw, str(f))

    records: dict[str, dict[str, Any]] = {}

    def _pre(raw: xr.Dataset) -> xr.Dataset:
        src = str(raw.encoding.get("source", "<file>"))
        ds = _prepare(raw, src)
        rec: dict[str, Any] = {"grid": _grid(ds)}
        if "time" in ds.dims:
            rec["first"], rec["last"] = ds.indexes["time"][0], ds.indexes["time"][-1]
        records[os.path.abspath(src)] = rec
        return ds

    try:
        ds = xr.open_mfdataset(
            [str(f) for f in files],
            engine=_engine(files[0]),
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
        raise DataError(
            f"{files[0]} ... {files[-1]}: cannot combine files ({_one_line(exc)})"
        ) from None
    except Exception as exc:  # a file that cannot be opened: find and name it
        for f in files:
            try:
                xr.open_dataset(f, engine=_engine(f), chunks=chunks).close()
            except Exception as one:
                raise _open_error(f, one) from None
        raise DataError(f"{files[0]} ... {files[-1]}: cannot open ({_one_line(exc)})") from None
    _check_across(files, records)
    label = f"{files[0]} ... {files[-1]} ({len(files)} files)"
    # per-file checks passed; check the combined time axis (gaps between files)
    _check_time_across(ds, files, records, label)
    return ds


def _gated(ds: xr.Dataset, variables: Sequence[str] | None) -> list[str] | None:
    """Variables the gates check: the requested ones and the statics, or all (None)."""
    if variables is None:
        return None
    return [*variables, *[s for s in STATIC if s in ds.data_vars]]


def _check_across(files: Sequence[Path], records: dict[str, dict[str, Any]]) -> None:
    """Grids must match exactly and time ranges must not overlap between files."""
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
        ((r["first"], r["last"], f) for f, r in recs if "first" in r), key=lambda x: x[0]
    )
    for (_a0, a1, fa), (b0, _b1, fb) in zip(timed[:-1], timed[1:], strict=True):
        if b0 <= a1:
            raise DataError(
                f"{fb}: time overlaps {fa} ({b0} <= {a1}; variable 'time' duplicated)",
                hint="Remove the duplicated file or period.",
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

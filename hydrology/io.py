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
the file and the variable.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from xclim.core.units import convert_units_to, units, units2pint

from twins.errors import DataError

__all__ = [
    "CANONICAL",
    "DYNAMIC",
    "STATIC",
    "evaporation_positive",
    "land_mask",
    "normalise",
    "open_grids",
    "to_units",
    "validate",
]

logger = logging.getLogger(__name__)

G0 = 9.80665  # [m s-2]
WATER_DENSITY = 1000.0  # [kg m-3]: 1 kg m-2 of water = 1 mm

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

_LENGTH = units("m").dimensionality
_RATE = units("m/s").dimensionality
_MASS_AMOUNT = units("kg m-2").dimensionality
_MASS_FLUX = units("kg m-2 s-1").dimensionality
_TEMPERATURE = units("K").dimensionality
_DIMENSIONLESS = units("1").dimensionality
_GEOPOTENTIAL = units("m2 s-2").dimensionality

_WATER = (_LENGTH, _RATE, _MASS_AMOUNT, _MASS_FLUX)
_EXPECTED_DIMS = {
    "tp": _WATER,
    "e": _WATER,
    "pev": _WATER,
    "t2m": (_TEMPERATURE,),
    "mn2t": (_TEMPERATURE,),
    "mx2t": (_TEMPERATURE,),
    "swvl1": (_DIMENSIONLESS,),
    "lsm": (_DIMENSIONLESS,),
    "z": (_GEOPOTENTIAL, _LENGTH),
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
    for name in ds.data_vars:
        dims = ds[name].dims
        want = [d for d in order if d in dims] + [d for d in dims if d not in order]
        if list(dims) != want:
            ds[name] = ds[name].transpose(*want)
    return ds


# --------------------------------------------------------------------------- validate


def _time_steps(index: pd.Index) -> np.ndarray:
    """Differences of a (pandas or cftime) time index, in seconds."""
    if isinstance(index, pd.DatetimeIndex):
        return np.diff(index.values).astype("timedelta64[ns]").astype(np.float64) / 1e9
    v = np.asarray(index)
    return np.array([(b - a).total_seconds() for a, b in zip(v[:-1], v[1:], strict=True)])


def _time_problem(index: pd.Index) -> tuple[str, int, str] | None:
    """First problem of a time axis as ``(message, position, hint)``, or None if it is fine."""
    if index.size < 2:
        return None
    steps = _time_steps(index)
    if np.any(steps == 0):
        k = int(np.argmax(steps == 0))
        return f"duplicated time {index[k + 1]}", k, "Remove the duplicated steps."
    if np.any(steps < 0):
        k = int(np.argmax(steps < 0))
        return (
            f"time is not increasing at {index[k]} -> {index[k + 1]}",
            k,
            "Sort the file by time.",
        )
    step = float(np.median(steps))
    if 28 * 86400 <= step <= 31 * 86400:  # calendar months
        months = np.asarray(index.year) * 12 + np.asarray(index.month)
        bad = np.diff(months) != 1
        what = "monthly"
    else:
        bad = ~np.isclose(steps, step)
        what = f"{step / 86400:g}-day" if step >= 86400 else f"{step / 3600:g}-hour"
    if np.any(bad):
        k = int(np.argmax(bad))
        return (
            f"gap in time between {index[k]} and {index[k + 1]} ({what} steps)",
            k,
            "Fill or remove the missing steps; indices need a complete time axis.",
        )
    return None


def _check_time(ds: xr.Dataset, source: str) -> None:
    if "time" not in ds.dims:
        return
    problem = _time_problem(ds.indexes["time"])
    if problem is not None:
        msg, _, hint = problem
        raise DataError(f"{source}: {msg} (variable 'time')", hint=hint)


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
        expected = _EXPECTED_DIMS.get(v)
        if expected is not None and q.dimensionality not in expected:
            raise DataError(f"{source}: variable '{v}' has units '{u}' that do not fit it")
    _check_time(ds, source)
    if check_values:
        for v in names:
            if _all_nan(ds[v]):
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


def open_grids(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    variables: Sequence[str] | None = None,
    chunks: dict[str, int] | str | None = "auto",
    parallel: bool = False,
    check_values: bool = True,
) -> xr.Dataset:
    """Open one or many NetCDF (or Zarr) files lazily as one canonical, validated dataset.

    Many files (a list or a glob pattern) go through ``xr.open_mfdataset`` with
    ``combine="by_coords", data_vars="minimal", coords="minimal", compat="override",
    join="exact"`` (reference/hydrology.md s6); each file is normalised and validated on its
    own first, so errors name the file.

    Args:
        paths: a path, a glob pattern, or a sequence of them.
        variables: canonical names to keep and require (statics ``lsm``/``z`` are kept when
            present); ``None`` keeps everything and checks the canonical variables present.
        chunks: dask chunks; ``"auto"`` groups whole storage chunks (avoids the task
            explosion of one-map-per-chunk CDS files), ``{}`` uses the storage chunks.
        parallel: open files in parallel with dask (``open_mfdataset(parallel=...)``).
        check_values: reject all-NaN variables (reads a few time steps per variable).

    Returns:
        Dask-backed dataset, dims ``(time, lat, lon)`` with lat ascending (or
        ``(time, <points>)``), units as in the source files.

    Raises:
        DataError: missing file or variable, unknown units, non-monotonic, duplicated or gappy
            time, grids that differ between files, an all-NaN variable.
    """
    files = _as_paths(paths)
    if len(files) == 1:
        f = files[0]
        try:
            raw = xr.open_dataset(f, engine=_engine(f), chunks=chunks)
        except (OSError, ValueError) as exc:
            raise DataError(f"{f}: cannot open ({exc})") from None
        ds = _select(normalise(raw, str(f)), variables)
        return validate(ds, str(f), variables, check_values=check_values)

    records: dict[str, dict[str, Any]] = {}

    def _pre(raw: xr.Dataset) -> xr.Dataset:
        src = str(raw.encoding.get("source", "<file>"))
        ds = _select(normalise(raw, src), variables)
        validate(ds, src, variables, check_values=check_values)
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
        raise DataError(f"{files[0]} ... {files[-1]}: cannot combine files ({exc})") from None
    _check_across(files, records)
    label = f"{files[0]} ... {files[-1]} ({len(files)} files)"
    # per-file checks passed; check the combined time axis (gaps between files)
    _check_time_across(ds, files, records, label)
    return ds


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
    problem = _time_problem(index)
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


# --------------------------------------------------------------------------- units


def _kind(q: Any) -> str:
    dim = q.dimensionality
    if dim in (_LENGTH, _MASS_AMOUNT):
        return "amount"
    if dim in (_RATE, _MASS_FLUX):
        return "rate"
    return "other"


def _step_seconds(da: xr.DataArray) -> xr.DataArray | float:
    if "time" not in da.dims or da.sizes["time"] < 2:
        raise DataError(
            f"variable '{da.name}': cannot convert between amount and rate without a time axis"
        )
    steps = _time_steps(da.indexes["time"])
    step = float(np.median(steps))
    if 28 * 86400 <= step <= 31 * 86400:
        return da["time"].dt.days_in_month * 86400.0
    return step


def to_units(da: xr.DataArray, target: str) -> xr.DataArray:
    """Convert ``da`` to ``target`` units at the point of use (lazy for dask arrays).

    Handles, besides plain pint conversions (``K -> degC``, ``% -> 1``):

    - water as mass (``kg m-2``, ``kg m-2 s-1``) <-> depth (``mm``, ``m``, ``mm/d``) with a
      density of 1000 kg m-3;
    - amounts per time step <-> rates, using the time step of ``da`` (fixed steps, or days in
      month for monthly data). ERA5 ``tp`` [m per day] -> ``"mm/day"`` multiplies by 1000.
      Caution: ERA5-Land *monthly means* store the mean **daily** amount; convert those with
      ``"mm"`` and multiply by the days in the month yourself;
    - surface geopotential [m2 s-2] -> height [m] (divided by 9.80665), and back.

    The sign is never changed; see :func:`evaporation_positive`.

    Args:
        da: variable with a ``units`` attribute.
        target: pint/CF unit string, e.g. ``"mm/day"``, ``"mm"``, ``"degC"``, ``"m"``.

    Returns:
        A new DataArray with ``attrs["units"] == target``; other attributes are kept.
    """
    if "units" not in da.attrs:
        raise DataError(f"variable '{da.name}' has no units attribute")
    src = units2pint(da)
    tgt = units2pint(target)
    attrs = dict(da.attrs)
    if src.dimensionality == tgt.dimensionality:
        out = convert_units_to(da, target)
    elif src.dimensionality == _GEOPOTENTIAL and tgt.dimensionality == _LENGTH:
        out = da * (units.Quantity(1.0, src).to("m2 s-2").magnitude / G0)
        out = out * units.Quantity(1.0, "m").to(tgt).magnitude
    elif src.dimensionality == _LENGTH and tgt.dimensionality == _GEOPOTENTIAL:
        out = da * (units.Quantity(1.0, src).to("m").magnitude * G0)
        out = out * units.Quantity(1.0, "m2 s-2").to(tgt).magnitude
    else:
        ks, kt = _kind(src), _kind(tgt)
        if "other" in (ks, kt):
            raise DataError(
                f"variable '{da.name}': cannot convert units '{da.attrs['units']}' to '{target}'"
            )
        rho = units.Quantity(WATER_DENSITY, "kg m-3")
        qs = units.Quantity(1.0, src)
        if src.dimensionality in (_MASS_AMOUNT, _MASS_FLUX):
            qs = qs / rho
        base = "mm" if ks == "amount" else "mm/s"
        out = da * qs.to(base).magnitude  # now in mm or mm/s
        if ks != kt:
            step = _step_seconds(da)
            out = out / step if ks == "amount" else out * step
        qt = units.Quantity(1.0, "mm" if kt == "amount" else "mm/s")
        if tgt.dimensionality in (_MASS_AMOUNT, _MASS_FLUX):
            qt = qt * rho
        out = out * qt.to(tgt).magnitude
    attrs["units"] = target
    out.attrs = attrs
    out.name = da.name
    return out


def evaporation_positive(da: xr.DataArray) -> xr.DataArray:
    """Return evaporation (``e``/``pev``) with evaporation as positive values.

    ERA5 stores evaporation negative (downward-positive fluxes); CF ``evspsbl*`` store it
    positive. Uses ``attrs["evaporation_sign"]`` set on ingest (``"negative"`` if absent and the
    variable is named ``e``/``pev``).
    """
    sign = da.attrs.get("evaporation_sign", "negative" if da.name in ("e", "pev") else None)
    if sign is None:
        raise DataError(f"variable '{da.name}': unknown evaporation sign convention")
    attrs = dict(da.attrs)
    out = -da if sign == "negative" else da.copy()
    attrs["evaporation_sign"] = "positive"
    out.attrs = attrs
    return out


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

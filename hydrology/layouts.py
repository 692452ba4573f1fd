"""File layouts of the CDS and other providers, brought to one shape before names and units.

What each function undoes (all as the files are delivered, no hand editing):

- :func:`grib_valid_time`: cfgrib's GRIB layout, a forecast reference ``time`` with a
  ``step`` dimension or coordinate and a ``valid_time`` coordinate: the data are put on
  ``valid_time`` (stacked when it is 2-D, as for ERA5 accumulations in GRIB);
- :func:`combine_expver`: the legacy CDS ``expver`` *dimension* of records that reach into
  the last months (1 = final ERA5, 5 = preliminary ERA5T, NaN where the other one holds the
  month) combined into one record, final over preliminary; the 2024+ CDS ``expver``
  *coordinate* along ``valid_time`` is dropped (the preliminary months are logged);
- :func:`scalar_time`: a scalar ``time`` (one map, as grib_to_netcdf writes a single date)
  becomes a length-1 ``time`` dimension;
- :func:`wrap_longitude`: longitudes stored 0..360 (GPCC, CPC and CMIP grids; Africa wraps
  through 0 as 336.25..58.75) are converted to -180..180 and sorted;
- :func:`step_types`: ECMWF's ``GRIB_stepType`` read as units and time stamps. ``avgad``
  (monthly mean of daily accumulations) is an amount *per day*, so ``m`` becomes ``m d-1``;
  ``accum`` in ERA5 is the amount of the hour that *ends* at the stamp, which gives a total
  only when the steps are that hour: one step per month (or per day) of hourly amounts is
  refused; a single instantaneous value per month is refused as not a monthly mean;
- :func:`interval_start`: those end-stamped hourly amounts labelled at the start of their
  hour (values moved one step back), so a day or month holds its own hours: the 00:00 value
  belongs to the previous day. The last step of the record becomes NaN (its hour is stamped
  00:00 of the next day, in the next download).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import xarray as xr

from hydrology.timeaxis import is_monthly, time_steps
from twins.errors import DataError

__all__ = [
    "ACCUMULATION_HOURS",
    "combine_expver",
    "grib_valid_time",
    "interval_start",
    "scalar_time",
    "step_types",
    "wrap_longitude",
]

logger = logging.getLogger(__name__)

#: Hours an ERA5 ``accum`` value sums (the hour before its stamp).
ACCUMULATION_HOURS = 1
_WATER = ("tp", "e", "pev")
_FINAL, _PRELIMINARY = 1, 5
_HOUR = 3600.0
_DAY = 86400.0
# attrs set on end-stamped accumulations and once they are moved to their interval start
_STAMP = "time_stamp"


def grib_valid_time(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Put cfgrib's ``(time, step)`` data on their ``valid_time``.

    Args:
        ds: Dataset as cfgrib opens a GRIB file (``time`` = forecast reference time,
            ``step``, ``valid_time``), or any other dataset (returned unchanged).
        source: File name for the messages.

    Returns:
        Dataset whose time axis is ``valid_time`` (1-D, sorted), reference time and step
        dropped.
    """
    if "valid_time" not in ds.variables or "time" not in ds.variables:
        return ds
    vt = ds["valid_time"]
    if vt.ndim == 2:  # (time, step): forecasts from several reference times
        dims = tuple(str(d) for d in vt.dims)
        flat = ds.stack(_valid=dims)
        values = np.asarray(vt.stack(_valid=dims).values)
        flat = flat.drop_vars([c for c in (*dims, "_valid", "valid_time") if c in flat.coords])
        flat = flat.assign_coords(_valid=values).rename(_valid="valid_time")
        keep = ~np.isnat(values.astype("datetime64[ns]"))
        flat = flat.isel(valid_time=np.flatnonzero(keep)).sortby("valid_time")
        return _trim_padding(flat, source)
    if vt.ndim == 1:
        dim = str(vt.dims[0])
        out = ds.drop_vars([c for c in ("time", "step") if c in ds.coords and c != dim])
        if dim != "valid_time":
            out = out.swap_dims({dim: "valid_time"})
            out = out.drop_vars([dim] if dim in out.coords else [])
        return out
    return ds.drop_vars([c for c in ("time", "step") if c in ds.coords])


def _trim_padding(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Drop the leading and trailing valid times that no GRIB message filled.

    cfgrib lays the messages on the full reference time x step cube; an ERA5 download of
    whole days fills only part of the first and last forecasts (e.g. the 18:00 forecast of
    the day before gives 00:00..06:00), the rest is NaN. Only the ends are trimmed: a hole
    inside the record stays and is refused by the time and missing-value checks. Reads the
    values once (GRIB data are decoded anyway by the gates).
    """
    spatial = [d for d in ds.dims if d != "valid_time"]
    filled = None
    for name in ds.data_vars:
        if "valid_time" not in ds[name].dims:
            continue
        some = ds[name].notnull().any([d for d in spatial if d in ds[name].dims])
        filled = some if filled is None else filled | some
    if filled is None:
        return ds
    hit = np.flatnonzero(np.asarray(filled.values))
    if hit.size == 0:
        return ds
    out = ds.isel(valid_time=slice(int(hit[0]), int(hit[-1]) + 1))
    logger.info(
        "%s: GRIB reference times x steps stacked on valid_time (%d of %d filled)",
        source,
        out.sizes["valid_time"],
        ds.sizes["valid_time"],
    )
    return out


def _expver_code(value: object) -> int:
    """``1``, ``"0001"``, ``b"0005"`` -> 1, 1, 5."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    try:
        return int(float(text))
    except ValueError:
        return -1


def combine_expver(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Combine a legacy ``expver`` dimension (final over preliminary); drop a CDS coordinate.

    Args:
        ds: Dataset as read.
        source: File name for the messages.

    Returns:
        Dataset without ``expver``. Where both the final (1) and the preliminary (5) record
        hold a value, the final one is kept.

    Raises:
        DataError: An ``expver`` dimension whose codes are not experiment numbers.
    """
    if "expver" not in ds.variables:
        return ds
    codes = [_expver_code(v) for v in np.atleast_1d(ds["expver"].values)]
    if "expver" not in ds.dims:
        late = sum(c != _FINAL for c in codes) if ds["expver"].ndim else 0
        if late:
            logger.info("%s: %d steps are preliminary ERA5T (expver 5)", source, late)
        return ds.drop_vars("expver")
    if any(c < 0 for c in codes):
        raise DataError(
            f"{source}: variable 'expver' holds {list(ds['expver'].values)}, not experiment "
            "numbers (1 = final ERA5, 5 = preliminary ERA5T)",
            hint="select one experiment version before ingest, e.g. ds.sel(expver=1)",
        )
    order = sorted(range(len(codes)), key=lambda i: (codes[i] != _FINAL, codes[i]))
    parts = [ds.isel(expver=i, drop=True) for i in order]
    out = parts[0]
    for part in parts[1:]:
        out = out.combine_first(part)
    for name in out.data_vars:
        if name in ds.data_vars:
            out[name].attrs = dict(ds[name].attrs)
            out[name].encoding = dict(ds[name].encoding)
    out.attrs = dict(ds.attrs)
    logger.info("%s: expver %s combined, final (1) over preliminary", source, codes)
    return out


def scalar_time(ds: xr.Dataset) -> xr.Dataset:
    """A scalar ``time`` or ``valid_time`` coordinate becomes a length-1 dimension.

    Only data variables with at least one dimension take it (a scalar variable stays scalar).
    """
    for name in ("valid_time", "time"):
        if name in ds.coords and ds[name].ndim == 0 and name not in ds.dims:
            gridded = [str(v) for v in ds.data_vars if ds[v].ndim > 0]
            out = ds.expand_dims(name)
            for v in ds.data_vars:
                if str(v) not in gridded:
                    out[v] = ds[v]
            return out
    return ds


def wrap_longitude(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Convert longitudes 0..360 to -180..180 and sort a gridded ``lon`` axis.

    Args:
        ds: Dataset with ``lon`` (a dimension, or a coordinate along a points dimension).
        source: File name for the messages.

    Returns:
        ``ds`` with ``lon`` in [-180, 180) when any value exceeded 180, sorted ascending when
        ``lon`` is a dimension; unchanged otherwise.

    Raises:
        DataError: A longitude present twice once wrapped (0 and 360), or outside -180..360.
    """
    if "lon" not in ds.variables:
        return ds
    lon = np.asarray(ds["lon"].values)
    if lon.size == 0:
        return ds
    lo, hi = float(np.nanmin(lon)), float(np.nanmax(lon))
    if lo < -180.0 or hi > 360.0:
        raise DataError(
            f"{source}: longitude {lo if lo < -180 else hi:g} is outside -180..360 "
            "(variable 'lon')"
        )
    wrapped = lon
    if hi > 180.0:
        wrapped = (((lon.astype(np.float64) + 180.0) % 360.0) - 180.0).astype(lon.dtype)
        ds = ds.assign_coords(lon=ds["lon"].copy(data=wrapped))
        logger.info("%s: longitudes %g..%g converted to -180..180", source, lo, hi)
    if "lon" not in ds.dims or wrapped.size < 2:
        return ds
    d = np.diff(wrapped)
    if np.all(d > 0):
        return ds
    uniq, counts = np.unique(wrapped, return_counts=True)
    if np.any(counts > 1):
        twice = float(uniq[np.argmax(counts > 1)])
        raise DataError(
            f"{source}: longitude {twice:g} appears twice once 0..360 is read as -180..180 "
            "(variable 'lon')",
            hint="drop the repeated column (e.g. 360 duplicating 0) before ingest",
        )
    ds = ds.sortby("lon")
    steps = np.diff(np.asarray(ds["lon"].values, dtype=np.float64))
    if steps.size > 1 and steps.max() > 1.5 * np.median(steps):
        logger.warning(
            "%s: the region crosses 180E; in -180..180 its longitudes jump by %g degrees",
            source,
            float(steps.max()),
        )
    return ds


def _step_seconds(ds: xr.Dataset) -> float | None:
    if "time" not in ds.dims or ds.sizes["time"] < 2:
        return None
    index = ds.indexes["time"]
    if not isinstance(index, pd.DatetimeIndex | xr.CFTimeIndex):
        return None
    return float(np.median(time_steps(index)))


def _per_step(ds: xr.Dataset, step: float) -> str:
    if is_monthly(ds):
        return "one step per month"
    if step == _DAY:
        return "one step per day"
    return f"one step every {step / _HOUR:g} hours"


def _from_grib_to_netcdf(ds: xr.Dataset) -> bool:
    """A legacy CDS netCDF file (ECMWF's grib_to_netcdf wrote its history)."""
    return "grib_to_netcdf" in str(ds.attrs.get("history", ""))


def step_types(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Read ECMWF step types as units and stamps; refuse what gives no total or mean.

    Args:
        ds: Dataset with canonical names and ``time`` (after the renames).
        source: File name for the messages.

    Returns:
        ``ds`` with ``avgad`` amounts (and legacy CDS monthly means of ERA5 ``tp``/``e``/
        ``pev``) in units per day, and end-stamped hourly accumulations marked
        ``attrs["time_stamp"] = "end"`` (see :func:`interval_start`).

    Raises:
        DataError: An hourly accumulation on longer steps (``india_5x5_monthly_instants``:
            one hour per month), or one instantaneous value per month.
    """
    step = _step_seconds(ds)
    legacy = _from_grib_to_netcdf(ds)
    for name in [str(v) for v in ds.data_vars]:
        da = ds[name]
        kind = da.attrs.get("GRIB_stepType")
        if kind is None and legacy and name in _WATER and da.attrs.get("source_name") == name:
            kind = "avgad" if is_monthly(ds) else "accum"
        if kind is None or "time" not in da.dims:
            continue
        units = str(da.attrs.get("units", "")).strip()
        if kind == "avgad" and name in _WATER and units and "d-1" not in units:
            da.attrs.setdefault("source_units", units)
            da.attrs["units"] = f"{units} d-1"
            da.attrs["cell_methods"] = "time: mean of daily amounts"
            logger.info("%s: '%s' is a mean daily amount (stepType avgad)", source, name)
        elif kind == "accum" and name in _WATER:
            if step is not None and abs(step - ACCUMULATION_HOURS * _HOUR) > 1.0:
                first = ds.indexes["time"][0]
                raise DataError(
                    f"{source}: variable '{name}' has {_per_step(ds, step)} but an accumulation "
                    f"over {ACCUMULATION_HOURS} hour (ERA5 stepType 'accum', first stamp "
                    f"{first}): it cannot give a daily or monthly total",
                    hint="download every hour of each day (ERA5 hourly), or the monthly means "
                    "(reanalysis-era5-single-levels-monthly-means, 'tp' per day)",
                )
            if da.attrs.get(_STAMP) != "start":
                da.attrs[_STAMP] = "end"
        elif kind in ("instant", "max", "min") and step is not None and is_monthly(ds):
            extreme = {"mn2t": "minimum", "mx2t": "maximum"}.get(name, f"{kind}imum")
            what = "an instantaneous value" if kind == "instant" else f"the {extreme} of one hour"
            raise DataError(
                f"{source}: variable '{name}' has one step per month but each is {what} "
                f"(ERA5 stepType '{kind}', first stamp {ds.indexes['time'][0]}): it is not a "
                "monthly mean",
                hint="download the monthly means (reanalysis-era5-single-levels-monthly-means)",
            )
    return ds


def interval_start(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Label end-stamped hourly accumulations at the start of their hour.

    ``value[t]`` becomes ``value[t + 1 h]``: the amount of the hour that starts at ``t``.
    A daily or monthly mean of the result then covers that day's or month's own hours. The
    first value (the last hour of the day before the record) leaves, and the last step
    becomes NaN.

    Args:
        ds: Dataset after :func:`step_types` (whole record: after combining files).
        source: File name for the messages.

    Returns:
        ``ds`` with those variables moved and marked ``attrs["time_stamp"] = "start"``.
    """
    step = _step_seconds(ds)
    if step is None or abs(step - ACCUMULATION_HOURS * _HOUR) > 1.0:
        return ds
    for name in [str(v) for v in ds.data_vars]:
        if ds[name].attrs.get(_STAMP) != "end":
            continue
        attrs = dict(ds[name].attrs)
        ds[name] = ds[name].shift(time=-1)
        ds[name].attrs = attrs | {_STAMP: "start"}
        logger.info("%s: '%s' hourly amounts moved to the start of their hour", source, name)
    return ds
